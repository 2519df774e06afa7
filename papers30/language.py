"""Recurrent language models, their evaluation in bits, n-gram baselines and sampling.

Chapter 2 (Karpathy, *The Unreasonable Effectiveness of Recurrent Neural
Networks*) trains character-level RNN and LSTM models with these pieces and
compares them with exact n-gram baselines; chapter 4 (Zaremba et al.,
*Recurrent Neural Network Regularization*) trains the same
:class:`LanguageModel` with dropout.

* :class:`LanguageModel`: token embedding -> the recurrent runner of
  :mod:`papers30.recurrent` (``RNN``, ``LSTM`` or ``GRU``, with its
  ``dropout`` and ``dropout_placement``), or torch's fused runner with the
  same parameter names -> linear read-out of next-token logits;
* :func:`bits_per_token`, :func:`evaluate` (a whole split, state carried
  across batches) and :func:`tbptt_loss` (a training loss for
  :func:`papers30.training.fit` that carries the state between batches);
* :func:`train_language_model` (training with periodic validation and early
  stopping, a :class:`Run`), :func:`cosine_schedule`, and
  :func:`train_char_model`, chapter 2's whole experiment as one call;
* :class:`NGram` (add-k smoothing) and :class:`KneserNey` (interpolated
  Kneser-Ney): exact count-based models, with :func:`fit_ngram` and
  :func:`fit_kneser_ney` to tune their smoothing on validation data;
* :func:`sample_next` and :func:`sample`: temperature sampling with an
  explicit ``torch.Generator``;
* probes of what the hidden units track: :func:`hidden_states`,
  :func:`speaker_lines`, :func:`position_in_line`, :func:`best_unit`,
  :func:`distinct_ngrams`.

Shapes: ``B`` batch, ``T`` time steps, ``V`` vocabulary size, ``E``
embedding width, ``H`` hidden width, ``L`` layers, ``N`` stream length.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.data.text import BPTTBatches, char_corpus
from papers30.recurrent import RUNNERS
from papers30.runtime import get_device, seed_everything
from papers30.training import History, fit

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
LN2 = math.log(2.0)


# ------------------------------------------------------------------------ the model


class LanguageModel(nn.Module):
    """Tokens ``(B, T)`` -> embedding ``(B, T, E)`` -> recurrent runner ``(B, T, H)`` -> logits ``(B, T, V)``.

    ``kind`` is ``"rnn"`` (vanilla, tanh), ``"lstm"`` or ``"gru"``; the runner
    is :class:`papers30.recurrent.RNN` / ``LSTM`` / ``GRU``, built with
    ``dropout`` and ``dropout_placement`` (see :class:`papers30.recurrent.LSTM`:
    ``"non_recurrent"`` drops the embedding output, the input of every
    layer and the top layer's output). ``embedding_size`` defaults to
    ``hidden_size``. ``init_range`` (optional) re-initialises every
    parameter uniformly in ``[-init_range, init_range]``, as Zaremba et al. do;
    ``forget_bias`` is added to the LSTM forget gates' bias afterwards.

    Submodules ``embedding`` (``nn.Embedding``), ``rnn`` (parameters named as
    in torch's runners) and ``head`` (``nn.Linear``), so the model's weights
    copy one to one into ``nn.Embedding`` + ``nn.LSTM`` + ``nn.Linear``.

    ``fused=True`` builds ``rnn`` from torch's own ``nn.RNN`` / ``nn.LSTM`` /
    ``nn.GRU`` instead (one fused kernel per layer, several times faster on
    a CPU), with the same parameter names, so a state dict loads from either
    into the other. The model then applies the ``"non_recurrent"`` dropout
    masks itself (on the embedding output and the top layer's output; torch's
    runner drops between layers); the naive ``"recurrent"`` placement needs
    the package's runner and raises ``ValueError`` with ``fused=True``.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int = 1,
        kind: str = "lstm",
        embedding_size: int | None = None,
        dropout: float = 0.0,
        *,
        dropout_placement: str = "non_recurrent",
        init_range: float | None = None,
        forget_bias: float = 0.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        _checks.one_of("kind", kind, tuple(RUNNERS))
        _checks.positive_int("vocab_size", vocab_size)
        _checks.positive_int("hidden_size", hidden_size)
        embedding_size = hidden_size if embedding_size is None else embedding_size
        _checks.positive_int("embedding_size", embedding_size)
        if not isinstance(fused, bool):
            raise TypeError(f"fused must be a bool, got {type(fused).__name__}")
        self.kind, self.vocab_size, self.fused = kind, vocab_size, fused
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = RUNNERS[kind](
            embedding_size, hidden_size, num_layers, batch_first=True, dropout=dropout,
            dropout_placement=dropout_placement
        )
        self.dropout = 0.0  # the masks the model applies itself (fused runners only)
        if fused:
            if dropout_placement == "recurrent" and dropout > 0:
                raise ValueError("dropout_placement 'recurrent' needs the package's runner: use fused=False")
            self.dropout = dropout if dropout_placement == "non_recurrent" else 0.0
            self.rnn = FUSED[kind](embedding_size, hidden_size, num_layers, batch_first=True,
                                   dropout=self.dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, vocab_size)
        if init_range is not None:
            if isinstance(init_range, bool) or not isinstance(init_range, (int, float)) or init_range <= 0:
                raise ValueError(f"init_range must be a positive number or None, got {init_range!r}")
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)
        if kind == "lstm" and forget_bias:
            with torch.no_grad():
                for k in range(num_layers):
                    getattr(self.rnn, f"bias_hh_l{k}")[hidden_size : 2 * hidden_size] += forget_bias

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits ``(B, T, V)`` for the next token at every step, and the final state.

        ``state`` is what a previous call returned (``h (L, B, H)``, or
        ``(h, c)`` for the LSTM), or ``None`` for zeros.
        """
        _checks.tensor("tokens", tokens, ndim=2, kind="int")
        if not (state is None or isinstance(state, torch.Tensor) or (
                isinstance(state, tuple) and len(state) == 2 and all(isinstance(t, torch.Tensor) for t in state))):
            raise TypeError(f"state must be None, a tensor h or a pair (h, c) of tensors, got {type(state).__name__}")
        x = self.embedding(tokens)
        if self.dropout:  # fused runner: the non-recurrent masks the package's runner applies itself
            x = F.dropout(x, self.dropout, self.training)
        out, state = self.rnn(x, state)
        if self.dropout:  # (contiguous: the mask then falls where the package's runner puts it)
            out = F.dropout(out.contiguous(), self.dropout, self.training)
        return self.head(out), state


def detach_state(state: State | None) -> State | None:
    """The same state cut from the graph, so back-propagation stops at the batch boundary."""
    if state is None:
        return None
    if isinstance(state, tuple):
        for i, s in enumerate(state):
            _checks.tensor(f"state[{i}]", s)
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    _checks.tensor("state", state)
    return state.detach()


# --------------------------------------------------------------------- evaluation


def bits_per_token(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in bits, eq. (ch02-bits): ``-mean log2 p(target)``.

    ``logits (..., V)``, ``targets (...)`` integer ids. Returns a 0-d tensor
    (differentiable): the nats of ``F.cross_entropy`` divided by ``ln 2``.
    """
    _checks.tensor("logits", logits, kind="float")
    _checks.tensor("targets", targets, kind="int")
    if tuple(logits.shape[:-1]) != tuple(targets.shape):
        raise ValueError(f"targets must have shape {tuple(logits.shape[:-1])}, got {tuple(targets.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)) / LN2


@dataclass(frozen=True)
class Evaluation:
    """Cross-entropy over a whole split: nats and bits per token, perplexity ``2 ** bits``."""

    nats: float
    bits: float
    perplexity: float
    tokens: int

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def evaluate(model: LanguageModel, batches: BPTTBatches) -> Evaluation:
    """Bits per token and perplexity of ``model`` over every batch of a split.

    The state is carried from each batch to the next (as in training), the
    model runs in eval mode (no dropout) without gradients, and batches are
    weighted by their number of targets, so the result is the mean over all
    ``batches.tokens`` predictions. The model's training mode is restored.
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel, got {type(model).__name__}")
    if not isinstance(batches, BPTTBatches):
        raise TypeError(f"batches must be a BPTTBatches, got {type(batches).__name__}")
    was_training, device = model.training, _device(model)
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in batches:
            logits, state = model(x.to(device), state)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.to(device).reshape(-1),
                                     reduction="sum").item()
            count += y.numel()
    model.train(was_training)
    nats = total / count
    return Evaluation(nats=nats, bits=nats / LN2, perplexity=math.exp(nats), tokens=count)


def tbptt_loss(model: LanguageModel, batches: BPTTBatches) -> Callable[[int], torch.Tensor]:
    """A ``loss_fn(step)`` for :func:`papers30.training.fit`: truncated BPTT with carried state.

    Step ``s`` (1-based) trains on batch ``(s - 1) % len(batches)``; the state
    left by the previous step is detached and carried on, and reset to zeros
    when a pass over the data starts again. The loss is in bits per token.
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel, got {type(model).__name__}")
    if not isinstance(batches, BPTTBatches):
        raise TypeError(f"batches must be a BPTTBatches, got {type(batches).__name__}")
    carry: dict[str, State | None] = {"state": None}

    def loss_fn(step: int) -> torch.Tensor:
        i = (step - 1) % len(batches)
        x, y = batches[i]
        device = _device(model)
        state = None if i == 0 else detach_state(carry["state"])
        logits, carry["state"] = model(x.to(device), state)
        return bits_per_token(logits, y.to(device))

    return loss_fn


# ------------------------------------------------------------------------- training


@dataclass
class Run:
    """One training run: its :class:`~papers30.training.History` and the early-stopping point.

    ``history.evals`` holds, every ``every`` steps, the validation perplexity
    under ``"valid"`` and bits per token under ``"bits"`` (and the perplexity
    of a training probe under ``"train"`` when one was given). ``best_state``
    is a copy of the weights at ``best_step``, the evaluation with the lowest
    validation perplexity ``best_valid``; ``snapshots`` maps each requested
    step to a copy of the weights then. ``model`` is the trained model, holding
    its final weights.
    """

    history: History
    best_step: int
    best_valid: float
    best_state: dict[str, torch.Tensor]
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    model: LanguageModel | None = None

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def losses(self) -> list[float]:
        """The training loss of every step (bits per token)."""
        return self.history.losses

    @property
    def final_valid(self) -> float:
        """The validation perplexity at the last evaluation."""
        return self.history.evals[-1]["valid"]

    @property
    def best_bits(self) -> float:
        """The best validation figure in bits per token, ``log2(best_valid)``."""
        return math.log2(self.best_valid)


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_language_model(
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    train: BPTTBatches,
    valid: BPTTBatches,
    steps: int,
    *,
    every: int = 50,
    clip: float | None = 5.0,
    train_probe: BPTTBatches | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    snapshots: Sequence[int] = (),
    stop_after: int | None = None,
) -> Run:
    """Train ``model`` for ``steps`` truncated-BPTT steps on ``train``; measure and keep the best.

    Each step is one ``(B, T)`` batch of ``train`` with the hidden state
    carried from the previous batch (:func:`tbptt_loss`), the loss in bits
    per token, gradients clipped to norm ``clip``, then ``scheduler`` (if
    any) steps. Every ``every`` steps and after the last, the perplexity of
    ``valid`` (and of ``train_probe``, e.g. a slice of the training text) is
    measured in eval mode, that is without dropout; a copy of the weights is
    kept at the best validation perplexity (early stopping) and at each
    evaluation step listed in ``snapshots``. ``stop_after`` ends the run
    early without changing the schedule (see :func:`papers30.training.fit`).
    The model ends holding its final weights; the best ones are in
    :attr:`Run.best_state`.
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel, got {type(model).__name__}")
    for name, batches in (("train", train), ("valid", valid), ("train_probe", train_probe)):
        if not (isinstance(batches, BPTTBatches) or (name == "train_probe" and batches is None)):
            raise TypeError(f"{name} must be a BPTTBatches, got {type(batches).__name__}")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip <= 0):
        raise ValueError(f"clip must be a positive number or None, got {clip!r}")
    _checks.positive_int("every", every)
    wanted = set(snapshots)
    best: dict[str, object] = {"valid": math.inf, "step": 0, "state": {}}
    kept: dict[int, dict[str, torch.Tensor]] = {}
    count = {"evals": 0}

    def measure() -> dict[str, float]:
        count["evals"] += 1
        step = min(count["evals"] * every, steps)
        result = evaluate(model, valid)
        out = {"valid": result.perplexity, "bits": result.bits}
        if train_probe is not None:
            out["train"] = evaluate(model, train_probe).perplexity
        if out["valid"] < best["valid"]:  # early stopping: remember the best weights
            best.update(valid=out["valid"], step=step, state=_copy(model))
        if step in wanted:
            kept[step] = _copy(model)
        return out

    history = fit(model, optimizer, tbptt_loss(model, train), steps, clip=clip, evaluate=measure, every=every,
                  scheduler=scheduler, stop_after=stop_after)
    return Run(history, int(best["step"]), float(best["valid"]), best["state"], kept,  # type: ignore[arg-type]
               model)


@_checks.typed
def cosine_schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate ``lr * (1 + cos(pi * s / steps)) / 2`` after step ``s``: from ``lr`` down to 0."""
    _checks.positive_int("steps", steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps)))


