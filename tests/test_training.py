"""papers30.training.fit on problems with a known answer (least squares, closed forms)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from papers30.training import History, fit


def regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=g)
    w = torch.tensor([[1.5], [-2.0], [0.5]])
    y = x @ w + 0.3
    torch.manual_seed(seed)
    return nn.Linear(3, 1), x, y, w


def test_fit_lowers_loss_to_the_least_squares_solution():
    model, x, y, w = regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hist = fit(model, opt, lambda step: ((model(x) - y) ** 2).mean(), steps=200)
    assert len(hist.losses) == 200
    assert hist.losses[-1] < 1e-3 * hist.losses[0]
    torch.testing.assert_close(model.weight.detach(), w.T, atol=1e-2, rtol=0)  # closed form: the generating w
    assert not model.training  # left in eval mode
    assert hist.stopped_at is None


def test_fit_first_step_equals_one_manual_sgd_step():
    """One step of fit is zero_grad, backward, step: compare with the update done by hand."""
    model, x, y, _ = regression()
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    r = x @ w0.T + b0 - y  # residuals
    grad_w, grad_b = 2 * (r * x).mean(0, keepdim=True), 2 * r.mean(0)
    fit(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda s: ((model(x) - y) ** 2).mean(), steps=1)
    torch.testing.assert_close(model.weight.detach(), w0 - 0.1 * grad_w)
    torch.testing.assert_close(model.bias.detach(), b0 - 0.1 * grad_b)


def test_fit_clips_the_gradient_norm_closed_form():
    """SGD with lr 1: the parameter update is minus the clipped gradient, of norm clip."""
    model, x, y, _ = regression()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    fit(model, opt, lambda s: 100 * ((model(x) - y) ** 2).mean(), steps=1, clip=0.5)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.5, rel=1e-5)


def test_fit_steps_the_scheduler_once_per_step():
    model, x, y, _ = regression()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    fit(model, opt, lambda s: ((model(x) - y) ** 2).mean(), steps=3, scheduler=sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5**3)


def test_fit_passes_the_one_based_step_to_loss_fn():
    model, x, y, _ = regression()
    seen = []

    def loss_fn(step):
        seen.append(step)
        return ((model(x) - y) ** 2).mean()

    fit(model, torch.optim.SGD(model.parameters(), lr=0.01), loss_fn, steps=4)
    assert seen == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "steps,every,want", [(10, 3, [3, 6, 9, 10]), (9, 3, [3, 6, 9]), (1, 5, [1]), (5, 1, [1, 2, 3, 4, 5])]
)
def test_evaluations_at_multiples_of_every_and_the_last_step(steps, every, want):
    model, x, y, _ = regression()
    state = []

    def evaluate():
        state.append((model.training, torch.is_grad_enabled()))
        return {"loss": ((model(x) - y) ** 2).mean().item()}

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    hist = fit(model, opt, lambda s: ((model(x) - y) ** 2).mean(), steps, evaluate=evaluate, every=every)
    assert hist.eval_steps == want and len(hist.evals) == len(want)
    assert state == [(False, False)] * len(want)  # eval mode, no gradients
    assert hist.metric("loss") == [e["loss"] for e in hist.evals]


def test_until_stops_early_and_sets_stopped_at():
    model, x, y, _ = regression()
    hist = fit(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        lambda s: ((model(x) - y) ** 2).mean(),
        steps=500,
        evaluate=lambda: {"loss": ((model(x) - y) ** 2).mean().item()},
        every=10,
        until=lambda m: m["loss"] < 0.01,
    )
    assert hist.stopped_at is not None and hist.stopped_at < 500
    assert hist.stopped_at == hist.eval_steps[-1] and hist.stopped_at % 10 == 0
    assert len(hist.losses) == hist.stopped_at
    assert hist.evals[-1]["loss"] < 0.01 and all(e["loss"] >= 0.01 for e in hist.evals[:-1])


def test_history_first_step_by_hand():
    h = History(eval_steps=[10, 20, 30], evals=[{"acc": 0.2}, {"acc": 0.9}, {"acc": 0.95}])
    assert h.first_step("acc", 0.9) == 20  # equality counts
    assert h.first_step("acc", 0.1) == 10
    assert h.first_step("acc", 0.99) is None
    assert History().first_step("acc", 0.0) is None
    assert h.metric("acc") == [0.2, 0.9, 0.95]


@pytest.mark.parametrize(
    "kw,exc,name",
    [
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.0}, TypeError, "steps"),
        ({"steps": 2, "every": 0}, ValueError, "every"),
    ],
)
def test_fit_rejects_bad_sizes(kw, exc, name):
    model, x, y, _ = regression()
    with pytest.raises(exc, match=name):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda s: ((model(x) - y) ** 2).mean(), **kw)
