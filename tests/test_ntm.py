"""papers30.ntm against the paper's formulas computed another way (loops, torch.roll,
hand examples) and against numerical gradients (float64 gradcheck)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.data.synthetic import copy_task
from papers30.ntm import (
    NTM,
    CopyRun,
    LSTMSequence,
    NTMCell,
    address,
    bit_errors,
    circular_shift,
    content_addressing,
    copy_logits,
    copy_loop,
    copy_run,
    copy_scores,
    interpolate,
    read,
    sharpen,
    train_copy,
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


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_ntm_cell_gradcheck_and_gradients_reach_every_parameter(controller):
    torch.manual_seed(0)
    cell = NTMCell(3, 2, controller_size=4, memory_slots=4, memory_width=2, controller=controller).double()
    x = torch.randn(2, 3, dtype=DT, requires_grad=True)

    def two_steps(x):
        _, state = cell(x)
        y2, state = cell(x * 2, state)
        return y2, state.memory

    assert torch.autograd.gradcheck(two_steps, (x,))
    model = NTM(3, 2, controller_size=4, memory_slots=4, memory_width=2, controller=controller).double()
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


def test_fused_lstm_sequence_matches_the_package_one_with_the_same_weights():
    """Reference: the package LSTM; fused=True swaps in torch.nn.LSTM under the same parameter names."""
    torch.manual_seed(4)
    ours = LSTMSequence(3, 2, hidden_size=5, num_layers=2).double()
    fused = LSTMSequence(3, 2, hidden_size=5, num_layers=2, fused=True).double()
    assert isinstance(fused.lstm, torch.nn.LSTM)
    fused.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 6, 3, dtype=DT)
    torch.testing.assert_close(fused(x)[0], ours(x)[0], **TOL)


def test_feedforward_controller_has_no_state_of_its_own():
    """Reference: by hand, h = tanh(W [x; r_prev] + b) and c stays zero."""
    torch.manual_seed(5)
    cell = NTMCell(3, 2, controller_size=4, memory_slots=5, memory_width=2, controller="feedforward").double()
    x = torch.randn(2, 3, dtype=DT)
    y, state = cell(x)
    r0 = torch.zeros(2, 2, dtype=DT)
    want_h = torch.tanh(cell.controller(torch.cat([x, r0], -1)))
    torch.testing.assert_close(state.h, want_h, **TOL)
    assert (state.c == 0).all()
    torch.testing.assert_close(y, cell.output(torch.cat([state.h, state.r], -1)), **TOL)


def test_copy_scores_match_a_count_by_hand():
    """Reference: bit_errors and a direct count of perfect rows."""
    torch.manual_seed(6)
    model = LSTMSequence(5, 4, hidden_size=3)
    x, y = copy_task(7, 3, 4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        wrong = bit_errors(copy_logits(model, x, 3), y)
    got = copy_scores(model, x, y)
    assert got["errors"] == pytest.approx(wrong.mean().item())
    assert got["bit_error_rate"] == pytest.approx(wrong.mean().item() / 12)
    assert got["perfect"] == pytest.approx(sum(float(w == 0) for w in wrong) / 7)


def test_train_copy_feeds_two_models_the_same_batches_and_replays():
    """Reference: the same data seed and initial weights give the same losses; stop_after cuts the run."""
    def make():
        torch.manual_seed(7)
        return NTM(5, 4, controller_size=6, memory_slots=8, memory_width=4, controller="feedforward")

    val = copy_task(4, 2, 4, torch.Generator().manual_seed(1))
    args = dict(lengths=(1, 3), width=4, steps=6, batch_size=3, lr=1e-2, data_seed=11, validation=val, every=3)
    a = train_copy(make(), **args)
    b = train_copy(make(), **args)
    assert a.losses == b.losses and len(a.losses) == 6 and a.eval_steps == [3, 6]
    assert set(a.evals[0]) == {"errors", "bit_error_rate", "perfect"}
    assert train_copy(make(), **args, stop_after=2).losses == a.losses[:2]
    c = train_copy(make(), **{**args, "data_seed": 12})
    assert c.losses != a.losses


def test_train_copy_stops_once_validation_is_perfect():
    """Reference: a validation set the untrained model already copies (all-zero bits, zero logits round down)."""
    model = LSTMSequence(5, 4, hidden_size=3)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.output.bias.fill_(-5.0)
    x, _ = copy_task(3, 2, 4, torch.Generator().manual_seed(2))
    x[:, :2, :4] = 0.0
    h = train_copy(model, lengths=(1, 2), width=4, steps=20, batch_size=2, lr=1e-9,
                   validation=(x, torch.zeros(3, 2, 4)), every=2, until=1.0)
    assert h.stopped_at == 2 and len(h.losses) == 2


def test_copy_run_is_a_function_of_its_plain_arguments():
    """Reference: two calls with the same values give the same model and losses (what replay needs)."""
    args = dict(seed=3, model_args={"controller": "feedforward", "controller_size": 6, "memory_slots": 8,
                                    "memory_width": 4}, lengths=[1, 3], width=4, steps=4, batch_size=3,
                lr=1e-2, data_seed=5, validation_size=4, validation_seed=6, every=2)
    a, b = copy_run("ntm", **args), copy_run("ntm", **args)
    assert isinstance(a, CopyRun) and a.losses == b.losses == a.history.losses
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    lstm = copy_run("lstm", seed=3, model_args={"hidden_size": 5}, lengths=[1, 2], width=4, steps=2,
                    batch_size=2, validation_size=2, every=1)
    assert isinstance(lstm.model.lstm, torch.nn.LSTM) and len(lstm.history.evals) == 2


def test_copy_loop_on_hand_made_weightings():
    """Reference: a hand-built copy program on 6 slots, L = 3: writes at 1, 2, 3; reads one step ahead."""
    L, N = 3, 6
    ww, wr = torch.zeros(2 * L + 1, N), torch.zeros(2 * L + 1, N)
    for t, slot in enumerate([1, 2, 3]):
        ww[t, slot] = 1.0
    ww[L:, 4] = 1.0  # the write head after the input phase: not scored
    wr[:L + 1, 0] = 1.0
    for t, slot in enumerate([2, 3, 4]):  # read slot t + 1 at output step t: one step ahead
        wr[L + 1 + t, slot] = 1.0
    loop = copy_loop(wr, ww, L)
    assert loop.write_slots == [1, 2, 3] and loop.read_slots == [2, 3, 4]
    assert loop.steps_by_one == 1.0 and loop.read_lead == 1 and loop.reads_match == 1.0
    assert loop.distinct == 1.0 and loop.sharpness == 1.0
    ww[2] = torch.full((N,), 1 / N)  # a blurred third write: argmax 0, a jump back
    loop = copy_loop(wr, ww, L)
    assert loop.write_slots == [1, 2, 0] and loop.steps_by_one == 0.5
    assert loop.sharpness == pytest.approx((5 + 1 / N) / 6)


def test_copy_loop_wraps_around_the_ring_and_moves_backwards():
    L, N = 3, 4
    ww, wr = torch.zeros(2 * L + 1, N), torch.zeros(2 * L + 1, N)
    for t, slot in enumerate([1, 0, 3]):  # moving -1 with a wrap from 0 to 3
        ww[t, slot] = 1.0
        wr[L + 1 + t, slot] = 1.0
    loop = copy_loop(wr, ww, L)
    assert loop.steps_by_one == 1.0 and loop.read_lead == 0 and loop.reads_match == 1.0


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
        (copy_loop, (torch.zeros(5, 4), torch.zeros(5, 4), 3), ValueError, "w_read"),
        (copy_loop, (torch.zeros(7, 4), torch.zeros(7, 5), 3), ValueError, "w_read"),
        (copy_loop, (torch.zeros(7, 4), torch.zeros(7, 4), 0), ValueError, "length"),
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
    with pytest.raises(TypeError, match="^state "):
        NTMCell(3, 2)(torch.zeros(2, 3), "state")
    with pytest.raises(ValueError, match="^controller "):
        NTMCell(3, 2, controller="gru")
    with pytest.raises(ValueError, match="^model "):
        copy_run("transformer", seed=0)
    with pytest.raises(TypeError, match="^seed "):
        copy_run("ntm", seed=0.5)
    with pytest.raises(ValueError, match="^lengths "):
        train_copy(LSTMSequence(5, 4, 3), lengths=(3, 1), width=4)
    with pytest.raises(ValueError, match="^until "):
        train_copy(LSTMSequence(5, 4, 3), lengths=(1, 2), width=4, until=0.9)
