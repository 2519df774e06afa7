"""Dropout in recurrent language models: the measurements of chapter 4.

Chapter 4 (Zaremba, Sutskever and Vinyals, *Recurrent Neural Network
Regularization*, 2014) trains the same LSTM language model three times, with
no dropout, with dropout on the non-recurrent connections only (the paper's
placement) and with naive dropout that also hits the recurrent state. The
dropout itself is an option of :class:`papers30.recurrent.LSTM`
(``dropout_placement``); the model is :class:`papers30.language.LanguageModel`.
This module holds what the comparison needs beyond them:

* :func:`frequent_vocab`: a closed word vocabulary, rare words mapped to
  ``<unk>`` as in the Penn Treebank files the paper uses, and
  :func:`word_corpus`, a committed text cut into words with it;
* :func:`train_word_model`: the chapter's whole training run as one call
  with plain arguments (so a recorded run can be replayed);
* :func:`~papers30.language.train_language_model` (from :mod:`papers30.language`,
  re-exported here): truncated-BPTT training that measures the validation
  perplexity every few steps and keeps the best weights (early stopping);
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

import torch
import torch.nn.functional as F

from papers30 import _checks
from papers30.data.text import BPTTBatches, Corpus, Vocab, load_text, tokenize
from papers30.language import LanguageModel, Run, train_language_model
from papers30.recurrent import PLACEMENTS
from papers30.runtime import get_device, seed_everything

UNK = "<unk>"
__all__ = ["UNK", "Run", "frequent_vocab", "overfitting_gap", "path_survival", "train_language_model",
           "train_word_model", "windowed_perplexity", "word_corpus"]


def frequent_vocab(tokens: Iterable[str], min_count: int, unk: str = UNK) -> Vocab:
    """The :class:`~papers30.data.text.Vocab` of the tokens seen at least ``min_count`` times, plus ``unk``.

    Encoding with it maps every rarer (or unseen) token to ``unk``.
    """
    _checks.positive_int("min_count", min_count)
    if isinstance(tokens, str) or isinstance(tokens, torch.Tensor) or not isinstance(tokens, Iterable):
        raise TypeError(f"tokens must be a sequence of str, got {type(tokens).__name__}")
    counts = Counter(tokens)
    return Vocab([t for t, n in counts.items() if n >= min_count], unk=unk)


def word_corpus(n_train: int, n_valid: int, min_count: int = 2, text: str = "shakespeare",
                pieces: int = 1) -> Corpus:
    """A word-level corpus from a committed text, Penn-Treebank style.

    The text is lower-cased and cut into words and punctuation marks with
    ``<eos>`` at each line's end (:func:`papers30.data.text.tokenize`), and
    its first ``n_train + 2 * n_valid`` tokens are used. With ``pieces = 1``
    the first ``n_train`` tokens are the training part, the next ``n_valid``
    the validation part and the ``n_valid`` after those the test part. With
    more pieces, those tokens are cut into ``pieces`` consecutive pieces of
    equal length (the last takes the remainder) and the end of every piece is
    held out: its last ``2 * n_valid / pieces`` tokens, the first half for
    validation and the second for test, so that held-out text comes from the
    whole text rather than from its end (``n_valid`` must be a multiple of
    ``pieces``). The vocabulary holds the training words seen at least
    ``min_count`` times; every other word is ``<unk>`` (:func:`frequent_vocab`).
    """
    _checks.positive_int("n_train", n_train)
    _checks.positive_int("n_valid", n_valid)
    _checks.positive_int("pieces", pieces)
    if n_valid % pieces:
        raise ValueError(f"n_valid must be a multiple of pieces={pieces}, got {n_valid}")
    words = tokenize(load_text(text).lower(), "word")
    total = n_train + 2 * n_valid
    if total > len(words):
        raise ValueError(f"n_train + 2 * n_valid must be at most the {len(words)} tokens of {text!r}, "
                         f"got {total}")
    size, held = total // pieces, n_valid // pieces
    if size <= 2 * held:
        raise ValueError(f"pieces={pieces} leaves no training text in a piece of {size} tokens")
    train: list[str] = []
    valid: list[str] = []
    test: list[str] = []
    for i in range(pieces):
        piece = words[i * size : (i + 1) * size if i < pieces - 1 else total]
        cut = len(piece) - 2 * held
        train += piece[:cut]
        valid += piece[cut : cut + held]
        test += piece[cut + held :]
    vocab = frequent_vocab(train, min_count)
    return Corpus(vocab, vocab.encode(train), vocab.encode(valid), vocab.encode(test))


def train_word_model(
    seed: int = 0,
    n_train: int = 40_000,
    n_valid: int = 5_000,
    min_count: int = 2,
    hidden: int = 200,
    layers: int = 1,
    dropout: float = 0.0,
    batch: int = 20,
    bptt: int = 35,
    steps: int = 1000,
    lr: float = 2e-3,
    every: int = 100,
    init_range: float = 0.1,
    stop_after: int | None = None,
    schedule: str = "constant",
    pieces: int = 1,
) -> Run:
    """Chapter 4's experiment: a word-level LSTM language model with or without dropout, as one call.

    The data are :func:`word_corpus` ``(n_train, n_valid, min_count, pieces=pieces)``. The
    model is a fused :class:`~papers30.language.LanguageModel` (``hidden``
    units and embedding width, ``layers`` layers, weights uniform in
    ``[-init_range, init_range]``) with ``dropout`` on the non-recurrent
    connections, built after :func:`papers30.runtime.seed_everything`
    ``(seed)``. It trains with Adam at ``lr`` for ``steps`` steps of ``batch``
    rows by ``bptt`` words (``schedule="cosine"`` decays the rate from ``lr``
    to 0 along a half cosine over the ``steps``; ``"constant"`` keeps it),
    gradients clipped to norm 5, the validation
    perplexity measured every ``every`` steps without dropout, and returns the
    :class:`~papers30.language.Run` with the best (early-stopped) weights.
    Every argument is a plain value, so a recorded run can replay its first
    steps (``stop_after``).
    """
    _checks.one_of("schedule", schedule, ("constant", "cosine"))
    corpus = word_corpus(n_train, n_valid, min_count, pieces=pieces)
    seed_everything(seed)
    device = get_device()
    model = LanguageModel(len(corpus.vocab), hidden, layers, dropout=dropout, init_range=init_range,
                          fused=True).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train = BPTTBatches(corpus.train, batch, bptt).to(device)
    valid = BPTTBatches(corpus.valid, 10, 50).to(device)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if schedule == "cosine" else None
    return train_language_model(model, optimizer, train, valid, steps, every=every, clip=5.0,
                                scheduler=decay, stop_after=stop_after)


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

