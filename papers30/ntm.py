"""The Neural Turing Machine: a controller that reads and writes an external memory.

Chapter 20 (Graves, Wayne and Danihelka, *Neural Turing Machines*, 2014).
Every step of the addressing pipeline is its own public function, so each can
be read next to its equation and tested on its own:

* :func:`content_addressing`: cosine similarity to a key, sharpened by a key
  strength ``beta`` and normalised by a softmax, eq. (ntm-content);
* :func:`interpolate`: a gate ``g`` blends the content weighting with the
  previous step's weighting, eq. (ntm-gate);
* :func:`circular_shift`: a circular convolution with a small shift
  distribution moves the focus, eq. (ntm-shift);
* :func:`sharpen`: raising to a power ``gamma >= 1`` and renormalising undoes
  the blur of the shift, eq. (ntm-sharpen);
* :func:`address`: the four in order;
* :func:`read` and :func:`write`: the weighted read, eq. (ntm-read), and the
  erase-then-add write, eq. (ntm-write).

:class:`NTMCell` puts them around a controller, an LSTM (the cell of
:mod:`papers30.recurrent`) or a feedforward layer, as in the paper's two
variants, with one read and one write head; :class:`NTM` runs it over a
sequence, and :class:`LSTMSequence` is the plain-LSTM baseline with the same
interface. :func:`bit_errors` scores the copy task, :func:`train_copy` trains
either model on it, and :func:`copy_loop` summarises where the heads of a
trained NTM went (the paper's Fig. 6).

Shapes: ``B`` batch, ``T`` time steps, ``D`` input width, ``O`` output
width, ``H`` controller width, ``N`` memory slots, ``M`` slot width, ``S``
number of allowed shifts (odd, centred on zero).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.data.synthetic import copy_task
from papers30.recurrent import LSTM, LSTMCell
from papers30.runtime import get_device
from papers30.training import History, fit

EPS = 1e-8


def _weighting(name: str, w: object) -> torch.Tensor:
    return _checks.tensor(name, w, ndim=2, kind="float")


def _per_row(name: str, x: object, batch: int) -> torch.Tensor:
    """A scalar per batch row, ``(B,)`` or ``(B, 1)``, returned as ``(B, 1)``."""
    t = _checks.tensor(name, x, ndim=(1, 2), kind="float")
    if t.dim() == 2 and t.shape[1] != 1:
        raise ValueError(f"{name} must have shape (B,) or (B, 1), got {tuple(t.shape)}")
    t = t.reshape(-1, 1)
    _checks.size_matches(name, t.shape[0], batch, "batch size")
    return t


def content_addressing(memory: torch.Tensor, key: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Content weighting, eq. (ntm-content): ``softmax_i(beta * cos(key, memory_i))``.

    ``memory (B, N, M)``, ``key (B, M)``, ``beta (B,)`` or ``(B, 1)``, ``beta >= 0``.
    Returns ``w (B, N)``, each row summing to one.
    """
    mem = _checks.tensor("memory", memory, ndim=3, kind="float")
    k = _checks.tensor("key", key, ndim=2, kind="float")
    _checks.size_matches("key", k.shape[0], mem.shape[0], "batch size")
    _checks.size_matches("key", k.shape[1], mem.shape[2], "width")
    b = _per_row("beta", beta, mem.shape[0])
    dot = (mem * k.unsqueeze(1)).sum(-1)  # (B, N): k . M_i
    norms = mem.norm(dim=-1) * k.norm(dim=-1, keepdim=True)  # (B, N): |k| |M_i|
    similarity = dot / (norms + EPS)
    return torch.softmax(b * similarity, dim=-1)


