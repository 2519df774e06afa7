"""Training and scoring translation models on the toy task (chapters 13 and 14).

Chapter 14 compares RNNencdec with RNNsearch (:mod:`papers30.seq2seq`),
chapter 13 the Transformer (:mod:`papers30.transformer`) with RNNsearch, on
the same draws of the toy translation task
(:func:`papers30.data.toy_translation_data`): same dictionary, held-out
sentences and training batches for a given seed. :func:`run_translation`
trains one model on one draw, each with its own paper's recipe:

* RNNencdec and RNNsearch (Bahdanau et al., 2015): cross-entropy, Adam at a
  constant learning rate, gradient norm clipped at 1;
* the Transformer (Vaswani et al., 2017): cross-entropy with label
  smoothing 0.1, Adam with ``betas=(0.9, 0.98)``, ``eps=1e-9`` and the
  paper's warm-up then inverse-square-root schedule, rescaled to peak at
  ``lr``.

During training it records, every ``every`` steps, the held-out exact match
on the validation set (computed from one teacher-forced pass, see
:func:`teacher_forced_exact`), the sequential depth of every update
(:func:`papers30.metrics.critical_path`), and at chosen checkpoints the
BLEU and exact match of greedy translations of the test set, per
source-length bucket.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``V``
target vocabulary size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.data.synthetic import BOS, EOS, PAD, Batch, ToyTranslation, TranslationData, toy_translation_data
from papers30.metrics import corpus_bleu, critical_path, strip_after
from papers30.runtime import get_device
from papers30.seq2seq import RNNEncDec, RNNSearch, scores_by_length
from papers30.training import History, fit
from papers30.transformer import Transformer, cross_entropy, greedy_decode, warmup_inverse_sqrt

MODELS = ("RNNencdec", "RNNsearch", "Transformer")
# The chapters' sizes: RNNs of chapter 14, the two-layer Transformer of chapter 13.
SIZES = {
    "RNNencdec": dict(embed_size=32, hidden_size=32),
    "RNNsearch": dict(embed_size=32, hidden_size=32),
    "Transformer": dict(d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128),
}
BUCKETS = ((3, 4), (5, 6), (7, 8), (9, 10))
LABEL_SMOOTHING = 0.1


@_checks.typed
def make_model(name: str, task: ToyTranslation, **sizes: int) -> nn.Module:
    """The model ``name`` (one of :data:`MODELS`) for ``task``'s vocabularies, :data:`SIZES` unless overridden."""
    _checks.one_of("name", name, MODELS)
    kwargs = {**SIZES[name], **sizes}
    if name == "Transformer":
        return Transformer(task.src_vocab, task.tgt_vocab, dropout=0.0, pad_idx=PAD, **kwargs)
    cls = RNNSearch if name == "RNNsearch" else RNNEncDec
    return cls(task.src_vocab, task.tgt_vocab, pad_idx=PAD, **kwargs)


def logits(model: nn.Module, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
    """Teacher-forced next-word logits ``(B, T, V)`` of either kind of model."""
    out = model(src, tgt_in)
    return out[0] if isinstance(out, tuple) else out


@_checks.typed
def training_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Each paper's loss: label-smoothed cross-entropy for the Transformer, plain for the RNNs."""
    smoothing = LABEL_SMOOTHING if isinstance(model, Transformer) else 0.0
    out = logits(model, batch.src, batch.tgt_in)
    return cross_entropy(out.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD, label_smoothing=smoothing)


@torch.no_grad()
@_checks.typed
def teacher_forced_exact(model: nn.Module, batch: Batch) -> float:
    """Fraction of sentences whose every next word (and ``EOS``) is the model's most likely one.

    With the true prefix fed in, this equals the exact match of greedy
    decoding: if every argmax along the reference is right, greedy decoding
    follows the reference; if one is wrong, greedy decoding leaves it there.
    One parallel pass instead of a decoding loop.
    """
    pred = logits(model, batch.src, batch.tgt_in).argmax(-1)
    right = (pred == batch.tgt_out) | (batch.tgt_out == PAD)
    return right.all(dim=1).float().mean().item()


@torch.no_grad()
@_checks.typed
def translate(model: nn.Module, batch: Batch) -> tuple[list[list[int]], list[list[int]]]:
    """Greedy translations of ``batch.src`` and the references, as token lists cut at ``EOS``."""
    max_len = batch.tgt_out.shape[1] + 2
    if isinstance(model, Transformer):
        out = greedy_decode(model, batch.src, BOS, EOS, max_len)
    else:
        out, _ = model.greedy(batch.src, BOS, EOS, max_len)
    return strip_after(out, EOS), strip_after(batch.tgt_out, EOS)


@_checks.typed
def score(model: nn.Module, batch: Batch, buckets: Sequence[tuple[int, int]] = BUCKETS) -> dict[str, object]:
    """Greedy BLEU and exact match of ``batch``: overall (``"bleu_all"``) and per source-length bucket."""
    hyp, ref = translate(model, batch)
    lengths = [len(s) for s in batch.sentences()]
    out: dict[str, object] = dict(scores_by_length(hyp, ref, lengths, buckets))
    out["bleu_all"] = corpus_bleu(hyp, ref)
    out["exact_all"] = sum(h == r for h, r in zip(hyp, ref)) / len(ref)
    return out


@dataclass
class TranslationRun:
    """One model trained on one draw of the task by :func:`run_translation`.

    ``history`` holds the per-step losses and, every ``every`` steps, the
    validation exact match (``"exact"``); ``sequential[k]`` is the critical
    path of update ``k + 1``; ``checkpoints[step]`` the :func:`score` of the
    test set after ``step`` updates. ``steps_to_target`` is the first
    evaluated step whose validation exact match reached ``target`` (None if
    never), ``sequential_to_target`` the critical paths summed over the
    updates up to it.
    """

    name: str
    seed: int
    lr: float
    model: nn.Module
    data: TranslationData
    history: History
    sequential: list[int] = field(default_factory=list)
    checkpoints: dict[int, dict[str, object]] = field(default_factory=dict)
    target: float | None = None
    steps_to_target: int | None = None

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def losses(self) -> list[float]:
        """Training loss per update (what :func:`papers30.provenance.traced` keeps)."""
        return self.history.losses

    @property
    def sequential_to_target(self) -> int | None:
        """Sequential operations spent until the target was first reached (None if never)."""
        return None if self.steps_to_target is None else sum(self.sequential[: self.steps_to_target])


def _optimizer(model: nn.Module, lr: float, warmup: int):
    """Each paper's optimiser: ``(optimizer, schedule or None, gradient-norm clip or None)``."""
    if isinstance(model, Transformer):
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)
        D, w = model.d_model, warmup
        peak = warmup_inverse_sqrt(w, D, w)  # eq. (warmup) at its maximum: rescale so the peak is lr
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda n: warmup_inverse_sqrt(n + 1, D, w) / peak)
        return opt, schedule, None
    return torch.optim.Adam(model.parameters(), lr=lr), None, 1.0


