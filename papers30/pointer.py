"""Pointer networks: an LSTM decoder whose output is a position in its input (chapter 6).

Vinyals, Fortunato and Jaitly (2015) replace the fixed output vocabulary of a
sequence-to-sequence model by a softmax over the input positions: at each
decoder step the additive attention scores of
:class:`papers30.attention.AdditiveAttention` (eq. (ptr-score) of chapter 6)
*are* the output distribution, eq. (ptr-softmax). Chapter 8
(Read-Process-Write, *Order Matters*) reuses :class:`PointerDecoder` as its
"write" block with a different, order-invariant encoder.

* :class:`PointerDecoder`: given a memory ``(B, N, M)`` to point into, the
  features fed back for each slot ``(B, N, D)`` and an initial LSTM state,
  computes teacher-forced log-probabilities and greedy decodes, with masks for
  padding and for slots that may not be chosen twice;
* :class:`PointerNetwork`: the paper's model, an LSTM encoder over the input
  sequence (with a learned end-of-sequence slot in front) and a
  :class:`PointerDecoder`, for outputs of variable length such as a convex
  hull;
* :class:`VocabularyDecoder` and :class:`Seq2SeqNetwork`: the paper's
  baselines, the same encoder and decoder LSTMs with a *fixed* output
  vocabulary of ``V`` position symbols (a softmax layer), with or without
  attention over the encoder states (chapter 6's control);
* :func:`hull_targets` turns index sequences into padded targets for them;
* :func:`fit_hulls` trains any of them on convex hulls, drawing the same
  batches for every model given the same seed.

Shapes: ``B`` batch, ``N`` input positions (memory slots), ``T`` output
steps, ``D`` input (fed-back) width, ``M`` memory width, ``H`` decoder hidden
width, ``A`` attention width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from papers30 import _checks
from papers30.attention import AdditiveAttention
from papers30.recurrent import LSTMCell
from papers30.runtime import generator
from papers30.training import History, fit

IGNORE = -100  # target value of padding steps (as torch's ignore_index)
_FUSED: dict[tuple[int, int, str], nn.LSTM] = {}  # parameter-free shells for run_lstm_cell, one per shape


def run_lstm_cell(
    cell: LSTMCell, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Run ``cell`` over a whole sequence ``x (B, T, D)`` from ``state = (h, c)``, each ``(B, H)``.

    Returns ``(outputs (B, T, H), (h_T, c_T))``, the same as calling the cell
    ``T`` times (the tests check it), but computed by torch's fused LSTM kernel
    with the cell's own weights (``torch.func.functional_call``): one call
    instead of ``T`` small ones, which is what makes training affordable on a CPU.
    """
    if not isinstance(cell, LSTMCell):
        raise TypeError(f"cell must be an LSTMCell, got {type(cell).__name__}")
    _checks.tensor("x", x, ndim=3, kind="float")
    _checks.size_matches("x", x.shape[-1], cell.input_size, "feature size (the cell's input_size)")
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise TypeError(f"state must be a pair (h, c) of tensors, got {type(state).__name__}")
    for name, t in zip(("state[0] (h)", "state[1] (c)"), state):
        _checks.tensor(name, t, ndim=2, kind="float")
        _checks.size_matches(name, tuple(t.shape), (x.shape[0], cell.hidden_size), "shape (B, H)")
    key = (cell.input_size, cell.hidden_size, x.device.type)
    if key not in _FUSED:
        _FUSED[key] = nn.LSTM(cell.input_size, cell.hidden_size, batch_first=True).to(x.device)
    weights = {f"{name}_l0": getattr(cell, name) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    h, c = state
    out, (h_n, c_n) = functional_call(_FUSED[key], weights, (x, (h[None], c[None])))
    return out, (h_n[0], c_n[0])


class PointerDecoder(nn.Module):
    """An LSTM decoder whose output at each step is a distribution over ``N`` memory slots.

    Step ``t`` feeds the features ``x_{c_{t-1}}`` of the slot chosen at step
    ``t-1`` (a learned ``start`` vector at ``t = 0``) into an LSTM cell, and
    scores every memory slot with additive attention against the new hidden
    state ``d_t``; the log-softmax of the scores is the output, eq. (ptr-softmax).

    With ``feed_chosen=False`` every step is fed the learned ``start`` vector
    instead, so the decoder learns nothing from its own choices: what it
    knows of the input comes from its initial state and from attention.

    With ``glimpse=True`` (chapter 8, Vinyals, Bengio and Kudlur's "glimpse")
    each step first reads the memory with a second additive attention,
    ``g_t = sum_j softmax_j(w^T tanh(U_1 e_j + U_2 d_t)) e_j``, and points
    with the query ``[d_t ; g_t]`` instead of ``d_t``, eq. (glimpse).

    Args:
        input_size: ``D``, width of the features fed back for a chosen slot.
        memory_size: ``M``, width of the memory slots pointed at.
        hidden_size: ``H``, the LSTM width.
        attention_size: ``A``, the width of the additive attention (default ``H``).
        glimpse: read the memory once before pointing (default off).
        feed_chosen: feed back the features of the chosen slot (default on).
    """

    def __init__(
        self,
        input_size: int,
        memory_size: int,
        hidden_size: int,
        attention_size: int | None = None,
        glimpse: bool = False,
        feed_chosen: bool = True,
    ) -> None:
        super().__init__()
        _checks.positive_int("input_size", input_size)
        _checks.positive_int("memory_size", memory_size)
        _checks.positive_int("hidden_size", hidden_size)
        attention_size = hidden_size if attention_size is None else attention_size
        _checks.positive_int("attention_size", attention_size)
        if not isinstance(glimpse, bool):
            raise TypeError(f"glimpse must be a bool, got {type(glimpse).__name__}")
        if not isinstance(feed_chosen, bool):
            raise TypeError(f"feed_chosen must be a bool, got {type(feed_chosen).__name__}")
        self.feed_chosen = feed_chosen
        self.input_size, self.memory_size, self.hidden_size = input_size, memory_size, hidden_size
        self.cell = LSTMCell(input_size, hidden_size)
        query_size = hidden_size + memory_size if glimpse else hidden_size
        self.attention = AdditiveAttention(query_size, memory_size, attention_size)
        self.glimpse = AdditiveAttention(hidden_size, memory_size, attention_size) if glimpse else None
        self.start = nn.Parameter(torch.zeros(input_size).uniform_(-1.0, 1.0))

    # ------------------------------------------------------------------ checks
    def _check(
        self, inputs: object, memory: object, state: object, mask: object
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        _checks.tensor("memory", memory, ndim=3, kind="float")
        _checks.tensor("inputs", inputs, ndim=3, kind="float")
        B, N, _ = memory.shape
        _checks.size_matches("memory", memory.shape[-1], self.memory_size, "feature size")
        _checks.size_matches("inputs", inputs.shape[-1], self.input_size, "feature size")
        if tuple(inputs.shape[:2]) != (B, N):
            raise ValueError(f"inputs must have shape (B, N, D) with (B, N) = {(B, N)}, got {tuple(inputs.shape)}")
        if N == 0:
            raise ValueError("memory must have at least one slot, got N = 0")
        if state is None:
            zeros = memory.new_zeros(B, self.hidden_size)
            state = (zeros, zeros)
        elif not (isinstance(state, tuple) and len(state) == 2):
            raise TypeError(f"state must be a tuple (h, c) or None, got {type(state).__name__}")
        for name, s in (("state[0]", state[0]), ("state[1]", state[1])):
            _checks.tensor(name, s, ndim=2, kind="float")
            if tuple(s.shape) != (B, self.hidden_size):
                raise ValueError(f"{name} must have shape (B, H) = {(B, self.hidden_size)}, got {tuple(s.shape)}")
        if mask is None:
            mask = torch.ones(B, N, dtype=torch.bool, device=memory.device)
        else:
            _checks.tensor("mask", mask, ndim=2, kind="bool")
            if tuple(mask.shape) != (B, N):
                raise ValueError(f"mask must have shape (B, N) = {(B, N)}, got {tuple(mask.shape)}")
            if not bool(mask.any(-1).all()):
                raise ValueError("mask must allow at least one slot in every row")
        return inputs, memory, state, mask

    @staticmethod
    def _gather(inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``inputs[b, index[b]]`` for every row: ``(B, N, D), (B,) -> (B, D)``."""
        return inputs[torch.arange(inputs.shape[0], device=inputs.device), index]

    def keys(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``W_1 e_j`` for every slot, ``(B, N, M) -> (B, N, A)`` (and the glimpse's ``U_1 e_j``, or None).

        They do not depend on the step: computed once, used at every step.
        """
        return self.attention.key_proj(memory), None if self.glimpse is None else self.glimpse.key_proj(memory)

    @staticmethod
    def _scores(
        attention: AdditiveAttention, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``v^T tanh(W_1 e_j + W_2 q)`` from projected keys ``(..., N, A)``; ``-inf`` where ``mask`` is False."""
        hidden = torch.tanh(keys + attention.query_proj(query).unsqueeze(-2))  # (..., N, A)
        return (hidden @ attention.v).masked_fill(~mask, float("-inf"))

    def readout(
        self, h: torch.Tensor, memory: torch.Tensor, keys: tuple[torch.Tensor, torch.Tensor | None], mask: torch.Tensor
    ) -> torch.Tensor:
        """Log-probabilities of the slots from decoder states (unchecked), eqs. (ptr-score)-(ptr-softmax).

        ``h (..., H)``, ``memory (..., N, M)``, ``keys`` from :meth:`keys`
        (each ``(..., N, A)``), ``mask (..., N)`` -> ``(..., N)``; the leading
        dims broadcast, so one call scores one step ``(B,)`` or all steps
        ``(B, T)`` of a teacher-forced pass.
        """
        pointer_keys, glimpse_keys = keys
        query = h
        if self.glimpse is not None:  # eq. (glimpse): read the memory, then point with [d_t ; g_t]
            a = self._scores(self.glimpse, h, glimpse_keys, mask).softmax(dim=-1)
            query = torch.cat([h, (a.unsqueeze(-2) @ memory).squeeze(-2)], dim=-1)
        scores = self._scores(self.attention, query, pointer_keys, mask)  # u_j, eq. (ptr-score)
        return scores.log_softmax(dim=-1)  # eq. (ptr-softmax)

    def step(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        keys: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One decoder step (unchecked): ``x (B, D)`` -> ``(log-probabilities (B, N), (h, c))``."""
        h, c = self.cell(x, state)  # d_t, eq. (ptr-decoder)
        keys = self.keys(memory) if keys is None else keys
        return self.readout(h, memory, keys, mask), (h, c)

    # ----------------------------------------------------------------- public
    def forward(
        self,
        inputs: torch.Tensor,
        memory: torch.Tensor,
        targets: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        exclude_chosen: bool = False,
        end_index: int | None = None,
    ) -> torch.Tensor:
        """Teacher-forced log-probabilities of every slot at every step.

        Args:
            inputs: ``(B, N, D)``, features fed back when a slot is chosen.
            memory: ``(B, N, M)``, the slots pointed at.
            targets: ``(B, T)`` integer slot indices; step ``t`` is fed the
                features of ``targets[:, t-1]``. Entries equal to ``-100``
                (padding after the end of a shorter sequence) are allowed.
            state: initial ``(h, c)``, each ``(B, H)``; zeros if None.
            mask: bool ``(B, N)``, True at slots that exist (False at padding).
            exclude_chosen: also forbid slots already chosen by the targets.
            end_index: a slot that ``exclude_chosen`` never forbids (the end
                of sequence slot, if any).

        Returns:
            ``(B, T, N)`` log-probabilities (``-inf`` at forbidden slots).
        """
        inputs, memory, (h, c), mask = self._check(inputs, memory, state, mask)
        _checks.tensor("targets", targets, ndim=2, kind="int")
        _checks.size_matches("targets", targets.shape[0], memory.shape[0], "batch size")
        N = memory.shape[1]
        if bool(((targets < 0) & (targets != IGNORE)).any()) or bool((targets >= N).any()):
            raise ValueError(f"targets must hold slot indices in [0, {N}) or {IGNORE}, got {targets.tolist()}")
        # Teacher forcing: step t is fed the target of step t-1, so every decoder input is known in advance
        # and the recurrence d_t of eq. (ptr-decoder) runs over the whole sequence in one call.
        if self.feed_chosen:
            fed = inputs.gather(1, targets[:, :-1].clamp(min=0)[..., None].expand(-1, -1, inputs.shape[-1]))
            x = torch.cat([self.start.expand(memory.shape[0], 1, -1), fed], dim=1)  # (B, T, D)
        else:  # the same learned input at every step
            x = self.start.expand(memory.shape[0], targets.shape[1], -1)
        states, _ = run_lstm_cell(self.cell, x, (h, c))  # (B, T, H)
        allowed, masks = mask.clone(), []
        for t in range(targets.shape[1]):  # the slots allowed at each step
            masks.append(allowed)
            if exclude_chosen:
                allowed = self._exclude(allowed, targets[:, t].clamp(min=0), targets[:, t] != IGNORE, end_index)
        # every step's readout at once: (B, T, H) states against (B, 1, N, .) memory
        keys = tuple(None if k is None else k[:, None] for k in self.keys(memory))
        return self.readout(states, memory[:, None], keys, torch.stack(masks, dim=1))

    @staticmethod
    def _exclude(
        allowed: torch.Tensor, chosen: torch.Tensor, active: torch.Tensor, end_index: int | None
    ) -> torch.Tensor:
        """Forbid ``chosen`` in rows where ``active``; never forbid ``end_index``."""
        hit = F.one_hot(chosen, allowed.shape[1]).bool() & active[:, None]
        if end_index is not None:
            hit[:, end_index] = False
        out = allowed & ~hit
        if end_index is None:  # a row with nothing left keeps its last choice (its output is then ignored)
            empty = ~out.any(-1)
            out[empty] = allowed[empty]
        return out

    @torch.no_grad()
    def greedy(
        self,
        inputs: torch.Tensor,
        memory: torch.Tensor,
        steps: int,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        exclude_chosen: bool = True,
        end_index: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding: at each step choose the most probable allowed slot.

        Arguments as in :meth:`forward`; ``steps`` is the number of output
        steps ``T``. With ``end_index``, a row that chooses that slot is
        finished: its later outputs are ``end_index`` too.

        Returns:
            ``(indices (B, T), log-probabilities (B, T, N))``.
        """
        inputs, memory, (h, c), mask = self._check(inputs, memory, state, mask)
        _checks.positive_int("steps", steps)
        if end_index is not None and not 0 <= end_index < memory.shape[1]:
            raise ValueError(f"end_index must be in [0, {memory.shape[1]}), got {end_index}")
        B = memory.shape[0]
        allowed, x = mask.clone(), self.start.expand(B, -1)
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
        picks, logps = [], []
        keys = self.keys(memory)
        for _ in range(steps):
            logp, (h, c) = self.step(x, memory, (h, c), allowed, keys)
            chosen = logp.argmax(dim=-1)
            if end_index is not None:
                chosen = chosen.masked_fill(done, end_index)
                done = done | (chosen == end_index)
            picks.append(chosen)
            logps.append(logp)
            if self.feed_chosen:
                x = self._gather(inputs, chosen)
            if exclude_chosen:
                allowed = self._exclude(allowed, chosen, torch.ones_like(done), end_index)
        return torch.stack(picks, dim=1), torch.stack(logps, dim=1)


class PointerNetwork(nn.Module):
    """The pointer network of Vinyals et al. (2015): LSTM encoder, pointer decoder.

    The encoder, a :class:`papers30.recurrent.LSTMCell` run over the
    sequence (so that a padded row keeps the state of its last real point),
    reads a learned end token followed by the ``N`` input vectors, so slot
    ``0`` of the memory means "stop" and slot ``i >= 1`` means input
    ``i - 1``. Its final state starts the :class:`PointerDecoder`, which
    feeds back the raw input vector of the slot it chose.

    Args:
        input_size: ``D``, the width of an input element (2 for planar points).
        hidden_size: ``H``, encoder and decoder width.
        attention_size: ``A`` (default ``H``).
    """

    END = 0

    def __init__(self, input_size: int, hidden_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        _checks.positive_int("input_size", input_size)
        _checks.positive_int("hidden_size", hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.end = nn.Parameter(torch.zeros(input_size).uniform_(-1.0, 1.0))
        self.encoder = LSTMCell(input_size, hidden_size)
        self.decoder = PointerDecoder(input_size, hidden_size, hidden_size, attention_size)

    def encode(
        self, points: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``points (B, N, D)`` -> ``(inputs (B, N+1, D), memory (B, N+1, H), (h, c), mask (B, N+1))``.

        ``mask (B, N)`` marks real points (True) in a padded batch; padding
        must come after the real points of a row. The end slot is always allowed.
        """
        _checks.tensor("points", points, ndim=3, kind="float")
        _checks.size_matches("points", points.shape[-1], self.input_size, "feature size")
        B, N, _ = points.shape
        if N == 0:
            raise ValueError("points must hold at least one point, got N = 0")
        if mask is None:
            mask = torch.ones(B, N, dtype=torch.bool, device=points.device)
        else:
            _checks.tensor("mask", mask, ndim=2, kind="bool")
            if tuple(mask.shape) != (B, N):
                raise ValueError(f"mask must have shape (B, N) = {(B, N)}, got {tuple(mask.shape)}")
        full = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=points.device), mask], dim=1)
        inputs = torch.cat([self.end.expand(B, 1, -1), points], dim=1)
        h = c = points.new_zeros(B, self.hidden_size)
        if bool(mask.all()):  # no padding: e_j for j = 0 .. N in one call, eq. (ptr-encoder)
            memory, (h, c) = run_lstm_cell(self.encoder, inputs, (h, c))
            return inputs, memory, (h, c), full
        memory = []
        for t in range(N + 1):  # e_j for j = 0 .. N, eq. (ptr-encoder)
            h_new, c_new = self.encoder(inputs[:, t], (h, c))
            keep = full[:, t, None]  # at padding the state stays that of the last real point
            h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
            memory.append(h_new)
        return inputs, torch.stack(memory, dim=1), (h, c), full

    def forward(self, points: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced log-probabilities ``(B, T, N+1)`` of the slots (slot 0 = end).

        ``targets (B, T)`` holds slot indices (``i + 1`` for point ``i``, ``0`` for
        end, ``-100`` for padding), as made by :func:`hull_targets`. Slots
        already chosen are forbidden, as in decoding.
        """
        inputs, memory, state, full = self.encode(points, mask)
        return self.decoder(inputs, memory, targets, state, full, exclude_chosen=True, end_index=self.END)

    def loss(self, points: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood of the target slots (padding ignored)."""
        logp = self(points, targets, mask)
        safe = logp.clamp(min=-1e4)  # -inf at forbidden slots never meets a target
        return F.nll_loss(safe.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    def predict(
        self, points: torch.Tensor, mask: torch.Tensor | None = None, max_steps: int | None = None
    ) -> list[list[int]]:
        """Greedy decoding; returns, per row, the chosen point indices (0-based) before "end".

        ``points (B, N, D)``; ``max_steps`` defaults to ``N + 1``, enough for
        every point and the end slot.
        """
        inputs, memory, state, full = self.encode(points, mask)
        steps = points.shape[1] + 1 if max_steps is None else max_steps
        picks, _ = self.decoder.greedy(inputs, memory, steps, state, full, exclude_chosen=True, end_index=self.END)
        out = []
        for row in picks.tolist():
            seq = []
            for slot in row:
                if slot == self.END:
                    break
                seq.append(slot - 1)
            out.append(seq)
        return out


class VocabularyDecoder(PointerDecoder):
    """The baseline's decoder: the same LSTM and feedback, but a fixed output vocabulary of ``V`` symbols.

    Step ``t`` runs the LSTM cell of :class:`PointerDecoder` on the features
    of the previously chosen slot, then, instead of scoring the memory slots,
    reads out ``V`` logits with a softmax layer, eq. (s2s-output): symbol
    ``j`` *names* slot ``j``, through its own row of output weights. With
    ``attention=True`` the layer reads the decoder state together with an
    attention-weighted read of the memory (Bahdanau et al.'s context), eq.
    (s2s-attention). Only the first ``N`` symbols exist for a memory of ``N``
    slots (the rest are dropped from the softmax), and the masks of
    :class:`PointerDecoder` apply to the symbols as they do to the slots, so
    the baseline decodes under the same rules as the pointer network.

    Args:
        input_size, memory_size, hidden_size, attention_size: as in :class:`PointerDecoder`.
        vocab_size: ``V``, the number of output symbols (the largest ``N`` it can decode).
        attention: read the memory with additive attention before the softmax layer.
    """

    def __init__(
        self,
        input_size: int,
        memory_size: int,
        hidden_size: int,
        vocab_size: int,
        attention: bool = True,
        attention_size: int | None = None,
    ) -> None:
        super().__init__(input_size, memory_size, hidden_size, attention_size)
        _checks.positive_int("vocab_size", vocab_size)
        if not isinstance(attention, bool):
            raise TypeError(f"attention must be a bool, got {type(attention).__name__}")
        self.vocab_size = vocab_size
        if attention:
            self.combine = nn.Linear(hidden_size + memory_size, hidden_size)
        else:
            self.attention = None  # no parameters the model does not use
            self.combine = None
        self.output = nn.Linear(hidden_size, vocab_size)

    def _check(self, inputs, memory, state, mask):  # type: ignore[no-untyped-def]
        checked = super()._check(inputs, memory, state, mask)
        if memory.shape[1] > self.vocab_size:
            raise ValueError(f"memory must have at most vocab_size = {self.vocab_size} slots, the symbols this "
                             f"decoder can name, got N = {memory.shape[1]}")
        return checked

    def keys(self, memory: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        """``W_1 e_j`` for the attention, ``(B, N, A)`` (None without attention), and no glimpse keys."""
        return (None if self.attention is None else self.attention.key_proj(memory)), None

    def readout(
        self, h: torch.Tensor, memory: torch.Tensor, keys: tuple[torch.Tensor | None, None], mask: torch.Tensor
    ) -> torch.Tensor:
        """Log-probabilities of the first ``N`` symbols (unchecked), shapes as in :meth:`PointerDecoder.readout`."""
        features = h
        if self.attention is not None:
            a = self._scores(self.attention, h, keys[0], mask).softmax(dim=-1)  # eq. (s2s-attention)
            context = (a.unsqueeze(-2) @ memory).squeeze(-2)  # (..., M)
            features = torch.tanh(self.combine(torch.cat([h, context], dim=-1)))
        logits = self.output(features)[..., : mask.shape[-1]]  # eq. (s2s-output): symbols 0 .. N-1
        return logits.masked_fill(~mask, float("-inf")).log_softmax(dim=-1)


class Seq2SeqNetwork(PointerNetwork):
    """The paper's baseline: :class:`PointerNetwork`'s encoder with a :class:`VocabularyDecoder`.

    Everything but the output layer is the pointer network's: the learned
    end token in slot ``0``, the LSTM encoder, the decoder LSTM fed the
    point chosen at the previous step, the masks, the loss and greedy
    decoding. The output is a softmax over ``max_points + 1`` fixed symbols
    (``0`` = end, ``i`` = the ``i``-th input point), so it cannot answer for
    more than ``max_points`` points.

    Args:
        input_size: ``D``; hidden_size: ``H``; attention_size: ``A`` (default ``H``).
        max_points: the largest number of input points, ``V - 1``.
        attention: the ``+attention`` variant (default) or the plain LSTM seq2seq.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        max_points: int,
        attention: bool = True,
        attention_size: int | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, attention_size)
        _checks.positive_int("max_points", max_points)
        self.max_points = max_points
        self.decoder = VocabularyDecoder(input_size, hidden_size, hidden_size, max_points + 1, attention,
                                         attention_size)


def hull_targets(sequences: Sequence[Sequence[int]], device: torch.device | str | None = None) -> torch.Tensor:
    """Padded pointer targets ``(B, T)`` from index sequences: point ``i`` -> slot ``i + 1``, then ``0`` (end).

    ``T`` is the longest sequence plus one; shorter rows are padded with ``-100``.
    """
    if not isinstance(sequences, Sequence) or any(not isinstance(s, Sequence) for s in sequences):
        raise TypeError("sequences must be a sequence of sequences of ints")
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence")
    T = max(len(s) for s in sequences) + 1
    out = torch.full((len(sequences), T), IGNORE, dtype=torch.long)
    for b, s in enumerate(sequences):
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in s):
            raise ValueError(f"sequences must hold non-negative ints, got {list(s)}")
        out[b, : len(s)] = torch.tensor([i + 1 for i in s], dtype=torch.long)
        out[b, len(s)] = 0
    return out.to(device) if device is not None else out


def fit_hulls(
    model: PointerNetwork,
    train: dict[int, tuple[torch.Tensor, list[list[int]]]],
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    *,
    evaluate: Callable[[], dict[str, float]] | None = None,
    every: int = 100,
    clip: float = 1.0,
    stop_after: int | None = None,
) -> History:
    """Train ``model`` on convex hulls with Adam, a cosine-decaying learning rate and gradient clipping.

    ``train`` maps a number of points ``n`` to a pool ``(points (P, n, 2),
    hulls)`` as made by :func:`papers30.data.geometry.hull_dataset`. Step
    ``t`` trains on a batch of ``batch`` sets from the pool of the ``t``-th
    size in turn; the batch is drawn by :func:`papers30.runtime.generator`
    of ``seed``, so every model trained with the same ``seed`` and pools sees
    the same batches in the same order. Returns the
    :class:`papers30.training.History` of :func:`papers30.training.fit`
    (``evaluate``, ``every`` and ``stop_after`` are passed on).
    """
    if not isinstance(model, PointerNetwork):
        raise TypeError(f"model must be a PointerNetwork (or Seq2SeqNetwork), got {type(model).__name__}")
    if not isinstance(train, dict) or not train:
        raise ValueError("train must be a non-empty dict {n: (points, hulls)}")
    _checks.positive_int("batch", batch)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    sizes = sorted(train)
    draw = generator(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)

    # Each pool's targets are padded once; a batch takes its rows and the columns its longest hull needs,
    # which is what hull_targets would make from the batch's own hulls.
    pools = {n: (points, hull_targets(hulls), torch.tensor([len(h) for h in hulls])) for n, (points, hulls) in train.items()}

    def loss_fn(step: int) -> torch.Tensor:
        points, targets, lengths = pools[sizes[step % len(sizes)]]
        idx = torch.randint(0, len(lengths), (batch,), generator=draw)
        width = int(lengths[idx].max()) + 1
        return model.loss(points[idx].to(device), targets[idx, :width].to(device))

    return fit(model, optimizer, loss_fn, steps, scheduler=schedule, clip=clip, evaluate=evaluate, every=every,
               stop_after=stop_after)
