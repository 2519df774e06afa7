"""papers30.pointer against brute-force references (float64).

The decoder is checked against a loop built from ``torch.nn.LSTMCell`` (with
copied weights) and the additive scores written out slot by slot; greedy
decoding against the teacher-forced pass fed its own choices; the network's
masking against running each row of a padded batch on its own.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.pointer import IGNORE, PointerDecoder, PointerNetwork, hull_targets

DT = torch.float64
TOL = dict(rtol=1e-9, atol=1e-9)


def randn(*shape, g):
    return torch.randn(*shape, dtype=DT, generator=g)


@torch.no_grad()
def decoder_reference(dec, inputs, memory, targets, state, allowed_fn):
    """Loop reference: torch.nn.LSTMCell with copied weights, scores slot by slot, log-softmax by hand."""
    cell = torch.nn.LSTMCell(dec.input_size, dec.hidden_size).double()
    cell.load_state_dict(dec.cell.state_dict())
    wq, wk, v = dec.attention.query_proj.weight, dec.attention.key_proj.weight, dec.attention.v
    B, N, _ = memory.shape
    h, c = state
    x = dec.start.expand(B, -1)
    out = torch.empty(B, targets.shape[1], N, dtype=DT)
    for t in range(targets.shape[1]):
        h, c = cell(x, (h, c))
        allowed = allowed_fn(t)
        for b in range(B):
            u = [float(v @ torch.tanh(wk @ memory[b, j] + wq @ h[b])) for j in range(N)]
            z = math.log(sum(math.exp(u[j]) for j in range(N) if allowed[b, j]))
            for j in range(N):
                out[b, t, j] = u[j] - z if allowed[b, j] else float("-inf")
        x = torch.stack([inputs[b, max(int(targets[b, t]), 0)] for b in range(B)])
    return out


@pytest.mark.parametrize("B,N,T,D,M,H", [(1, 1, 1, 1, 1, 1), (2, 4, 3, 2, 5, 3), (3, 6, 6, 2, 4, 4)])
def test_pointer_decoder_matches_lstmcell_loop_reference(B, N, T, D, M, H, gen):
    dec = PointerDecoder(D, M, H, attention_size=3).double()
    inputs, memory = randn(B, N, D, g=gen), randn(B, N, M, g=gen)
    state = (randn(B, H, g=gen), randn(B, H, g=gen))
    targets = torch.randint(0, N, (B, T), generator=gen)
    got = dec(inputs, memory, targets, state).detach()
    want = decoder_reference(dec, inputs, memory, targets, state, lambda t: torch.ones(B, N, dtype=torch.bool))
    assert got.shape == (B, T, N)
    torch.testing.assert_close(got, want.detach(), **TOL)


def test_pointer_decoder_exclude_chosen_matches_loop_reference(gen):
    B, N, T = 2, 5, 4
    dec = PointerDecoder(2, 3, 4).double()
    inputs, memory = randn(B, N, 2, g=gen), randn(B, N, 3, g=gen)
    targets = torch.stack([torch.randperm(N, generator=gen)[:T] for _ in range(B)])
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 4] = False
    targets[1] = torch.tensor([3, 0, 2, 1])

    def allowed(t):  # the mask, minus every slot chosen before step t
        a = mask.clone()
        for b in range(B):
            a[b, targets[b, :t]] = False
        return a

    zeros = (torch.zeros(B, 4, dtype=DT), torch.zeros(B, 4, dtype=DT))
    got = dec(inputs, memory, targets, None, mask, exclude_chosen=True).detach()
    want = decoder_reference(dec, inputs, memory, targets, zeros, allowed).detach()
    torch.testing.assert_close(got, want, **TOL)


def test_greedy_equals_argmax_of_teacher_forced_pass_on_its_own_choices(gen):
    dec = PointerDecoder(2, 3, 5).double()
    inputs, memory = randn(3, 6, 2, g=gen), randn(3, 6, 3, g=gen)
    picks, logp = dec.greedy(inputs, memory, steps=6)
    forced = dec(inputs, memory, picks, exclude_chosen=True).detach()
    torch.testing.assert_close(logp, forced, **TOL)
    assert torch.equal(forced.argmax(-1), picks)


@given(N=st.integers(1, 7), B=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_greedy_with_exclusion_is_a_permutation_property(N, B, seed):
    g = torch.Generator().manual_seed(seed)
    dec = PointerDecoder(2, 2, 3)
    inputs = torch.randn(B, N, 2, generator=g)
    picks, logp = dec.greedy(inputs, inputs, steps=N)
    for row in picks.tolist():
        assert sorted(row) == list(range(N))
    assert torch.all(torch.isfinite(logp.gather(-1, picks[..., None])))


def test_greedy_never_chooses_a_masked_slot_and_stops_at_end(gen):
    dec = PointerDecoder(2, 2, 3).double()
    inputs = randn(4, 6, 2, g=gen)
    mask = torch.rand(4, 6, generator=gen) < 0.5
    mask[:, 0] = True
    picks, logp = dec.greedy(inputs, inputs, steps=10, mask=mask, end_index=0)
    assert torch.all(mask.gather(1, picks))  # every pick allowed
    assert torch.all(torch.exp(logp)[~mask[:, None, :].expand_as(logp)] == 0.0)
    for row in picks.tolist():  # once the end slot is chosen, it stays chosen
        assert 0 in row
        k = row.index(0)
        assert all(s == 0 for s in row[k:])
        assert len(set(row[:k])) == k  # no repeats before the end


def test_hull_targets_closed_form():
    got = hull_targets([[2, 0, 1], [3]])
    want = torch.tensor([[3, 1, 2, 0], [4, 0, IGNORE, IGNORE]])
    assert torch.equal(got, want)


def test_pointer_network_padded_batch_matches_rows_run_alone(gen):
    torch.manual_seed(0)
    net = PointerNetwork(2, 6).double()
    a, b = randn(1, 5, 2, g=gen), randn(1, 3, 2, g=gen)
    padded = torch.cat([a, torch.cat([b, randn(1, 2, 2, g=gen)], dim=1)])
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    targets = hull_targets([[0, 2, 4], [1, 0]])
    both = net(padded, targets, mask).detach()
    alone_a = net(a, targets[:1]).detach()
    alone_b = net(b, targets[1:, :3]).detach()
    torch.testing.assert_close(both[0], alone_a[0], **TOL)
    torch.testing.assert_close(both[1, :3, :4], alone_b[0], **TOL)
    assert torch.all(both[1, :, 4:] == float("-inf"))
    assert net.predict(padded, mask)[1] == net.predict(b)[0]


def test_pointer_network_encoder_matches_torch_lstm(gen):
    net = PointerNetwork(2, 5).double()
    lstm = torch.nn.LSTM(2, 5, batch_first=True).double()
    lstm.load_state_dict({k + "_l0": v for k, v in net.encoder.state_dict().items()})
    points = randn(3, 4, 2, g=gen)
    inputs, memory, (h, c), full = net.encode(points)
    want, (h_n, c_n) = lstm(inputs)
    torch.testing.assert_close(memory, want, **TOL)
    torch.testing.assert_close((h, c), (h_n[0], c_n[0]), **TOL)
    assert bool(full.all()) and torch.equal(inputs[:, 1:], points)


def test_pointer_network_loss_is_mean_nll_by_hand_and_has_gradients(gen):
    net = PointerNetwork(2, 4).double()
    points = randn(2, 4, 2, g=gen)
    targets = hull_targets([[0, 1, 2], [3]])
    logp = net(points, targets)
    picked = [logp[b, t, targets[b, t]] for b in range(2) for t in range(4) if targets[b, t] != IGNORE]
    loss = net.loss(points, targets)
    torch.testing.assert_close(loss, -sum(picked) / len(picked), **TOL)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_predict_returns_point_indices_before_end(gen):
    net = PointerNetwork(2, 4).double()
    points = randn(3, 5, 2, g=gen)
    preds = net.predict(points)
    assert len(preds) == 3
    for seq in preds:
        assert len(set(seq)) == len(seq) and all(0 <= i < 5 for i in seq)


# ----------------------------------------------------------------- bad input


@pytest.fixture
def dec():
    return PointerDecoder(2, 3, 4)


@pytest.mark.parametrize(
    "kwargs,name,exc",
    [
        (dict(inputs=torch.ones(2, 5, 2, dtype=torch.long)), "inputs", TypeError),
        (dict(inputs=torch.ones(2, 4, 2)), "inputs", ValueError),
        (dict(memory=torch.ones(2, 5, 2)), "memory", ValueError),
        (dict(targets=torch.ones(2, 3)), "targets", TypeError),
        (dict(targets=torch.full((2, 3), 5)), "targets", ValueError),
        (dict(state=torch.zeros(2, 4)), "state", TypeError),
        (dict(state=(torch.zeros(2, 4), torch.zeros(2, 3))), "state", ValueError),
        (dict(mask=torch.ones(2, 5)), "mask", TypeError),
        (dict(mask=torch.zeros(2, 5, dtype=torch.bool)), "mask", ValueError),
    ],
)
def test_pointer_decoder_rejects_bad_input(dec, kwargs, name, exc):
    args = dict(inputs=torch.ones(2, 5, 2), memory=torch.ones(2, 5, 3), targets=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(exc, match=name):
        dec(**(args | kwargs))


def test_greedy_rejects_bad_steps_and_end_index(dec):
    x, m = torch.ones(2, 5, 2), torch.ones(2, 5, 3)
    with pytest.raises(ValueError, match="steps"):
        dec.greedy(x, m, steps=0)
    with pytest.raises(ValueError, match="end_index"):
        dec.greedy(x, m, steps=2, end_index=5)


@pytest.mark.parametrize("arg", ["input_size", "memory_size", "hidden_size", "attention_size"])
def test_pointer_decoder_rejects_bad_sizes(arg):
    sizes = dict(input_size=2, memory_size=2, hidden_size=2, attention_size=2) | {arg: 0}
    with pytest.raises(ValueError, match=arg):
        PointerDecoder(**sizes)


def test_pointer_network_rejects_bad_points_and_mask():
    net = PointerNetwork(2, 4)
    with pytest.raises(ValueError, match="points"):
        net.predict(torch.ones(2, 5, 3))
    with pytest.raises(TypeError, match="points"):
        net.predict(torch.ones(2, 5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="mask"):
        net.predict(torch.ones(2, 5, 2), mask=torch.ones(2, 4, dtype=torch.bool))


def test_hull_targets_rejects_bad_sequences():
    with pytest.raises(TypeError, match="sequences"):
        hull_targets([1, 2])
    with pytest.raises(ValueError, match="sequences"):
        hull_targets([[0, -1]])
    with pytest.raises(ValueError, match="sequences"):
        hull_targets([])
