"""papers30.convolution: LRN against torch's built-ins and a brute-force loop; the small AlexNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from papers30.convolution import LocalResponseNorm, SmallAlexNet, local_response_norm

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)

# (shape, size): 3-, 4- and 5-D inputs, one channel, window wider than the channels, even sizes.
LRN_CASES = [
    ((2, 7, 5), 3),
    ((1, 1, 4), 5),
    ((2, 6, 4, 3), 1),
    ((2, 6, 4, 3), 2),
    ((3, 8, 5, 5), 4),
    ((2, 8, 5, 5), 5),
    ((1, 3, 2, 2), 9),
    ((2, 5, 3, 2, 2), 6),
]
CONSTANTS = [dict(), dict(alpha=1e-2, beta=0.75, k=2.0), dict(alpha=0.5, beta=1.3, k=0.5)]


def brute_force_lrn(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """The formula channel by channel, with an explicit window."""
    C = x.shape[1]
    out = torch.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C - 1, c + (size - 1) // 2)
        energy = sum(x[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, c] = x[:, c] / (k + alpha / size * energy) ** beta
    return out


@pytest.mark.parametrize("shape,size", LRN_CASES)
@pytest.mark.parametrize("const", CONSTANTS)
def test_local_response_norm_matches_torch(shape, size, const, gen):
    x = torch.randn(*shape, dtype=DT, generator=gen) * 3
    got = local_response_norm(x, size, **const)
    assert got.shape == x.shape
    torch.testing.assert_close(got, F.local_response_norm(x, size, **const), **TOL)
    torch.testing.assert_close(got, brute_force_lrn(x, size, **const), **TOL)


@pytest.mark.parametrize("shape,size", LRN_CASES)
def test_local_response_norm_gradients_match_torch(shape, size, gen):
    x = torch.randn(*shape, dtype=DT, generator=gen, requires_grad=True)
    const = dict(alpha=0.3, beta=0.75, k=2.0)
    w = torch.randn(*shape, dtype=DT, generator=gen)
    (g_ours,) = torch.autograd.grad((local_response_norm(x, size, **const) * w).sum(), x)
    (g_torch,) = torch.autograd.grad((F.local_response_norm(x, size, **const) * w).sum(), x)
    torch.testing.assert_close(g_ours, g_torch, **TOL)


def test_local_response_norm_gradcheck(gen):
    x = torch.randn(2, 5, 3, 3, dtype=DT, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: local_response_norm(t, 4, 0.5, 0.75, 1.5), (x,))


@pytest.mark.parametrize("size", [1, 2, 5])
def test_lrn_module_matches_torch(size, gen):
    ours = LocalResponseNorm(size, alpha=2e-3, beta=0.6, k=1.5)
    theirs = nn.LocalResponseNorm(size, alpha=2e-3, beta=0.6, k=1.5)
    x = torch.randn(3, 7, 4, 4, generator=gen) * 5
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    assert "alpha=0.002" in repr(ours)
    assert list(ours.parameters()) == []


def test_lrn_defaults_mirror_torch():
    x = torch.randn(2, 6, 3, 3, dtype=DT, generator=torch.Generator().manual_seed(0)) * 40
    torch.testing.assert_close(local_response_norm(x, 3), F.local_response_norm(x, 3), **TOL)
    m, t = LocalResponseNorm(3), nn.LocalResponseNorm(3)
    assert (m.size, m.alpha, m.beta, m.k) == (t.size, t.alpha, t.beta, t.k)


@given(scale=st.floats(0.01, 100.0), seed=st.integers(0, 2**31 - 1))
def test_lrn_properties(scale, seed):
    """Signs are kept, magnitudes never grow when k >= 1, and one channel alone is a closed form."""
    x = torch.randn(2, 6, 3, dtype=DT, generator=torch.Generator().manual_seed(seed)) * scale
    y = local_response_norm(x, 5, alpha=1.0, beta=0.75, k=1.0)
    assert bool((torch.sign(y) == torch.sign(x)).all())
    assert bool((y.abs() <= x.abs() + 1e-15).all())
    one = x[:, :1]
    torch.testing.assert_close(
        local_response_norm(one, 5, alpha=1.0, beta=0.75, k=1.0), one / (1 + one**2 / 5) ** 0.75, **TOL
    )


@pytest.mark.parametrize(
    "args,exc,word",
    [
        ((torch.zeros(2, 3).numpy(), 3), TypeError, "input"),
        ((torch.zeros(2, 3), 3), ValueError, "input"),
        ((torch.zeros(2, 3, 4, dtype=torch.long), 3), TypeError, "input"),
        ((torch.zeros(2, 3, 4), 0), ValueError, "size"),
        ((torch.zeros(2, 3, 4), 2.0), TypeError, "size"),
        ((torch.zeros(2, 3, 4), 3, "a"), TypeError, "alpha"),
        ((torch.zeros(2, 3, 4), 3, 1e-4, float("nan")), ValueError, "beta"),
        ((torch.zeros(2, 3, 4), 3, 1e-4, 0.75, None), TypeError, "k"),
    ],
)
def test_local_response_norm_bad_inputs(args, exc, word):
    with pytest.raises(exc, match=word):
        local_response_norm(*args)


def test_lrn_module_bad_inputs():
    with pytest.raises(ValueError, match="size"):
        LocalResponseNorm(-1)
    with pytest.raises(TypeError, match="k"):
        LocalResponseNorm(3, k="2")


# ---------------------------------------------------------------- SmallAlexNet


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(activation="tanh", lrn=False, dropout=0.0),
        dict(in_channels=3, num_classes=7, image_size=32, widths=(4, 6, 8), hidden=10),
        dict(image_size=15, widths=(2, 2, 2), hidden=3),
    ],
)
def test_small_alexnet_shapes(batch, kwargs, gen):
    model = SmallAlexNet(**kwargs)
    c, s = kwargs.get("in_channels", 1), kwargs.get("image_size", 28)
    logits = model(torch.rand(batch, c, s, s, generator=gen))
    assert logits.shape == (batch, kwargs.get("num_classes", 10))
    assert torch.isfinite(logits).all()


def test_small_alexnet_layers_follow_options():
    relu = SmallAlexNet(widths=(4, 4, 4), hidden=8)
    tanh = SmallAlexNet(widths=(4, 4, 4), hidden=8, activation="tanh", lrn=False, dropout=0.0)
    kinds = lambda m: [type(x).__name__ for x in m.modules()]  # noqa: E731
    assert kinds(relu).count("ReLU") == 5 and "Tanh" not in kinds(relu)
    assert kinds(tanh).count("Tanh") == 5 and "ReLU" not in kinds(tanh)
    assert kinds(relu).count("LocalResponseNorm") == 2 and "LocalResponseNorm" not in kinds(tanh)
    pools = [m for m in relu.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping
    drops = [m.p for m in relu.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.5, 0.5]
    # same parameters whatever the options: the comparison changes nothing else
    assert [p.shape for p in relu.parameters()] == [p.shape for p in tanh.parameters()]


def test_small_alexnet_lrn_uses_paper_constants():
    lrn = next(m for m in SmallAlexNet().modules() if isinstance(m, LocalResponseNorm))
    assert lrn.size == 5 and lrn.k == 2.0 and lrn.beta == 0.75
    assert lrn.alpha / lrn.size == pytest.approx(1e-4)  # the paper's alpha, in torch's convention


def test_small_alexnet_dropout_only_in_training(gen):
    model = SmallAlexNet(widths=(4, 4, 4), hidden=8, dropout=0.5)
    x = torch.rand(4, 1, 28, 28, generator=gen)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    assert not torch.equal(a, model(x))


def test_small_alexnet_learns_a_batch(gen):
    """A few Adam steps on one batch drive its loss down: gradients reach every layer."""
    torch.manual_seed(0)
    model = SmallAlexNet(widths=(4, 8, 8), hidden=16, dropout=0.0)
    x, y = torch.rand(8, 1, 28, 28, generator=gen), torch.arange(8) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = F.cross_entropy(model(x), y)
    first.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert F.cross_entropy(model(x), y).item() < 0.5 * first.item()


@pytest.mark.parametrize(
    "kwargs,exc,word",
    [
        (dict(in_channels=0), ValueError, "in_channels"),
        (dict(num_classes=1.5), TypeError, "num_classes"),
        (dict(image_size=14), ValueError, "image_size"),
        (dict(widths=(4, 4)), TypeError, "widths"),
        (dict(widths=(4, 0, 4)), ValueError, "widths"),
        (dict(hidden=0), ValueError, "hidden"),
        (dict(activation="sigmoid"), ValueError, "activation"),
        (dict(activation=None), TypeError, "activation"),
        (dict(lrn=1), TypeError, "lrn"),
        (dict(dropout=1.0), ValueError, "dropout"),
    ],
)
def test_small_alexnet_bad_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        SmallAlexNet(**kwargs)


@pytest.mark.parametrize(
    "x,exc,word",
    [
        (torch.zeros(2, 1, 28), ValueError, "images"),
        (torch.zeros(2, 3, 28, 28), ValueError, "channels"),
        (torch.zeros(2, 1, 28, 27), ValueError, "width"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.long), TypeError, "images"),
    ],
)
def test_small_alexnet_bad_inputs(x, exc, word):
    model = SmallAlexNet(widths=(2, 2, 2), hidden=2)
    with pytest.raises(exc, match=word):
        model(x)


@pytest.mark.parametrize("activation,gain", [("relu", 2**0.5), ("tanh", 5 / 3)])
def test_small_alexnet_init_keeps_signal_scale(activation, gain):
    """Every weight has standard deviation gain / sqrt(fan-in) (eq. init); biases start at zero."""
    torch.manual_seed(0)
    model = SmallAlexNet(widths=(32, 64, 64), hidden=128, activation=activation)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 6
    for m in layers:
        fan_in = m.weight[0].numel()
        assert m.weight.std().item() == pytest.approx(gain / fan_in**0.5, rel=0.1)
        assert m.weight.mean().abs().item() < 0.1 * gain / fan_in**0.5
        assert torch.count_nonzero(m.bias) == 0
