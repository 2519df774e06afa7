"""Pipeline parallelism with the GPipe schedule, run in real worker processes (chapter 9).

Huang et al. (2019), *GPipe*: a sequential network of ``L`` layers is cut into
``K`` stages of consecutive layers, one per device, and a batch of ``B``
examples into ``M`` micro-batches. Every stage runs the forward pass of all
``M`` micro-batches, then their backward passes, sending activations to the
next stage and gradients to the previous one; the gradients of the
micro-batches add up to the gradient of the whole batch. Optionally each stage
keeps only its input per micro-batch and recomputes the rest during the
backward pass (re-materialisation).

Here a "device" is an operating-system process: :class:`Pipeline` starts
``world_size`` workers that talk through ``torch.distributed`` with the gloo
backend on 127.0.0.1. Each worker time-stamps its operations, so the idle
fraction of the schedule (the bubble, :func:`bubble_fraction`) can be measured
(:func:`measured_bubble`), and counts the bytes autograd saves for the backward
pass, so the activation memory with and without re-materialisation can be
compared. ``device_time`` adds a declared, fixed amount of work per example
(a sleep) that stands for an accelerator's compute when there are more stages
than CPU cores. :meth:`Pipeline.run_torch` runs the same split with
``torch.distributed.pipelining.ScheduleGPipe`` for comparison.

The loss is the mean over the whole batch of the cross-entropy against
integer class labels ``y`` (or of the squared error against float targets
``y``); a micro-batch of ``n`` examples contributes its own mean loss times
``n / B``, so the sum over micro-batches is the full-batch loss exactly.

Shapes: ``x`` is ``(B, D)``; ``y`` is ``(B,)`` class labels in ``0 .. V-1``
(the model's last layer gives ``V`` logits) or ``(B, D_out)`` float targets;
``K`` stages, ``M`` micro-batches, ``L`` layers.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import math
import queue
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from papers30 import _checks

_HEADER = 8  # int64 slots of a header: ndim, up to 6 sizes, the send time (last slot)
_TAG_HEADER, _TAG_DATA = 1, 2


class _EventFields(NamedTuple):
    stage: int
    kind: str
    microbatch: int
    start: float
    end: float


class Event(_EventFields):
    """One operation of one stage: a forward (``"F"``) or backward (``"B"``) pass of a micro-batch.

    ``start`` and ``end`` are seconds on the machine's monotonic clock (shared
    by all processes), or clock ticks for :func:`gpipe_schedule`.
    """

    __slots__ = ()

    def __new__(cls, stage: int, kind: str, microbatch: int, start: float, end: float) -> "Event":
        for name, value in (("stage", stage), ("microbatch", microbatch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"kind must be a non-empty str such as 'F' or 'B', got {kind!r}")
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"{name} must be a finite float, got {value!r}")
        if end < start:
            raise ValueError(f"end must not come before start, got start={start}, end={end}")
        return super().__new__(cls, stage, kind, microbatch, start, end)


@dataclass
class StepResult:
    """What one pipelined training step returns.

    ``grads`` maps the model's parameter names to their gradients; ``events``
    lists every stage's operations; ``peak_bytes[k]`` is the largest number of
    bytes stage ``k`` held saved for the backward pass at any moment (``None``
    entries for :meth:`Pipeline.run_torch`, which does not count them).
    """

    loss: float
    grads: dict[str, torch.Tensor]
    events: list[Event] = field(default_factory=list)
    peak_bytes: list[int | None] = field(default_factory=list)
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def makespan(self) -> float:
        """Seconds from the first operation's start to the last one's end."""
        return max(e.end for e in self.events) - min(e.start for e in self.events)


# ---------------------------------------------------------------- the schedule on paper


def bubble_fraction(num_stages: int, num_microbatches: int) -> float:
    """The idle share of a GPipe step, ``(K - 1) / (M + K - 1)`` (eq. bubble)."""
    k = _checks.positive_int("num_stages", num_stages)
    m = _checks.positive_int("num_microbatches", num_microbatches)
    return (k - 1) / (m + k - 1)


def partition(num_layers: int, num_stages: int) -> list[range]:
    """Split layer indices ``0 .. L-1`` into ``K`` runs of consecutive layers.

    The runs differ in length by at most one; the earlier stages take the
    extra layers.
    """
    n = _checks.positive_int("num_layers", num_layers)
    k = _checks.positive_int("num_stages", num_stages)
    if k > n:
        raise ValueError(f"num_stages must be at most num_layers ({n}), got {k}")
    base, extra = divmod(n, k)
    bounds = [0]
    for s in range(k):
        bounds.append(bounds[-1] + base + (1 if s < extra else 0))
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def split_model(model: nn.Sequential, num_stages: int) -> list[nn.Sequential]:
    """Cut ``model`` into ``K`` stages of consecutive layers (:func:`partition`).

    The stages share the model's modules and keep its parameter names.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a torch.nn.Sequential, got {type(model).__name__}")
    if len(model) == 0:
        raise ValueError("model must have at least one layer")
    return [model[r.start : r.stop] for r in partition(len(model), num_stages)]


