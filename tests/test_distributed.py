"""papers30.distributed: GPipe over real processes against single-process autograd.

References: gradients and loss of one process (``torch.autograd``, float64),
``torch.distributed.pipelining.ScheduleGPipe``, the closed form of the bubble,
``torch.tensor_split`` for the partition, and hand counts of the activations
autograd saves. One pool of three stage processes serves most tests.
"""

from __future__ import annotations

import os
import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from papers30.distributed import (
    Event,
    Pipeline,
    PipelineError,
    SavedBytes,
    StepResult,
    batch_loss,
    bubble_fraction,
    timed_rounds,
    gpipe_schedule,
    measured_bubble,
    partition,
    reference_step,
    split_model,
)

DT = torch.float64


def mlp(widths, gen, dtype=DT, final_tanh=True):
    """Linear/Tanh layers through ``widths``; weights drawn from ``gen``."""
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if final_tanh or i < len(widths) - 2:
            layers.append(nn.Tanh())
    model = nn.Sequential(*layers).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.5)
    return model


def data(B, d_in, d_out, gen, dtype=DT):
    return (torch.randn(B, d_in, generator=gen, dtype=dtype),
            torch.randn(B, d_out, generator=gen, dtype=dtype))


def gone(pid: int) -> bool:
    """True when process ``pid`` no longer exists (or is a zombie awaiting reaping)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return True


def all_gone(pids, wait_s=10.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if all(gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return all(gone(p) for p in pids)


@pytest.fixture(scope="module")
def pipe():
    with Pipeline(3) as p:
        yield p
    assert all_gone(p.pids)


# ---------------------------------------------------------------- the schedule on paper


@pytest.mark.parametrize("K,M,want", [(1, 1, 0.0), (1, 8, 0.0), (2, 1, 0.5), (4, 1, 0.75),
                                      (4, 16, 3 / 19), (8, 32, 7 / 39)])
def test_bubble_fraction_matches_closed_form(K, M, want):
    assert bubble_fraction(K, M) == pytest.approx(want, abs=1e-15)


@given(st.integers(1, 12), st.integers(1, 40), st.sampled_from([0.5, 1.0, 2.0, 3.0]))
def test_measured_bubble_of_ideal_schedule_equals_formula(K, M, cost):
    """The idle share of the ideal timetable is the closed form, whatever the backward cost."""
    events = gpipe_schedule(K, M, backward_cost=cost)
    assert measured_bubble(events, K) == pytest.approx(bubble_fraction(K, M), abs=1e-12)


@given(st.integers(1, 6), st.integers(1, 10))
def test_gpipe_schedule_respects_dependencies(K, M):
    """Brute force: every op waits for its producer, and a stage never runs two ops at once."""
    ev = {(e.stage, e.kind, e.microbatch): e for e in gpipe_schedule(K, M)}
    assert len(ev) == 2 * K * M
    for (k, kind, m), e in ev.items():
        if kind == "F" and k > 0:
            assert e.start >= ev[(k - 1, "F", m)].end
        if kind == "B" and k < K - 1:
            assert e.start >= ev[(k + 1, "B", m)].end
        if kind == "B":
            assert e.start >= ev[(k, "F", M - 1)].end  # all forwards first (GPipe)
    for k in range(K):
        mine = sorted((e for e in ev.values() if e.stage == k), key=lambda e: e.start)
        assert all(a.end <= b.start for a, b in zip(mine, mine[1:]))


@pytest.mark.parametrize("L,K", [(1, 1), (5, 1), (5, 5), (7, 3), (8, 4), (9, 2), (17, 5)])
def test_partition_matches_tensor_split(L, K):
    got = [list(r) for r in partition(L, K)]
    want = [t.tolist() for t in torch.tensor_split(torch.arange(L), K)]
    assert got == want


def test_split_model_keeps_names_and_shares_parameters(gen):
    model = mlp([3, 4, 4, 2], gen)
    stages = split_model(model, 2)
    names = [n for s in stages for n, _ in s.named_parameters()]
    assert names == [n for n, _ in model.named_parameters()]
    assert stages[0][0].weight is model[0].weight
    x = torch.randn(5, 3, dtype=DT, generator=gen)
    torch.testing.assert_close(stages[1](stages[0](x)), model(x), rtol=0, atol=0)


def test_reference_step_matches_autograd(gen):
    model = mlp([3, 5, 2], gen)
    x, y = data(6, 3, 2, gen)
    loss, grads = reference_step(model, x, y)
    F.mse_loss(model(x), y).backward()
    assert loss == pytest.approx(F.mse_loss(model(x), y).item(), abs=1e-14)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=0, atol=1e-14)


def test_batch_loss_is_cross_entropy_for_labels_and_mse_for_floats(gen):
    """Against the closed forms: -mean log softmax at the label; mean squared error."""
    out = torch.randn(6, 4, generator=gen, dtype=DT)
    labels = torch.randint(0, 4, (6,), generator=gen)
    want = -(out - out.exp().sum(1, keepdim=True).log())[torch.arange(6), labels].mean()
    assert batch_loss(out, labels).item() == pytest.approx(want.item(), abs=1e-14)
    target = torch.randn(6, 4, generator=gen, dtype=DT)
    assert batch_loss(out, target).item() == pytest.approx(((out - target) ** 2).mean().item(), abs=1e-14)


def test_microbatch_losses_add_up_to_the_batch_loss(gen):
    from papers30.distributed import microbatch_loss

    out = torch.randn(8, 3, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (8,), generator=gen)
    parts = sum(microbatch_loss(out[i : i + 3], y[i : i + 3], 8) for i in range(0, 8, 3))
    assert parts.item() == pytest.approx(batch_loss(out, y).item(), abs=1e-14)


def test_losses_and_events_reject_bad_input(gen):
    from papers30.distributed import Event, microbatch_loss

    out = torch.randn(4, 3, generator=gen, dtype=DT)
    with pytest.raises(ValueError, match="target"):
        batch_loss(out, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        batch_loss(out, torch.zeros(4, 2, dtype=DT))
    with pytest.raises(ValueError, match="batch_size"):
        microbatch_loss(out, torch.zeros(4, dtype=torch.long), 0)
    with pytest.raises(TypeError, match="kind"):
        Event(0, 3, 0, 0.0, 1.0)
    with pytest.raises(ValueError, match="end"):
        Event(0, "F", 0, 2.0, 1.0)


def labels(B, V, gen):
    return torch.randint(0, V, (B,), generator=gen)


# ---------------------------------------------------------------- the real pipeline


@pytest.mark.parametrize("K,M,B,remat", [(2, 3, 10, False), (3, 4, 8, True), (2, 1, 6, True)])
def test_pipeline_with_labels_matches_autograd(pipe, K, M, B, remat, gen):
    """Cross-entropy against integer labels: same gradients as one process, float64."""
    model = mlp([5, 7, 7, 4], gen, final_tanh=False)
    x, y = data(B, 5, 4, gen)[0], labels(B, 4, gen)
    F.cross_entropy(model(x), y).backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    got = pipe.run(model, x, y, K, M, checkpoint=remat)
    for n in want:
        torch.testing.assert_close(got.grads[n], want[n], rtol=0, atol=1e-12)


def test_run_torch_with_labels_matches_autograd(pipe, gen):
    model = mlp([4, 6, 6, 3], gen, final_tanh=False)
    x, y = data(8, 4, 3, gen)[0], labels(8, 3, gen)
    loss, want = reference_step(model, x, y)
    got = pipe.run_torch(model, x, y, 3, 4)
    assert got.loss == pytest.approx(loss, abs=1e-12)
    for n in want:
        torch.testing.assert_close(got.grads[n], want[n], rtol=0, atol=1e-12)


def test_timed_rounds_runs_the_settings_in_interleaved_rounds(pipe, gen, monkeypatch):
    """Reference: the recorded list of runs, and autograd for the pipelined gradients."""
    model = mlp([4, 6, 6, 3], gen, final_tanh=False)
    x, y = data(8, 4, 3, gen)
    seen = []
    real_run = pipe.run

    def run(*args, **kwargs):
        r = real_run(*args, **kwargs)
        seen.append(((args[3], args[4]), r))
        return r

    monkeypatch.setattr(pipe, "run", run)
    rounds = timed_rounds(pipe, model, x, y, [(1, 1), (2, 4)], repeats=3)
    assert [s for s, _ in seen] == [(1, 1), (2, 4)] * 3  # interleaved rounds
    assert [step for r in rounds for step in r.values()] == [r for _, r in seen]
    _, want = reference_step(model, x, y)
    for n in want:
        torch.testing.assert_close(rounds[-1][2, 4].grads[n], want[n], rtol=0, atol=1e-12)


class ScriptedPipe(Pipeline):
    """A Pipeline without processes: ``run`` returns steps whose makespans follow a script."""

    def __init__(self, makespans):  # noqa: D107 - no workers are started
        self.makespans, self.calls = list(makespans), []

    def run(self, model, x, y, num_stages, num_microbatches):
        span = self.makespans[len(self.calls)]
        self.calls.append((num_stages, num_microbatches))
        events = [Event(0, "F", 0, 0.0, span)]
        return StepResult(loss=0.0, grads={}, events=events)


def test_timed_rounds_follows_a_scripted_pipe(gen):
    spans = [5.0, 3.0, 4.0, 1.0, 6.0, 2.0]  # rounds of (1, 1), (2, 4)
    pipe = ScriptedPipe(spans)
    rounds = timed_rounds(pipe, mlp([3, 4, 2], gen), torch.randn(8, 3, dtype=DT), torch.randn(8, 2, dtype=DT),
                          [(1, 1), (2, 4)], repeats=3)
    assert pipe.calls == [(1, 1), (2, 4)] * 3
    assert [[r[k].makespan for k in [(1, 1), (2, 4)]] for r in rounds] == [[5.0, 3.0], [4.0, 1.0], [6.0, 2.0]]


@pytest.mark.parametrize("kwargs,exc,name", [
    (dict(pipe="p"), TypeError, "pipe"),
    (dict(settings=[]), ValueError, "settings"),
    (dict(settings=[2]), TypeError, "settings"),
    (dict(repeats=0), ValueError, "repeats"),
])
def test_timed_rounds_rejects_bad_inputs(pipe, kwargs, exc, name, gen):
    args = dict(pipe=pipe, model=mlp([3, 4, 2], gen), x=torch.randn(8, 3, dtype=DT),
                y=torch.randn(8, 2, dtype=DT), settings=[(1, 1)], repeats=1)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        timed_rounds(**args)


@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("M,B", [(1, 6), (3, 10), (4, 8)])
@pytest.mark.parametrize("remat", [False, True])
def test_pipeline_gradients_match_autograd(pipe, K, M, B, remat, gen):
    """Uneven micro-batches included (B=10, M=3 gives 4, 3, 3)."""
    model = mlp([5, 7, 7, 6, 3], gen, final_tanh=False)  # 7 layers
    x, y = data(B, 5, 3, gen)
    loss, want = reference_step(model, x, y)
    got = pipe.run(model, x, y, K, M, checkpoint=remat)
    assert got.loss == pytest.approx(loss, abs=1e-12)
    assert list(got.grads) == list(want)
    for n in want:
        torch.testing.assert_close(got.grads[n], want[n], rtol=0, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())  # the caller's model is untouched


@pytest.mark.parametrize("K,M", [(2, 2), (3, 4)])
def test_run_torch_matches_autograd(pipe, K, M, gen):
    """torch.distributed.pipelining.ScheduleGPipe on the same split, float64."""
    model = mlp([4, 6, 6, 2], gen, final_tanh=False)
    x, y = data(8, 4, 2, gen)
    loss, want = reference_step(model, x, y)
    got = pipe.run_torch(model, x, y, K, M)
    assert got.loss == pytest.approx(loss, abs=1e-12)
    for n in want:
        torch.testing.assert_close(got.grads[n], want[n], rtol=0, atol=1e-12)


def test_pipeline_runs_the_gpipe_order(pipe, gen):
    """On every stage: forwards 0..M-1, then backwards 0..M-1, never overlapping, causal."""
    K, M = 3, 4
    model = mlp([4, 4, 4, 4], gen)
    x, y = data(8, 4, 4, gen)
    res = pipe.run(model, x, y, K, M)
    ev = {(e.stage, e.kind, e.microbatch): e for e in res.events}
    for k in range(K):
        mine = sorted((e for e in res.events if e.stage == k), key=lambda e: e.start)
        assert [(e.kind, e.microbatch) for e in mine] == [("F", m) for m in range(M)] + [
            ("B", m) for m in range(M)
        ]
        assert all(a.end <= b.start for a, b in zip(mine, mine[1:]))
    for m in range(M):
        for k in range(1, K):
            assert ev[(k, "F", m)].start >= ev[(k - 1, "F", m)].end
            assert ev[(k - 1, "B", m)].start >= ev[(k, "B", m)].end


def test_device_time_bubble_matches_formula(pipe, gen):
    """With a declared device time per example, the measured idle share is the closed form."""
    K, M = 3, 2
    model = mlp([4, 4, 4, 4], gen)
    x, y = data(4, 4, 4, gen)
    res = pipe.run(model, x, y, K, M, device_time=0.01)  # 20 ms per forward
    assert measured_bubble(res.events, K) == pytest.approx(bubble_fraction(K, M), abs=0.03)
    assert res.makespan == pytest.approx((M + K - 1) * 3 * 0.02, rel=0.15)


def test_activation_bytes_match_hand_count(pipe, gen):
    """Linear saves its input, Tanh its output, the loss its input and target (float32)."""
    D, B, M = 6, 8, 4
    model = mlp([D] * 5, gen, dtype=torch.float32)  # L T L T | L T L T
    x, y = data(B, D, D, gen, dtype=torch.float32)
    unit = B * D * 4  # one activation of the whole batch, in bytes
    plain = pipe.run(model, x, y, 2, M).peak_bytes
    remat = pipe.run(model, x, y, 2, M, checkpoint=True).peak_bytes
    # stage 0 keeps x, tanh1, tanh2; stage 1 keeps its input, tanh3, tanh4 (= output), y
    assert plain == [3 * unit, 4 * unit]
    # re-materialised: each stage keeps its checkpoint's inputs (the last stage's include
    # y), plus two tanh outputs of one micro-batch while recomputing it
    assert remat == [unit + 2 * unit // M, 2 * unit + 2 * unit // M]
    assert remat[0] < plain[0] and remat[1] < plain[1]


def test_saved_bytes_counts_a_shared_tensor_once():
    lin = nn.Linear(3, 3)
    counter = SavedBytes(lin)
    x = torch.randn(2, 3)
    with counter.bucket(0):
        h = torch.tanh(x)  # saves h
        lin(h)  # saves h again (as its input) and the weight (a parameter)
    assert counter.peak == counter.live == 2 * 3 * 4
    counter.release(0)
    assert counter.live == 0 and counter.peak == 24


# ---------------------------------------------------------------- failures and bad inputs


def test_failing_stage_is_named_and_leaves_no_processes(gen):
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(5, 3))  # stage 1 gets width 8
    x, y = torch.randn(4, 4), torch.randn(4, 3)
    pipe = Pipeline(2)
    pids = pipe.pids
    with pytest.raises(PipelineError, match="pipeline stage 1 failed") as info:
        pipe.run(model, x, y, 2, 2)
    assert info.value.stage == 1
    assert "mat1 and mat2 shapes cannot be multiplied" in str(info.value)
    assert all_gone(pids)
    with pytest.raises(RuntimeError, match="closed"):
        pipe.run(model, x, y, 2, 2)
    pipe.close()  # closing twice is harmless


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: bubble_fraction(0, 4), ValueError, "num_stages"),
        (lambda: bubble_fraction(2, 0), ValueError, "num_microbatches"),
        (lambda: bubble_fraction(2, 1.5), TypeError, "num_microbatches"),
        (lambda: partition(2, 3), ValueError, "num_stages"),
        (lambda: partition(0, 1), ValueError, "num_layers"),
        (lambda: split_model([nn.Linear(2, 2)], 1), TypeError, "model"),
        (lambda: gpipe_schedule(2, 2, backward_cost=0.0), ValueError, "backward_cost"),
        (lambda: measured_bubble([], 2), ValueError, "events"),
        (lambda: Pipeline(0), ValueError, "world_size"),
        (lambda: Pipeline(2, timeout_s=-1.0), ValueError, "timeout_s"),
    ],
)
def test_bad_inputs_name_the_argument(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(num_microbatches=0), ValueError, "num_microbatches"),
        (dict(num_microbatches=9), ValueError, "num_microbatches"),
        (dict(num_stages=4), ValueError, "num_stages"),  # more than world_size
        (dict(x=torch.randn(8, 3).tolist()), TypeError, "x"),
        (dict(x=torch.randn(8, 3, 1)), ValueError, "x"),
        (dict(y=torch.randn(7, 2)), ValueError, "y"),
        (dict(y=torch.zeros(8, dtype=torch.int32)), TypeError, "y"),
        (dict(model=nn.Linear(3, 2)), TypeError, "model"),
        (dict(checkpoint=1), TypeError, "checkpoint"),
        (dict(device_time=-0.1), ValueError, "device_time"),
    ],
)
def test_run_rejects_bad_inputs(pipe, kwargs, exc, name, gen):
    args = dict(model=mlp([3, 4, 2], gen), x=torch.randn(8, 3, dtype=DT),
                y=torch.randn(8, 2, dtype=DT), num_stages=2, num_microbatches=2)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        pipe.run(**args)


def test_more_stages_than_layers_is_rejected(pipe, gen):
    model = mlp([3, 2], gen, final_tanh=False)  # one layer
    with pytest.raises(ValueError, match="num_stages"):
        pipe.run(model, torch.randn(4, 3, dtype=DT), torch.randn(4, 2, dtype=DT), 2, 2)


def test_run_torch_needs_even_microbatches(pipe, gen):
    model = mlp([3, 4, 2], gen)
    with pytest.raises(ValueError, match="num_microbatches"):
        pipe.run_torch(model, torch.randn(7, 3, dtype=DT), torch.randn(7, 2, dtype=DT), 2, 2)


def test_clean_close_leaves_no_processes():
    with Pipeline(2) as p:
        pids = p.pids
        assert all(not gone(pid) for pid in pids)
    assert all_gone(pids)
    assert os.getpid() not in pids


# ---------------------------------------------------------------- the chapter's plots


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pipeline_returns_gradients_on_the_inputs_device(pipe, gen):
    model = mlp([4, 6, 6, 2], gen, final_tanh=False).cuda()
    x, y = (t.cuda() for t in data(8, 4, 2, gen))
    loss, want = reference_step(model, x, y)
    got = pipe.run(model, x, y, 2, 4, checkpoint=True)
    for n in want:
        assert got.grads[n].device == x.device
        torch.testing.assert_close(got.grads[n], want[n], rtol=0, atol=1e-12)
