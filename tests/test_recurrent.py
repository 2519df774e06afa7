"""papers30.recurrent against torch.nn.RNN/LSTM/GRU and their cells, with copied weights (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from papers30.recurrent import (GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, SequenceClassifier,
                                input_gradient_norms)

DT = torch.float64
TOL = dict(rtol=1e-5, atol=1e-5)
RUNNERS = [(RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)]
CELLS = [(RNNCell, nn.RNNCell), (LSTMCell, nn.LSTMCell), (GRUCell, nn.GRUCell)]
# (B, T, D, H, L): batch 1, length 1, D != H, several layers.
SHAPES = [(1, 1, 1, 1, 1), (2, 5, 3, 4, 1), (1, 7, 4, 2, 2), (3, 4, 2, 5, 3)]


def pair(ours_cls, torch_cls, D, H, L, bias=True):
    ours = ours_cls(D, H, L, bias=bias, batch_first=True).to(DT)
    theirs = torch_cls(D, H, L, bias=bias, batch_first=True).to(DT)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def flat(state):
    return state if isinstance(state, torch.Tensor) else torch.cat([s.flatten() for s in state])


@pytest.mark.parametrize("ours_cls,torch_cls", RUNNERS)
@pytest.mark.parametrize("B,T,D,H,L", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_runner_matches_torch_outputs_states_and_gradients(ours_cls, torch_cls, B, T, D, H, L, bias, gen):
    ours, theirs = pair(ours_cls, torch_cls, D, H, L, bias)
    x = torch.randn(B, T, D, dtype=DT, generator=gen)
    y1, s1 = ours(x)
    y2, s2 = theirs(x)
    assert y1.shape == (B, T, H)
    torch.testing.assert_close(y1, y2, **TOL)
    torch.testing.assert_close(flat(s1), flat(s2), **TOL)
    w = torch.randn(B, T, H, dtype=DT, generator=gen)  # a random loss touches every output
    ((y1 * w).sum() + flat(s1).sum()).backward()
    ((y2 * w).sum() + flat(s2).sum()).backward()
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, dict(theirs.named_parameters())[name].grad, **TOL)


@pytest.mark.parametrize("ours_cls,torch_cls", RUNNERS)
def test_runner_matches_torch_from_given_state_and_time_first(ours_cls, torch_cls, gen):
    B, T, D, H, L = 2, 4, 3, 5, 2
    ours = ours_cls(D, H, L, batch_first=False).to(DT)
    theirs = torch_cls(D, H, L).to(DT)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, D, dtype=DT, generator=gen)
    h = torch.randn(L, B, H, dtype=DT, generator=gen)
    hx = (h, torch.randn(L, B, H, dtype=DT, generator=gen)) if ours_cls is LSTM else h
    y1, s1 = ours(x, hx)
    y2, s2 = theirs(x, hx)
    assert y1.shape == (T, B, H)
    torch.testing.assert_close(y1, y2, **TOL)
    torch.testing.assert_close(flat(s1), flat(s2), **TOL)


@pytest.mark.parametrize("ours_cls,torch_cls", CELLS)
@pytest.mark.parametrize("B,D,H", [(1, 1, 1), (4, 3, 6)])
def test_cell_matches_torch(ours_cls, torch_cls, B, D, H, gen):
    ours = ours_cls(D, H).to(DT)
    theirs = torch_cls(D, H).to(DT)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(B, D, dtype=DT, generator=gen)
    h = torch.randn(B, H, dtype=DT, generator=gen)
    hx = (h, torch.randn(B, H, dtype=DT, generator=gen)) if ours_cls is LSTMCell else h
    torch.testing.assert_close(flat(ours(x, hx)), flat(theirs(x, hx)), **TOL)
    torch.testing.assert_close(flat(ours(x)), flat(theirs(x)), **TOL)


def test_lstm_cell_by_hand_with_open_forget_gate():
    """Closed form: forget gate 1, input gate 0 keeps the cell exactly."""
    cell = LSTMCell(1, 1).to(DT)
    with torch.no_grad():
        cell.weight_ih.zero_(), cell.weight_hh.zero_(), cell.bias_hh.zero_()
        cell.bias_ih.copy_(torch.tensor([-1e3, 1e3, 0.0, 1e3], dtype=DT))  # i=0, f=1, o=1
    c = torch.tensor([[0.7]], dtype=DT)
    h, c2 = cell(torch.ones(1, 1, dtype=DT), (torch.zeros(1, 1, dtype=DT), c))
    torch.testing.assert_close(c2, c)
    torch.testing.assert_close(h, torch.tanh(c))


def test_lstm_eval_mode_equals_no_dropout(gen):
    x = torch.randn(2, 6, 3, dtype=DT, generator=gen)
    for placement in ("non_recurrent", "recurrent"):
        drop = LSTM(3, 4, 2, batch_first=True, dropout=0.5, dropout_placement=placement).to(DT)
        plain = LSTM(3, 4, 2, batch_first=True).to(DT)
        plain.load_state_dict(drop.state_dict())
        drop.eval()
        torch.testing.assert_close(drop(x)[0], plain(x)[0], rtol=0, atol=0)
        drop.train()
        torch.manual_seed(0)
        assert not torch.equal(drop(x)[0], plain(x)[0])  # training mode does drop


def test_lstm_non_recurrent_dropout_never_masks_the_recurrent_path(gen):
    """With input weights zero, inputs cannot matter: only recurrent-path dropout changes h_n."""
    x = torch.randn(3, 8, 2, dtype=DT, generator=gen)
    finals = {}
    for placement in ("non_recurrent", "recurrent"):
        m = LSTM(2, 4, 2, batch_first=True, dropout=0.5, dropout_placement=placement).to(DT)
        with torch.no_grad():
            for k in range(2):
                getattr(m, f"weight_ih_l{k}").zero_()
        m.eval()
        ref = m(x)[1][0]
        m.train()
        torch.manual_seed(1)
        finals[placement] = (m(x)[1][0], ref)
    torch.testing.assert_close(*finals["non_recurrent"], rtol=0, atol=0)
    assert not torch.allclose(*finals["recurrent"])


def test_input_gradient_norms_match_autograd_jacobian(gen):
    m = GRU(2, 3, batch_first=True).to(DT)
    x = torch.randn(2, 5, 2, dtype=DT, generator=gen)
    got = input_gradient_norms(m, x)
    norms = []
    for b in range(2):
        J = torch.autograd.functional.jacobian(lambda z: m(z[None])[0][0, -1], x[b])  # (H, T, D)
        norms.append(J.pow(2).sum((0, 2)).sqrt())
    torch.testing.assert_close(got, torch.stack(norms).mean(0), **TOL)
    assert got.shape == (5,)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_runners_default_to_time_first_like_torch(kind):
    """Reference: torch.nn's defaults; a reader swapping one for the other gets the same shapes."""
    ours = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind](2, 3)
    theirs = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](2, 3)
    assert ours.batch_first is theirs.batch_first is False
    x = torch.zeros(5, 4, 2)  # (T, B, D)
    assert ours(x)[0].shape == theirs(x)[0].shape == (5, 4, 3)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequence_classifier_shapes_and_forget_bias(kind):
    m = SequenceClassifier(kind, 6, 4, 3, forget_bias=2.0)
    assert m(torch.randint(0, 6, (5, 7))).shape == (5, 3)
    if kind == "lstm":
        plain = LSTM(6, 4)
        bound = 1 / 4**0.5
        b = m.rnn.bias_hh_l0
        assert (b[4:8] >= 2.0 - bound).all() and (b[:4].abs() <= bound).all()
        assert plain.bias_hh_l0.abs().max() <= bound


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_fused_sequence_classifier_matches_the_package_one(kind, gen):
    """Reference: the package runner; fused=True swaps in torch.nn's under the same parameter names."""
    ours = SequenceClassifier(kind, 6, 4, 3).to(DT)
    fused = SequenceClassifier(kind, 6, 4, 3, fused=True).to(DT)
    assert isinstance(fused.rnn, {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind])
    if kind == "lstm":  # the forget bias is added to the fused runner's bias too
        assert (fused.rnn.bias_hh_l0[4:8] >= 1.0 - 0.5).all()
    fused.load_state_dict(ours.state_dict(), strict=True)
    tokens = torch.randint(0, 6, (5, 7), generator=gen)
    torch.testing.assert_close(fused(tokens), ours(tokens), **TOL)


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: LSTM(0, 3), ValueError, "input_size"),
        (lambda: GRU(2, 2.0), TypeError, "hidden_size"),
        (lambda: RNN(2, 2, 0), ValueError, "num_layers"),
        (lambda: LSTM(2, 2, dropout=1.0), ValueError, "dropout"),
        (lambda: LSTM(2, 2, dropout_placement="all"), ValueError, "dropout_placement"),
        (lambda: LSTM(2, 3)(torch.zeros(2, 3)), ValueError, "input"),
        (lambda: LSTM(2, 3)(torch.zeros(2, 3, 4)), ValueError, "input"),
        (lambda: GRU(2, 3)(torch.zeros(2, 3, 2, dtype=torch.long)), TypeError, "input"),
        (lambda: RNN(2, 3)(torch.zeros(2, 3, 2), torch.zeros(1, 2, 4)), ValueError, "hx"),
        (lambda: LSTM(2, 3)(torch.zeros(2, 3, 2), torch.zeros(1, 2, 3)), TypeError, "hx"),
        (lambda: LSTMCell(2, 3)(torch.zeros(2, 2), torch.zeros(2, 3)), TypeError, "hx"),
        (lambda: GRUCell(2, 3)([[0.0, 0.0]]), TypeError, "input"),
        (lambda: RNNCell(2, 3, nonlinearity="sigmoid"), ValueError, "nonlinearity"),
        (lambda: SequenceClassifier("cnn", 3, 3, 2), ValueError, "kind"),
        (lambda: input_gradient_norms(GRU(2, 3, batch_first=True), torch.zeros(2, 3)), ValueError, "input"),
        (lambda: input_gradient_norms(GRU(2, 3), torch.zeros(2, 3, 2)), ValueError, "batch_first"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