def gpipe_schedule(num_stages: int, num_microbatches: int, backward_cost: float = 2.0) -> list[Event]:
    """The ideal GPipe timetable when every operation takes its nominal time.

    A forward pass takes 1 time unit and a backward pass ``backward_cost``.
    Stage ``k`` runs the forward of micro-batch ``m`` as soon as stage ``k-1``
    has finished it; after the last forward, the backward passes run from the
    last stage to the first, micro-batches in order ``0 .. M-1`` (the order of
    ``torch.distributed.pipelining.ScheduleGPipe``). Returns the events sorted
    by stage, then start.
    """
    k_n = _checks.positive_int("num_stages", num_stages)
    m_n = _checks.positive_int("num_microbatches", num_microbatches)
    if isinstance(backward_cost, bool) or not isinstance(backward_cost, (int, float)):
        raise TypeError(f"backward_cost must be a float, got {type(backward_cost).__name__}")
    if not backward_cost > 0:
        raise ValueError(f"backward_cost must be positive, got {backward_cost}")
    fwd_end = m_n + k_n - 1  # the forward phase lasts M + K - 1 units
    events = []
    for k in range(k_n):
        for m in range(m_n):
            events.append(Event(k, "F", m, float(k + m), float(k + m + 1)))
        for m in range(m_n):
            start = fwd_end + backward_cost * (k_n - 1 - k + m)
            events.append(Event(k, "B", m, float(start), float(start + backward_cost)))
    return events


def measured_bubble(events: list[Event], num_stages: int) -> float:
    """The idle share of a step: ``1 - (busy time of all stages) / (K * makespan)``.

    The makespan runs from the earliest start to the latest end over all
    stages; a stage is busy while one of its events runs.
    """
    k = _checks.positive_int("num_stages", num_stages)
    if isinstance(events, (str, bytes)) or not isinstance(events, (list, tuple)):
        raise TypeError(f"events must be a list of Event, got {type(events).__name__}")
    if not events:
        raise ValueError("events must not be empty")
    if not all(isinstance(e, Event) for e in events):
        raise TypeError("events must be a list of Event")
    span = max(e.end for e in events) - min(e.start for e in events)
    if span <= 0:
        raise ValueError("events must span a positive time")
    busy = sum(e.end - e.start for e in events if e.stage < k)
    return 1.0 - busy / (k * span)


# ---------------------------------------------------------------- the reference


def batch_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean loss of a batch: cross-entropy for integer labels ``(B,)``, squared error for float targets.

    ``output`` is ``(B, V)`` logits (labels) or ``(B, D_out)`` (float targets).
    """
    _checks.tensor("output", output, ndim=2, kind="float")
    _checks.tensor("target", target, ndim=(1, 2))
    _checks.size_matches("target", target.shape[0], output.shape[0], "batch size")
    if target.is_floating_point():
        _checks.size_matches("target", tuple(target.shape), tuple(output.shape), "shape (that of output)")
        return F.mse_loss(output, target)
    if target.dim() != 1 or target.dtype == torch.bool:
        raise ValueError(f"target must be (B,) integer labels or float targets shaped like output, got {target.dtype} {tuple(target.shape)}")
    return F.cross_entropy(output, target)


def microbatch_loss(output: torch.Tensor, target: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A micro-batch's share of the full-batch loss (:func:`batch_loss`): ``loss * n / B``."""
    _checks.positive_int("batch_size", batch_size)
    return batch_loss(output, target) * (output.shape[0] / batch_size)


