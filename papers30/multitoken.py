"""Multi-token prediction and self-speculative decoding (chapter 27).

Implements, at small scale, Gloeckle et al. (2024), *Better & Faster Large
Language Models via Multi-token Prediction*: a shared transformer trunk (the
decoder-only :class:`papers30.transformer.TransformerLM` of chapter 13's
layers) with ``n`` independent output heads, head ``i`` predicting the token
``i`` places ahead; each head is one causal transformer layer followed by the
trunk's shared (tied) unembedding, as in the paper's Section 2. The loss is
the sum of the ``n`` heads' cross-entropies. Decoding drafts tokens with heads
``2..n`` and verifies them with head 1 in one forward pass (blockwise parallel
decoding, Stern et al. 2018), which returns exactly the greedy output of
head 1. A seeded induction task (a random segment repeated once) measures
what the paper's Section 4.1 measures: accuracy on tokens that can only be
predicted by copying from earlier in the context.

Shapes: ``B`` batch, ``T`` sequence length, ``N`` number of heads
(``n_future``), ``D`` model width, ``V`` vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.transformer import EncoderLayer, TransformerLM


class MultiTokenLM(nn.Module):
    """A causal language model with ``n_future`` output heads on a shared trunk.

    The trunk is a :class:`TransformerLM` with ``num_layers`` pre-norm causal
    layers (its :meth:`~TransformerLM.hidden` states, ``(B, T, D)``); head
    ``i`` (``i = 1..N``) is one more pre-norm causal :class:`EncoderLayer` and a
    ``LayerNorm``, and all heads share the trunk's embedding matrix as their
    unembedding. ``forward`` returns logits ``(B, T, N, V)``: entry
    ``[:, t, i - 1]`` scores token ``t + i`` given tokens ``<= t``. With
    ``n_future = 1`` this is an ordinary next-token model of
    ``num_layers + 1`` layers.
    """

    def __init__(
        self,
        vocab_size: int,
        n_future: int = 4,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 1,
        dim_feedforward: int = 256,
        dropout: float = 0.0,
        max_len: int = 256,
    ) -> None:
        super().__init__()
        _checks.positive_int("n_future", n_future)
        _checks.probability("dropout", dropout)
        self.trunk = TransformerLM(vocab_size, d_model, nhead, num_layers, dim_feedforward, dropout,
                                   norm_first=True, max_len=max_len)
        self.heads = nn.ModuleList(EncoderLayer(d_model, nhead, dim_feedforward, dropout, norm_first=True)
                                   for _ in range(n_future))
        self.head_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_future))
        self.n_future, self.vocab_size = n_future, vocab_size

    def head_logits(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """Logits ``(B, T, V)`` of head ``i`` (1-based) on trunk states ``z (B, T, D)``."""
        h = self.head_norms[i - 1](self.heads[i - 1](z, is_causal=True))
        return h @ self.trunk.embed.weight.T  # the shared unembedding

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, N, V)`` of all heads for ``tokens (B, T)``."""
        z = self.trunk.hidden(tokens)
        return torch.stack([self.head_logits(z, i) for i in range(1, self.n_future + 1)], dim=2)

    def next_token_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Head 1 only: next-token logits ``(B, T, V)`` for ``tokens (B, T)``."""
        return self.head_logits(self.trunk.hidden(tokens), 1)


def multi_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The paper's loss: the sum over heads of each head's mean cross-entropy.

    ``logits (B, T, N, V)`` from :class:`MultiTokenLM`, ``tokens (B, T)``.
    Head ``i`` at position ``t`` is scored against ``tokens[:, t + i]``;
    positions with ``t + i >= T`` have no target and do not count, so head
    ``i`` averages over ``B (T - i)`` predictions. Returns a scalar.
    """
    _checks.tensor("logits", logits, ndim=4, kind="float")
    _checks.tensor("tokens", tokens, ndim=2, kind="int")
    _checks.size_matches("tokens", tokens.shape[0], logits.shape[0], "batch size")
    _checks.size_matches("tokens", tokens.shape[1], logits.shape[1], "length")
    T, N, V = logits.shape[1], logits.shape[2], logits.shape[3]
    if N >= T:
        raise ValueError(f"logits has {N} heads, needs fewer than the sequence length {T}")
    total = logits.new_zeros(())
    for i in range(1, N + 1):
        total = total + F.cross_entropy(logits[:, : T - i, i - 1].reshape(-1, V), tokens[:, i:].reshape(-1))
    return total


