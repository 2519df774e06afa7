"""Recurrent cells written out gate by gate, and the multi-layer runners built on them.

Chapter 3 (Olah, *Understanding LSTM Networks*) derives the cells and trains
them on a long-range recall task; chapter 2 (Karpathy's character models)
reuses :class:`LSTM` for a language model, and chapter 4 (Zaremba et al.,
*Recurrent Neural Network Regularization*) uses its ``dropout_placement``.

Three levels, each mirroring a torch built-in so the two can be compared side
by side:

* the functional cells :func:`rnn_cell`, :func:`lstm_cell` and
  :func:`gru_cell`: one time step. Each checks its arguments, computes the
  input's share of the gates, ``W_ih x + b_ih``, and hands it to
  ``_rnn_step`` / ``_lstm_step`` / ``_gru_step``, where every gate has its
  own line;
* the modules :class:`RNNCell`, :class:`LSTMCell` and :class:`GRUCell`,
  whose parameters have the names, shapes, gate order and initialisation of
  ``torch.nn.RNNCell`` / ``LSTMCell`` / ``GRUCell``;
* the sequence runners :class:`RNN`, :class:`LSTM` and :class:`GRU`, whose
  parameters are named exactly like those of ``torch.nn.RNN`` / ``LSTM`` /
  ``GRU`` (``weight_ih_l0``, ``bias_hh_l1``, ...), so a state dict loads from
  one into the other unchanged. Like torch, the runners default to
  ``batch_first=False`` (inputs ``(T, B, D)``); the package's own models pass
  ``batch_first=True`` and work on ``(B, T, D)``. Like torch's, they project
  a layer's whole input sequence with one matrix product and call the step
  functions above through time, so only ``W_hh h`` is computed per step.

Gate order in the stacked weights is torch's: LSTM ``i, f, g, o`` (input,
forget, candidate, output), GRU ``r, z, n`` (reset, update, candidate).

Shapes: ``B`` batch, ``T`` time steps, ``D`` input width, ``H`` hidden width,
``L`` layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks

PLACEMENTS = ("none", "non_recurrent", "recurrent")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


# --------------------------------------------------------------------------- cells


def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x, weight, bias)


def _check_cell(
    input: object,
    h: object,
    weight_ih: object,
    weight_hh: object,
    bias_ih: object,
    bias_hh: object,
    gates: int,
) -> None:
    """Validate one cell step's arguments: ``input (B, D)`` or ``(D,)``, ``h`` like it, weights ``(gates*H, D)``, ``(gates*H, H)``."""
    _checks.tensor("input", input, ndim=(1, 2), kind="float")
    _checks.tensor("hx", h, ndim=input.dim(), kind="float")
    _checks.tensor("weight_ih", weight_ih, ndim=2, kind="float")
    _checks.tensor("weight_hh", weight_hh, ndim=2, kind="float")
    if input.dim() == 2:
        _checks.size_matches("hx", h.shape[0], input.shape[0], "batch size")
    hidden = h.shape[-1]
    _checks.size_matches("weight_ih", weight_ih.shape[0], gates * hidden, "rows")
    _checks.size_matches("weight_ih", weight_ih.shape[1], input.shape[-1], "columns (the input size)")
    _checks.size_matches("weight_hh", tuple(weight_hh.shape), (gates * hidden, hidden), "shape")
    for name, b in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if b is not None:
            _checks.tensor(name, b, ndim=1, kind="float")
            _checks.size_matches(name, b.shape[0], gates * hidden, "length")
    for name, t in (("input", input), ("hx", h), ("weight_hh", weight_hh)):
        if t.dtype != weight_ih.dtype:
            raise TypeError(f"{name} has dtype {t.dtype}, expected weight_ih's {weight_ih.dtype}")


def rnn_cell(
    input: torch.Tensor,
    hx: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
    nonlinearity: str = "tanh",
) -> torch.Tensor:
    """One step of the vanilla RNN, eq. (rnn): ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``.

    ``input (B, D)``, ``hx (B, H)``, ``weight_ih (H, D)``, ``weight_hh (H, H)``,
    biases ``(H,)``; returns ``h' (B, H)``. ``nonlinearity`` is ``"tanh"`` or
    ``"relu"``, as in ``torch.nn.RNNCell``.
    """
    _check_cell(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, 1)
    _checks.one_of("nonlinearity", nonlinearity, ("tanh", "relu"))
    return _rnn_step(_affine(input, weight_ih, bias_ih), hx, weight_hh, bias_hh, nonlinearity)