def train_char_model(
    seed: int = 0,
    kind: str = "lstm",
    hidden: int = 256,
    embed: int = 64,
    layers: int = 1,
    batch: int = 32,
    seq: int = 64,
    steps: int = 1000,
    lr: float = 3e-3,
    every: int = 250,
    text: str = "shakespeare",
    dropout: float = 0.0,
    placement: str = "non_recurrent",
    snapshots: Sequence[int] = (),
    stop_after: int | None = None,
) -> Run:
    """Chapter 2's experiment: a character model trained on a committed text, as one call.

    The text is :func:`papers30.data.text.char_corpus` ``(text)`` (train,
    validation and test splits). The model is a fused :class:`LanguageModel`
    of ``kind`` (``hidden`` units, ``layers`` layers, ``embed``-wide
    embedding), built after :func:`papers30.runtime.seed_everything`
    ``(seed)``; it is trained by :func:`train_language_model` with Adam at
    ``lr`` on a :func:`cosine_schedule` over ``steps`` steps of ``batch`` rows
    by ``seq`` characters, gradients clipped to norm 1, the validation text
    measured every ``every`` steps. ``dropout`` with ``placement`` (chapter
    4): ``"non_recurrent"`` keeps the fused runner; the naive
    ``"recurrent"`` placement runs the package's own LSTM, which can drop
    the recurrent state at every step. Returns the :class:`Run` (with
    ``model``); every argument is a plain value, so a recorded run can replay
    its first steps (``stop_after``).
    """
    corpus = char_corpus(text)
    seed_everything(seed)
    device = get_device()
    model = LanguageModel(len(corpus.vocab), hidden, layers, kind=kind, embedding_size=embed, dropout=dropout,
                          dropout_placement=placement, fused=placement != "recurrent").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train = BPTTBatches(corpus.train, batch, seq).to(device)
    valid = BPTTBatches(corpus.valid, 32, 128).to(device)
    return train_language_model(model, optimizer, train, valid, steps, every=every, clip=1.0,
                                scheduler=cosine_schedule(optimizer, steps), snapshots=snapshots,
                                stop_after=stop_after)