def reference_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradients of the full-batch loss (:func:`batch_loss`) in one process.

    The model's own ``.grad`` fields are left untouched.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _checks.tensor("x", x, ndim=2, kind="float")
    _checks.tensor("y", y)
    params = dict(model.named_parameters())
    loss = batch_loss(model(x), y)
    grads = torch.autograd.grad(loss, list(params.values()))
    return loss.item(), {n: g.detach() for n, g in zip(params, grads)}


class SavedBytes:
    """Counts the bytes autograd saves for the backward pass, per micro-batch.

    Inside ``with counter.bucket(m):`` every tensor that autograd packs (see
    ``torch.autograd.graph.saved_tensors_hooks``) is charged to micro-batch
    ``m``, once per tensor (a tensor saved by two operations counts once),
    parameters excluded. :meth:`release` frees a
    micro-batch's charge after its backward pass; :attr:`peak` is the largest
    total held at any moment.
    """

    def __init__(self, module: nn.Module) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self._params = {p.data_ptr() for p in module.parameters()}
        self._seen: dict[int, set[int]] = {}
        self._held: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    @contextmanager
    def bucket(self, microbatch: int):
        """Charge tensors saved inside the block to ``microbatch``."""
        seen = self._seen.setdefault(microbatch, set())

        def pack(t: torch.Tensor) -> torch.Tensor:
            key = (t.data_ptr(), t.numel())
            if t.data_ptr() not in self._params and key not in seen:
                seen.add(key)
                nbytes = t.numel() * t.element_size()
                self._held[microbatch] = self._held.get(microbatch, 0) + nbytes
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield

    def release(self, microbatch: int) -> None:
        """Forget ``microbatch``'s saved tensors (its backward pass is done)."""
        self.live -= self._held.pop(microbatch, 0)
        self._seen.pop(microbatch, None)


# ---------------------------------------------------------------- worker side


def _dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _loads(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=False)


def _send(t: torch.Tensor, dst: int, stamp: float) -> list:
    """Post non-blocking sends of a header (shape, ``stamp``) and then ``t`` to ``dst``."""
    t = t.contiguous()
    h = torch.zeros(_HEADER, dtype=torch.int64)
    h[0] = t.dim()
    h[1 : 1 + t.dim()] = torch.tensor(t.shape, dtype=torch.int64)
    h[-1] = int(stamp * 1e9)  # when the sender finished, in ns of the monotonic clock
    return [(dist.isend(h, dst, tag=_TAG_HEADER), h), (dist.isend(t, dst, tag=_TAG_DATA), t)]


