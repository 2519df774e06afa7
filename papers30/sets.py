"""Encoding sets: the Read-Process-Write model of chapter 8 and the set2set readout of chapter 12.

Chapter 8 (Vinyals, Bengio and Kudlur, *Order Matters: Sequence to Sequence
for Sets*) reads an unordered input with three blocks:

* **Read** (:class:`ReadBlock`): each element ``x_i`` is embedded on its own
  into a memory vector ``m_i``, so the memory is a *set* of rows whose order
  carries no information;
* **Process** (:class:`ProcessBlock`): an LSTM that takes no external input
  runs for ``P`` steps, each time attending over the memory by content and
  feeding what it read back to itself, eqs. (proc-lstm)-(proc-star). Its
  output ``q*_P`` does not depend on the order of the memory rows;
* **Write**: the pointer decoder of chapter 6 (:mod:`papers30.pointer`),
  started from ``q*_P``, points at the elements in the output order.

:class:`SetPointerModel` puts the three together for sorting numbers, and
:class:`SequencePointerModel` is the order-sensitive baseline of the same
chapter (an LSTM encoder reads the elements one after another, as in a
pointer network). Chapter 12 (Gilmer et al., message passing) reuses
:class:`ProcessBlock` as its *set2set* readout over the nodes of a graph,
with a mask for the padding nodes of a batch of graphs of different sizes;
:data:`Set2Set` is the same class under that name. :func:`fit_sorting`
trains either model on sorting, drawing the same batches for every model
given the same seed; :func:`train_sorter` builds and trains one from plain
arguments, so that a recorded run can replay it.

Shapes: ``B`` batch, ``N`` set elements (memory slots), ``D`` memory width,
``P`` process steps, ``H`` decoder width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from papers30 import _checks
from papers30.attention import attention_weights
from papers30.data.synthetic import sorting_task
from papers30.pointer import PointerDecoder
from papers30.recurrent import LSTM, LSTMCell
from papers30.runtime import generator, get_device, seed_everything
from papers30.training import History, fit


def _check_memory(memory: object, mask: object, width: int | None = None) -> None:
    """Validate ``memory (B, N, D)`` and ``mask (B, N)`` (bool, True = a real element)."""
    _checks.tensor("memory", memory, ndim=3, kind="float")
    if width is not None:
        _checks.size_matches("memory", memory.shape[-1], width, "feature size")
    if memory.shape[1] == 0:
        raise ValueError("memory must hold at least one element per set, got N = 0")
    if mask is not None:
        _checks.tensor("mask", mask, ndim=2, kind="bool")
        if tuple(mask.shape) != tuple(memory.shape[:2]):
            raise ValueError(f"mask must have shape {tuple(memory.shape[:2])}, got {tuple(mask.shape)}")
        if not bool(mask.any(dim=1).all()):
            raise ValueError("mask must keep at least one element of every set")


class ProcessBlock(nn.Module):
    """The process block (set2set): ``P`` steps of content attention read by an input-less LSTM.

    With ``q*_0 = 0`` and zero LSTM state, each step ``t = 1 .. P`` computes

    * ``q_t = LSTM(q*_{t-1})``, eq. (proc-lstm): the query, ``(B, D)``;
    * ``a_{t,i} = softmax_i <m_i, q_t>``, eq. (proc-attn): attention over the
      memory rows, padding rows excluded;
    * ``r_t = sum_i a_{t,i} m_i``, eq. (proc-read): the read-out, ``(B, D)``;
    * ``q*_t = [q_t, r_t]``, eq. (proc-star): ``(B, 2D)``.

    Every step touches the memory only through the weighted sum ``r_t``, so
    ``q*_P`` is invariant to any reordering of the memory rows (and of the
    mask with them). With ``steps=0`` the block returns ``q*_0 = 0``.

    Args:
        input_size: ``D``, the width of a memory row.
        steps: ``P >= 0``, the number of process steps.

    ``forward(memory (B, N, D), mask (B, N) | None) -> q*_P (B, 2D)``. After
    each forward pass ``last_weights`` holds the attention ``(B, P, N)``
    (detached).
    """

    def __init__(self, input_size: int, steps: int) -> None:
        super().__init__()
        _checks.positive_int("input_size", input_size)
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise TypeError(f"steps must be an int, got {type(steps).__name__}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.input_size, self.steps = input_size, steps
        self.output_size = 2 * input_size
        self.lstm = LSTMCell(2 * input_size, input_size)
        self.last_weights: torch.Tensor | None = None

    def forward(self, memory: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``q*_P (B, 2D)`` for ``memory (B, N, D)``; ``mask (B, N)`` is True at real elements."""
        _check_memory(memory, mask, self.input_size)
        B, N, D = memory.shape
        q_star = memory.new_zeros(B, 2 * D)
        state = (memory.new_zeros(B, D), memory.new_zeros(B, D))
        allowed = None if mask is None else mask[:, None, :]  # (B, 1, N)
        weights = []
        for _ in range(self.steps):
            state = self.lstm(q_star, state)
            q = state[0]  # eq. (proc-lstm)
            a = attention_weights(q[:, None, :], memory, attn_mask=allowed, scale=1.0)  # eq. (proc-attn)
            r = (a @ memory).squeeze(1)  # eq. (proc-read): (B, D)
            q_star = torch.cat([q, r], dim=-1)  # eq. (proc-star)
            weights.append(a.squeeze(1).detach())
        self.last_weights = torch.stack(weights, dim=1) if weights else memory.new_zeros(B, 0, N)
        return q_star


