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


# ---------------------------------------------------------------- retrieval-augmented generation (29)

def _prior_and_tokens(doc_log_prior: object, token_log_probs: object, mask: object) -> torch.Tensor:
    _checks.tensor("doc_log_prior", doc_log_prior, ndim=2, kind="float")
    _checks.tensor("token_log_probs", token_log_probs, ndim=3, kind="float")
    b, k = doc_log_prior.shape
    if tuple(token_log_probs.shape[:2]) != (b, k):
        raise ValueError(f"token_log_probs must have shape (B, K, T) = ({b}, {k}, T), got {tuple(token_log_probs.shape)}")
    if mask is None:
        return token_log_probs
    _checks.tensor("mask", mask, ndim=2, kind="bool")
    if tuple(mask.shape) != (b, token_log_probs.shape[2]):
        raise ValueError(f"mask must have shape (B, T) = ({b}, {token_log_probs.shape[2]}), got {tuple(mask.shape)}")
    return token_log_probs.masked_fill(~mask.unsqueeze(1), 0.0)


def rag_sequence_log_likelihood(doc_log_prior: torch.Tensor, token_log_probs: torch.Tensor,
                                mask: torch.Tensor | None = None) -> torch.Tensor:
    """RAG-Sequence: ``log p(y|x) = log sum_z p(z|x) prod_i p(y_i | x, z, y_<i)``, shape ``(B,)``.

    ``doc_log_prior`` ``(B, K)`` holds ``log p(z|x)`` of the ``K`` retrieved
    documents (normalised over them); ``token_log_probs`` ``(B, K, T)`` holds
    the generator's ``log p(y_i | x, z, y_<i)`` of each target token given
    each document; ``mask`` ``(B, T)`` (optional, bool) marks the real tokens
    of padded targets. One document is used for the whole sequence.
    """
    lp = _prior_and_tokens(doc_log_prior, token_log_probs, mask)
    return torch.logsumexp(doc_log_prior + lp.sum(2), dim=1)


def rag_token_log_likelihood(doc_log_prior: torch.Tensor, token_log_probs: torch.Tensor,
                             mask: torch.Tensor | None = None) -> torch.Tensor:
    """RAG-Token: ``log p(y|x) = sum_i log sum_z p(z|x) p(y_i | x, z, y_<i)``, shape ``(B,)``.

    Arguments as in :func:`rag_sequence_log_likelihood`; each token may come
    from a different document.
    """
    lp = _prior_and_tokens(doc_log_prior, token_log_probs, None)
    per_token = torch.logsumexp(doc_log_prior.unsqueeze(2) + lp, dim=1)  # (B, T)
    if mask is not None:
        _prior_and_tokens(doc_log_prior, token_log_probs, mask)
        per_token = per_token.masked_fill(~mask, 0.0)
    return per_token.sum(1)


def _decoding_args(doc_log_prior: object, next_log_probs: object, length: object) -> None:
    _checks.tensor("doc_log_prior", doc_log_prior, ndim=2, kind="float")
    if not callable(next_log_probs):
        raise TypeError(f"next_log_probs must be callable, got {type(next_log_probs).__name__}")
    _checks.positive_int("length", length)


def _step(next_log_probs, prefix: torch.Tensor) -> torch.Tensor:
    out = next_log_probs(prefix)
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or tuple(out.shape[:3]) != tuple(prefix.shape[:3]):
        raise ValueError(f"next_log_probs must return a (B, K, S, V) tensor for a prefix of shape {tuple(prefix.shape)}")
    return out


def rag_token_greedy(doc_log_prior: torch.Tensor, next_log_probs, length: int) -> torch.Tensor:
    """Greedy decoding of RAG-Token: ``y_i = argmax_y sum_z p(z|x) p(y | x, z, y_<i)``; returns ``(B, length)``.

    ``next_log_probs(prefix)`` takes a prefix ``(B, K, S, t)`` of token ids
    (``t`` may be 0; ``S`` hypotheses per document) and returns the
    generator's next-token log-probabilities ``(B, K, S, V)`` given each
    document. RAG-Token's marginal is an ordinary next-token distribution,
    so any decoder of a language model works; greedy is beam search of width 1.
    """
    _decoding_args(doc_log_prior, next_log_probs, length)
    b, k = doc_log_prior.shape
    out = torch.zeros(b, 0, dtype=torch.long, device=doc_log_prior.device)
    for _ in range(length):
        prefix = out[:, None, None, :].expand(b, k, 1, out.shape[1])
        lp = _step(next_log_probs, prefix)[:, :, 0]  # (B, K, V)
        marginal = torch.logsumexp(doc_log_prior.unsqueeze(2) + lp, dim=1)  # (B, V)
        out = torch.cat([out, marginal.argmax(1, keepdim=True)], 1)
    return out