def _recv(src: int, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """Receive a tensor from ``src`` and the time its sender finished producing it."""
    h = torch.empty(_HEADER, dtype=torch.int64)
    dist.recv(h, src, tag=_TAG_HEADER)
    t = torch.empty(h[1 : 1 + int(h[0])].tolist(), dtype=dtype)
    dist.recv(t, src, tag=_TAG_DATA)
    return t, int(h[-1]) / 1e9


class _Clock:
    """When a stage's operations start and end.

    With ``per_example == 0`` the times are the wall clock around the real
    computation. Otherwise each operation stands for ``cost * per_example * n``
    seconds of accelerator time: it starts when both its input has been sent
    and the stage is free, and the process sleeps until its end, so the core
    is free meanwhile (as it would be while a device computes). Only if the
    real work overruns that window does the operation end late.
    """

    def __init__(self, per_example: float) -> None:
        self.per_example = per_example
        self.free = time.monotonic()

    def start(self, ready: float) -> float:
        return time.monotonic() if self.per_example == 0 else max(ready, self.free)

    def finish(self, start: float, examples: int, cost: float) -> float:
        now = time.monotonic()
        if self.per_example == 0:
            return now
        end = start + cost * self.per_example * examples
        if now < end:
            time.sleep(end - now)
        else:
            end = now  # the host could not keep up: the overrun is real time
        self.free = end
        return end


def _forward(stage: nn.Module, inp: torch.Tensor, target: torch.Tensor | None, batch: int) -> torch.Tensor:
    """A stage's output, or on the last stage (``target`` given) its loss share."""
    out = stage(inp)
    return out if target is None else microbatch_loss(out, target, batch)


def _gpipe_stage(rank: int, job: dict, group: Any = None) -> dict:
    """One stage's part of a GPipe step: all forwards, then all backwards.

    The stages of ``group`` start together (a barrier), so that the step's
    wall time runs from a common start.
    """
    stage: nn.Sequential = job["module"]
    k_n, m_n, sizes = job["num_stages"], job["num_microbatches"], job["sizes"]
    remat, dtype = job["checkpoint"], job["dtype"]
    first, last, batch = rank == 0, rank == k_n - 1, sum(sizes)
    if group is not None and k_n > 1:
        dist.barrier(group=group)
    counter, clock = SavedBytes(stage), _Clock(job["device_time"])
    events, inputs, outputs, losses, sends = [], [], [], [], []
    for m in range(m_n):  # forward phase
        if first:  # re-entrant checkpointing needs an input that requires grad
            inp, ready = job["xs"][m].requires_grad_(remat), clock.free
        else:
            inp, ready = _recv(rank - 1, dtype)
            inp.requires_grad_()
        t0 = clock.start(ready)
        args = (stage, inp, job["ys"][m] if last else None, batch)
        with counter.bucket(m):  # re-materialised: only the checkpoint's inputs are saved
            out = _checkpoint(_forward, *args, use_reentrant=True) if remat else _forward(*args)
        if last:
            losses.append(out)
        t1 = clock.finish(t0, sizes[m], 1.0)
        if not last:
            sends += _send(out.detach(), rank + 1, t1)
        events.append(Event(rank, "F", m, t0, t1))
        inputs.append(inp)
        outputs.append(out)
    for m in range(m_n):  # backward phase, micro-batches in order
        grad, ready = (None, clock.free) if last else _recv(rank + 1, dtype)
        t0 = clock.start(ready)
        with counter.bucket(m):  # re-materialisation runs inside this backward
            if last:
                losses[m].backward()
            else:
                outputs[m].backward(grad)
        t1 = clock.finish(t0, sizes[m], 2.0)
        if not first:
            sends += _send(inputs[m].grad, rank - 1, t1)
        events.append(Event(rank, "B", m, t0, t1))
        counter.release(m)
        inputs[m] = outputs[m] = None
    for work, _ in sends:
        work.wait()
    grads = {n: p.grad for n, p in stage.named_parameters()}
    loss = sum(l.item() for l in losses) if last else None
    return {"grads": grads, "loss": loss, "events": events, "peak": counter.peak}


def _torch_stage(rank: int, job: dict, groups: dict) -> dict:
    """The same step with ``torch.distributed.pipelining.ScheduleGPipe``."""
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    k_n, m_n = job["num_stages"], job["num_microbatches"]
    stage = PipelineStage(job["module"], rank, k_n, torch.device("cpu"), group=groups[k_n])
    schedule = ScheduleGPipe(stage, m_n, loss_fn=batch_loss, scale_grads=True)
    losses: list[torch.Tensor] = []
    t0 = time.monotonic()
    args = (job["x"],) if rank == 0 else ()
    kwargs = {"target": job["y"], "losses": losses} if rank == k_n - 1 else {}
    schedule.step(*args, **kwargs)
    t1 = time.monotonic()
    grads = {n: p.grad for n, p in job["module"].named_parameters()}
    loss = sum(l.item() for l in losses) / m_n if losses else None
    return {"grads": grads, "loss": loss, "events": [Event(rank, "step", 0, t0, t1)], "peak": None}


def _warm_up(rank: int, world: int) -> None:
    """Run autograd once and exchange a message with each neighbour on each tag.

    First calls are slow (lazy initialisation); paying for them here keeps
    them out of the measured schedule.
    """
    lin = nn.Linear(4, 4)
    lin(torch.randn(2, 4, requires_grad=True)).sum().backward()
    peers = [p for p in (rank - 1, rank + 1) if 0 <= p < world]
    out = torch.zeros(1)
    works = [dist.isend(out, p, tag=t) for p in peers for t in (_TAG_HEADER, _TAG_DATA)]
    for p in peers:
        for t in (_TAG_HEADER, _TAG_DATA):
            dist.recv(torch.empty(1), p, tag=t)
    for w in works:
        w.wait()


def _worker(rank: int, world: int, port: int, timeout_s: float, jobs, results) -> None:
    """A stage process: join the group, then run jobs until told to stop."""
    try:
        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
            world_size=world, timeout=timedelta(seconds=timeout_s),
        )
        groups = {k: dist.new_group(list(range(k))) for k in range(1, world + 1)}
        _warm_up(rank, world)
        results.put(("ready", rank, None))
    except BaseException:  # noqa: BLE001 - report anything to the parent
        results.put(("error", rank, traceback.format_exc()))
        return
    while True:
        job = jobs.get()
        if job is None:
            break
        try:
            job = _loads(job)
            if job["kind"] == "torch":
                out = _torch_stage(rank, job, groups)
            else:
                out = _gpipe_stage(rank, job, groups[job["num_stages"]])
            results.put(("ok", rank, _dumps(out)))
        except BaseException:  # noqa: BLE001 - the parent raises it, naming the stage
            results.put(("error", rank, traceback.format_exc()))
    dist.destroy_process_group()