def _rnn_step(
    x_proj: torch.Tensor, hx: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor | None, nonlinearity: str
) -> torch.Tensor:
    """The recurrent part of :func:`rnn_cell`, given the input's share ``x_proj = W_ih x + b_ih (B, H)``."""
    pre = x_proj + _affine(hx, weight_hh, bias_hh)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_cell(
    input: torch.Tensor,
    hx: tuple[torch.Tensor, torch.Tensor],
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the LSTM: the gates of eqs. (lstm-gates)-(lstm-h).

    ``input (B, D)``, ``hx = (h, c)`` each ``(B, H)``, ``weight_ih (4H, D)``,
    ``weight_hh (4H, H)``, biases ``(4H,)`` with rows in the order input,
    forget, candidate, output. Returns ``(h', c')``, each ``(B, H)``.
    """
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"hx must be a pair (h, c) of tensors, got {type(hx).__name__}")
    h, c = hx
    _check_cell(input, h, weight_ih, weight_hh, bias_ih, bias_hh, 4)
    _checks.tensor("hx[1] (c)", c, ndim=h.dim(), kind="float")
    _checks.size_matches("hx[1] (c)", tuple(c.shape), tuple(h.shape), "shape")
    return _lstm_step(_affine(input, weight_ih, bias_ih), (h, c), weight_hh, bias_hh)


def _lstm_step(
    x_proj: torch.Tensor,
    hx: tuple[torch.Tensor, torch.Tensor],
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gates of :func:`lstm_cell`, given the input's share ``x_proj = W_ih x + b_ih (B, 4H)``.

    The runners compute ``x_proj`` for every time step at once (one matrix
    product over the whole sequence), so only ``W_hh h`` is left per step.
    """
    h, c = hx
    z = x_proj + _affine(h, weight_hh, bias_hh)  # all four gates' inputs, stacked
    z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
    i = torch.sigmoid(z_i)  # input gate: how much of the candidate to write
    f = torch.sigmoid(z_f)  # forget gate: how much of the old cell to keep
    g = torch.tanh(z_g)  # candidate values
    o = torch.sigmoid(z_o)  # output gate: how much of the cell to expose
    c_next = f * c + i * g  # eq. (lstm-c): the additive cell update
    h_next = o * torch.tanh(c_next)  # eq. (lstm-h)
    return h_next, c_next


def gru_cell(
    input: torch.Tensor,
    hx: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step of the GRU, eqs. (gru-gates)-(gru-h), in torch's convention.

    ``input (B, D)``, ``hx (B, H)``, ``weight_ih (3H, D)``, ``weight_hh (3H, H)``,
    biases ``(3H,)`` with rows in the order reset, update, candidate. Returns
    ``h' (B, H)``.
    """
    _check_cell(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, 3)
    return _gru_step(_affine(input, weight_ih, bias_ih), hx, weight_hh, bias_hh)


def _gru_step(
    x_proj: torch.Tensor, hx: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor | None
) -> torch.Tensor:
    """The gates of :func:`gru_cell`, given the input's share ``x_proj = W_ih x + b_ih (B, 3H)``."""
    x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
    h_r, h_z, h_n = _affine(hx, weight_hh, bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)  # reset gate: how much of h feeds the candidate
    z = torch.sigmoid(x_z + h_z)  # update gate: how much of h to keep
    n = torch.tanh(x_n + r * h_n)  # candidate state
    return (1 - z) * n + z * hx  # eq. (gru-h): interpolate old and candidate


def _init_uniform(module: nn.Module, hidden_size: int) -> None:
    """torch's initialisation for recurrent weights: U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


def _check_sizes(input_size: int, hidden_size: int, num_layers: int = 1) -> None:
    _checks.positive_int("input_size", input_size)
    _checks.positive_int("hidden_size", hidden_size)
    _checks.positive_int("num_layers", num_layers)


class _Cell(nn.Module):
    """Parameters of one recurrent cell, laid out like torch's ``*Cell`` modules."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        rows = GATES[self.kind] * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(rows)) if bias else None
        _init_uniform(self, hidden_size)

    def _params(self) -> tuple[torch.Tensor | None, ...]:
        return (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def _input(self, input: object) -> torch.Tensor:
        x = _checks.tensor("input", input, ndim=2, kind="float")
        _checks.size_matches("input", x.shape[-1], self.input_size, "feature size")
        return x

    def _state(self, name: str, hx: object, x: torch.Tensor) -> torch.Tensor:
        if hx is None:
            return x.new_zeros(x.shape[0], self.hidden_size)
        h = _checks.tensor(name, hx, ndim=2, kind="float")
        if tuple(h.shape) != (x.shape[0], self.hidden_size):
            raise ValueError(f"{name} must have shape {(x.shape[0], self.hidden_size)}, got {tuple(h.shape)}")
        return h


class RNNCell(_Cell):
    """The vanilla RNN cell, like ``torch.nn.RNNCell`` (input ``(B, D)``, state ``(B, H)``)."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        x = self._input(input)
        return rnn_cell(x, self._state("hx", hx, x), *self._params(), nonlinearity=self.nonlinearity)


class LSTMCell(_Cell):
    """The LSTM cell, like ``torch.nn.LSTMCell``: ``forward(input, (h, c)) -> (h', c')``."""

    kind = "lstm"

    def forward(
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._input(input)
        if hx is not None and not (isinstance(hx, tuple) and len(hx) == 2):
            raise TypeError(f"hx must be a tuple (h, c) or None, got {type(hx).__name__}")
        h, c = (None, None) if hx is None else hx
        return lstm_cell(x, (self._state("hx[0]", h, x), self._state("hx[1]", c, x)), *self._params())


class GRUCell(_Cell):
    """The GRU cell, like ``torch.nn.GRUCell`` (input ``(B, D)``, state ``(B, H)``)."""

    kind = "gru"

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        x = self._input(input)
        return gru_cell(x, self._state("hx", hx, x), *self._params())


# ------------------------------------------------------------------------- runners


class _Recurrent(nn.Module):
    """A stack of ``num_layers`` cells run over a sequence (shared by RNN, LSTM, GRU).

    Parameters are named like torch's: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` for layer ``k``.
    """

    kind = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        *,
        dropout_placement: str = "non_recurrent",
    ) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size, num_layers)
        _checks.probability("dropout", dropout)
        _checks.one_of("dropout_placement", dropout_placement, PLACEMENTS)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, bool(batch_first)
        self.dropout, self.dropout_placement = float(dropout), dropout_placement
        rows = GATES[self.kind] * hidden_size
        for k in range(num_layers):
            width = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(rows, width)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(rows, hidden_size)))
            for name in (f"bias_ih_l{k}", f"bias_hh_l{k}"):
                self.register_parameter(name, nn.Parameter(torch.empty(rows)) if bias else None)
        _init_uniform(self, hidden_size)

    def layer_params(self, k: int) -> tuple[torch.Tensor | None, ...]:
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of layer ``k``."""
        return tuple(getattr(self, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _step(self, x_proj: torch.Tensor, state, weight_hh: torch.Tensor, bias_hh: torch.Tensor | None):
        """One cell step from the input's share ``x_proj (B, gates * H)``; overridden."""
        raise NotImplementedError

    def _drop(self, x: torch.Tensor, where: str) -> torch.Tensor:
        """Dropout on the ``"input"`` (non-recurrent) or ``"state"`` (recurrent) path."""
        if not self.training or self.dropout == 0.0 or self.dropout_placement == "none":
            return x
        if where == "state" and self.dropout_placement != "recurrent":
            return x
        return F.dropout(x, self.dropout, training=True)

    def _check_input(self, input: object) -> torch.Tensor:
        x = _checks.tensor("input", input, ndim=3, kind="float")
        _checks.size_matches("input", x.shape[-1], self.input_size, "feature size")
        if 0 in x.shape[:2]:
            raise ValueError(f"input must have at least one batch row and one time step, got {tuple(x.shape)}")
        return x if self.batch_first else x.transpose(0, 1)

    def _check_state(self, name: str, h: object, x: torch.Tensor) -> torch.Tensor:
        want = (self.num_layers, x.shape[0], self.hidden_size)
        h = _checks.tensor(name, h, ndim=3, kind="float")
        if tuple(h.shape) != want:
            raise ValueError(f"{name} must have shape (L, B, H) = {want}, got {tuple(h.shape)}")
        return h

    def _run(self, x: torch.Tensor, states: list) -> tuple[torch.Tensor, list]:
        """Run every layer over ``x (B, T, D)`` from ``states[k]``; return the top outputs and final states.

        Dropout (in training, ``dropout > 0``): ``"non_recurrent"`` drops each
        layer's input and the top layer's output, never the state carried from
        ``t-1`` to ``t``; ``"recurrent"`` also drops the state fed back at every
        step (a fresh mask each step), the naive placement.
        """
        finals = []
        for k in range(self.num_layers):
            weight_ih, weight_hh, bias_ih, bias_hh = self.layer_params(k)
            x = self._drop(x, "input")
            # The input's share of every gate, W_ih x_t + b_ih, for all T steps in
            # one matrix product: (B, T, gates * H). Only W_hh h is left per step.
            projected = _affine(x, weight_ih, bias_ih)
            state, outputs = states[k], []
            for x_t in projected.unbind(1):
                state = self._step(x_t, self._drop_state(state), weight_hh, bias_hh)
                outputs.append(state[0] if isinstance(state, tuple) else state)
            x = torch.stack(outputs, dim=1)
            finals.append(state)
        return self._drop(x, "input"), finals

    def _drop_state(self, state):
        if isinstance(state, tuple):  # LSTM: drop h only; the cell state is internal
            return (self._drop(state[0], "state"), state[1])
        return self._drop(state, "state")

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.batch_first else y.transpose(0, 1)


class RNN(_Recurrent):
    """Multi-layer vanilla RNN, like ``torch.nn.RNN`` (``batch_first=False`` by default, as in torch).

    ``forward(input (B, T, D), hx (L, B, H) | None) -> (output (B, T, H), h_n (L, B, H))``.
    """

    kind = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        *,
        dropout_placement: str = "non_recurrent",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         dropout_placement=dropout_placement)
        self.nonlinearity = nonlinearity

    def _step(self, x_proj, state, weight_hh, bias_hh):
        return _rnn_step(x_proj, state, weight_hh, bias_hh, self.nonlinearity)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._check_input(input)
        h0 = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size) if hx is None else self._check_state("hx", hx, x)
        y, finals = self._run(x, list(h0.unbind(0)))
        return self._out(y), torch.stack(finals)


class GRU(RNN):
    """Multi-layer GRU, like ``torch.nn.GRU`` (``batch_first=False`` by default, as in torch).

    ``forward(input (B, T, D), hx (L, B, H) | None) -> (output (B, T, H), h_n (L, B, H))``.
    """

    kind = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        *,
        dropout_placement: str = "non_recurrent",
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first, dropout,
                         dropout_placement=dropout_placement)

    def _step(self, x_proj, state, weight_hh, bias_hh):
        return _gru_step(x_proj, state, weight_hh, bias_hh)


class LSTM(_Recurrent):
    """Multi-layer LSTM, like ``torch.nn.LSTM`` (``batch_first=False`` by default, as in torch).

    ``forward(input (B, T, D), (h_0, c_0) each (L, B, H) | None)
    -> (output (B, T, H), (h_n, c_n) each (L, B, H))``.

    ``dropout`` with ``dropout_placement`` (chapter 4): ``"none"``;
    ``"non_recurrent"`` (default), dropout on every layer's input and on the
    top layer's output, never on the recurrent path ``h_{t-1} -> h_t``; or
    ``"recurrent"``, which also drops ``h_{t-1}`` before it re-enters the
    cell at every step. Note that torch's own ``dropout`` argument drops only
    between layers. In eval mode no dropout is applied.
    """

    kind = "lstm"

    def _step(self, x_proj, state, weight_hh, bias_hh):
        return _lstm_step(x_proj, state, weight_hh, bias_hh)

    def forward(
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        x = self._check_input(input)
        if hx is None:
            zeros = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
            h0, c0 = zeros, zeros
        elif isinstance(hx, tuple) and len(hx) == 2:
            h0, c0 = self._check_state("hx[0]", hx[0], x), self._check_state("hx[1]", hx[1], x)
        else:
            raise TypeError(f"hx must be a tuple (h_0, c_0) or None, got {type(hx).__name__}")
        y, finals = self._run(x, list(zip(h0.unbind(0), c0.unbind(0))))
        h_n = torch.stack([h for h, _ in finals])
        c_n = torch.stack([c for _, c in finals])
        return self._out(y), (h_n, c_n)


# ----------------------------------------------------------- models and diagnostics

RUNNERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}  # torch's built-ins, same parameter names


class SequenceClassifier(nn.Module):
    """Tokens ``(B, T)`` -> one-hot -> recurrent runner -> linear read-out of the last step ``(B, C)``.

    ``kind`` is ``"rnn"``, ``"lstm"`` or ``"gru"``. The one-hot input keeps
    every symbol equally far from every other, so the recurrent layer alone
    decides what to remember. For the LSTM, ``forget_bias`` is added to the
    forget gates' bias at initialisation, so that they start mostly open
    (the usual practice since Gers et al., 2000); the GRU and RNN ignore it.
    With ``fused=True`` the runner is torch's ``nn.RNN`` / ``nn.LSTM`` /
    ``nn.GRU`` instead of the package's: the same function under the same
    parameter names, computed faster.
    """

    def __init__(
        self,
        kind: str,
        vocab_size: int,
        hidden_size: int,
        num_classes: int,
        num_layers: int = 1,
        forget_bias: float = 1.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)) or not math.isfinite(forget_bias):
            raise TypeError(f"forget_bias must be a finite float, got {forget_bias!r}")
        _checks.one_of("kind", kind, tuple(RUNNERS))
        _checks.positive_int("vocab_size", vocab_size)
        _checks.positive_int("num_classes", num_classes)
        self.kind, self.vocab_size = kind, vocab_size
        self.rnn = (FUSED if fused else RUNNERS)[kind](vocab_size, hidden_size, num_layers, batch_first=True)
        if kind == "lstm":  # start the forget gates open, sigma(z_f) near sigma(forget_bias)
            with torch.no_grad():
                for k in range(num_layers):
                    getattr(self.rnn, f"bias_hh_l{k}")[hidden_size : 2 * hidden_size] += forget_bias
        self.readout = nn.Linear(hidden_size, num_classes)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """One-hot float inputs ``(B, T, V)`` for integer ``tokens (B, T)``."""
        _checks.tensor("tokens", tokens, ndim=2, kind="int")
        return F.one_hot(tokens, self.vocab_size).to(self.readout.weight.dtype)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(tokens))

    def classify(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` from float inputs ``(B, T, V)`` (lets gradients reach the inputs)."""
        out, _ = self.rnn(inputs)
        return self.readout(out[:, -1])


def input_gradient_norms(runner: nn.Module, input: torch.Tensor) -> torch.Tensor:
    """How strongly the last hidden state depends on each input: ``||dh_T / dx_t||_F`` for every ``t``.

    ``runner`` is an :class:`RNN`, :class:`LSTM` or :class:`GRU` (or the torch
    equivalent) with ``batch_first=True``; ``input (B, T, D)``. The Jacobian of
    the top layer's last hidden state with respect to the input at step ``t``
    is built row by row (``H`` backward passes), its Frobenius norm taken per
    sequence and averaged over the batch. Returns ``(T,)``.
    """
    x = _checks.tensor("input", input, ndim=3, kind="float").detach().requires_grad_(True)
    if not getattr(runner, "batch_first", False):
        raise ValueError("runner must be built with batch_first=True: input is (B, T, D)")
    out, _ = runner(x)
    last = out[:, -1]  # (B, H)
    squares = torch.zeros(x.shape[:2], dtype=x.dtype, device=x.device)  # (B, T)
    for j in range(last.shape[1]):
        (g,) = torch.autograd.grad(last[:, j].sum(), x, retain_graph=j + 1 < last.shape[1])
        squares += g.pow(2).sum(-1)  # sequences are independent: row j of each one's Jacobian
    return squares.sqrt().mean(0).detach()