def _beam_per_document(next_log_probs, b: int, k: int, length: int, beam: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search of width ``beam`` under each document alone: hypotheses ``(B, K, S, T)`` and their log-probs ``(B, K, S)``."""
    hyps = torch.zeros(b, k, 1, 0, dtype=torch.long, device=device)
    score = torch.zeros(b, k, 1, device=device)
    for _ in range(length):
        lp = _step(next_log_probs, hyps)  # (B, K, S, V)
        v = lp.shape[-1]
        total = (score.unsqueeze(3) + lp).reshape(b, k, -1)  # (B, K, S*V)
        score, idx = total.topk(min(beam, total.shape[2]), dim=2)
        parent, token = idx // v, idx % v
        hyps = torch.cat([hyps.gather(2, parent.unsqueeze(3).expand(-1, -1, -1, hyps.shape[3])),
                          token.unsqueeze(3)], 3)
    return hyps, score


def sequence_log_probs(next_log_probs, candidates: torch.Tensor, docs: int) -> torch.Tensor:
    """``log p(y | x, z)`` ``(B, K, C)`` of every candidate ``(B, C, T)`` under each of ``docs`` documents.

    Teacher-forces each candidate through ``next_log_probs`` (see
    :func:`rag_token_greedy`): one forward pass per position.
    """
    if not callable(next_log_probs):
        raise TypeError(f"next_log_probs must be callable, got {type(next_log_probs).__name__}")
    _checks.tensor("candidates", candidates, ndim=3, kind="int")
    _checks.positive_int("docs", docs)
    b, c, t = candidates.shape
    expanded = candidates.unsqueeze(1).expand(b, docs, c, t)
    total = torch.zeros(b, docs, c, device=candidates.device)
    for i in range(t):
        lp = _step(next_log_probs, expanded[..., :i])  # (B, K, C, V)
        total = total + lp.gather(3, expanded[..., i:i + 1]).squeeze(3)
    return total


def rag_sequence_decode(doc_log_prior: torch.Tensor, next_log_probs, length: int, beam: int = 4,
                        fast: bool = False) -> torch.Tensor:
    """RAG-Sequence decoding (Lewis et al. 2020, Section 2.5); returns ``(B, length)``.

    Runs beam search of width ``beam`` under each document alone; the union
    of the ``K * beam`` hypotheses is the candidate set ``Y``. *Thorough*
    decoding (``fast=False``) scores every candidate under every document
    with an extra forward pass and returns
    ``argmax_y sum_z p(z|x) p(y|x,z)``. *Fast* decoding takes
    ``p(y|x,z) = 0`` for a candidate that was not in document ``z``'s beam,
    so no extra pass is needed. With a beam covering every sequence
    (``beam >= V ** (length - 1)``), thorough decoding is exact.
    """
    _decoding_args(doc_log_prior, next_log_probs, length)
    _checks.positive_int("beam", beam)
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be a bool, got {type(fast).__name__}")
    b, k = doc_log_prior.shape
    hyps, score = _beam_per_document(next_log_probs, b, k, length, beam, doc_log_prior.device)
    s = hyps.shape[2]
    candidates = hyps.reshape(b, k * s, length)  # (B, C, T), C = K * S
    if fast:
        same = (candidates.unsqueeze(1).unsqueeze(3) == hyps.unsqueeze(2)).all(4)  # (B, K, C, S)
        in_beam = same.any(3)
        found = torch.where(same, score.unsqueeze(2), torch.full_like(score.unsqueeze(2), -math.inf)).amax(3)
        log_p = torch.where(in_beam, found, torch.full_like(found, -math.inf))  # (B, K, C)
    else:
        log_p = sequence_log_probs(next_log_probs, candidates, k)
    marginal = torch.logsumexp(doc_log_prior.unsqueeze(2) + log_p, dim=1)  # (B, C)
    best = marginal.argmax(1)
    return candidates[torch.arange(b, device=candidates.device), best]


class PassageReader(nn.Module):
    """A small generator ``p(y_i | x, z, y_<i)`` of a short answer given a question ``x`` and a passage ``z``.

    The question is a bag of words (summed embeddings ``(N, D)``); the
    decoder state at answer step ``i`` is an MLP of the question vector, the
    previous answer token and the step's position; it attends over the
    passage's tokens (keys: token plus position embeddings) and adds to its
    vocabulary logits the inner products of the attended passage-token
    embedding with every token embedding (a soft copy, tied weights). With
    the passage replaced by one padding token the same network is a
    closed-book generator: everything it answers must be stored in its
    weights. BART, RAG's generator, is a 400M-parameter Transformer; this is
    the smallest network that can either copy from a passage or memorise.
    """

    def __init__(self, vocab_size: int, max_length: int, dim: int = 64, hidden: int = 128, bos: int = 1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _checks.positive_int("vocab_size", vocab_size)
        _checks.positive_int("max_length", max_length)
        _checks.positive_int("dim", dim)
        _checks.positive_int("hidden", hidden)
        if isinstance(bos, bool) or not isinstance(bos, int) or not 0 <= bos < vocab_size:
            raise ValueError(f"bos must be a token id in [0, {vocab_size}), got {bos!r}")
        self.bos, self.vocab_size = bos, vocab_size
        g = generator
        self.embed = nn.Parameter(torch.randn(vocab_size, dim, generator=g) / math.sqrt(dim))
        self.passage_position = nn.Parameter(torch.randn(64, dim, generator=g) / math.sqrt(dim))
        self.answer_position = nn.Parameter(torch.randn(max_length, dim, generator=g) / math.sqrt(dim))
        self.w1 = nn.Parameter(torch.randn(3 * dim, hidden, generator=g) / math.sqrt(3 * dim))
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.w2 = nn.Parameter(torch.randn(hidden, dim, generator=g) / math.sqrt(hidden))
        self.query = nn.Parameter(torch.randn(dim, dim, generator=g) / math.sqrt(dim))
        self.out = nn.Parameter(torch.randn(dim, vocab_size, generator=g) / math.sqrt(dim))
        self.out_bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, questions: torch.Tensor, passages: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Next-token log-probabilities ``(N, t + 1, V)`` after each prefix position.

        ``questions`` ``(N, Lq)``, ``passages`` ``(N, Lp)`` and ``prefix``
        ``(N, t)`` (the answer so far, ``t`` may be 0) are token ids; row
        ``j`` of the output is the distribution of answer token ``j``.
        """
        _checks.tensor("questions", questions, ndim=2, kind="int")
        _checks.tensor("passages", passages, ndim=2, kind="int")
        _checks.tensor("prefix", prefix, ndim=2, kind="int")
        n = questions.shape[0]
        _checks.size_matches("passages", passages.shape[0], n, "batch size")
        _checks.size_matches("prefix", prefix.shape[0], n, "batch size")
        if prefix.shape[1] >= self.answer_position.shape[0]:
            raise ValueError(f"prefix must be shorter than max_length {self.answer_position.shape[0]}, got {prefix.shape[1]}")
        if passages.shape[1] > self.passage_position.shape[0]:
            raise ValueError(f"passages must have at most {self.passage_position.shape[0]} tokens, got {passages.shape[1]}")
        for name, x in (("questions", questions), ("passages", passages), ("prefix", prefix)):
            if x.numel() and (x.min() < 0 or x.max() >= self.vocab_size):
                raise ValueError(f"{name} must hold token ids in [0, {self.vocab_size})")
        t = prefix.shape[1] + 1
        q = self.embed[questions].sum(1)  # (N, D)
        previous = torch.cat([torch.full((n, 1), self.bos, dtype=torch.long, device=prefix.device), prefix.long()], 1)
        steps = torch.cat([q.unsqueeze(1).expand(n, t, -1), self.embed[previous],
                           self.answer_position[:t].expand(n, t, -1)], 2)  # (N, t, 3D)
        h = torch.tanh(steps @ self.w1 + self.b1) @ self.w2  # (N, t, D)
        values = self.embed[passages]  # (N, Lp, D)
        keys = values + self.passage_position[:passages.shape[1]]
        attn = torch.softmax((h @ self.query) @ keys.transpose(1, 2) / math.sqrt(h.shape[2]), dim=2)  # (N, t, Lp)
        read = attn @ values  # (N, t, D)
        logits = h @ self.out + self.out_bias + read @ self.embed.T
        return torch.log_softmax(logits, dim=2)


def _reader_inputs(model: object, questions: object, passages: object) -> tuple[int, int]:
    if not isinstance(model, PassageReader):
        raise TypeError(f"model must be a PassageReader, got {type(model).__name__}")
    _checks.tensor("questions", questions, ndim=2, kind="int")
    _checks.tensor("passages", passages, ndim=3, kind="int")
    _checks.size_matches("passages", passages.shape[0], questions.shape[0], "number of questions")
    return passages.shape[0], passages.shape[1]


def reader_next_log_probs(model: PassageReader, questions: torch.Tensor, passages: torch.Tensor):
    """The ``next_log_probs`` callable of :func:`rag_token_greedy` and :func:`rag_sequence_decode` for ``model``.

    ``questions`` ``(B, Lq)``; ``passages`` ``(B, K, Lp)`` the retrieved
    passages of each question (``K = 1`` and a padding passage for the
    closed-book generator). The callable runs without gradients.
    """
    b, k = _reader_inputs(model, questions, passages)

    def next_log_probs(prefix: torch.Tensor) -> torch.Tensor:
        _, _, s, t = prefix.shape
        q = questions[:, None, None, :].expand(b, k, s, -1).reshape(b * k * s, -1)
        p = passages[:, :, None, :].expand(b, k, s, -1).reshape(b * k * s, -1)
        with torch.no_grad():
            return model(q, p, prefix.reshape(b * k * s, t))[:, -1].view(b, k, s, -1)

    return next_log_probs


def reader_token_log_probs(model: PassageReader, questions: torch.Tensor, passages: torch.Tensor,
                           answers: torch.Tensor) -> torch.Tensor:
    """``log p(y_i | x, z, y_<i)`` ``(B, K, T)`` of the answers ``(B, T)`` given each of the ``K`` passages ``(B, K, Lp)``."""
    b, k = _reader_inputs(model, questions, passages)
    _checks.tensor("answers", answers, ndim=2, kind="int")
    _checks.size_matches("answers", answers.shape[0], b, "number of questions")
    y = answers.repeat_interleave(k, 0)
    lp = model(questions.repeat_interleave(k, 0), passages.reshape(b * k, -1), y[:, :-1])
    return lp.gather(2, y.unsqueeze(2)).squeeze(2).view(b, k, -1)


def train_reader(questions: torch.Tensor, answers: torch.Tensor, vocab_size: int, *,
                 passages: torch.Tensor | None = None, doc_log_prior: torch.Tensor | None = None,
                 marginal: str = "sequence", steps: int = 800, batch_size: int = 32, lr: float = 3e-3,
                 dim: int = 64, hidden: int = 128, generator: torch.Generator | None = None
                 ) -> tuple[PassageReader, list[float]]:
    """Train a :class:`PassageReader` on ``(questions (N, Lq), answers (N, T))``; returns it and each step's loss.

    With ``passages`` ``(N, K, Lp)`` and ``doc_log_prior`` ``(N, K)`` (the
    retrieved passages of each question and ``log p(z|x)``, from a fixed
    retriever) the loss is minus the RAG log-likelihood, per sequence or
    per token (``marginal``). Without them the generator is closed-book: its
    passage is one padding token (id 0) and the loss is minus the answer's
    log-likelihood. Adam, ``steps`` batches of ``batch_size`` drawn uniformly.
    """
    _checks.tensor("questions", questions, ndim=2, kind="int")
    _checks.tensor("answers", answers, ndim=2, kind="int")
    _checks.size_matches("answers", answers.shape[0], questions.shape[0], "number of questions")
    _checks.one_of("marginal", marginal, ("sequence", "token"))
    _checks.positive_int("steps", steps)
    _checks.positive_int("batch_size", batch_size)
    n = questions.shape[0]
    if (passages is None) != (doc_log_prior is None):
        raise ValueError("passages and doc_log_prior must be given together (RAG) or both left out (closed-book)")
    if passages is None:
        passages = torch.zeros(n, 1, 1, dtype=torch.long)
        doc_log_prior = torch.zeros(n, 1)
    _checks.tensor("passages", passages, ndim=3, kind="int")
    _checks.size_matches("passages", passages.shape[0], n, "number of questions")
    _checks.tensor("doc_log_prior", doc_log_prior, ndim=2, kind="float")
    if tuple(doc_log_prior.shape) != tuple(passages.shape[:2]):
        raise ValueError(f"doc_log_prior must have shape (N, K) = {tuple(passages.shape[:2])}, got {tuple(doc_log_prior.shape)}")
    model = PassageReader(vocab_size, answers.shape[1], dim, hidden, generator=generator)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    likelihood = rag_sequence_log_likelihood if marginal == "sequence" else rag_token_log_likelihood
    losses = []
    for _ in range(steps):
        idx = torch.randint(n, (batch_size,), generator=generator)
        lp = reader_token_log_probs(model, questions[idx], passages[idx], answers[idx])
        loss = -likelihood(doc_log_prior[idx], lp).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


def retrieve(model: DualEncoder, questions: Sequence[Sequence[int]], passage_vectors: torch.Tensor,
             k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` passages of each question and their prior ``log p(z|x)`` (softmax of the scores over the ``k``).

    ``passage_vectors`` ``(N, D)`` is the index (``model.encode_passages``
    of the passages). Returns ``(Q, k)`` log-priors and ``(Q, k)`` passage ids.
    """
    if not isinstance(model, DualEncoder):
        raise TypeError(f"model must be a DualEncoder, got {type(model).__name__}")
    _checks.tensor("passage_vectors", passage_vectors, ndim=2, kind="float")
    _checks.positive_int("k", k)
    if k > passage_vectors.shape[0]:
        raise ValueError(f"k must be at most the {passage_vectors.shape[0]} passages, got {k}")
    with torch.no_grad():
        scores = model.encode_questions(term_counts(questions, model.question.shape[0])) @ passage_vectors.T
    top, idx = scores.topk(k, dim=1)
    return torch.log_softmax(top, dim=1), idx
