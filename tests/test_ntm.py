"""papers30.ntm against the paper's formulas computed another way (loops, torch.roll,
hand examples) and against numerical gradients (float64 gradcheck)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.ntm import (
    NTM,
    LSTMSequence,
    NTMCell,
    address,
    bit_errors,
    circular_shift,
    content_addressing,
    interpolate,
    read,
    sharpen,
    write,
)

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}
COS_TOL = {"rtol": 1e-6, "atol": 1e-8}  # the cosine adds EPS = 1e-8 to its denominator


def randn(*shape, g):
    return torch.randn(*shape, dtype=DT, generator=g)


def simplex(B, N, g):
    return torch.softmax(randn(B, N, g=g), dim=-1)


SHAPES = [(1, 1, 1), (1, 5, 3), (3, 4, 2), (2, 9, 6)]  # (B, N, M)


# ------------------------------------------------------------------ addressing steps


@pytest.mark.parametrize("B,N,M", SHAPES)
def test_content_addressing_matches_loop_formula(B, N, M):
    g = torch.Generator().manual_seed(B * 100 + N)
    memory, key = randn(B, N, M, g=g), randn(B, M, g=g)
    beta = torch.rand(B, dtype=DT, generator=g) * 5
    got = content_addressing(memory, key, beta)
    for b in range(B):
        sims = [float(torch.dot(key[b], memory[b, i]) / (key[b].norm() * memory[b, i].norm()))
                for i in range(N)]
        e = [math.exp(float(beta[b]) * s) for s in sims]
        want = torch.tensor([v / sum(e) for v in e], dtype=DT)
        torch.testing.assert_close(got[b], want, **COS_TOL)


def test_content_addressing_matches_torch_cosine_similarity():
    g = torch.Generator().manual_seed(1)
    memory, key, beta = randn(4, 7, 5, g=g), randn(4, 5, g=g), randn(4, 1, g=g).abs()
    cos = torch.nn.functional.cosine_similarity(memory, key[:, None, :], dim=-1)
    torch.testing.assert_close(content_addressing(memory, key, beta), torch.softmax(beta * cos, -1), **COS_TOL)


def test_content_addressing_large_beta_picks_most_similar_slot():
    memory = torch.eye(4, dtype=DT)[None]  # slot i holds unit vector e_i
    key = torch.tensor([[0.1, 0.2, 3.0, 0.1]], dtype=DT)
    w = content_addressing(memory, key, torch.tensor([200.0], dtype=DT))
    assert w.argmax().item() == 2 and w[0, 2] > 1 - 1e-12
    flat = content_addressing(memory, key, torch.tensor([0.0], dtype=DT))
    torch.testing.assert_close(flat, torch.full((1, 4), 0.25, dtype=DT), **TOL)


@pytest.mark.parametrize("B,N", [(1, 1), (2, 5), (4, 3)])
def test_interpolate_matches_formula(B, N):
    g = torch.Generator().manual_seed(N)
    wc, wp, gate = simplex(B, N, g), simplex(B, N, g), torch.rand(B, 1, dtype=DT, generator=g)
    got = interpolate(wc, wp, gate)
    for b in range(B):
        for i in range(N):
            want = float(gate[b]) * float(wc[b, i]) + (1 - float(gate[b])) * float(wp[b, i])
            assert got[b, i].item() == pytest.approx(want, abs=1e-14)
    torch.testing.assert_close(interpolate(wc, wp, torch.ones(B, dtype=DT)), wc, **TOL)
    torch.testing.assert_close(interpolate(wc, wp, torch.zeros(B, dtype=DT)), wp, **TOL)


@pytest.mark.parametrize("B,N,S", [(1, 1, 1), (1, 5, 3), (3, 6, 3), (2, 7, 5), (2, 3, 5)])
def test_circular_shift_matches_torch_roll_and_loop(B, N, S):
    g = torch.Generator().manual_seed(N * 10 + S)
    w, s = simplex(B, N, g), simplex(B, S, g)
    got = circular_shift(w, s)
    R = S // 2
    rolled = sum(s[:, k: k + 1] * torch.roll(w, shifts=k - R, dims=1) for k in range(S))
    torch.testing.assert_close(got, rolled, **TOL)
    # eq. (ntm-shift) written with the paper's indices: w~_i = sum_j w_j s((i - j) mod N)
    for b in range(B):
        for i in range(N):
            want = sum(float(w[b, j]) * float(s[b, k])
                       for j in range(N) for k in range(S) if (i - j) % N == (k - R) % N)
            assert got[b, i].item() == pytest.approx(want, abs=1e-13)


def test_circular_shift_one_hot_moves_focus_and_wraps():
    w = torch.zeros(1, 5, dtype=DT)
    w[0, 4] = 1.0
    plus_one = torch.tensor([[0.0, 0.0, 1.0]], dtype=DT)  # columns: shift -1, 0, +1
    torch.testing.assert_close(circular_shift(w, plus_one), torch.eye(5, dtype=DT)[:1], **TOL)


@given(st.integers(1, 8), st.integers(0, 2), st.integers(0, 10_000))
def test_circular_shift_preserves_total_weight(N, R, seed):
    g = torch.Generator().manual_seed(seed)
    w, s = simplex(2, N, g), simplex(2, 2 * R + 1, g)
    torch.testing.assert_close(circular_shift(w, s).sum(-1), torch.ones(2, dtype=DT), **TOL)


@pytest.mark.parametrize("B,N", [(1, 1), (2, 5), (3, 8)])
def test_sharpen_matches_formula(B, N):
    g = torch.Generator().manual_seed(N)
    w = simplex(B, N, g)
    gamma = 1 + torch.rand(B, 1, dtype=DT, generator=g) * 4
    got = sharpen(w, gamma)
    for b in range(B):
        p = [float(w[b, i]) ** float(gamma[b]) for i in range(N)]
        want = torch.tensor([v / sum(p) for v in p], dtype=DT)
        torch.testing.assert_close(got[b], want, **TOL)
    torch.testing.assert_close(sharpen(w, torch.ones(B, dtype=DT)), w, **TOL)


def test_address_is_the_four_steps_in_order():
    g = torch.Generator().manual_seed(7)
    B, N, M = 2, 6, 3
    memory, key = randn(B, N, M, g=g), randn(B, M, g=g)
    beta, gate, gamma = randn(B, 1, g=g).abs(), torch.rand(B, 1, dtype=DT, generator=g), 1 + randn(B, 1, g=g).abs()
    shift, w_prev = simplex(B, 3, g), simplex(B, N, g)
    want = sharpen(circular_shift(interpolate(content_addressing(memory, key, beta), w_prev, gate), shift), gamma)
    got = address(memory, key, beta, gate, shift, gamma, w_prev)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(got.sum(-1), torch.ones(B, dtype=DT), **TOL)


# ------------------------------------------------------------------ read and write


def test_read_matches_loop():
    g = torch.Generator().manual_seed(3)
    memory, w = randn(2, 5, 4, g=g), simplex(2, 5, g)
    want = torch.stack([sum(w[b, i] * memory[b, i] for i in range(5)) for b in range(2)])
    torch.testing.assert_close(read(memory, w), want, **TOL)


def test_write_hand_example():
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], dtype=DT)
    w = torch.tensor([[0.0, 0.5, 1.0]], dtype=DT)
    erase = torch.tensor([[1.0, 0.0]], dtype=DT)
    add = torch.tensor([[10.0, -2.0]], dtype=DT)
    # slot 0 untouched; slot 1: [3 (1 - .5), 4] + .5 [10, -2] = [6.5, 3]; slot 2: [0, 6] + [10, -2]
    want = torch.tensor([[[1.0, 2.0], [6.5, 3.0], [10.0, 4.0]]], dtype=DT)
    new = write(memory, w, erase, add)
    torch.testing.assert_close(new, want, **TOL)
    assert memory[0, 1, 0].item() == 3.0  # the input memory is not modified


def test_write_full_erase_then_read_returns_add():
    g = torch.Generator().manual_seed(4)
    memory, add = randn(2, 4, 3, g=g), randn(2, 3, g=g)
    w = torch.zeros(2, 4, dtype=DT)
    w[:, 2] = 1.0
    new = write(memory, w, torch.ones(2, 3, dtype=DT), add)
    torch.testing.assert_close(read(new, w), add, **TOL)
    torch.testing.assert_close(new[:, [0, 1, 3]], memory[:, [0, 1, 3]], **TOL)


# ------------------------------------------------------------------ gradients


def test_address_read_write_gradcheck():
    g = torch.Generator().manual_seed(5)
    B, N, M = 2, 4, 3
    args = [randn(B, N, M, g=g), randn(B, M, g=g), randn(B, 1, g=g).abs() + 0.5,
            torch.rand(B, 1, dtype=DT, generator=g), simplex(B, 3, g), 1 + randn(B, 1, g=g).abs(),
            simplex(B, N, g), torch.rand(B, M, dtype=DT, generator=g), randn(B, M, g=g)]
    args = [a.requires_grad_() for a in args]

    def step(memory, key, beta, gate, shift, gamma, w_prev, erase, add):
        w = address(memory, key, beta, gate, shift, gamma, w_prev)
        new = write(memory, w, erase, add)
        return read(new, w), new

    assert torch.autograd.gradcheck(step, args)


def test_ntm_cell_gradcheck_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    cell = NTMCell(3, 2, controller_size=4, memory_slots=4, memory_width=2).double()
    x = torch.randn(2, 3, dtype=DT, requires_grad=True)

    def two_steps(x):
        _, state = cell(x)
        y2, state = cell(x * 2, state)
        return y2, state.memory

    assert torch.autograd.gradcheck(two_steps, (x,))
    model = NTM(3, 2, controller_size=4, memory_slots=4, memory_width=2).double()
    model(x.detach()[:, None].repeat(1, 3, 1))[0].sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------ models and metric


@pytest.mark.parametrize("B,T", [(1, 1), (3, 4)])
def test_ntm_shapes_and_weightings_are_distributions(B, T):
    torch.manual_seed(1)
    model = NTM(5, 4, controller_size=8, memory_slots=6, memory_width=3)
    y, wr, ww = model(torch.randn(B, T, 5))
    assert y.shape == (B, T, 4) and wr.shape == ww.shape == (B, T, 6)
    torch.testing.assert_close(wr.sum(-1), torch.ones(B, T))
    torch.testing.assert_close(ww.sum(-1), torch.ones(B, T))
    assert (wr >= 0).all() and (ww >= 0).all()


def test_ntm_runner_matches_cell_loop():
    torch.manual_seed(2)
    model = NTM(3, 2, controller_size=5, memory_slots=4, memory_width=2)
    x = torch.randn(2, 4, 3)
    y, wr, ww = model(x)
    state = None
    for t in range(4):
        yt, state = model.cell(x[:, t], state)
        torch.testing.assert_close(y[:, t], yt)
        torch.testing.assert_close(wr[:, t], state.w_read)
        torch.testing.assert_close(ww[:, t], state.w_write)


def test_lstm_sequence_matches_torch_lstm():
    torch.manual_seed(3)
    model = LSTMSequence(3, 2, hidden_size=5)
    ref = torch.nn.LSTM(3, 5, batch_first=True)
    ref.load_state_dict(model.lstm.state_dict())
    x = torch.randn(2, 6, 3)
    torch.testing.assert_close(model(x)[0], model.output(ref(x)[0]))


def test_bit_errors_matches_count():
    logits = torch.tensor([[[2.0, -1.0], [-3.0, 0.5]], [[1.0, 1.0], [1.0, 1.0]]])
    targets = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]])
    torch.testing.assert_close(bit_errors(logits, targets), torch.tensor([2.0, 2.0]))


# ------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    "fn,args,exc,name",
    [
        (content_addressing, (torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2)), ValueError, "memory"),
        (content_addressing, (torch.zeros(2, 3, 4), torch.zeros(2, 5), torch.ones(2)), ValueError, "key"),
        (content_addressing, (torch.zeros(2, 3, 4), torch.zeros(2, 4), torch.ones(3)), ValueError, "beta"),
        (content_addressing, (torch.zeros(2, 3, 4), [0.0] * 4, torch.ones(2)), TypeError, "key"),
        (interpolate, (torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2)), ValueError, "w_prev"),
        (interpolate, (torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 2)), ValueError, "gate"),
        (circular_shift, (torch.zeros(2, 3), torch.ones(2, 2)), ValueError, "shift"),
        (circular_shift, (torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3)), TypeError, "w"),
        (sharpen, (torch.zeros(2, 3), "2"), TypeError, "gamma"),
        (read, (torch.zeros(2, 3, 4), torch.zeros(2, 4)), ValueError, "w"),
        (write, (torch.zeros(2, 3, 4), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4)), ValueError, "erase"),
        (bit_errors, (torch.zeros(1, 2, 3), torch.zeros(1, 2, 4)), ValueError, "targets"),
    ],
)
def test_bad_inputs_name_the_argument(fn, args, exc, name):
    with pytest.raises(exc, match=rf"^{name} "):
        fn(*args)


def test_bad_constructor_and_runner_inputs():
    with pytest.raises(ValueError, match="^memory_slots "):
        NTMCell(3, 2, memory_slots=0)
    with pytest.raises(ValueError, match="^shift_range "):
        NTMCell(3, 2, memory_slots=4, shift_range=4)
    with pytest.raises(TypeError, match="^shift_range "):
        NTMCell(3, 2, shift_range=1.0)
    with pytest.raises(ValueError, match="^x "):
        NTM(3, 2)(torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="^x "):
        NTM(3, 2)(torch.zeros(2, 3))
