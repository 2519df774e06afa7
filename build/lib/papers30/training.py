"""A small, explicit training loop shared by the chapters.

:func:`fit` does the part every chapter repeats: zero the gradients, compute
the loss, step back through it, clip, step the optimiser and the schedule,
record the loss, and every ``every`` steps evaluate (and maybe stop early).
What a batch is and how the loss is computed stays in the chapter's
``loss_fn``, where the reader can see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from papers30 import _checks


@dataclass
class History:
    """Per-step losses and the periodic evaluations of one training run."""

    losses: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    stopped_at: int | None = None

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    def metric(self, name: str) -> list[float]:
        """The values of evaluation metric ``name``, one per evaluation."""
        self._known(name)
        return [e[name] for e in self.evals]

    def _known(self, name: object) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if self.evals and name not in self.evals[0]:
            raise ValueError(f"name must be one of the evaluated metrics {sorted(self.evals[0])}, got {name!r}")

    def first_step(self, name: str, at_least: float) -> int | None:
        """The first evaluated step at which metric ``name`` reached ``at_least`` (None if never)."""
        self._known(name)
        if isinstance(at_least, bool) or not isinstance(at_least, (int, float)):
            raise TypeError(f"at_least must be a number, got {type(at_least).__name__}")
        for step, e in zip(self.eval_steps, self.evals):
            if e[name] >= at_least:
                return step
        return None


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[int], torch.Tensor],
    steps: int,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip: float | None = None,
    evaluate: Callable[[], dict[str, float]] | None = None,
    every: int = 100,
    until: Callable[[dict[str, float]], bool] | None = None,
    stop_after: int | None = None,
) -> History:
    """Train for ``steps`` steps (1-based) of ``loss_fn(step)`` and return the :class:`History`.

    ``evaluate`` runs (with the model in eval mode and gradients off) every
    ``every`` steps and after the last one; training stops early when
    ``until(metrics)`` is true. ``stop_after`` ends the run after that many
    steps without changing anything else (the schedule still counts towards
    ``steps``): the test suite uses it to replay the start of a recorded run.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    for name, fn in (("loss_fn", loss_fn), ("evaluate", evaluate), ("until", until)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    if scheduler is not None and not hasattr(scheduler, "step"):
        raise TypeError(f"scheduler must be a learning-rate scheduler, got {type(scheduler).__name__}")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
        raise ValueError(f"clip must be a positive number or None, got {clip!r}")
    _checks.positive_int("steps", steps)
    _checks.positive_int("every", every)
    if stop_after is not None:
        _checks.positive_int("stop_after", stop_after)
    history = History()
    model.train()
    for step in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(step)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        history.losses.append(loss.item())
        if evaluate is not None and (step % every == 0 or step == steps):
            model.eval()
            with torch.no_grad():
                metrics = evaluate()
            model.train()
            history.eval_steps.append(step)
            history.evals.append(metrics)
            if until is not None and until(metrics):
                history.stopped_at = step
                break
        if stop_after is not None and step >= stop_after:
            history.stopped_at = step
            break
    model.eval()
    return history
