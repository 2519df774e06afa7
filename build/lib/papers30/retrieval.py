"""Passage retrieval: BM25, a dual encoder trained with in-batch negatives, top-k accuracy (28, 29).

Implements the sparse baseline and the dense retriever of Karpukhin et al.
(2020), *Dense Passage Retrieval for Open-Domain Question Answering*, at
small scale, for chapter 28; chapter 29 (retrieval-augmented generation)
reuses the retriever.

Texts are lists of token ids. Shapes: ``N`` passages, ``Q`` questions (or a
batch ``B``), ``V`` vocabulary size, ``D`` embedding width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks


def _texts(name: str, texts: object) -> list[list[int]]:
    if not isinstance(texts, Sequence) or isinstance(texts, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of token-id lists, got {type(texts).__name__}")
    _checks.nonempty(name, texts)
    for t in texts:
        if not isinstance(t, Sequence) or not all(isinstance(x, int) and not isinstance(x, bool) for x in t):
            raise TypeError(f"{name} must hold lists of int token ids")
    return [list(t) for t in texts]


def term_counts(texts: Sequence[Sequence[int]], vocab_size: int) -> torch.Tensor:
    """Term-frequency matrix ``(N, V)``: entry ``(i, t)`` counts token ``t`` in text ``i`` (float64)."""
    texts = _texts("texts", texts)
    _checks.positive_int("vocab_size", vocab_size)
    counts = torch.zeros(len(texts), vocab_size, dtype=torch.float64)
    for i, t in enumerate(texts):
        if t and (min(t) < 0 or max(t) >= vocab_size):
            raise ValueError(f"texts must hold token ids in [0, {vocab_size}), got one outside in text {i}")
        counts[i].index_add_(0, torch.tensor(t, dtype=torch.long), torch.ones(len(t), dtype=torch.float64))
    return counts


class BM25:
    """Okapi BM25 over a fixed corpus.

    For a query ``q`` and passage ``d`` of length ``|d|`` (average ``avgdl``),

        score(q, d) = sum over query tokens t of
                      idf(t) * f(t, d) (k1 + 1) / (f(t, d) + k1 (1 - b + b |d| / avgdl)),
        idf(t)      = log(1 + (N - n_t + 0.5) / (n_t + 0.5)),

    where ``f(t, d)`` counts ``t`` in ``d`` and ``n_t`` is the number of
    passages containing ``t`` (Lucene's form of the idf, always positive). A
    token repeated in the query counts once per occurrence. Defaults are
    Anserini's (``k1 = 0.9``, ``b = 0.4``), the Lucene setup DPR compares with.
    """

    def __init__(self, passages: Sequence[Sequence[int]], vocab_size: int, k1: float = 0.9, b: float = 0.4) -> None:
        if isinstance(k1, bool) or not isinstance(k1, (int, float)) or not k1 > 0:
            raise ValueError(f"k1 must be a positive float, got {k1!r}")
        _checks.probability("b", b, inclusive_one=True)
        self.counts = term_counts(_texts("passages", passages), vocab_size)  # (N, V)
        self.vocab_size = vocab_size
        self.k1, self.b = float(k1), float(b)
        n = self.counts.shape[0]
        df = (self.counts > 0).sum(0).double()
        self.idf = torch.log(1 + (n - df + 0.5) / (df + 0.5))  # (V,)
        length = self.counts.sum(1, keepdim=True)
        norm = self.k1 * (1 - self.b + self.b * length / length.mean())
        self.weights = self.idf * self.counts * (self.k1 + 1) / (self.counts + norm)  # (N, V)

    def scores(self, queries: Sequence[Sequence[int]]) -> torch.Tensor:
        """Scores ``(Q, N)`` of every query against every passage."""
        return term_counts(_texts("queries", queries), self.vocab_size) @ self.weights.T


def in_batch_loss(q: torch.Tensor, p: torch.Tensor, negatives: int | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """DPR's in-batch negative loss: mean over ``i`` of ``-log softmax_j(q_i . p_j)`` at ``j = i``.

    ``q`` and ``p`` are ``(B, D)``; row ``i`` of ``p`` is question ``i``'s
    passage, and the other rows are its negatives. ``negatives`` keeps only
    that many of them per question, chosen uniformly at random (``None``
    keeps all ``B - 1``), so the number of negatives can vary with the batch
    fixed.
    """
    _checks.tensor("q", q, ndim=2, kind="float")
    _checks.tensor("p", p, ndim=2, kind="float")
    if q.shape != p.shape:
        raise ValueError(f"p must have the shape of q {tuple(q.shape)}, got {tuple(p.shape)}")
    b = q.shape[0]
    sim = q @ p.T  # (B, B)
    if negatives is not None:
        if isinstance(negatives, bool) or not isinstance(negatives, int) or not 0 < negatives <= b - 1:
            raise ValueError(f"negatives must be an int in [1, {b - 1}], got {negatives!r}")
        noise = torch.rand(b, b, generator=generator, device=q.device)
        noise.fill_diagonal_(-1.0)  # the positive is never dropped
        keep = noise.argsort(dim=1)[:, :negatives + 1]  # the positive plus `negatives` random others
        mask = torch.ones(b, b, dtype=torch.bool, device=q.device)
        mask.scatter_(1, keep, False)
        sim = sim.masked_fill(mask, float("-inf"))
    return F.cross_entropy(sim, torch.arange(b, device=q.device))


class DualEncoder(nn.Module):
    """Two independent bag-of-words encoders, one for questions, one for passages.

    A text's vector is the sum of its tokens' embeddings ``(D,)``; a
    question and a passage are scored by the inner product of their
    vectors. DPR uses two BERT encoders and their [CLS] vectors; the
    summed embedding is the smallest encoder that can learn that two
    different words mean the same thing. As DPR's two encoders both start
    from the same pre-trained BERT, both tables start from the same random
    matrix (nearly orthogonal rows), so before training a question scores a
    passage roughly by the number of words they share.
    """

    def __init__(self, vocab_size: int, dim: int = 64, generator: torch.Generator | None = None) -> None:
        super().__init__()
        _checks.positive_int("vocab_size", vocab_size)
        _checks.positive_int("dim", dim)
        start = torch.randn(vocab_size, dim, generator=generator) / math.sqrt(dim)
        self.question = nn.Parameter(start.clone())
        self.passage = nn.Parameter(start.clone())


    def encode_questions(self, bags: torch.Tensor) -> torch.Tensor:
        """``(Q, V)`` term counts -> ``(Q, D)`` question vectors."""
        return bags.to(self.question.dtype) @ self.question

    def encode_passages(self, bags: torch.Tensor) -> torch.Tensor:
        """``(N, V)`` term counts -> ``(N, D)`` passage vectors."""
        return bags.to(self.passage.dtype) @ self.passage

    def scores(self, question_bags: torch.Tensor, passage_bags: torch.Tensor) -> torch.Tensor:
        """Inner products ``(Q, N)``."""
        return self.encode_questions(question_bags) @ self.encode_passages(passage_bags).T


def train_dual_encoder(questions: Sequence[Sequence[int]], passages: Sequence[Sequence[int]], vocab_size: int, *,
                       dim: int = 64, batch_size: int = 64, negatives: int | None = None, epochs: int = 20,
                       lr: float = 3e-3, generator: torch.Generator | None = None) -> tuple[DualEncoder, list[float]]:
    """Train a :class:`DualEncoder` on pairs ``(questions[i], passages[i])`` with :func:`in_batch_loss`.

    Adam, ``epochs`` passes over the pairs in a fresh random order each
    pass, batches of ``batch_size`` (the last, smaller batch is dropped).
    Returns the model and the loss of every step.
    """
    questions = _texts("questions", questions)
    passages = _texts("passages", passages)
    if len(questions) != len(passages):
        raise ValueError(f"passages must pair with questions ({len(questions)}), got {len(passages)}")
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("epochs", epochs)
    if batch_size < 2 or batch_size > len(questions):
        raise ValueError(f"batch_size must be in [2, {len(questions)}], got {batch_size}")
    qb = term_counts(questions, vocab_size).float()
    pb = term_counts(passages, vocab_size).float()
    model = DualEncoder(vocab_size, dim, generator)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(questions), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            loss = in_batch_loss(model.encode_questions(qb[idx]), model.encode_passages(pb[idx]), negatives, generator)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return model, losses


def top_k_accuracy(scores: torch.Tensor, gold: torch.Tensor, ks: Sequence[int]) -> list[float]:
    """Fraction of questions whose gold passage ranks in the top ``k``, for each ``k`` in ``ks``.

    ``scores`` is ``(Q, N)``, ``gold`` ``(Q,)``. Ties are broken at random,
    in expectation: with ``g`` passages scored strictly above the gold one and
    ``e`` others equal to it, the gold passage is in the top ``k`` with
    probability ``clamp((k - g) / (e + 1), 0, 1)``. A retriever that scores
    everything zero thus gets ``k / N``, not 0 or 1.
    """
    _checks.tensor("scores", scores, ndim=2, kind="float")
    _checks.tensor("gold", gold, ndim=1, kind="int")
    _checks.size_matches("gold", gold.shape[0], scores.shape[0], "number of questions")
    if not isinstance(ks, Sequence) or not ks:
        raise TypeError("ks must be a non-empty sequence of positive ints")
    own = scores.gather(1, gold.long().unsqueeze(1))
    above = (scores > own).sum(1).double()
    ties = (scores == own).sum(1).double() - 1
    out = []
    for k in ks:
        _checks.positive_int("ks", k)
        out.append(((k - above) / (ties + 1)).clamp(0, 1).mean().item())
    return out
