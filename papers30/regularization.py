"""Dropout in recurrent language models: the measurements of chapter 4.

Chapter 4 (Zaremba, Sutskever and Vinyals, *Recurrent Neural Network
Regularization*, 2014) trains the same LSTM language model three times, with
no dropout, with dropout on the non-recurrent connections only (the paper's
placement) and with naive dropout that also hits the recurrent state. The
dropout itself is an option of :class:`papers30.recurrent.LSTM`
(``dropout_placement``); the model is :class:`papers30.language.LanguageModel`.
This module holds what the comparison needs beyond them:

* :func:`frequent_vocab`: a closed word vocabulary, rare words mapped to
  ``<unk>`` as in the Penn Treebank files the paper uses;
* :func:`train_language_model`: truncated-BPTT training that measures the
  validation perplexity every few steps and keeps the best weights (early
  stopping), returning a :class:`Run`;
* :func:`overfitting_gap`: how far a validation curve ends above its minimum;
* :func:`windowed_perplexity`: the perplexity of a text read in short
  independent windows, which shows how much context a model uses;
* :func:`path_survival`: the probability that a signal crosses every dropout
  mask between an input and a prediction ``span`` steps later, eq. (reg-survival).

Shapes: ``B`` batch, ``T`` time steps, ``V`` vocabulary size, ``L`` layers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from papers30 import _checks
from papers30.data.text import BPTTBatches, Vocab
from papers30.language import LanguageModel, evaluate, tbptt_loss
from papers30.recurrent import PLACEMENTS
from papers30.training import History, fit

UNK = "<unk>"


def frequent_vocab(tokens: Iterable[str], min_count: int, unk: str = UNK) -> Vocab:
    """The :class:`~papers30.data.text.Vocab` of the tokens seen at least ``min_count`` times, plus ``unk``.

    Encoding with it maps every rarer (or unseen) token to ``unk``.
    """
    _checks.positive_int("min_count", min_count)
    if isinstance(tokens, str) or isinstance(tokens, torch.Tensor) or not isinstance(tokens, Iterable):
        raise TypeError(f"tokens must be a sequence of str, got {type(tokens).__name__}")
    counts = Counter(tokens)
    return Vocab([t for t, n in counts.items() if n >= min_count], unk=unk)


@dataclass
class Run:
    """One training run: its :class:`~papers30.training.History` and the early-stopping point.

    ``history.evals`` holds, every ``every`` steps, the validation perplexity
    under ``"valid"`` (and under ``"train"`` when a training probe was given).
    ``best_state`` is a copy of the weights at ``best_step``, the evaluation
    with the lowest validation perplexity ``best_valid``.
    """

    history: History
    best_step: int
    best_valid: float
    best_state: dict[str, torch.Tensor]

    @property
    def final_valid(self) -> float:
        """The validation perplexity at the last evaluation."""
        return self.history.evals[-1]["valid"]


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
) -> Run:
    """Train ``model`` for ``steps`` truncated-BPTT steps on ``train``; measure and keep the best.

    Each step is one ``(B, T)`` batch of ``train`` with the hidden state
    carried from the previous batch (:func:`papers30.language.tbptt_loss`),
    the loss in bits per token, gradients clipped to norm ``clip``. Every
    ``every`` steps and after the last, the perplexity of ``valid`` (and of
    ``train_probe``, e.g. a slice of the training text) is measured in eval
    mode, that is without dropout. The model ends holding its final weights;
    the best ones are in :attr:`Run.best_state`.
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel, got {type(model).__name__}")
    for name, batches in (("train", train), ("valid", valid), ("train_probe", train_probe)):
        if not (isinstance(batches, BPTTBatches) or (name == "train_probe" and batches is None)):
            raise TypeError(f"{name} must be a BPTTBatches, got {type(batches).__name__}")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip <= 0):
        raise ValueError(f"clip must be a positive number or None, got {clip!r}")
    best: dict[str, object] = {"valid": math.inf, "step": 0, "state": {}}
    count = {"evals": 0}

    def measure() -> dict[str, float]:
        count["evals"] += 1
        out = {"valid": evaluate(model, valid).perplexity}
        if train_probe is not None:
            out["train"] = evaluate(model, train_probe).perplexity
        if out["valid"] < best["valid"]:  # early stopping: remember the best weights
            step = min(count["evals"] * every, steps)
            best.update(valid=out["valid"], step=step,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
        return out

    history = fit(model, optimizer, tbptt_loss(model, train), steps, clip=clip, evaluate=measure, every=every)
    return Run(history, int(best["step"]), float(best["valid"]), best["state"])  # type: ignore[arg-type]


def overfitting_gap(perplexities: Sequence[float]) -> float:
    """How far a validation curve ends above its best point: ``last / min`` (1 = never rose).

    ``perplexities`` is the curve in evaluation order (positive numbers).
    """
    if isinstance(perplexities, (str, torch.Tensor)) or not isinstance(perplexities, Sequence):
        raise TypeError(f"perplexities must be a sequence of numbers, got {type(perplexities).__name__}")
    if len(perplexities) == 0:
        raise ValueError("perplexities must hold at least one value")
    values = [float(v) for v in perplexities]
    if not all(v > 0 for v in values):
        raise ValueError("perplexities must be positive")
    return values[-1] / min(values)


def windowed_perplexity(model: LanguageModel, ids: torch.Tensor, window: int) -> float:
    """Perplexity of a stream ``ids (N,)`` read in independent windows of ``window`` tokens.

    The stream is cut into ``M = (N - 1) // window`` consecutive windows;
    window ``j`` feeds tokens ``j*w .. j*w + w - 1`` from a zero state and
    predicts each one's successor, so a prediction sees between 1 and
    ``window`` tokens of context. All windows run as one batch ``(M, window)``
    in eval mode (no dropout) without gradients. Comparing windows of 1, 2,
    4 ... tokens with the state carried through the whole text
    (:func:`papers30.language.evaluate`) shows how far back a model looks.
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel, got {type(model).__name__}")
    _checks.tensor("ids", ids, ndim=1, kind="int")
    _checks.positive_int("window", window)
    m = (ids.shape[0] - 1) // window
    if m < 1:
        raise ValueError(f"ids must hold more than window={window} tokens, got {ids.shape[0]}")
    device = next(model.parameters()).device
    inputs = ids[: m * window].reshape(m, window).to(device)
    targets = ids[1 : m * window + 1].reshape(m, window).to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, _ = model(inputs)
        nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    model.train(was_training)
    return math.exp(nats.item())


def path_survival(p: float, num_layers: int, span: int, placement: str = "non_recurrent") -> float:
    """One unit's chance of crossing every dropout mask on its way to a prediction, eq. (reg-survival).

    The path enters at an input, climbs ``num_layers`` LSTM layers, travels
    ``span >= 0`` steps forward in time along one layer's recurrent state and
    leaves through the output. With keep probability ``1 - p`` per mask:
    ``"none"`` crosses no mask; ``"non_recurrent"`` crosses ``L + 1`` masks
    whatever the span; ``"recurrent"`` crosses ``L + 1 + span``.
    """
    _checks.probability("p", p)
    _checks.positive_int("num_layers", num_layers)
    if isinstance(span, bool) or not isinstance(span, int):
        raise TypeError(f"span must be an int, got {type(span).__name__}")
    if span < 0:
        raise ValueError(f"span must be >= 0, got {span}")
    _checks.one_of("placement", placement, PLACEMENTS)
    if placement == "none":
        return 1.0
    masks = num_layers + 1 + (span if placement == "recurrent" else 0)
    return (1.0 - p) ** masks