def run_translation(
    model: str,
    seed: int,
    steps: int,
    lr: float,
    *,
    batch_size: int = 32,
    warmup: int = 50,
    every: int = 20,
    target: float | None = None,
    after_target: int | None = None,
    restore_best: bool = False,
    checkpoints: Sequence[int] = (),
    buckets: Sequence[Sequence[int]] = BUCKETS,
    task: dict | None = None,
    sizes: dict | None = None,
    device: str | None = None,
    stop_after: int | None = None,
) -> TranslationRun:
    """Train ``model`` (one of :data:`MODELS`) on the draw ``seed`` of the toy task; return the run.

    ``seed`` draws the data (:func:`~papers30.data.toy_translation_data`
    with ``task``'s keyword arguments) and initialises the model, so every
    model trained with the same ``seed`` sees the same batches. ``steps``
    updates at most, of ``batch_size`` sentences; ``lr`` is the constant
    rate of the RNNs and the peak of the Transformer's schedule (reached
    after ``warmup`` steps). Every ``every`` steps the validation exact
    match is recorded; once it reaches ``target`` the run stops after
    ``after_target`` more steps (never stops early when None). With
    ``restore_best`` the returned model holds the parameters of the
    evaluation with the best validation exact match. Steps in
    ``checkpoints`` (multiples of ``every``) score the test set per
    source-length bucket of ``buckets``. All arguments are plain JSON
    values, so :func:`papers30.provenance.traced` can record and replay the
    run; ``stop_after`` ends it early without changing anything else.
    """
    _checks.one_of("model", model, MODELS)
    _checks.positive_int("steps", steps)
    _checks.positive_int("every", every)
    _checks.positive_int("warmup", warmup)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if any(c % every or not 0 < c <= steps for c in checkpoints):
        raise ValueError(f"checkpoints must be multiples of every ({every}) in (0, {steps}], got {list(checkpoints)}")
    if target is not None:
        _checks.probability("target", target, inclusive_one=True)
    where = get_device(device)
    data = toy_translation_data(seed, steps, batch_size, **(task or {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_model(model, data.task, **(sizes or {})).to(where)
    valid, test = data.valid.to(where), data.test.to(where)
    run = TranslationRun(model, seed, float(lr), net, data, History(), target=target)
    depth: dict[tuple[int, int], int] = {}  # the critical path depends only on the batch's shape
    now = {"step": 0}
    best: dict[str, object] = {"exact": -1.0, "state": None}

    def loss_fn(step: int) -> torch.Tensor:
        now["step"] = step
        batch = data.batches[step - 1].to(where)
        loss = training_loss(net, batch)
        shape = (batch.src.shape[1], batch.tgt_in.shape[1])
        if shape not in depth:
            depth[shape] = critical_path(loss)
        run.sequential.append(depth[shape])
        return loss

    def evaluate() -> dict[str, float]:
        step = now["step"]
        exact = teacher_forced_exact(net, valid)
        if target is not None and run.steps_to_target is None and exact >= target:
            run.steps_to_target = step
        if restore_best and exact > best["exact"]:
            best.update(exact=exact, state={k: v.detach().clone() for k, v in net.state_dict().items()})
        if step in checkpoints:
            run.checkpoints[step] = score(net, test, [tuple(b) for b in buckets])
        return {"exact": exact}

    def until(_: dict[str, float]) -> bool:
        hit = run.steps_to_target
        return after_target is not None and hit is not None and now["step"] >= hit + after_target

    optimizer, schedule, clip = _optimizer(net, lr, warmup)
    run.history = fit(net, optimizer, loss_fn, steps, scheduler=schedule, clip=clip, evaluate=evaluate,
                      every=every, until=until, stop_after=stop_after)
    if restore_best and best["state"] is not None:
        net.load_state_dict(best["state"])
    return run