def interpolate(w_content: torch.Tensor, w_prev: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Gated weighting, eq. (ntm-gate): ``g * w_content + (1 - g) * w_prev``.

    ``w_content (B, N)``, ``w_prev (B, N)``, ``gate (B,)`` or ``(B, 1)`` in ``[0, 1]``.
    Returns ``(B, N)``.
    """
    wc = _weighting("w_content", w_content)
    wp = _weighting("w_prev", w_prev)
    if wp.shape != wc.shape:
        raise ValueError(f"w_prev must have shape {tuple(wc.shape)}, got {tuple(wp.shape)}")
    g = _per_row("gate", gate, wc.shape[0])
    return g * wc + (1 - g) * wp


def circular_shift(w: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate a weighting by a shift distribution, eq. (ntm-shift): circular convolution.

    ``w (B, N)``; ``shift (B, S)`` with ``S`` odd, column ``k`` the weight of a
    shift by ``k - S // 2`` slots (so the middle column is "stay"). Returns
    ``out (B, N)`` with ``out[b, i] = sum_k shift[b, k] * w[b, (i - k + S // 2) mod N]``.
    """
    w = _weighting("w", w)
    s = _checks.tensor("shift", shift, ndim=2, kind="float")
    _checks.size_matches("shift", s.shape[0], w.shape[0], "batch size")
    S = s.shape[1]
    if S % 2 == 0:
        raise ValueError(f"shift must have an odd number of columns, got {S}")
    # one rotated copy of w per allowed offset -R .. R, weighted by its probability
    return sum(s[:, k : k + 1] * torch.roll(w, k - S // 2, dims=1) for k in range(S))


def sharpen(w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Sharpened weighting, eq. (ntm-sharpen): ``w_i^gamma / sum_j w_j^gamma``.

    ``w (B, N)`` non-negative, ``gamma (B,)`` or ``(B, 1)``, ``gamma >= 1``.
    Returns ``(B, N)``. Computed as ``softmax(gamma * log w)``, the same
    ratio without overflow; weights are floored at a tiny epsilon so that the
    logarithm and the gradient with respect to ``gamma`` stay finite where
    ``w_i = 0``.
    """
    w = _weighting("w", w)
    g = _per_row("gamma", gamma, w.shape[0])
    return torch.softmax(g * w.clamp_min(EPS).log(), dim=-1)


def address(
    memory: torch.Tensor,
    key: torch.Tensor,
    beta: torch.Tensor,
    gate: torch.Tensor,
    shift: torch.Tensor,
    gamma: torch.Tensor,
    w_prev: torch.Tensor,
) -> torch.Tensor:
    """The full addressing pipeline: content, interpolation, shift, sharpening.

    Shapes as in the four steps; returns the head's weighting ``w (B, N)``.
    """
    w = content_addressing(memory, key, beta)
    w = interpolate(w, w_prev, gate)
    w = circular_shift(w, shift)
    return sharpen(w, gamma)


def read(memory: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The read vector, eq. (ntm-read): ``r = sum_i w_i M_i``.

    ``memory (B, N, M)``, ``w (B, N)``; returns ``r (B, M)``.
    """
    mem = _checks.tensor("memory", memory, ndim=3, kind="float")
    w = _weighting("w", w)
    if w.shape != mem.shape[:2]:
        raise ValueError(f"w must have shape (B, N) = {tuple(mem.shape[:2])}, got {tuple(w.shape)}")
    return (w.unsqueeze(-1) * mem).sum(1)


def write(memory: torch.Tensor, w: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """Erase then add, eq. (ntm-write): ``M_i' = M_i * (1 - w_i e) + w_i a``.

    ``memory (B, N, M)``, ``w (B, N)``, ``erase (B, M)`` in ``[0, 1]``,
    ``add (B, M)``. Returns the new memory ``(B, N, M)``; the input is not
    modified.
    """
    mem = _checks.tensor("memory", memory, ndim=3, kind="float")
    w = _weighting("w", w)
    if w.shape != mem.shape[:2]:
        raise ValueError(f"w must have shape (B, N) = {tuple(mem.shape[:2])}, got {tuple(w.shape)}")
    for name, v in (("erase", erase), ("add", add)):
        v = _checks.tensor(name, v, ndim=2, kind="float")
        if v.shape != (mem.shape[0], mem.shape[2]):
            want = (mem.shape[0], mem.shape[2])
            raise ValueError(f"{name} must have shape (B, M) = {want}, got {tuple(v.shape)}")
    w = w.unsqueeze(-1)  # (B, N, 1)
    return mem * (1 - w * erase.unsqueeze(1)) + w * add.unsqueeze(1)


@_checks.record
class NTMState(NamedTuple):
    """Everything an :class:`NTMCell` carries from one step to the next.

    ``h, c (B, H)`` controller state (``c`` stays zero for a feedforward
    controller); ``memory (B, N, M)``; ``w_read, w_write (B, N)`` the heads'
    last weightings; ``r (B, M)`` the last read vector.
    """

    h: torch.Tensor
    c: torch.Tensor
    memory: torch.Tensor
    w_read: torch.Tensor
    w_write: torch.Tensor
    r: torch.Tensor


CONTROLLERS = ("lstm", "feedforward")


class NTMCell(nn.Module):
    """One step of an NTM with one read head and one write head.

    At each step the controller reads ``[x_t, r_{t-1}]``: an LSTM cell
    (``controller="lstm"``) or one ``tanh`` layer with no state of its own
    (``"feedforward"``), the paper's two variants. A linear layer of its
    output emits each head's ``key, beta, gate, shift, gamma`` (the write
    head also ``erase`` and ``add``); the write head updates the memory, then
    the read head reads it; the output is a linear function of the controller
    output and the new read vector.

    ``forward(x (B, D), state | None) -> (y (B, O), state)``.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        controller_size: int = 64,
        memory_slots: int = 32,
        memory_width: int = 8,
        shift_range: int = 1,
        controller: str = "lstm",
    ) -> None:
        super().__init__()
        for name, v in (("input_size", input_size), ("output_size", output_size),
                        ("controller_size", controller_size), ("memory_slots", memory_slots),
                        ("memory_width", memory_width)):
            _checks.positive_int(name, v)
        if isinstance(shift_range, bool) or not isinstance(shift_range, int):
            raise TypeError(f"shift_range must be an int, got {type(shift_range).__name__}")
        if not 0 <= shift_range < memory_slots:
            raise ValueError(f"shift_range must be in [0, memory_slots), got {shift_range}")
        _checks.one_of("controller", controller, CONTROLLERS)
        self.input_size, self.output_size = input_size, output_size
        self.N, self.M, self.S = memory_slots, memory_width, 2 * shift_range + 1
        self.controller_kind, self.controller_size = controller, controller_size
        if controller == "lstm":
            self.controller = LSTMCell(input_size + memory_width, controller_size)
        else:
            self.controller = nn.Linear(input_size + memory_width, controller_size)
        self.head_sizes = [memory_width, 1, 1, self.S, 1]  # key, beta, gate, shift, gamma
        self.read_head = nn.Linear(controller_size, sum(self.head_sizes))
        self.write_head = nn.Linear(controller_size, sum(self.head_sizes) + 2 * memory_width)
        self.output = nn.Linear(controller_size + memory_width, output_size)

    def initial_state(self, batch: int, like: torch.Tensor) -> NTMState:
        """The start state: zero controller, memory filled with ``1e-6``, both heads on slot 0."""
        zeros = like.new_zeros(batch, self.controller_size)
        w0 = like.new_zeros(batch, self.N)
        w0[:, 0] = 1.0
        memory = like.new_full((batch, self.N, self.M), 1e-6)
        return NTMState(zeros, zeros, memory, w0, w0.clone(), like.new_zeros(batch, self.M))

    def _address(self, params: torch.Tensor, memory: torch.Tensor, w_prev: torch.Tensor) -> torch.Tensor:
        key, beta, gate, shift, gamma = params.split(self.head_sizes, dim=-1)
        return address(memory, torch.tanh(key), F.softplus(beta), torch.sigmoid(gate),
                       torch.softmax(shift, dim=-1), 1 + F.softplus(gamma), w_prev)

    def _control(self, inputs: torch.Tensor, s: NTMState) -> tuple[torch.Tensor, torch.Tensor]:
        if self.controller_kind == "lstm":
            return self.controller(inputs, (s.h, s.c))
        return torch.tanh(self.controller(inputs)), s.c

    def forward(self, x: torch.Tensor, state: NTMState | None = None) -> tuple[torch.Tensor, NTMState]:
        x = _checks.tensor("x", x, ndim=2, kind="float")
        _checks.size_matches("x", x.shape[1], self.input_size, "feature size")
        if state is not None and not isinstance(state, NTMState):
            raise TypeError(f"state must be an NTMState or None, got {type(state).__name__}")
        s = self.initial_state(x.shape[0], x) if state is None else state
        h, c = self._control(torch.cat([x, s.r], dim=-1), s)
        head, erase, add = self.write_head(h).split([sum(self.head_sizes), self.M, self.M], dim=-1)
        w_write = self._address(head, s.memory, s.w_write)
        memory = write(s.memory, w_write, torch.sigmoid(erase), torch.tanh(add))
        w_read = self._address(self.read_head(h), memory, s.w_read)
        r = read(memory, w_read)
        y = self.output(torch.cat([h, r], dim=-1))
        return y, NTMState(h, c, memory, w_read, w_write, r)


class NTM(nn.Module):
    """Run an :class:`NTMCell` over a sequence.

    ``forward(x (B, T, D)) -> (y (B, T, O), w_read (B, T, N), w_write (B, T, N))``;
    the weightings are returned so that they can be plotted.
    """

    def __init__(self, input_size: int, output_size: int, **cell_args: int | str) -> None:
        super().__init__()
        self.cell = NTMCell(input_size, output_size, **cell_args)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = _checks.tensor("x", x, ndim=3, kind="float")
        _checks.size_matches("x", x.shape[2], self.cell.input_size, "feature size")
        state, ys, reads, writes = None, [], [], []
        for t in range(x.shape[1]):
            y, state = self.cell(x[:, t], state)
            ys.append(y), reads.append(state.w_read), writes.append(state.w_write)
        return torch.stack(ys, 1), torch.stack(reads, 1), torch.stack(writes, 1)


class LSTMSequence(nn.Module):
    """The baseline: an LSTM and a linear read-out at every step.

    The LSTM is :class:`papers30.recurrent.LSTM`, or with ``fused=True``
    ``torch.nn.LSTM``, whose parameters have the same names and which
    computes the same function faster (chapter 3 shows the two equal).

    ``forward(x (B, T, D)) -> (y (B, T, O),)``, a one-tuple so that it is
    called like :class:`NTM`.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 64, num_layers: int = 1,
                 fused: bool = False) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("output_size", output_size), ("hidden_size", hidden_size)):
            _checks.positive_int(name, value)
        runner = nn.LSTM if fused else LSTM
        self.lstm = runner(input_size, hidden_size, num_layers, batch_first=True)
        self.output = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = _checks.tensor("x", x, ndim=3, kind="float")
        return (self.output(self.lstm(x)[0]),)


def bit_errors(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Wrong bits per sequence: ``sum_{t, k} [sigmoid(logits) > 1/2] != targets``.

    ``logits (B, T, K)`` and ``targets (B, T, K)`` (bits as 0/1 floats).
    Returns ``(B,)`` float counts.
    """
    y = _checks.tensor("logits", logits, ndim=3, kind="float")
    t = _checks.tensor("targets", targets, ndim=3, kind="float")
    if y.shape != t.shape:
        raise ValueError(f"targets must have shape {tuple(y.shape)}, got {tuple(t.shape)}")
    return ((y > 0).float() != t).float().sum(dim=(1, 2))


def copy_logits(model: nn.Module, inputs: torch.Tensor, length: int) -> torch.Tensor:
    """The outputs a model emits while it should be writing the copy.

    ``model`` maps ``(B, T, D)`` to a tuple whose first item is ``(B, T, O)``
    (an :class:`NTM` or an :class:`LSTMSequence`); ``inputs (B, 2 * length + 1,
    D)`` come from :func:`papers30.data.synthetic.copy_task`. Returns the
    logits of the last ``length`` steps, ``(B, length, O)``.
    """
    x = _checks.tensor("inputs", inputs, ndim=3, kind="float")
    _checks.positive_int("length", length)
    _checks.size_matches("inputs", x.shape[1], 2 * length + 1, "number of steps")
    return model(x)[0][:, length + 1:]


@_checks.typed
def copy_scores(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Held-out scores on copy sequences of one length, without gradients.

    ``inputs (B, 2L + 1, K + 1)`` and ``targets (B, L, K)`` from
    :func:`papers30.data.synthetic.copy_task`, moved to the model's device.
    Returns ``errors`` (mean wrong bits per sequence), ``bit_error_rate``
    (wrong bits over all ``L K`` bits; 0.5 is chance) and ``perfect``
    (fraction of sequences copied without a single wrong bit).
    """
    t = _checks.tensor("targets", targets, ndim=3, kind="float")
    x = _checks.tensor("inputs", inputs, ndim=3, kind="float")
    device = next(model.parameters()).device
    with torch.no_grad():
        wrong = bit_errors(copy_logits(model, x.to(device), t.shape[1]), t.to(device))
    return {"errors": wrong.mean().item(), "bit_error_rate": wrong.mean().item() / (t.shape[1] * t.shape[2]),
            "perfect": (wrong == 0).float().mean().item()}


@_checks.typed
def train_copy(
    model: nn.Module,
    *,
    lengths: tuple[int, int] = (1, 5),
    width: int = 8,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 5e-3,
    data_seed: int = 0,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    every: int = 50,
    until: float | None = None,
    clip: float = 10.0,
    stop_after: int | None = None,
) -> History:
    """Train ``model`` on the copy task with Adam and the cross-entropy of eq. (ntm-loss).

    Each step draws a length uniformly from ``lengths`` (inclusive) and a
    batch of ``batch_size`` sequences of ``width`` bits from a generator
    seeded with ``data_seed``, so two models given the same ``data_seed`` see
    exactly the same batches. Gradients are clipped at norm ``clip``. Every
    ``every`` steps the model is scored on ``validation`` (inputs and targets
    of one length, see :func:`copy_scores`); training stops early once the
    fraction of perfectly copied validation sequences reaches ``until``.
    ``stop_after`` ends the run early without changing anything else (for
    replaying a recorded run). Returns the :class:`papers30.training.History`.
    """
    lo, hi = lengths
    _checks.positive_int("lengths[0]", lo)
    _checks.positive_int("lengths[1]", hi)
    if lo > hi:
        raise ValueError(f"lengths must be (shortest, longest), got {lengths}")
    if until is not None and validation is None:
        raise ValueError("until needs a validation set to stop on")
    device = next(model.parameters()).device
    data = torch.Generator().manual_seed(data_seed)

    def loss_fn(step: int) -> torch.Tensor:
        length = int(torch.randint(lo, hi + 1, (1,), generator=data))
        x, y = copy_task(batch_size, length, width, data)
        return F.binary_cross_entropy_with_logits(copy_logits(model, x.to(device), length), y.to(device))

    evaluate = None
    if validation is not None:
        vx, vy = (t.to(device) for t in validation)
        evaluate = lambda: copy_scores(model, vx, vy)  # noqa: E731
    stop = None if until is None else (lambda m: m["perfect"] >= until)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    return fit(model, optimizer, loss_fn, steps, clip=clip, evaluate=evaluate, every=every, until=stop,
               stop_after=stop_after)


@_checks.record
class CopyRun(NamedTuple):
    """A model trained on the copy task by :func:`copy_run`, with its training history."""

    model: nn.Module
    history: History

    @property
    def losses(self) -> list[float]:
        """Per-step training losses (what :func:`papers30.provenance.traced` keeps)."""
        return self.history.losses


MODELS = ("ntm", "lstm")


@_checks.typed
def copy_run(
    model: str,
    *,
    seed: int,
    model_args: dict[str, int | str] | None = None,
    lengths: list[int] | tuple[int, int] = (1, 5),
    width: int = 8,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 5e-3,
    data_seed: int = 0,
    validation_size: int = 200,
    validation_seed: int = 0,
    every: int = 50,
    stop_after: int | None = None,
) -> CopyRun:
    """Build a model from plain values, train it with :func:`train_copy`, return both.

    ``model`` is ``"ntm"`` (an :class:`NTM` with ``width + 1`` inputs and
    ``width`` outputs, ``model_args`` passed to :class:`NTMCell`) or
    ``"lstm"`` (a fused :class:`LSTMSequence`, ``model_args`` such as
    ``hidden_size``). ``seed`` seeds the initial weights; the validation set
    is ``validation_size`` sequences of the longest training length drawn with
    ``validation_seed``. Every argument is a plain value, so a recorded run
    can be replayed (see :func:`papers30.provenance.traced`). The model is
    placed on :func:`papers30.runtime.get_device`.
    """
    _checks.one_of("model", model, MODELS)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    lo, hi = lengths
    args = dict(model_args or {})
    torch.manual_seed(seed)
    if model == "ntm":
        net: nn.Module = NTM(width + 1, width, **args)
    else:
        net = LSTMSequence(width + 1, width, **args, fused=True)
    net = net.to(get_device())
    validation = copy_task(validation_size, hi, width, torch.Generator().manual_seed(validation_seed))
    history = train_copy(net, lengths=(lo, hi), width=width, steps=steps, batch_size=batch_size, lr=lr,
                         data_seed=data_seed, validation=validation, every=every, stop_after=stop_after)
    return CopyRun(net, history)


@_checks.record
class CopyLoop(NamedTuple):
    """Where the heads of an NTM focused while it copied one sequence (see :func:`copy_loop`)."""

    write_slots: list[int]
    read_slots: list[int]
    steps_by_one: float
    reads_match: float
    read_lead: int
    distinct: float
    sharpness: float


def copy_loop(w_read: torch.Tensor, w_write: torch.Tensor, length: int) -> CopyLoop:
    """Summarise the heads of an NTM on one copy sequence, as the paper reads its Fig. 6.

    ``w_read, w_write (T, N)`` with ``T = 2 * length + 1``: the weightings
    :class:`NTM` returns for one sequence. The focus of a head at a step is
    its most weighted slot. Returns the write head's focus at each input step
    and the read head's at each output step, and these summaries:

    * ``steps_by_one``: fraction of the ``length - 1`` moves of the write
      focus between consecutive input steps that go one slot, all in the
      direction of the first move (on the ring of ``N`` slots);
    * ``reads_match`` and ``read_lead``: the read focus at output step ``t``
      is compared with the write focus at input step ``t + lead`` for
      ``lead`` 0 and 1 (a read may run one step ahead of the output that
      uses it, because the controller sees the read vector at the next
      step); ``reads_match`` is the fraction of compared steps that agree,
      for the ``lead`` that agrees more often (0 on a tie);
    * ``distinct``: distinct write slots over ``length``;
    * ``sharpness``: mean weight of the focus over all those steps (1 for
      one-hot weightings, ``1 / N`` for uniform ones).
    """
    _checks.positive_int("length", length)
    wr = _weighting("w_read", w_read)
    ww = _weighting("w_write", w_write)
    want = (2 * length + 1, ww.shape[1])
    for name, w in (("w_read", wr), ("w_write", ww)):
        if tuple(w.shape) != want:
            raise ValueError(f"{name} must have shape (2 * length + 1, N) = {want}, got {tuple(w.shape)}")
    N = ww.shape[1]
    writes = ww[:length].argmax(-1).tolist()
    reads = wr[length + 1:].argmax(-1).tolist()
    moves = [(b - a) % N for a, b in zip(writes, writes[1:])]
    direction = moves[0] if moves and moves[0] in (1, N - 1) else None
    by_one = sum(m == direction for m in moves) / len(moves) if moves else 1.0
    agree = {}
    for lead in (0, 1):
        pairs = list(zip(reads, writes[lead:]))
        agree[lead] = sum(r == w for r, w in pairs) / len(pairs) if pairs else 0.0
    lead = 1 if agree[1] > agree[0] else 0
    peaks = torch.cat([ww[:length].max(-1).values, wr[length + 1:].max(-1).values])
    return CopyLoop(writes, reads, by_one, agree[lead], lead, len(set(writes)) / length, peaks.mean().item())