# ----------------------------------------------------------------- n-gram baselines


class _CountModel:
    """What :class:`NGram` and :class:`KneserNey` share: m-gram keys, lookups and scoring a stream.

    An m-gram of ids is stored as one integer key, the ids read as the digits
    of a number in base ``V``; subclasses fill their count tables in ``fit``
    and give ``log2 p(w | c)`` of a batch of windows in ``_log2_probs``.
    """

    def __init__(self, order: int, vocab_size: int) -> None:
        _checks.positive_int("order", order)
        _checks.positive_int("vocab_size", vocab_size)
        if vocab_size ** order >= 2**62:
            raise ValueError(f"order {order} with vocab_size {vocab_size} overflows the int64 n-gram keys")
        self.order, self.vocab_size = order, vocab_size
        self._fitted = False

    def _keys(self, windows: torch.Tensor) -> torch.Tensor:
        m = windows.shape[1]
        powers = self.vocab_size ** torch.arange(m - 1, -1, -1, dtype=torch.long)
        return (windows * powers).sum(1)

    def _ids(self, name: str, ids: object) -> torch.Tensor:
        ids = _checks.tensor(name, ids, ndim=1, kind="int").cpu().long()
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"{name} must hold ids in 0..{self.vocab_size - 1}")
        return ids

    def _train_ids(self, ids: object) -> torch.Tensor:
        ids = self._ids("ids", ids)
        if ids.shape[0] < self.order:
            raise ValueError(f"ids must hold at least order={self.order} tokens, got {ids.shape[0]}")
        return ids

    @staticmethod
    def _lookup(sorted_keys: torch.Tensor, counts: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``counts`` of each of ``keys`` in the sorted table ``sorted_keys`` (0 where absent), float64."""
        pos = torch.searchsorted(sorted_keys, keys).clamp(max=max(len(sorted_keys) - 1, 0))
        found = sorted_keys[pos] == keys
        return torch.where(found, counts[pos], torch.zeros_like(keys)).double()

    def _log2_probs(self, windows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log2_probs(self, ids: torch.Tensor) -> torch.Tensor:
        """``log2 p(ids[t] | ids[t-order+1 .. t-1])`` for every ``t`` of ``ids (N,)``: ``(N,)`` float64."""
        if not self._fitted:
            raise RuntimeError("fit the model before scoring")
        ids = self._ids("ids", ids)
        n, out = ids.shape[0], []
        for t in range(min(self.order - 1, n)):  # the first tokens: shorter contexts
            out.append(self._log2_probs(ids[: t + 1].unsqueeze(0)))
        if n >= self.order:
            out.append(self._log2_probs(ids.unfold(0, self.order, 1)))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def bits(self, ids: torch.Tensor) -> float:
        """Mean bits per token of a held-out stream ``ids (N,)``: ``-mean log2 p``."""
        lp = self.log2_probs(ids)
        if lp.numel() == 0:
            raise ValueError("ids must hold at least one token")
        return float(-lp.mean())


class NGram(_CountModel):
    """An exact n-gram model over ids ``0..V-1`` with add-k smoothing, eq. (ch02-addk).

    ``p(w | c) = (count(c, w) + k) / (count(c) + k V)``, where ``c`` is the
    ``order - 1`` tokens before ``w`` and ``count(c)`` counts the occurrences
    of ``c`` followed by any token; for ``order=1``, ``count(c)`` is the number
    of training tokens. The first ``order - 1`` tokens of a scored stream,
    which lack a full context, are scored by the lower orders (all counts are
    kept). Counts are stored sparsely, so word vocabularies work too.
    """

    def __init__(self, order: int, vocab_size: int, k: float = 1.0) -> None:
        super().__init__(order, vocab_size)
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0:
            raise ValueError(f"k must be a positive number, got {k!r}")
        self.k = float(k)
        self._counts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def fit(self, ids: torch.Tensor) -> "NGram":
        """Count every m-gram, ``m = 1..order``, of the training stream ``ids (N,)``; returns ``self``."""
        ids = self._train_ids(ids)
        self._counts = []
        for m in range(1, self.order + 1):
            windows = ids.unfold(0, m, 1)  # (N - m + 1, m)
            grams, gram_counts = torch.unique(self._keys(windows), return_counts=True)
            ctx, ctx_counts = torch.unique(self._keys(windows[:, :-1]), return_counts=True)
            self._counts.append((grams, gram_counts, ctx, ctx_counts))
        self._fitted = True
        return self

    def _log2_probs(self, windows: torch.Tensor) -> torch.Tensor:
        """``log2 p(w | c)`` for each row ``(c..., w)`` of ``windows (M, m)``."""
        m = windows.shape[1]
        grams, gram_counts, ctx, ctx_counts = self._counts[m - 1]
        joint = self._lookup(grams, gram_counts, self._keys(windows))
        context = self._lookup(ctx, ctx_counts, self._keys(windows[:, :-1]))
        return torch.log2((joint + self.k) / (context + self.k * self.vocab_size))


def fit_ngram(
    order: int, vocab_size: int, train: torch.Tensor, valid: torch.Tensor, ks: Sequence[float] = (1.0,)
) -> NGram:
    """An :class:`NGram` counted on ``train``, with the ``k`` of ``ks`` that gives ``valid`` the fewest bits."""
    if not ks:
        raise ValueError("ks must hold at least one value")
    model = NGram(order, vocab_size, ks[0]).fit(train)
    best = min(ks, key=lambda k: _with_k(model, k).bits(valid))
    return _with_k(model, best)


def _with_k(model: NGram, k: float) -> NGram:
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0:
        raise ValueError(f"ks must hold positive numbers, got {k!r}")
    model.k = float(k)
    return model


class KneserNey(_CountModel):
    """An interpolated Kneser-Ney n-gram model over ids ``0..V-1``, eq. (ch02-kn).

    Order ``m = 1..order`` mixes its own discounted counts with order ``m - 1``::

        p_m(w | c) = max(a(c, w) - D_m, 0) / A(c)  +  D_m T(c) / A(c) * p_{m-1}(w | c')

    where ``c`` is the ``m - 1`` tokens before ``w``, ``c'`` is ``c`` without
    its oldest token, ``A(c) = sum_w a(c, w)`` and ``T(c)`` is the number of
    distinct ``w`` with ``a(c, w) > 0``. A context never seen (``A(c) = 0``)
    hands all its mass to ``p_{m-1}``; below order 1 sits the uniform
    ``p_0 = 1/V``. At the top order ``a`` is the raw count of the m-gram; at
    every lower order it is the *continuation count*, the number of distinct
    tokens seen just before the m-gram (Kneser and Ney's idea: a token that
    follows many different contexts is a better guess in a context never seen
    than one that is frequent after a single one). ``discount`` is one ``D``
    in ``(0, 1]`` for every order, or one per order, lowest first. The first
    ``order - 1`` tokens of a scored stream use the lower orders, with raw
    counts at their own top.
    """

    def __init__(self, order: int, vocab_size: int, discount: float | Sequence[float] = 0.75) -> None:
        super().__init__(order, vocab_size)
        self.discount = discount  # type: ignore[assignment]
        self._raw: list[tuple[torch.Tensor, ...]] = []
        self._cont: list[tuple[torch.Tensor, ...]] = []

    @property
    def discount(self) -> tuple[float, ...]:
        """The discount ``D_m`` of each order ``m = 1..order``."""
        return self._discount

    @discount.setter
    def discount(self, value: float | Sequence[float]) -> None:
        ds = [value] * self.order if isinstance(value, (int, float)) else list(value)  # type: ignore[list-item]
        if len(ds) != self.order or any(isinstance(d, bool) or not isinstance(d, (int, float))
                                        or not 0 < d <= 1 for d in ds):
            raise ValueError(f"discount must be a number in (0, 1] or {self.order} of them, got {value!r}")
        self._discount = tuple(float(d) for d in ds)

    def _table(self, grams: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Sorted m-gram keys with their counts ``a``; per context (key // V) its ``A(c)`` and ``T(c)``."""
        ctx, inverse = torch.unique_consecutive(grams // self.vocab_size, return_inverse=True)
        total = torch.zeros(len(ctx), dtype=torch.long).index_add_(0, inverse, counts)
        types = torch.bincount(inverse, minlength=len(ctx))
        return grams, counts, ctx, total, types

    def fit(self, ids: torch.Tensor) -> "KneserNey":
        """Count the m-grams of ``ids (N,)``, raw and by continuation, ``m = 1..order``; returns ``self``."""
        ids = self._train_ids(ids)
        raw = [torch.unique(self._keys(ids.unfold(0, m, 1)), return_counts=True)
               for m in range(1, self.order + 1)]
        self._raw = [self._table(g, c) for g, c in raw]
        self._cont = []
        for m in range(1, self.order):  # continuation count: distinct (m+1)-grams that end in the m-gram
            suffixes = raw[m][0] % self.vocab_size**m
            self._cont.append(self._table(*torch.unique(suffixes, return_counts=True)))
        self._fitted = True
        return self

    def _log2_probs(self, windows: torch.Tensor) -> torch.Tensor:
        """``log2 p_m(w | c)`` for each row ``(c..., w)`` of ``windows (M, m)``, raw counts at order m."""
        m = windows.shape[1]
        p = torch.full((windows.shape[0],), 1.0 / self.vocab_size, dtype=torch.float64)  # p_0
        for j in range(1, m + 1):  # orders 1..m, each mixed with the one below
            grams, counts, ctx, total, types = self._raw[j - 1] if j == m else self._cont[j - 1]
            a = self._lookup(grams, counts, self._keys(windows[:, m - j :]))
            if j == 1:  # the empty context
                big_a = torch.full_like(a, float(total.sum()))
                t = torch.full_like(a, float(len(grams)))
            else:
                context = self._keys(windows[:, m - j : m - 1])
                big_a, t = self._lookup(ctx, total, context), self._lookup(ctx, types, context)
            d = self.discount[j - 1]
            mixed = ((a - d).clamp_min(0) + d * t * p) / big_a.clamp_min(1)  # eq. (ch02-kn)
            p = torch.where(big_a > 0, mixed, p)
        return torch.log2(p)


def fit_kneser_ney(
    order: int,
    vocab_size: int,
    train: torch.Tensor,
    valid: torch.Tensor,
    discounts: Sequence[float] = (0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0),
    sweeps: int = 2,
) -> KneserNey:
    """A :class:`KneserNey` counted on ``train``, its discounts tuned on ``valid``.

    Coordinate descent: every order starts at the middle value of
    ``discounts``; then, ``sweeps`` times, each order in turn (lowest first)
    takes the value of ``discounts`` that gives ``valid`` the fewest bits with
    the other orders' discounts held.
    """
    if not discounts:
        raise ValueError("discounts must hold at least one value")
    _checks.positive_int("sweeps", sweeps)
    model = KneserNey(order, vocab_size, discounts[len(discounts) // 2]).fit(train)

    def with_d(j: int, d: float) -> list[float]:
        return [*model.discount[:j], d, *model.discount[j + 1 :]]

    for _ in range(sweeps):
        for j in range(order):
            scores = {}
            for d in discounts:
                model.discount = with_d(j, d)
                scores[d] = model.bits(valid)
            model.discount = with_d(j, min(scores, key=scores.__getitem__))
    return model


# -------------------------------------------------------------------------- sampling


def sample_next(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw one id per row from ``softmax(logits / temperature)``, eq. (ch02-temp).

    ``logits (B, V)`` -> ids ``(B,)`` (int64, on the device of ``logits``).
    ``temperature = 0`` takes the arg-max (the limit ``temperature -> 0``).
    ``generator`` is a CPU generator; the draw is made on the CPU so the same
    seed gives the same ids on every device.
    """
    _checks.tensor("logits", logits, ndim=2, kind="float")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.detach().double().cpu() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)


def sample(
    model: LanguageModel,
    prompt: torch.Tensor,
    steps: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue ``prompt (B, T0)`` (or ``(T0,)``) by ``steps`` sampled tokens: ids ``(B, steps)``.

    The model reads the prompt, then feeds each drawn token back in; the
    model runs in eval mode without gradients (training mode is restored).
    A 1-d prompt gives a 1-d result ``(steps,)``.
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel, got {type(model).__name__}")
    _checks.tensor("prompt", prompt, ndim=(1, 2), kind="int")
    _checks.positive_int("steps", steps)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if prompt.shape[-1] == 0:
        raise ValueError("prompt must hold at least one token")
    squeeze = prompt.dim() == 1
    x = (prompt.unsqueeze(0) if squeeze else prompt).to(_device(model))
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        logits, state = model(x)
        for _ in range(steps):
            nxt = sample_next(logits[:, -1], temperature, generator)
            out.append(nxt)
            logits, state = model(nxt.unsqueeze(1), state)
    model.train(was_training)
    ids = torch.stack(out, dim=1)
    return ids[0] if squeeze else ids


# ---------------------------------------------------------------------------- probes


def hidden_states(model: LanguageModel, ids: torch.Tensor, which: str = "h") -> torch.Tensor:
    """The top layer's state after reading each token of ``ids (N,)``: ``(N, H)``.

    ``which="h"``: the hidden state ``h_t`` (the runner's output); ``which="c"``
    (LSTM only): the cell state ``c_t``, read by running the model one token at
    a time and keeping the top layer's ``c``. One row, from a zero state, in
    eval mode without gradients.
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel, got {type(model).__name__}")
    _checks.tensor("ids", ids, ndim=1, kind="int")
    if ids.numel() == 0:
        raise ValueError("ids must hold at least one token")
    if which not in ("h", "c") or (which == "c" and model.kind != "lstm"):
        raise ValueError(f"which must be 'h', or 'c' for an LSTM, got {which!r} for kind {model.kind!r}")
    was_training = model.training
    model.eval()
    x = model.embedding(ids.to(_device(model)).unsqueeze(0))  # (1, N, E)
    with torch.no_grad():
        if which == "h":
            out = model.rnn(x)[0][0]
        else:
            state, cells = None, []
            for t in range(x.shape[1]):
                _, state = model.rnn(x[:, t : t + 1], state)
                cells.append(state[1][-1, 0])  # top layer's c_t
            out = torch.stack(cells)
    model.train(was_training)
    return out.detach()


SPEAKER = re.compile(r"(?:^|(?<=\n\n))[A-Z][A-Za-z']*(?: [A-Za-z']+){0,2}\.(?=\n)")


def speaker_lines(text: str) -> torch.Tensor:
    """``(N,)`` float: 1 at the characters of a speaker's name line of a play text, else 0.

    A name line stands alone after a blank line (or at the start), holds one
    to three words, starts with a capital and ends with a full stop (``Ham.``,
    ``LADY MACBETH.``); its newline is not part of it.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    out = torch.zeros(len(text))
    for m in SPEAKER.finditer(text):
        out[m.start() : m.end()] = 1.0
    return out


def position_in_line(text: str) -> torch.Tensor:
    """``(N,)`` float: how many characters precede each character on its line (0 after a newline)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    out, col = [], 0
    for ch in text:
        out.append(float(col))
        col = 0 if ch == "\n" else col + 1
    return torch.tensor(out)


def best_unit(activations: torch.Tensor, feature: torch.Tensor) -> tuple[int, float]:
    """The unit whose activation correlates most (in absolute value) with ``feature``.

    ``activations (N, H)``, ``feature (N,)``; returns ``(index, r)`` with
    ``r`` Pearson's correlation (signed). Units that never vary get ``r = 0``.
    """
    a = _checks.tensor("activations", activations, ndim=2, kind="float").double()
    f = _checks.tensor("feature", feature, ndim=1, kind="float").double().to(a.device)
    _checks.size_matches("feature", f.shape[0], a.shape[0], "length")
    if a.shape[0] < 2:
        raise ValueError("activations must hold at least two time steps")
    r = pearson(a, f)
    i = int(r.abs().argmax())
    return i, float(r[i])


def pearson(activations: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """Pearson's r of every column of ``activations (N, H)`` with ``feature (N,)``: ``(H,)``."""
    _checks.tensor("activations", activations, ndim=2, kind="float")
    _checks.tensor("feature", feature, ndim=1)
    if feature.dtype == torch.bool or feature.is_complex():
        raise TypeError(f"feature must be a real-valued tensor, got {feature.dtype}")
    _checks.size_matches("feature", feature.shape[0], activations.shape[0], "length (one per row of activations)")
    if not feature.is_floating_point():
        feature = feature.to(activations.dtype)  # integer features (line positions, flags)
    a = activations - activations.mean(0)
    f = feature - feature.mean()
    num = (a * f[:, None]).sum(0)
    den = a.pow(2).sum(0).sqrt() * f.pow(2).sum().sqrt()
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def distinct_ngrams(ids: torch.Tensor, n: int) -> float:
    """The fraction of the n-grams of ``ids (N,)`` that are distinct (1 = no n-gram repeats)."""
    _checks.tensor("ids", ids, ndim=1, kind="int")
    _checks.positive_int("n", n)
    if ids.shape[0] < n:
        raise ValueError(f"ids must hold at least n={n} tokens, got {ids.shape[0]}")
    windows = ids.cpu().unfold(0, n, 1)
    return torch.unique(windows, dim=0).shape[0] / windows.shape[0]