# ---------------------------------------------------------------- parent side


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself if it lives on the CPU, else a CPU copy (workers compute on CPU)."""
    if all(p.device.type == "cpu" for p in model.parameters()):
        return model
    return copy.deepcopy(model).cpu()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PipelineError(RuntimeError):
    """A stage failed; ``stage`` says which, and the message holds its traceback."""

    def __init__(self, stage: int, detail: str) -> None:
        super().__init__(f"pipeline stage {stage} failed:\n{detail}")
        self.stage = stage


class Pipeline:
    """``world_size`` stage processes joined by ``torch.distributed`` (gloo, 127.0.0.1).

    Use as a context manager; the processes start once and run any number of
    steps with up to ``world_size`` stages. When a stage raises, every worker
    is stopped and :class:`PipelineError` names the stage. Workers compute on
    the CPU with one thread each; results come back on the device of ``x``.
    """

    def __init__(self, world_size: int, timeout_s: float = 60.0) -> None:
        self.world_size = _checks.positive_int("world_size", world_size)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
            raise TypeError(f"timeout_s must be a float, got {type(timeout_s).__name__}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        ctx = mp.get_context("forkserver")
        # Workers fork from a server that has imported torch and its pipelining
        # package (which loads what torch.utils.checkpoint needs) once.
        ctx.set_forkserver_preload(["papers30.distributed", "torch.distributed.pipelining"])
        port = _free_port()
        self._jobs = [ctx.Queue() for _ in range(self.world_size)]
        self._results = ctx.Queue()
        self._procs = [
            ctx.Process(
                target=_worker, name=f"papers30-stage-{r}", daemon=True,
                args=(r, self.world_size, port, self.timeout_s, self._jobs[r], self._results),
            )
            for r in range(self.world_size)
        ]
        for p in self._procs:
            p.start()
        self._collect(range(self.world_size), expect="ready")

    @property
    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [p.pid for p in self._procs]

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers: politely, then by signal; safe to call twice."""
        for p, q in zip(self._procs, self._jobs):
            if p.is_alive():
                try:
                    q.put(None)
                except (ValueError, OSError):
                    pass
        deadline = time.monotonic() + 5.0
        for p in self._procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self._procs:
            if p.is_alive():
                p.kill()
                p.join(5.0)
        self._procs = [p for p in self._procs if p.is_alive()]

    def _abort(self) -> None:
        for p in self._procs:
            if p.is_alive():
                p.kill()
        for p in self._procs:
            p.join(5.0)
        self._procs = []

    def _collect(self, ranks: range, expect: str) -> dict[int, Any]:
        want, got = set(ranks), {}
        deadline = time.monotonic() + self.timeout_s
        while want - got.keys():
            try:
                status, rank, payload = self._results.get(timeout=0.1)
            except queue.Empty:
                dead = [r for r in want - got.keys() if not self._procs[r].is_alive()]
                late = time.monotonic() > deadline
                if dead or late:
                    self._abort()
                    if dead:
                        raise PipelineError(dead[0], "the process exited without a result") from None
                    raise TimeoutError(f"pipeline stages {sorted(want - got.keys())} "
                                       f"gave no result within timeout_s={self.timeout_s}") from None
                continue
            if status == "error":
                self._abort()
                raise PipelineError(rank, payload)
            got[rank] = payload if expect == "ready" else _loads(payload)
        return got

    def _check(self, model, x, y, num_stages, num_microbatches) -> tuple[int, int]:
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"model must be a torch.nn.Sequential, got {type(model).__name__}")
        _checks.tensor("x", x, ndim=2, kind="float")
        _checks.tensor("y", y)
        if not (y.is_floating_point() or y.dtype == torch.int64):
            raise TypeError(f"y must be float targets or int64 class labels, got {y.dtype}")
        _checks.size_matches("y", y.shape[0], x.shape[0], "batch size")
        k = _checks.positive_int("num_stages", num_stages)
        m = _checks.positive_int("num_microbatches", num_microbatches)
        if k > self.world_size:
            raise ValueError(f"num_stages must be at most world_size ({self.world_size}), got {k}")
        if k > len(model):
            raise ValueError(f"num_stages must be at most the number of layers ({len(model)}), got {k}")
        if m > x.shape[0]:
            raise ValueError(f"num_microbatches must be at most the batch size ({x.shape[0]}), got {m}")
        if not self._procs:
            raise RuntimeError("the pipeline is closed")
        return k, m

    def _step(self, jobs: list[dict]) -> tuple[list[dict], float]:
        """Send stage ``r`` its job ``jobs[r]``; return the stages' results and the wall time."""
        t0 = time.monotonic()
        for r, job in enumerate(jobs):
            self._jobs[r].put(_dumps(job))
        outs = self._collect(range(len(jobs)), expect="ok")
        wall = time.monotonic() - t0
        return [outs[r] for r in range(len(jobs))], wall

    @staticmethod
    def _gather(outs: list[dict], model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        grads: dict[str, torch.Tensor] = {}
        for out in outs:
            grads.update({n: g.to(device) for n, g in out["grads"].items() if g is not None})
        return {n: grads[n] for n, _ in model.named_parameters() if n in grads}

    def run(
        self,
        model: nn.Sequential,
        x: torch.Tensor,
        y: torch.Tensor,
        num_stages: int,
        num_microbatches: int,
        *,
        checkpoint: bool = False,
        device_time: float = 0.0,
    ) -> StepResult:
        """One GPipe training step (forward, backward, gradients; no update).

        ``x`` is ``(B, D)``, ``y`` is ``(B,)`` int64 labels or ``(B, D_out)``
        float targets (:func:`batch_loss`); the batch is cut into
        ``M = num_microbatches`` nearly equal micro-batches and the model into
        ``K = num_stages`` stages. ``checkpoint=True`` re-materialises each
        stage's activations in the backward pass (``torch.utils.checkpoint``).
        ``device_time`` seconds per example are added to every forward (twice
        that to every backward) as a stand-in for accelerator compute.
        """
        k, m = self._check(model, x, y, num_stages, num_microbatches)
        if not isinstance(checkpoint, bool):
            raise TypeError(f"checkpoint must be a bool, got {type(checkpoint).__name__}")
        if isinstance(device_time, bool) or not isinstance(device_time, (int, float)):
            raise TypeError(f"device_time must be a float, got {type(device_time).__name__}")
        if not device_time >= 0:
            raise ValueError(f"device_time must be non-negative, got {device_time}")
        xs = [c.detach().cpu().clone() for c in torch.tensor_split(x, m)]
        ys = [c.detach().cpu().clone() for c in torch.tensor_split(y, m)]
        base = dict(kind="gpipe", num_stages=k, num_microbatches=m, sizes=[len(c) for c in xs],
                    checkpoint=checkpoint, device_time=float(device_time), dtype=x.dtype)
        jobs = []
        for r, stage in enumerate(split_model(_on_cpu(model), k)):
            job = dict(base, module=stage)
            job.update(xs=xs if r == 0 else None, ys=ys if r == k - 1 else None)
            jobs.append(job)
        outs, wall = self._step(jobs)
        events = sorted((e for o in outs for e in o["events"]), key=lambda e: (e.stage, e.start))
        return StepResult(loss=outs[-1]["loss"], grads=self._gather(outs, model, x.device),
                          events=events, peak_bytes=[o["peak"] for o in outs], wall_s=wall)

    def run_torch(
        self, model: nn.Sequential, x: torch.Tensor, y: torch.Tensor,
        num_stages: int, num_microbatches: int,
    ) -> StepResult:
        """The same step with ``torch.distributed.pipelining.ScheduleGPipe``.

        ``B`` must be divisible by ``M`` (torch's default splitting). Each
        stage's single event spans its whole ``schedule.step`` call.
        """
        if importlib.util.find_spec("torch.distributed.pipelining") is None:
            raise RuntimeError(f"torch {torch.__version__} has no torch.distributed.pipelining")
        k, m = self._check(model, x, y, num_stages, num_microbatches)
        if x.shape[0] % m:
            raise ValueError(f"num_microbatches must divide the batch size ({x.shape[0]}), got {m}")
        jobs = []
        for r, stage in enumerate(split_model(_on_cpu(model), k)):
            jobs.append(dict(kind="torch", num_stages=k, num_microbatches=m, module=stage,
                             x=x.detach().cpu() if r == 0 else None,
                             y=y.detach().cpu() if r == k - 1 else None))
        outs, wall = self._step(jobs)
        events = [e for o in outs for e in o["events"]]
        return StepResult(loss=outs[-1]["loss"], grads=self._gather(outs, model, x.device),
                          events=events, peak_bytes=[None] * k, wall_s=wall)


def timed_rounds(
    pipe: Pipeline,
    model: nn.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: list[tuple[int, int]],
    repeats: int = 3,
) -> list[dict[tuple[int, int], StepResult]]:
    """Time every ``(K, M)`` setting once per round, ``repeats`` rounds; return each round's steps.

    Within a round the settings run back to back, so a slowdown of the
    machine that lasts a few seconds (another program, a busy neighbour on a
    shared host) hits them alike and a ratio of two times of the same round
    cancels it. ``(1, 1)`` is one process running the whole model on the
    whole batch.
    """
    if not isinstance(pipe, Pipeline):
        raise TypeError(f"pipe must be a Pipeline, got {type(pipe).__name__}")
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a torch.nn.Sequential, got {type(model).__name__}")
    _checks.tensor("x", x, ndim=2, kind="float")
    _checks.tensor("y", y, ndim=(1, 2))
    _checks.size_matches("y", y.shape[0], x.shape[0], "batch size")
    if isinstance(settings, (str, bytes)) or not isinstance(settings, (list, tuple)) or not settings:
        raise ValueError("settings must be a non-empty list of (num_stages, num_microbatches) pairs")
    for s in settings:
        if not (isinstance(s, tuple) and len(s) == 2):
            raise TypeError(f"settings must hold (num_stages, num_microbatches) pairs, got {s!r}")
    n = _checks.positive_int("repeats", repeats)
    return [{(k, m): pipe.run(model, x, y, k, m) for k, m in settings} for _ in range(n)]