Set2Set = ProcessBlock
"""The name chapter 12 uses for :class:`ProcessBlock` (Gilmer et al.'s set2set readout)."""


class ReadBlock(nn.Module):
    """The read block: embed every element on its own, ``m_i = W_2 relu(W_1 x_i + b_1) + b_2``.

    ``forward(x (B, N, F)) -> memory (B, N, D)``; the same weights are applied
    to every element, so reordering the elements reorders the memory rows
    and nothing else (permutation equivariance).
    """

    def __init__(self, in_features: int, width: int) -> None:
        super().__init__()
        _checks.positive_int("in_features", in_features)
        _checks.positive_int("width", width)
        self.in_features, self.width = in_features, width
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``memory (B, N, D)`` for elements ``x (B, N, F)``."""
        _checks.tensor("x", x, ndim=3, kind="float")
        _checks.size_matches("x", x.shape[-1], self.in_features, "feature size")
        return self.net(x)


# ------------------------------------------------------- pointer models for sorting


def _check_elements(x: object, in_features: int) -> torch.Tensor:
    """``x (B, N)`` or ``(B, N, F)`` -> ``(B, N, F)``."""
    _checks.tensor("x", x, ndim=(2, 3), kind="float")
    x = x.unsqueeze(-1) if x.dim() == 2 else x
    _checks.size_matches("x", x.shape[-1], in_features, "feature size")
    if x.shape[1] == 0:
        raise ValueError("x must hold at least one element per set, got N = 0")
    return x


class _PointerModel(nn.Module):
    """Shared read and write blocks; subclasses define :meth:`encode`."""

    def __init__(
        self,
        in_features: int,
        width: int,
        hidden_size: int,
        memory_size: int,
        exclude_chosen: bool,
        glimpse: bool,
        feed_chosen: bool = True,
    ) -> None:
        super().__init__()
        _checks.positive_int("hidden_size", hidden_size)
        if not isinstance(exclude_chosen, bool):
            raise TypeError(f"exclude_chosen must be a bool, got {type(exclude_chosen).__name__}")
        self.in_features, self.width, self.hidden_size = in_features, width, hidden_size
        self.exclude_chosen = exclude_chosen
        self.read = ReadBlock(in_features, width)
        self.write = PointerDecoder(width, memory_size, hidden_size, glimpse=glimpse, feed_chosen=feed_chosen)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x (B, N, F)`` -> ``(embeddings (B, N, D), memory (B, N, M), (h, c))``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probabilities ``(B, T, N)`` of pointing at each element.

        ``x (B, N)`` or ``(B, N, F)``; ``targets (B, T)`` are element indices
        (for sorting, ``T = N`` and ``targets`` is the argsort). With
        ``exclude_chosen`` an element already pointed at cannot be chosen again.
        """
        x = _check_elements(x, self.in_features)
        embedded, memory, state = self.encode(x)
        return self.write(embedded, memory, targets, state, exclude_chosen=self.exclude_chosen)

    def loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the target indices, per output step."""
        logp = self(x, targets)
        return -logp.gather(-1, targets[..., None]).mean()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Greedy decoding: indices ``(B, T)`` (``T = N`` by default); repeats only without ``exclude_chosen``."""
        x = _check_elements(x, self.in_features)
        embedded, memory, state = self.encode(x)
        steps = x.shape[1] if steps is None else steps
        picks, _ = self.write.greedy(embedded, memory, steps, state, exclude_chosen=self.exclude_chosen)
        return picks


