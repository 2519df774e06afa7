"""Recurrent encoder-decoders with and without attention (chapter 14, Bahdanau et al., 2015).

* :class:`BidirectionalGRU` runs the gate-by-gate GRU of
  :mod:`papers30.recurrent` forwards and backwards over padded sequences and
  concatenates the two, like ``torch.nn.GRU(bidirectional=True)`` applied to
  a packed batch (each sequence is reversed within its own length).
* :class:`RNNEncDec` ("RNNencdec"): the decoder sees the source only through
  one fixed context vector, the same at every step.
* :class:`RNNSearch` ("RNNsearch"): at every step the decoder scores every
  source annotation with additive attention
  (:class:`papers30.attention.AdditiveAttention`) and reads their weighted
  average, eqs. (nmt-score)-(nmt-context).

Both models share the encoder, the GRU decoder and the output layer; they
differ only in what :meth:`~_EncoderDecoder.encode` hands the decoder (a
:class:`Memory`) and in :meth:`~_EncoderDecoder.context`. ``forward`` is the
teacher-forced pass (logits and attention weights), :meth:`~_EncoderDecoder.greedy`
the greedy translation. :func:`scores_by_length` scores translations per
source-length bucket, the measurement of the paper's Figure 2.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``D`` input
width, ``E`` embedding width, ``H`` hidden width, ``A`` attention width,
``M`` memory slots, ``V`` vocabulary size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.attention import AdditiveAttention
from papers30.metrics import corpus_bleu, exact_match
from papers30.recurrent import GRU, GRUCell


def _lengths(name: str, lengths: object, B: int, T: int, device: torch.device) -> torch.Tensor:
    if lengths is None:
        return torch.full((B,), T, dtype=torch.long, device=device)
    lengths = _checks.tensor(name, lengths, ndim=1, kind="int")
    if lengths.shape[0] != B:
        raise ValueError(f"{name} must have one entry per batch row ({B}), got {lengths.shape[0]}")
    if lengths.numel() and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"{name} must lie in [1, {T}], got {lengths.tolist()}")
    return lengths.to(device)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row of ``x (B, T, ...)`` within its first ``lengths[b]`` steps; padding stays put."""
    _checks.tensor("x", x)
    if x.dim() < 2:
        raise ValueError(f"x must have at least 2 dimensions (B, T, ...), got shape {tuple(x.shape)}")
    B, T = x.shape[:2]
    lengths = _lengths("lengths", lengths, B, T, x.device)
    t = torch.arange(T, device=x.device)
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class BidirectionalGRU(nn.Module):
    """One bidirectional GRU layer on padded batches (batch first), eq. (nmt-annot).

    ``forward(input (B, T, D), lengths (B,) | None) -> (output (B, T, 2H), h_n (2, B, H))``:
    ``output[:, t]`` is ``[h_fwd_t; h_bwd_t]``, zero at padding; ``h_n`` holds
    the forward state after the last real step and the backward state after
    reading back to step 0, as torch's GRU returns them for a packed batch.
    Parameters: ``forward_rnn`` and ``backward_rnn``, two one-layer
    :class:`papers30.recurrent.GRU`.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.forward_rnn = GRU(input_size, hidden_size, batch_first=True)
        self.backward_rnn = GRU(input_size, hidden_size, batch_first=True)
        self.input_size, self.hidden_size = input_size, hidden_size

    def forward(
        self, input: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = _checks.tensor("input", input, ndim=3, kind="float")
        _checks.size_matches("input", x.shape[-1], self.input_size, "feature size")
        B, T, _ = x.shape
        if B == 0 or T == 0:
            raise ValueError(f"input must have at least one batch row and one time step, got {tuple(x.shape)}")
        lengths = _lengths("lengths", lengths, B, T, x.device)
        valid = (torch.arange(T, device=x.device) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        fwd, _ = self.forward_rnn(x)  # padding comes after the real steps: it cannot reach them
        bwd, _ = self.backward_rnn(reverse_padded(x, lengths))  # read each sentence from its end
        bwd = reverse_padded(bwd, lengths)
        output = torch.cat([fwd, bwd], dim=-1) * valid
        last = fwd[torch.arange(B, device=x.device), lengths - 1]  # forward state at the last word
        return output, torch.stack([last, bwd[:, 0]])


@_checks.record
class Memory(NamedTuple):
    """What the encoder hands the decoder.

    ``values (B, M, 2H)``: the vectors the context is made of (all ``S``
    annotations for :class:`RNNSearch`, the one summary for
    :class:`RNNEncDec`); ``keys (B, M, A)``: their projections ``U_a h_j``
    for the attention scores, computed once per sentence (None without
    attention); ``mask (B, M)``: True at real entries.
    """

    values: torch.Tensor
    keys: torch.Tensor | None
    mask: torch.Tensor


class _EncoderDecoder(nn.Module):
    """Shared parts of :class:`RNNEncDec` and :class:`RNNSearch`.

    Embeddings of width ``E`` for both vocabularies, a :class:`BidirectionalGRU`
    encoder of width ``H`` a direction, a GRU decoder of width ``H`` whose
    input is ``[embedding of y_{i-1}; context c_i]``, and a deep output layer
    ``p(y_i) = softmax(W_o tanh(W_h [s_i; c_i; embedding of y_{i-1}]))``.
    """

    summary_dirs = 2  # s_0 is computed from this many encoder states of width H

    def __init__(
        self, src_vocab: int, tgt_vocab: int, embed_size: int = 32, hidden_size: int = 64, pad_idx: int = 0
    ) -> None:
        super().__init__()
        for name, value in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab),
                            ("embed_size", embed_size), ("hidden_size", hidden_size)):
            _checks.positive_int(name, value)
        if isinstance(pad_idx, bool) or not isinstance(pad_idx, int):
            raise TypeError(f"pad_idx must be an int, got {type(pad_idx).__name__}")
        E, H = embed_size, hidden_size
        self.src_vocab, self.tgt_vocab, self.pad_idx = src_vocab, tgt_vocab, pad_idx
        self.src_embed = nn.Embedding(src_vocab, E)
        self.tgt_embed = nn.Embedding(tgt_vocab, E)
        self.encoder = BidirectionalGRU(E, H)
        self.init_state = nn.Linear(self.summary_dirs * H, H)  # s_0 = tanh(W_s . summary of the source)
        self.decoder = GRUCell(E + 2 * H, H)
        self.hidden = nn.Linear(H + 2 * H + E, H)
        self.output = nn.Linear(H, tgt_vocab)

    def encode(self, src: torch.Tensor) -> tuple[Memory, torch.Tensor]:
        """Read ``src (B, S)`` (right-padded with ``pad_idx``).

        Returns the :class:`Memory` the decoder may look at and its first
        state ``s_0 (B, H)``.
        """
        _checks.tensor("src", src, ndim=2, kind="int")
        if 0 in src.shape:
            raise ValueError(f"src must have at least one row and one token, got shape {tuple(src.shape)}")
        mask = src != self.pad_idx
        lengths = mask.sum(1)
        if (lengths == 0).any():
            raise ValueError("src has a row made only of padding")
        if (mask.long().diff(dim=1) > 0).any():
            raise ValueError("src must be right-padded (no real token after padding)")
        annotations, h_n = self.encoder(self.src_embed(src), lengths)
        return self._memory(annotations, mask, h_n)

    def _memory(
        self, annotations: torch.Tensor, mask: torch.Tensor, h_n: torch.Tensor
    ) -> tuple[Memory, torch.Tensor]:
        raise NotImplementedError

    def context(self, state: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The context ``c_i (B, 2H)`` for decoder state ``s_{i-1} (B, H)``, and the weights ``(B, M)`` or None."""
        raise NotImplementedError

    def readout(self, state: torch.Tensor, c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Next-word logits ``(..., V)`` from ``s_i``, ``c_i`` and the embedded ``y_{i-1}``: the deep output of eq. (nmt-dec)."""
        return self.output(torch.tanh(self.hidden(torch.cat([state, c, y], dim=-1))))

    def step(
        self, prev: torch.Tensor, state: torch.Tensor, memory: Memory
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One decoder step, eq. (nmt-dec): previous word ``prev (B,)`` and ``s_{i-1} (B, H)``.

        Returns logits ``(B, V)``, ``s_i (B, H)`` and the attention weights ``(B, S)`` (or None).
        """
        c, weights = self.context(state, memory)
        y = self.tgt_embed(prev)
        state = self.decoder(torch.cat([y, c], dim=-1), state)
        return self.readout(state, c, y), state, weights

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced pass: ``src (B, S)``, ``tgt_in (B, T)`` (BOS then the target).

        Returns logits ``(B, T, V)`` for the next words and the attention
        weights ``(B, T, S)`` (None for :class:`RNNEncDec`). The recurrence
        runs step by step, as in :meth:`step`; the output layer, which feeds
        nothing back, then runs on all steps at once.
        """
        memory, state = self.encode(src)
        _checks.tensor("tgt_in", tgt_in, ndim=2, kind="int")
        _checks.size_matches("tgt_in", tgt_in.shape[0], src.shape[0], "batch size")
        if tgt_in.shape[1] == 0:
            raise ValueError("tgt_in must hold at least one token (BOS)")
        y = self.tgt_embed(tgt_in)  # teacher forcing: the true previous words, (B, T, E)
        states, contexts, weights = [], [], []
        for i in range(tgt_in.shape[1]):
            c, w = self.context(state, memory)
            state = self.decoder(torch.cat([y[:, i], c], dim=-1), state)
            states.append(state)
            contexts.append(c)
            weights.append(w)
        logits = self.readout(torch.stack(states, dim=1), torch.stack(contexts, dim=1), y)
        return logits, None if weights[0] is None else torch.stack(weights, dim=1)

    def loss(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats per target token) of ``tgt_out (B, T)``, padding ignored."""
        _checks.tensor("tgt_out", tgt_out, ndim=2, kind="int")
        if tgt_out.shape != tgt_in.shape:
            raise ValueError(f"tgt_out must have the shape of tgt_in {tuple(tgt_in.shape)}, got {tuple(tgt_out.shape)}")
        logits, _ = self(src, tgt_in)
        return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=self.pad_idx)

    @torch.no_grad()
    def greedy(
        self, src: torch.Tensor, bos: int, eos: int, max_len: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Translate ``src (B, S)`` greedily, feeding back the most probable word.

        Returns tokens ``(B, L)`` with ``L <= max_len`` (stops once every row
        has produced ``eos``; later positions of a finished row are ``eos``)
        and the attention weights ``(B, L, S)`` (None for :class:`RNNEncDec`).
        """
        _checks.positive_int("max_len", max_len)
        memory, state = self.encode(src)
        prev = torch.full((src.shape[0],), bos, dtype=torch.long, device=src.device)
        done = torch.zeros_like(prev, dtype=torch.bool)
        tokens, weights = [], []
        for _ in range(max_len):
            logits, state, w = self.step(prev, state, memory)
            prev = logits.argmax(-1).masked_fill(done, eos)
            tokens.append(prev)
            weights.append(w)
            done |= prev == eos
            if done.all():
                break
        stacked = None if weights[0] is None else torch.stack(weights, dim=1)
        return torch.stack(tokens, dim=1), stacked


class RNNEncDec(_EncoderDecoder):
    """RNNencdec: the whole source squeezed into one context vector, eq. (nmt-fixed).

    ``c = [h_fwd at the last word; h_bwd at the first word] (B, 2H)``, the
    same at every decoder step; ``s_0 = tanh(W_s c)``. Arguments as
    :class:`_EncoderDecoder`.
    """

    def _memory(
        self, annotations: torch.Tensor, mask: torch.Tensor, h_n: torch.Tensor
    ) -> tuple[Memory, torch.Tensor]:
        summary = torch.cat([h_n[0], h_n[1]], dim=-1)  # eq. (nmt-fixed), (B, 2H)
        memory = Memory(summary.unsqueeze(1), None, mask[:, :1])
        return memory, torch.tanh(self.init_state(summary))

    def context(self, state: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, None]:
        return memory.values[:, 0], None  # the same summary at every step


class RNNSearch(_EncoderDecoder):
    """RNNsearch: additive attention over all annotations at every step, eqs. (nmt-score)-(nmt-context).

    ``s_0 = tanh(W_s h_bwd_1)`` as in the paper; ``attention_size`` (default
    ``hidden_size``) is the width ``A`` of the scoring layer. The projections
    ``U_a h_j`` do not depend on the decoder step, so :meth:`encode` computes
    them once per sentence (the paper's Appendix A.1.2 does the same). The
    weights of the last :meth:`forward` or :meth:`greedy` are returned, never
    stored.
    """

    summary_dirs = 1

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        embed_size: int = 32,
        hidden_size: int = 64,
        pad_idx: int = 0,
        attention_size: int | None = None,
    ) -> None:
        super().__init__(src_vocab, tgt_vocab, embed_size, hidden_size, pad_idx)
        A = hidden_size if attention_size is None else attention_size
        _checks.positive_int("attention_size", A)
        self.attention = AdditiveAttention(hidden_size, 2 * hidden_size, A)

    def _memory(
        self, annotations: torch.Tensor, mask: torch.Tensor, h_n: torch.Tensor
    ) -> tuple[Memory, torch.Tensor]:
        keys = self.attention.key_proj(annotations)  # U_a h_j, (B, S, A): once per sentence
        return Memory(annotations, keys, mask), torch.tanh(self.init_state(h_n[1]))  # s_0 from h_bwd_1

    def context(self, state: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        query = self.attention.query_proj(state).unsqueeze(1)  # W_a s_{i-1}, (B, 1, A)
        scores = torch.tanh(memory.keys + query) @ self.attention.v  # eq. (nmt-score), (B, S)
        weights = scores.masked_fill(~memory.mask, float("-inf")).softmax(dim=-1)  # eq. (nmt-weights)
        c = (weights.unsqueeze(1) @ memory.values).squeeze(1)  # eq. (nmt-context), (B, 2H)
        return c, weights


def scores_by_length(
    candidates: Sequence[Sequence[int]],
    references: Sequence[Sequence[int]],
    lengths: Sequence[int],
    buckets: Sequence[tuple[int, int]],
) -> dict[str, list[float]]:
    """Corpus BLEU and exact match of the sentences in each source-length bucket.

    ``lengths[k]`` is the source length of sentence ``k``; ``buckets`` are
    inclusive ``(lo, hi)`` ranges. Returns ``{"bleu": [...], "exact": [...],
    "count": [...]}``, one entry per bucket (BLEU on the 0-100 scale).
    """
    if not (len(candidates) == len(references) == len(lengths)):
        raise ValueError(
            f"lengths and references must have one entry per candidate ({len(candidates)}), "
            f"got {len(lengths)} and {len(references)}"
        )
    out: dict[str, list[float]] = {"bleu": [], "exact": [], "count": []}
    for lo, hi in buckets:
        idx = [k for k, n in enumerate(lengths) if lo <= n <= hi]
        if not idx:
            raise ValueError(f"buckets: no sentence has a length in [{lo}, {hi}]")
        hyp, ref = [candidates[k] for k in idx], [references[k] for k in idx]
        out["bleu"].append(corpus_bleu(hyp, ref))
        out["exact"].append(exact_match(hyp, ref))
        out["count"].append(float(len(idx)))
    return out