@torch.no_grad()
def greedy_generate(model: MultiTokenLM, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """Plain greedy decoding with head 1: one forward pass per generated token.

    ``prompt (T,)`` token ids; returns the ``steps`` new tokens ``(steps,)``.
    The full sequence is recomputed at every step (no key-value cache).
    """
    _check_model(model)
    _checks.tensor("prompt", prompt, ndim=1, kind="int")
    _checks.positive_int("steps", steps)
    if prompt.numel() == 0:
        raise ValueError("prompt must hold at least one token")
    was = model.training
    model.eval()
    seq = prompt.clone()
    for _ in range(steps):
        nxt = model.next_token_logits(seq[None])[0, -1].argmax()
        seq = torch.cat([seq, nxt[None]])
    model.train(was)
    return seq[prompt.numel():]


@dataclass
class SpeculativeResult:
    """What :func:`self_speculative_generate` returns.

    ``tokens (steps,)``: the generated tokens; ``passes``: forward passes of
    the model; ``drafted``: tokens proposed by heads ``2..k``; ``accepted``:
    how many of them head 1 confirmed and were kept.
    """

    tokens: torch.Tensor
    passes: int
    drafted: int
    accepted: int

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def acceptance_rate(self) -> float:
        """Fraction of drafted tokens that were accepted."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_pass(self) -> float:
        """Generated tokens per forward pass (plain greedy decoding: 1)."""
        return self.tokens.numel() / self.passes


@torch.no_grad()
def self_speculative_generate(model: MultiTokenLM, prompt: torch.Tensor, steps: int,
                              k: int | None = None) -> SpeculativeResult:
    """Greedy decoding of head 1, sped up by drafting with heads ``2..k``.

    One forward pass on the confirmed sequence ``x`` gives head 1's greedy
    token ``g`` (exact) and heads ``2..k``'s guesses ``d_2..d_k`` of the
    tokens after it. The next pass runs on ``x, g, d_2, ..., d_k``: by causal
    masking, head 1 at the position of ``d_j`` sees exactly ``x, g, d_2..d_j``,
    so it says what greedy decoding would emit there. Drafts are kept while
    they equal head 1's choice; the first disagreement is replaced by head 1's
    token, which (like ``g``) is exact, and the same pass's heads at that
    position draft the next block. Every kept token is head 1's argmax given
    its prefix, so the output equals :func:`greedy_generate`'s; a pass emits
    between 1 and ``k`` tokens, so ``steps`` tokens take between
    ``1 + ceil((steps - 1) / k)`` and ``steps`` passes. ``k`` defaults to ``model.n_future``.
    """
    _check_model(model)
    _checks.tensor("prompt", prompt, ndim=1, kind="int")
    _checks.positive_int("steps", steps)
    if prompt.numel() == 0:
        raise ValueError("prompt must hold at least one token")
    k = model.n_future if k is None else _checks.positive_int("k", k)
    if k > model.n_future:
        raise ValueError(f"k must be at most the model's n_future = {model.n_future}, got {k}")
    was = model.training
    model.eval()
    z = model.trunk.hidden(prompt[None])
    draft = torch.stack([model.head_logits(z, i)[0, -1].argmax() for i in range(1, k + 1)])  # draft[0] exact
    seq, passes, drafted, accepted = prompt.clone(), 1, 0, 0
    while (left := steps - (seq.numel() - prompt.numel())) > 0:
        if left == 1:  # one token to go: draft[0] is already head 1's greedy token
            seq = torch.cat([seq, draft[:1]])
            break
        m = min(k, left)
        start = seq.numel()  # position of draft[0] in the block
        z = model.trunk.hidden(torch.cat([seq, draft[:m]])[None])
        passes += 1
        verify = model.head_logits(z, 1)[0, start: start + m].argmax(-1)  # greedy token after draft[:j + 1]
        a = 1
        while a < m and draft[a] == verify[a - 1]:
            a += 1
        drafted += m - 1
        accepted += a - 1
        seq = torch.cat([seq, draft[:a]])
        # at the last kept token, head 1 gives the exact next token and heads 2..k draft the ones after it
        guesses = [model.head_logits(z, i)[0, start + a - 1].argmax() for i in range(2, k + 1)]
        draft = torch.stack([verify[a - 1], *guesses])
    model.train(was)
    return SpeculativeResult(seq[prompt.numel():], passes, drafted, accepted)


def induction_batch(batch: int, length: int, vocab_size: int, generator: torch.Generator,
                    min_segment: int = 4, max_segment: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences with one repeated random segment, and which tokens need induction.

    Each row of ``tokens (B, T)`` is uniform random tokens in which a segment
    of ``L`` tokens (``L`` uniform in ``min_segment..max_segment``) starting at a
    random position is followed at once by a copy of itself. ``answer (B, T)``
    is True at the copy's tokens after its first: each is predictable, by
    finding the previous occurrence of the token before it and copying what
    followed (an induction head), and by nothing else; every other token is
    uniform noise. The copy's first token is not marked: nothing says where
    the copy starts.
    """
    for name, value in (("batch", batch), ("length", length), ("vocab_size", vocab_size),
                        ("min_segment", min_segment), ("max_segment", max_segment)):
        _checks.positive_int(name, value)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if min_segment < 2 or max_segment < min_segment:
        raise ValueError(f"min_segment must be at least 2 and at most max_segment, got {min_segment}, {max_segment}")
    if 2 * max_segment > length:
        raise ValueError(f"length must be at least 2 * max_segment = {2 * max_segment}, got {length}")
    tokens = torch.randint(0, vocab_size, (batch, length), generator=generator)
    seg = torch.randint(min_segment, max_segment + 1, (batch, 1), generator=generator)  # L per row
    at = (torch.rand(batch, 1, generator=generator) * (length - 2 * seg + 1)).long()  # start, 0..T - 2L
    t = torch.arange(length)[None]
    # the segment, repeated to the end of the row: position t >= at + L copies at + (t - at - L) mod L
    source = torch.where(t >= at + seg, at + (t - at - seg) % seg, t)
    tokens = tokens.gather(1, source)
    answer = t >= at + seg + 1
    return tokens, answer


def answer_accuracy(model: MultiTokenLM, tokens: torch.Tensor, answer: torch.Tensor) -> float:
    """Head 1's greedy accuracy on the tokens marked in ``answer (B, T)`` of ``tokens (B, T)``."""
    _check_model(model)
    _checks.tensor("tokens", tokens, ndim=2, kind="int")
    _checks.tensor("answer", answer, ndim=2, kind="bool")
    _checks.size_matches("answer", answer.shape[0], tokens.shape[0], "batch size")
    _checks.size_matches("answer", answer.shape[1], tokens.shape[1], "length")
    if answer[:, 0].any() or not answer.any():
        raise ValueError("answer must mark at least one token, and not the first of a row")
    was = model.training
    model.eval()
    with torch.no_grad():
        guess = model.next_token_logits(tokens)[:, :-1].argmax(-1)  # guess for tokens[:, 1:]
    model.train(was)
    hit = (guess == tokens[:, 1:])[answer[:, 1:]]
    return hit.float().mean().item()


@_checks.record
class InductionRun(NamedTuple):
    """What :func:`train_induction` returns: the trained model and its per-step next-token losses."""

    model: MultiTokenLM
    losses: list


def train_induction(n_future: int, steps: int, seed: int, batch_size: int = 32, length: int = 24,
                    vocab_size: int = 16, d_model: int = 32, nhead: int = 2, dim_feedforward: int = 64,
                    num_layers: int = 1, lr: float = 3e-3, stop_after: int | None = None) -> InductionRun:
    """Train a :class:`MultiTokenLM` on :func:`induction_batch` data with :func:`multi_token_loss`.

    The batches depend only on ``seed`` (not on ``n_future``), so models with
    different ``n_future`` see the same data in the same order; the weights
    are initialised from ``seed`` too. Adam at learning rate ``lr``; ``num_layers``
    trunk layers. Returns the model and the per-step next-token (head 1)
    losses as an :class:`InductionRun`; ``stop_after`` ends training early
    (for replaying the start).
    """
    for name, value in (("n_future", n_future), ("steps", steps), ("batch_size", batch_size)):
        _checks.positive_int(name, value)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    stop = steps if stop_after is None else min(steps, _checks.positive_int("stop_after", stop_after))
    torch.manual_seed(seed)
    model = MultiTokenLM(vocab_size, n_future, d_model, nhead, num_layers, dim_feedforward, max_len=2 * length)
    data = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(stop):
        tokens, _ = induction_batch(batch_size, length, vocab_size, data)
        logits = model(tokens)
        loss = multi_token_loss(logits, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(F.cross_entropy(logits[:, :-1, 0].reshape(-1, vocab_size), tokens[:, 1:].reshape(-1)).item())
    return InductionRun(model, losses)


def _check_model(model: object) -> None:
    if not isinstance(model, MultiTokenLM):
        raise TypeError(f"model must be a MultiTokenLM, got {type(model).__name__}")