class SetPointerModel(_PointerModel):
    """Read-Process-Write: an order-invariant encoder and a pointer decoder (chapter 8).

    Read embeds each element (:class:`ReadBlock`), process runs ``P`` steps
    of :class:`ProcessBlock` over the embeddings, and the write block (a
    :class:`papers30.pointer.PointerDecoder`) starts from
    ``(h_0, c_0) = tanh(W q*_P + b)`` and points into the embeddings.

    Args:
        in_features: ``F``, features per element (1 for numbers).
        width: ``D``, the memory width.
        hidden_size: ``H``, the decoder width.
        steps: ``P >= 0``, process steps.
        exclude_chosen: forbid pointing twice at one element. Off by default:
            with it, sorting reduces to "point at the smallest element left",
            which needs no memory of the output so far.
        glimpse: the write block reads the memory once before each pointer
            (:class:`papers30.pointer.PointerDecoder`); off by default.
        feed_chosen: the write block is fed back the element it chose (on by
            default, as in a pointer network). Off, it is fed a constant, so
            without a glimpse everything it knows of the set is ``q*_P``.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        hidden_size: int,
        steps: int,
        exclude_chosen: bool = False,
        glimpse: bool = False,
        feed_chosen: bool = True,
    ) -> None:
        super().__init__(in_features, width, hidden_size, width, exclude_chosen, glimpse, feed_chosen)
        self.process = ProcessBlock(width, steps)
        self.init_state = nn.Linear(2 * width, 2 * hidden_size)

    def set_encoding(self, x: torch.Tensor) -> torch.Tensor:
        """``q*_P (B, 2D)`` for the elements ``x (B, N)`` or ``(B, N, F)``."""
        return self.process(self.read(_check_elements(x, self.in_features)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        memory = self.read(x)
        h, c = torch.tanh(self.init_state(self.process(memory))).chunk(2, dim=-1)
        return memory, memory, (h, c)


class SequencePointerModel(_PointerModel):
    """The order-sensitive baseline: the same read and write blocks around an LSTM encoder.

    The LSTM (:class:`papers30.recurrent.LSTM`) reads the embedded elements
    in the order given; its outputs ``(B, N, H)`` are the memory the decoder
    points into and its final state starts the decoder, as in a pointer
    network (chapter 6). Reordering the input changes what it computes.

    Args:
        in_features: ``F``; width: ``D``; hidden_size: ``H``; exclude_chosen,
            glimpse, feed_chosen: as in :class:`SetPointerModel`.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        hidden_size: int,
        exclude_chosen: bool = False,
        glimpse: bool = False,
        feed_chosen: bool = True,
    ) -> None:
        super().__init__(in_features, width, hidden_size, hidden_size, exclude_chosen, glimpse, feed_chosen)
        self.encoder = LSTM(width, hidden_size, batch_first=True)

    def set_encoding(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's final hidden state ``(B, H)``, the baseline's summary of the input."""
        return self.encode(_check_elements(x, self.in_features))[2][0]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        embedded = self.read(x)
        outputs, (h, c) = self.encoder(embedded)
        return embedded, outputs, (h[-1], c[-1])


def fit_sorting(
    model: _PointerModel,
    n: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    *,
    optimizer: str = "adam",
    clip: float = 1.0,
    evaluate: Callable[[], dict[str, float]] | None = None,
    every: int = 100,
    stop_after: int | None = None,
) -> History:
    """Train ``model`` to sort sets of ``n`` numbers with a cosine-decaying learning rate and clipping.

    ``optimizer`` is ``"adam"`` (Adam) or ``"sgd"`` (plain SGD, no momentum:
    the recipe of the authors' pointer-network paper, which trained with
    learning rate 1.0, batches of 128 and the gradient norm clipped at 2).
    Either way the learning rate decays on a cosine from ``lr`` to zero over
    ``steps`` and the gradient norm is clipped at ``clip``. Every step draws
    a fresh batch of ``batch`` sets with
    :func:`papers30.data.synthetic.sorting_task` from
    :func:`papers30.runtime.generator` of ``seed``, so every model trained
    with the same ``seed`` sees the same batches in the same order. The loss
    is :meth:`_PointerModel.loss` (eq. (sort-loss) of chapter 8). Returns the
    :class:`papers30.training.History` of :func:`papers30.training.fit`.
    """
    if not isinstance(model, _PointerModel):
        raise TypeError(f"model must be a SetPointerModel or SequencePointerModel, got {type(model).__name__}")
    _checks.positive_int("n", n)
    _checks.positive_int("batch", batch)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    _checks.one_of("optimizer", optimizer, ("adam", "sgd"))
    draw = generator(seed)
    device = next(model.parameters()).device
    make = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    opt = make(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def loss_fn(step: int) -> torch.Tensor:
        x, order = sorting_task(batch, n, draw)
        return model.loss(x.to(device), order.to(device))

    return fit(model, opt, loss_fn, steps, scheduler=schedule, clip=clip, evaluate=evaluate, every=every,
               stop_after=stop_after)


@dataclass
class SortingRun:
    """A trained sorting model and its training history, as :func:`train_sorter` returns them."""

    model: _PointerModel
    history: History

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def losses(self) -> list[float]:
        """The per-step training losses (what a recorded run keeps and replays)."""
        return self.history.losses


def train_sorter(
    process_steps: int | None,
    n: int,
    width: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    glimpse: bool = False,
    optimizer: str = "adam",
    clip: float = 1.0,
    stop_after: int | None = None,
    feed_chosen: bool = True,
) -> SortingRun:
    """Build one sorting model from plain arguments and train it with :func:`fit_sorting`.

    ``process_steps`` is ``P`` for a :class:`SetPointerModel` (Read-Process-Write),
    or ``None`` for the :class:`SequencePointerModel` baseline; ``width`` is
    both ``D`` and ``H``; ``glimpse`` and ``feed_chosen`` are passed to the write block, and
    ``optimizer`` and ``clip`` to :func:`fit_sorting`. The model
    is initialised after :func:`papers30.runtime.seed_everything` of ``seed``
    and trained on the batches of ``seed``, so two calls with the same
    arguments give the same run, on the device of
    :func:`papers30.runtime.get_device`.
    """
    if process_steps is not None and (isinstance(process_steps, bool) or not isinstance(process_steps, int)):
        raise TypeError(f"process_steps must be an int or None, got {type(process_steps).__name__}")
    _checks.positive_int("width", width)
    seed_everything(seed)
    if process_steps is None:
        model: _PointerModel = SequencePointerModel(1, width, width, glimpse=glimpse, feed_chosen=feed_chosen)
    else:
        model = SetPointerModel(1, width, width, steps=process_steps, glimpse=glimpse, feed_chosen=feed_chosen)
    model.to(get_device())
    history = fit_sorting(model, n, steps, batch, lr, seed, optimizer=optimizer, clip=clip, stop_after=stop_after)
    return SortingRun(model, history)
