"""papers30.sets against brute-force loops, torch.nn.LSTMCell/LSTM with copied weights and permutations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.data.synthetic import sorting_task
from papers30.runtime import generator
from papers30.sets import (
    ProcessBlock,
    ReadBlock,
    SequencePointerModel,
    Set2Set,
    SetPointerModel,
    SortingRun,
    fit_sorting,
    train_sorter,
)

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def randn(*shape, g):
    return torch.randn(*shape, dtype=DT, generator=g)


@torch.no_grad()
def process_reference(block: ProcessBlock, memory: torch.Tensor, mask: torch.Tensor | None = None):
    """Brute force: one set at a time, torch.nn.LSTMCell with copied weights, softmax by hand over real elements."""
    D = block.input_size
    cell = torch.nn.LSTMCell(2 * D, D).double()
    cell.load_state_dict(block.lstm.state_dict())
    B, N, _ = memory.shape
    outs, attn = [], []
    for b in range(B):
        rows = [memory[b, i] for i in range(N) if mask is None or bool(mask[b, i])]
        q_star, h, c = torch.zeros(1, 2 * D, dtype=DT), torch.zeros(1, D, dtype=DT), torch.zeros(1, D, dtype=DT)
        steps = []
        for _ in range(block.steps):
            h, c = cell(q_star, (h, c))
            e = [float(m @ h[0]) for m in rows]
            z = sum(math.exp(v) for v in e)
            a = [math.exp(v) / z for v in e]
            r = sum(w * m for w, m in zip(a, rows))
            q_star = torch.cat([h[0], r])[None]
            it = iter(a)
            steps.append([next(it) if mask is None or bool(mask[b, i]) else 0.0 for i in range(N)])
        outs.append(q_star[0])
        attn.append(steps)
    return torch.stack(outs), torch.tensor(attn, dtype=DT).reshape(B, block.steps, N)


# (B, N, D, P): batch 1, one element, P = 0 and 1, several steps.
SHAPES = [(1, 1, 1, 1), (1, 1, 3, 0), (2, 4, 3, 0), (2, 4, 3, 1), (3, 5, 2, 3), (4, 7, 4, 5)]


@pytest.mark.parametrize("B,N,D,P", SHAPES)
def test_process_block_matches_brute_force_loop(B, N, D, P, gen):
    block = ProcessBlock(D, P).double()
    memory = randn(B, N, D, g=gen)
    got = block(memory)
    want, want_attn = process_reference(block, memory)
    assert got.shape == (B, 2 * D)
    torch.testing.assert_close(got.detach(), want, **TOL)
    assert block.last_weights.shape == (B, P, N)
    torch.testing.assert_close(block.last_weights, want_attn, **TOL)


@pytest.mark.parametrize("B,N,D,P", [s for s in SHAPES if s[1] > 1])
def test_process_block_with_mask_matches_brute_force_on_real_elements(B, N, D, P, gen):
    block = ProcessBlock(D, P).double()
    memory = randn(B, N, D, g=gen)
    lengths = torch.randint(1, N + 1, (B,), generator=gen)
    mask = torch.arange(N)[None, :] < lengths[:, None]
    memory = memory.masked_fill(~mask[..., None], 1e3)  # padding values must not matter
    want, want_attn = process_reference(block, memory, mask)
    torch.testing.assert_close(block(memory, mask).detach(), want, **TOL)
    torch.testing.assert_close(block.last_weights, want_attn, **TOL)
    assert bool((block.last_weights[~mask[:, None, :].expand(-1, P, -1)] == 0).all())


def test_process_block_with_zero_steps_returns_zeros(gen):
    block = ProcessBlock(3, 0).double()
    out = block(randn(2, 4, 3, g=gen))
    assert out.shape == (2, 6) and bool((out == 0).all())
    assert block.last_weights.shape == (2, 0, 4)


@given(seed=st.integers(0, 2**16), N=st.integers(1, 8), P=st.integers(0, 4), masked=st.booleans())
def test_process_block_is_permutation_invariant_property(seed, N, P, masked):
    """Reference: the same sets with their elements (and mask) reordered give the same q*_P."""
    g = torch.Generator().manual_seed(seed)
    block = ProcessBlock(3, P).double()
    memory = randn(4, N, 3, g=g)
    mask = None
    if masked:
        mask = torch.rand(4, N, generator=g) < 0.6
        mask[:, 0] = True
    perm = torch.stack([torch.randperm(N, generator=g) for _ in range(4)])
    shuffled = memory.gather(1, perm[..., None].expand(-1, -1, 3))
    shuffled_mask = None if mask is None else mask.gather(1, perm)
    a, b = block(memory, mask), block(shuffled, shuffled_mask)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_process_block_float32_invariance_within_float_tolerance(gen):
    block = ProcessBlock(16, 5)
    memory = torch.randn(64, 10, 16, generator=gen)
    perm = torch.randperm(10, generator=gen)
    diff = (block(memory) - block(memory[:, perm])).abs().max().item()
    assert diff < 1e-5


def test_process_block_gradients_match_finite_differences(gen):
    block = ProcessBlock(2, 2).double()
    memory = randn(2, 3, 2, g=gen).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: block(m), (memory,))


def test_set2set_is_the_process_block():
    assert Set2Set is ProcessBlock
    assert ProcessBlock(4, 2).output_size == 8


# ------------------------------------------------------------------ read block


def test_read_block_matches_by_hand_mlp_and_is_equivariant(gen):
    read = ReadBlock(2, 5).double()
    x = randn(3, 4, 2, g=gen)
    l1, l2 = read.net[0], read.net[2]
    want = torch.relu(x @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias
    torch.testing.assert_close(read(x), want, **TOL)
    perm = torch.randperm(4, generator=gen)
    torch.testing.assert_close(read(x[:, perm]), read(x)[:, perm], **TOL)


# ---------------------------------------------------------------- sorting models


def test_set_model_encoding_and_predicted_values_ignore_input_order(gen):
    """Reference: shuffling the input changes neither q*_P nor the sequence of values pointed at."""
    torch.manual_seed(0)
    model = SetPointerModel(1, 8, 8, steps=3).double()
    x = torch.rand(16, 6, generator=gen, dtype=DT)
    perm = torch.randperm(6, generator=gen)
    torch.testing.assert_close(model.set_encoding(x), model.set_encoding(x[:, perm]), **TOL)
    values = x.gather(1, model.predict(x))
    values_shuffled = x[:, perm].gather(1, model.predict(x[:, perm]))
    assert torch.equal(values, values_shuffled)


def test_sequence_model_encoding_matches_torch_lstm_and_depends_on_order(gen):
    torch.manual_seed(0)
    model = SequencePointerModel(1, 4, 5).double()
    lstm = torch.nn.LSTM(4, 5, batch_first=True).double()
    lstm.load_state_dict(model.encoder.state_dict())
    x = torch.rand(3, 6, generator=gen, dtype=DT)
    _, (h, _) = lstm(model.read(x[..., None]))
    torch.testing.assert_close(model.set_encoding(x), h[0], **TOL)
    flipped = model.set_encoding(x.flip(1))
    assert (flipped - h[0]).abs().max().item() > 1e-6


@pytest.mark.parametrize("make", [lambda: SetPointerModel(1, 6, 7, 2), lambda: SequencePointerModel(1, 6, 7)])
def test_loss_is_mean_nll_of_teacher_forced_log_probabilities(make, gen):
    torch.manual_seed(1)
    model = make().double()
    x, order = sorting_task(5, 4, gen)
    x = x.double()
    logp = model(x, order)
    assert logp.shape == (5, 4, 4)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(5, 4, dtype=DT), **TOL)
    want = -sum(logp[b, t, order[b, t]] for b in range(5) for t in range(4)) / 20
    loss = model.loss(x, order)
    torch.testing.assert_close(loss, want, **TOL)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("make", [lambda e: SetPointerModel(1, 6, 7, 1, exclude_chosen=e),
                                  lambda e: SequencePointerModel(1, 6, 7, exclude_chosen=e)])
def test_predict_is_argmax_of_teacher_forced_pass_and_a_permutation_when_excluding(make, gen):
    torch.manual_seed(2)
    x, _ = sorting_task(8, 5, gen)
    for exclude in (False, True):
        model = make(exclude)
        picks = model.predict(x)
        assert picks.shape == (8, 5)
        with torch.no_grad():
            logp = model(x, picks)
        assert torch.equal(logp.argmax(-1), picks)
        if exclude:
            assert torch.equal(picks.sort(1).values, torch.arange(5).expand(8, -1))


@pytest.mark.parametrize("make", [lambda: SetPointerModel(1, 6, 7, 2, glimpse=True),
                                  lambda: SequencePointerModel(1, 6, 7, glimpse=True)])
def test_models_with_a_glimpse_keep_the_loss_and_the_set_models_invariance(make, gen):
    """Reference: the loss by hand; for the set model, the values pointed at under a shuffle."""
    torch.manual_seed(4)
    model = make().double()
    assert model.write.glimpse is not None
    x, order = sorting_task(6, 5, gen)
    x = x.double()
    logp = model(x, order)
    want = -sum(logp[b, t, order[b, t]] for b in range(6) for t in range(5)) / 30
    torch.testing.assert_close(model.loss(x, order), want, **TOL)
    if isinstance(model, SetPointerModel):
        perm = torch.randperm(5, generator=gen)
        assert torch.equal(x.gather(1, model.predict(x)), x[:, perm].gather(1, model.predict(x[:, perm])))


def test_fit_sorting_draws_the_same_batches_for_every_model_with_the_same_seed():
    """Reference: a second model with the same weights; the same seed must give the same losses."""
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        losses.append(fit_sorting(SetPointerModel(1, 4, 4, 2), n=4, steps=5, batch=6, lr=1e-2, seed=2).losses)
    assert losses[0] == losses[1] and len(losses[0]) == 5
    torch.manual_seed(0)
    assert fit_sorting(SetPointerModel(1, 4, 4, 2), n=4, steps=5, batch=6, lr=1e-2, seed=3).losses != losses[0]
    torch.manual_seed(0)
    short = fit_sorting(SetPointerModel(1, 4, 4, 2), n=4, steps=5, batch=6, lr=1e-2, seed=2, stop_after=2)
    assert short.losses == losses[0][:2]


def test_train_sorter_builds_the_named_model_and_replays_exactly():
    """Reference: two calls with the same plain arguments (what a recorded run's replay does)."""
    a = train_sorter(3, n=4, width=5, steps=4, batch=3, lr=1e-2, seed=1, glimpse=True)
    b = train_sorter(3, n=4, width=5, steps=4, batch=3, lr=1e-2, seed=1, glimpse=True, stop_after=2)
    assert isinstance(a, SortingRun) and a.losses == a.history.losses and len(a.losses) == 4
    assert b.losses == a.losses[:2]
    assert isinstance(a.model, SetPointerModel) and a.model.process.steps == 3 and a.model.write.glimpse is not None
    base = train_sorter(None, n=4, width=5, steps=2, batch=3, lr=1e-2, seed=1)
    assert isinstance(base.model, SequencePointerModel) and base.model.write.glimpse is None


def test_without_feedback_or_glimpse_the_write_block_sees_the_set_only_through_q_star():
    """Reference: with P = 0 every score depends on its own element alone, so changing a third element leaves
    the log-odds of the first two unchanged; with P = 1 the set encoding carries the change into them."""
    torch.manual_seed(4)
    x = torch.tensor([[0.2, 0.7, 0.1], [0.2, 0.7, 0.9]], dtype=torch.float64)
    order = torch.tensor([[0, 1, 2], [0, 1, 2]])
    for p, same in ((0, True), (1, False)):
        model = SetPointerModel(1, 4, 4, p, feed_chosen=False).double()
        logp = model(x, order).detach()
        odds = logp[:, :, 0] - logp[:, :, 1]  # (sets, steps)
        assert torch.allclose(odds[0], odds[1], atol=1e-12) is same
    run = train_sorter(1, n=3, width=4, steps=2, batch=3, lr=1e-2, seed=0, feed_chosen=False)
    assert run.model.write.feed_chosen is False and train_sorter(1, 3, 4, 1, 3, 1e-2, 0).model.write.feed_chosen


def test_fit_sorting_with_sgd_equals_a_hand_written_sgd_loop():
    """Reference: plain SGD written out (clip, then step, then cosine decay), on the same batches."""
    torch.manual_seed(0)
    model = SetPointerModel(1, 4, 4, 2, glimpse=True)
    twin = SetPointerModel(1, 4, 4, 2, glimpse=True)
    twin.load_state_dict(model.state_dict())
    got = fit_sorting(model, n=4, steps=6, batch=5, lr=0.5, seed=3, optimizer="sgd", clip=2.0).losses
    draw, want = generator(3), []
    for step in range(6):
        lr = 0.5 * (1 + math.cos(math.pi * step / 6)) / 2
        x, order = sorting_task(5, 4, draw)
        loss = twin.loss(x, order)
        twin.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), 2.0)
        with torch.no_grad():
            for w in twin.parameters():
                w -= lr * w.grad
        want.append(loss.item())
    assert got == pytest.approx(want, rel=1e-5)
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    run = train_sorter(1, n=4, width=4, steps=3, batch=5, lr=0.5, seed=3, optimizer="sgd", clip=2.0)
    adam = train_sorter(1, n=4, width=4, steps=3, batch=5, lr=0.5, seed=3)
    assert run.losses[0] == adam.losses[0] and run.losses[1:] != adam.losses[1:]


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: fit_sorting("model", 4, 2, 2, 1e-2, 0), TypeError, "model"),
        (lambda: fit_sorting(SetPointerModel(1, 2, 2, 1), 0, 2, 2, 1e-2, 0), ValueError, "n"),
        (lambda: fit_sorting(SetPointerModel(1, 2, 2, 1), 3, 2, 0, 1e-2, 0), ValueError, "batch"),
        (lambda: fit_sorting(SetPointerModel(1, 2, 2, 1), 3, 2, 2, -1.0, 0), ValueError, "lr"),
        (lambda: fit_sorting(SetPointerModel(1, 2, 2, 1), 3, 2, 2, 1e-2, 0, optimizer="rmsprop"), ValueError,
         "optimizer"),
        (lambda: fit_sorting(SetPointerModel(1, 2, 2, 1), 3, 2, 2, 1e-2, 0, optimizer=None), TypeError, "optimizer"),
        (lambda: train_sorter(2.5, 3, 2, 2, 2, 1e-2, 0), TypeError, "process_steps"),
        (lambda: train_sorter(1, 3, 0, 2, 2, 1e-2, 0), ValueError, "width"),
    ],
)
def test_training_helpers_reject_bad_arguments(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_process_block_runs_on_the_device_of_its_inputs():
    block = ProcessBlock(4, 2).cuda()
    memory = torch.randn(2, 3, 4, device="cuda")
    mask = torch.ones(2, 3, dtype=torch.bool, device="cuda")
    assert block(memory, mask).device.type == "cuda"
    torch.testing.assert_close(block(memory, mask).cpu(), block.cpu()(memory.cpu(), mask.cpu()))


# ------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        ({"input_size": 0, "steps": 1}, ValueError, "input_size"),
        ({"input_size": 2.0, "steps": 1}, TypeError, "input_size"),
        ({"input_size": 2, "steps": -1}, ValueError, "steps"),
        ({"input_size": 2, "steps": 1.5}, TypeError, "steps"),
        ({"input_size": 2, "steps": True}, TypeError, "steps"),
    ],
)
def test_process_block_rejects_bad_sizes(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        ProcessBlock(**kwargs)


@pytest.mark.parametrize(
    "memory,mask,exc,name",
    [
        ([[1.0, 2.0]], None, TypeError, "memory"),
        (torch.zeros(2, 3), None, ValueError, "memory"),
        (torch.zeros(2, 3, 4, dtype=torch.long), None, TypeError, "memory"),
        (torch.zeros(2, 3, 5), None, ValueError, "memory"),
        (torch.zeros(2, 0, 4), None, ValueError, "memory"),
        (torch.zeros(2, 3, 4), torch.ones(2, 3), TypeError, "mask"),
        (torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool), ValueError, "mask"),
        (torch.zeros(2, 3, 4), torch.tensor([[True, False, False], [False] * 3]), ValueError, "mask"),
    ],
)
def test_process_block_rejects_bad_inputs(memory, mask, exc, name):
    with pytest.raises(exc, match=name):
        ProcessBlock(4, 1)(memory, mask)


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: ReadBlock(0, 3), ValueError, "in_features"),
        (lambda: ReadBlock(1, 2.5), TypeError, "width"),
        (lambda: ReadBlock(2, 3)(torch.zeros(2, 3, 1)), ValueError, "x"),
        (lambda: SetPointerModel(1, 4, 0, 1), ValueError, "hidden_size"),
        (lambda: SetPointerModel(1, 4, 4, -2), ValueError, "steps"),
        (lambda: SetPointerModel(1, 4, 4, 1, exclude_chosen=1), TypeError, "exclude_chosen"),
        (lambda: SequencePointerModel(1, 4, 4, glimpse=1), TypeError, "glimpse"),
        (lambda: SetPointerModel(1, 4, 4, 1).predict(torch.zeros(3)), ValueError, "x"),
        (lambda: SetPointerModel(1, 4, 4, 1).predict(torch.zeros(2, 3, dtype=torch.long)), TypeError, "x"),
        (lambda: SetPointerModel(1, 4, 4, 1).predict(torch.zeros(2, 0)), ValueError, "x"),
        (lambda: SequencePointerModel(1, 4, 4).set_encoding(torch.zeros(2, 3, 2)), ValueError, "x"),
    ],
)
def test_models_reject_bad_arguments(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


# ----------------------------------------------- the plot helper chapter 8 adds to plotting.py
