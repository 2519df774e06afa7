"""Slot memories that a recurrent network reads and rewrites at every step.

Chapter 18 (Santoro et al., *Relational Recurrent Neural Networks*, 2018):
the relational memory core (RMC). Its state is a matrix of ``N`` memory slots;
at every step the slots attend to each other and to the new input with
multi-head dot-product attention (chapter 13's
:func:`papers30.attention.attention_weights`, with the layer-normalised query,
key and value projections of the paper's public Sonnet code), pass through a
residual MLP, and are then blended with the old slots by LSTM-style input and
forget gates, one pair of gates per slot and unit, as in that code:

* :class:`MemoryAttention`: the slots attend to the slots and the input row;

* :meth:`RelationalMemory.attend`: the candidate memory, eqs. (rmc-attend)
  and (rmc-mlp);
* :meth:`RelationalMemory.gates`: the input and forget gates, eq. (rmc-gates);
* :func:`gated_update`: the gated blend of old and candidate memory,
  eq. (rmc-update);
* :class:`RelationalRNN` runs the core over a sequence, and
  :class:`MemoryClassifier` puts an MLP read-out on the last step of any
  recurrent runner (the RMC or :class:`papers30.recurrent.LSTM`), so the two
  can be compared with the same head;
* :func:`train_nth_farthest` trains such a classifier on fresh batches of
  the N-th farthest task, and :func:`accuracy` scores it.

Chapter 20's external memory (the Neural Turing Machine) lives in
:mod:`papers30.ntm`.

Shapes: ``B`` batch, ``T`` time steps, ``D_in`` input width, ``N`` memory
slots, ``D`` slot width (the attention's model width), ``H`` heads,
``C`` classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.attention import attention_weights
from papers30.data.synthetic import nth_farthest
from papers30.runtime import generator as seeded_generator
from papers30.training import History, fit


def gated_update(
    memory: torch.Tensor,
    candidate: torch.Tensor,
    input_gate: torch.Tensor,
    forget_gate: torch.Tensor,
) -> torch.Tensor:
    """The LSTM-style slot update ``M' = i * tanh(candidate) + f * M``, eq. (rmc-update).

    All four arguments are ``(B, N, D)``; the gates lie in ``(0, 1)``.
    Returns the next memory ``(B, N, D)``.
    """
    for name, x in (("memory", memory), ("candidate", candidate),
                    ("input_gate", input_gate), ("forget_gate", forget_gate)):
        _checks.tensor(name, x, ndim=3, kind="float")
        if x.shape != memory.shape:
            raise ValueError(f"{name} must have shape {tuple(memory.shape)}, got {tuple(x.shape)}")
    return input_gate * torch.tanh(candidate) + forget_gate * memory


class MemoryAttention(nn.Module):
    """Multi-head attention of ``N`` slots over the slots and one input row, as in the paper's Sonnet code.

    One linear map gives every row its queries, keys and values, ``3D``
    numbers that are layer-normalised together; the ``N`` slots query, all
    ``N + 1`` rows answer, and the ``H`` heads of width ``E = D / H`` are
    concatenated without an output projection. The scores and weights are
    chapter 13's :func:`papers30.attention.attention_weights`,
    ``softmax(q k^T / sqrt(E))``.

    ``forward(memory (B, N, D), row (B, D)) -> (B, N, D)``. After each call
    ``last_weights`` holds the attention weights ``(B, H, N, N + 1)``
    (detached); the last column is the input row.
    """

    def __init__(self, slot_size: int, num_heads: int) -> None:
        super().__init__()
        _checks.positive_int("slot_size", slot_size)
        _checks.positive_int("num_heads", num_heads)
        if slot_size % num_heads:
            raise ValueError(f"slot_size ({slot_size}) must be divisible by num_heads ({num_heads})")
        self.slot_size, self.num_heads = slot_size, num_heads
        self.qkv = nn.Linear(slot_size, 3 * slot_size)
        self.norm = nn.LayerNorm(3 * slot_size)
        self.last_weights: torch.Tensor | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape  # (B, L, D) -> (B, H, L, E)
        return x.view(B, L, self.num_heads, -1).transpose(1, 2)

    def forward(self, memory: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        m = _checks.tensor("memory", memory, ndim=3, kind="float")
        r = _checks.tensor("row", row, ndim=2, kind="float")
        _checks.size_matches("memory", m.shape[-1], self.slot_size, "slot size")
        if tuple(r.shape) != (m.shape[0], self.slot_size):
            raise ValueError(f"row must have shape ({m.shape[0]}, {self.slot_size}), got {tuple(r.shape)}")
        B, N, D = m.shape
        rows = torch.cat([m, r.unsqueeze(1)], dim=1)  # (B, N + 1, D)
        q, k, v = self.norm(self.qkv(rows)).chunk(3, dim=-1)  # each (B, N + 1, D)
        weights = attention_weights(self._heads(q[:, :N]), self._heads(k))  # (B, H, N, N + 1)
        self.last_weights = weights.detach()
        return (weights @ self._heads(v)).transpose(1, 2).reshape(B, N, D)  # heads side by side


class RelationalMemory(nn.Module):
    """One step of the relational memory core: ``(x_t, M_{t-1}) -> (output, M_t)``.

    Args:
        input_size: ``D_in``, the width of one input vector.
        num_slots: ``N``, the number of memory slots.
        slot_size: ``D``, the width of a slot; divisible by ``num_heads``.
        num_heads: ``H``, heads of the slot-to-slot attention.
        forget_bias, input_bias: added to the gates' pre-activations, so
            that at initialisation the slots mostly keep their content
            (``sigmoid(1) = 0.73``), as in the paper's implementation.

    The input is projected to width ``D`` and appended to the slots as one
    more row; queries come from the ``N`` slots, keys and values from all
    ``N + 1`` rows (:class:`MemoryAttention`; computing the input row's query
    too and dropping its output afterwards, as the paper's code does, gives
    the same result with one attention block).
    The memory starts as the identity matrix, cut or zero-padded to
    ``(N, D)`` (:meth:`initial_memory`), so the slots start distinct.
    """

    def __init__(
        self,
        input_size: int,
        num_slots: int,
        slot_size: int,
        num_heads: int,
        forget_bias: float = 1.0,
        input_bias: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("num_slots", num_slots),
                            ("slot_size", slot_size), ("num_heads", num_heads)):
            _checks.positive_int(name, value)
        if slot_size % num_heads:
            raise ValueError(f"slot_size ({slot_size}) must be divisible by num_heads ({num_heads})")
        self.input_size, self.num_slots, self.slot_size = input_size, num_slots, slot_size
        self.forget_bias, self.input_bias = float(forget_bias), float(input_bias)
        self.input_proj = nn.Linear(input_size, slot_size)
        self.attention = MemoryAttention(slot_size, num_heads)
        self.norm1 = nn.LayerNorm(slot_size)
        self.mlp = nn.Sequential(nn.Linear(slot_size, slot_size), nn.ReLU(), nn.Linear(slot_size, slot_size))
        self.norm2 = nn.LayerNorm(slot_size)
        self.gate_input = nn.Linear(slot_size, 2 * slot_size)  # W (W_x x + b_x) + b, shared by all slots
        self.gate_memory = nn.Linear(slot_size, 2 * slot_size, bias=False)  # U tanh(m), per slot

    @property
    def output_size(self) -> int:
        """``N * D``: the width of the flattened memory that :meth:`forward` outputs."""
        return self.num_slots * self.slot_size

    def initial_memory(self, batch_size: int, device: torch.device | None = None,
                       dtype: torch.dtype | None = None) -> torch.Tensor:
        """The identity matrix cut or zero-padded to ``(N, D)``, repeated: ``(B, N, D)``."""
        _checks.positive_int("batch_size", batch_size)
        dtype = dtype if dtype is not None else self.input_proj.weight.dtype
        eye = torch.eye(self.num_slots, self.slot_size, device=device, dtype=dtype)
        return eye.expand(batch_size, -1, -1).clone()

    def _check(self, input: object, memory: object) -> tuple[torch.Tensor, torch.Tensor]:
        x = _checks.tensor("input", input, ndim=2, kind="float")
        m = _checks.tensor("memory", memory, ndim=3, kind="float")
        _checks.size_matches("input", x.shape[1], self.input_size, "feature size")
        if tuple(m.shape[1:]) != (self.num_slots, self.slot_size):
            raise ValueError(f"memory must have shape (B, {self.num_slots}, {self.slot_size}), "
                             f"got {tuple(m.shape)}")
        _checks.size_matches("memory", m.shape[0], x.shape[0], "batch size")
        return x, m

    def attend(self, input: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """The candidate memory ``(B, N, D)`` from ``input (B, D_in)`` and ``memory (B, N, D)``.

        Slots attend to ``[M; W_x x]`` (eq. (rmc-attend)), then a residual
        MLP refines every slot on its own (eq. (rmc-mlp)); both sublayers are
        followed by layer normalisation.
        """
        x, m = self._check(input, memory)
        attended = self.attention(m, self.input_proj(x))  # slots attend to [M; W_x x + b_x]
        m = self.norm1(m + attended)  # eq. (rmc-attend)
        return self.norm2(m + self.mlp(m))  # eq. (rmc-mlp)

    def gates(self, input: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and forget gates ``(i, f)``, each ``(B, N, D)``, eq. (rmc-gates).

        As in the paper's public Sonnet code, the gates read the *projected*
        input ``W_x x + b_x`` (the row appended to the slots) and ``tanh`` of
        each old slot.
        """
        x, m = self._check(input, memory)
        pre = self.gate_input(self.input_proj(x)).unsqueeze(1) + self.gate_memory(torch.tanh(m))  # (B, N, 2D)
        z_i, z_f = pre.chunk(2, dim=-1)
        return torch.sigmoid(z_i + self.input_bias), torch.sigmoid(z_f + self.forget_bias)

    def forward(self, input: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``(output (B, N * D), next memory (B, N, D))``; the output is the flattened memory."""
        candidate = self.attend(input, memory)
        i, f = self.gates(input, memory)
        next_memory = gated_update(memory, candidate, i, f)  # eq. (rmc-update)
        return next_memory.flatten(1), next_memory


class RelationalRNN(nn.Module):
    """The relational memory core run over a sequence, like a recurrent runner.

    ``forward(input (B, T, D_in), memory (B, N, D) | None)
    -> (outputs (B, T, N * D), final memory (B, N, D))``; without ``memory``
    the core starts from :meth:`RelationalMemory.initial_memory`. The
    constructor takes the arguments of :class:`RelationalMemory`.
    """

    def __init__(self, input_size: int, num_slots: int, slot_size: int, num_heads: int,
                 forget_bias: float = 1.0, input_bias: float = 0.0) -> None:
        super().__init__()
        self.cell = RelationalMemory(input_size, num_slots, slot_size, num_heads, forget_bias, input_bias)

    @property
    def output_size(self) -> int:
        """``N * D``, the width of each step's output."""
        return self.cell.output_size

    def forward(self, input: torch.Tensor, memory: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = _checks.tensor("input", input, ndim=3, kind="float")
        if x.shape[1] == 0:
            raise ValueError(f"input must have at least one time step, got shape {tuple(x.shape)}")
        m = self.cell.initial_memory(x.shape[0], x.device, x.dtype) if memory is None else memory
        outputs = []
        for t in range(x.shape[1]):
            out, m = self.cell(x[:, t], m)
            outputs.append(out)
        return torch.stack(outputs, dim=1), m


class MemoryClassifier(nn.Module):
    """A recurrent ``core`` followed by an MLP on its last output: ``(B, T, D_in) -> logits (B, C)``.

    Args:
        core: any runner whose ``forward(input (B, T, D_in))`` returns
            ``(outputs (B, T, F), state)``, e.g. :class:`RelationalRNN` or
            :class:`papers30.recurrent.LSTM`.
        core_size: ``F``, the width of the core's outputs.
        num_classes: ``C``.
        head_size: width of the MLP's hidden layer.
    """

    def __init__(self, core: nn.Module, core_size: int, num_classes: int, head_size: int = 64) -> None:
        super().__init__()
        if not isinstance(core, nn.Module):
            raise TypeError(f"core must be a torch.nn.Module, got {type(core).__name__}")
        for name, value in (("core_size", core_size), ("num_classes", num_classes), ("head_size", head_size)):
            _checks.positive_int(name, value)
        self.core = core
        self.head = nn.Sequential(nn.Linear(core_size, head_size), nn.ReLU(), nn.Linear(head_size, num_classes))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.core(_checks.tensor("input", input, ndim=3, kind="float"))
        return self.head(outputs[:, -1])


def accuracy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of ``targets (B,)`` that ``model(inputs)`` ranks first, in eval mode without gradients."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _checks.tensor("inputs", inputs, kind="float")
    y = _checks.tensor("targets", targets, ndim=1)
    if y.dtype != torch.long:
        raise TypeError(f"targets must be a long tensor of class indices, got {y.dtype}")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(inputs)
    model.train(was_training)
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise ValueError(f"targets must have one entry per row of the logits {tuple(logits.shape)}, got {tuple(y.shape)}")
    return (logits.argmax(-1) == y.to(logits.device)).float().mean().item()


def train_nth_farthest(
    model: nn.Module,
    steps: int,
    lr: float,
    seed: int,
    *,
    batch_size: int = 64,
    n_vectors: int = 4,
    dim: int = 2,
    ranks: Sequence[int] | None = None,
    held_out: tuple[torch.Tensor, torch.Tensor] | None = None,
    every: int = 100,
    stop_after: int | None = None,
) -> History:
    """Train ``model`` (``(B, K, dim + 3K) -> logits (B, K)``) on the N-th farthest task with Adam.

    Every step draws a fresh batch of :func:`papers30.data.synthetic.nth_farthest`
    (``n_vectors`` = ``K``, ``dim``, ``ranks``) from
    :func:`papers30.runtime.generator` ``(seed)``, so two models trained with
    the same ``seed`` see exactly the same batches. With ``held_out = (inputs,
    targets)`` the history's evaluations hold ``"acc"``, the :func:`accuracy`
    on them, every ``every`` steps and after the last. ``stop_after`` ends the
    run early (for replaying its start).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    _checks.positive_int("batch_size", batch_size)
    device = next(model.parameters()).device
    g = seeded_generator(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def loss_fn(step: int) -> torch.Tensor:
        xb, yb = nth_farthest(batch_size, n_vectors, dim, generator=g, ranks=ranks)
        return F.cross_entropy(model(xb.to(device)), yb.to(device))

    evaluate = None
    if held_out is not None:
        inputs, targets = held_out
        inputs, targets = inputs.to(device), targets.to(device)

        def evaluate() -> dict[str, float]:
            return {"acc": accuracy(model, inputs, targets)}

    return fit(model, optimizer, loss_fn, steps, evaluate=evaluate, every=every, stop_after=stop_after)
