"""papers30.convolution: LRN against torch's built-ins and a brute-force loop; the small AlexNet."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from papers30.convolution import ConvNet, LocalResponseNorm, SmallAlexNet, epochs_to_error, local_response_norm

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
    assert kinds(relu).count("ReLU") == 6 and "Tanh" not in kinds(relu)  # 4 convolutions, 2 hidden layers
    assert kinds(tanh).count("Tanh") == 6 and "ReLU" not in kinds(tanh)
    assert kinds(relu).count("LocalResponseNorm") == 2 and "LocalResponseNorm" not in kinds(tanh)
    pools = [m for m in relu.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping
    drops = [m.p for m in relu.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.5, 0.5]
    # dropout follows the two hidden fully connected layers, as in AlexNet, not the features
    names = [type(m).__name__ for m in relu.classifier]
    assert names == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
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
        (dict(init_std=0.0), ValueError, "init_std"),
        (dict(init_std="0.01"), TypeError, "init_std"),
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
    assert len(layers) == 7
    for m in layers:
        fan_in = m.weight[0].numel()
        assert m.weight.std().item() == pytest.approx(gain / fan_in**0.5, rel=0.1)
        assert m.weight.mean().abs().item() < 0.1 * gain / fan_in**0.5
        assert torch.count_nonzero(m.bias) == 0


def test_small_alexnet_paper_init_is_a_fixed_gaussian():
    torch.manual_seed(0)
    model = SmallAlexNet(widths=(32, 64, 64), hidden=128, init_std=0.01)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert m.weight.std().item() == pytest.approx(0.01, rel=0.15)
            assert torch.count_nonzero(m.bias) == 0


# ---------------------------------------------------------------- ConvNet (Figure 1's four-layer net)


@pytest.mark.parametrize(
    "kwargs,side",
    [(dict(), 4), (dict(widths=(3,), kernel_size=3), 14), (dict(image_size=32, in_channels=3, widths=(2, 2, 2, 2)), 2),
     (dict(image_size=1, widths=(2, 2)), 1)],
)
def test_conv_net_matches_a_hand_built_sequential(kwargs, side, gen):
    """Same weights in an explicit torch stack give the same logits; the pools halve the side, rounding up."""
    torch.manual_seed(0)
    net = ConvNet(**kwargs).double()
    c, s, k = kwargs.get("in_channels", 1), kwargs.get("image_size", 28), kwargs.get("kernel_size", 5)
    layers, c_in = [], c
    for w in kwargs.get("widths", (32, 32, 64)):
        layers += [nn.Conv2d(c_in, w, k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1)]
        c_in = w
    ref = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * side * side, 10)).double()
    ref.load_state_dict({k2: v for k2, v in zip(ref.state_dict(), net.state_dict().values())})
    x = torch.randn(3, c, s, s, dtype=DT, generator=gen)
    torch.testing.assert_close(net(x), ref(x), **TOL)


def test_conv_net_counts_its_layers_and_inits():
    torch.manual_seed(0)
    tanh = ConvNet(activation="tanh", init_std=0.01)
    layers = [m for m in tanh.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 4  # the paper's "four-layer convolutional neural network"
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 3
    assert all(m.weight.std().item() == pytest.approx(0.01, rel=0.2) for m in layers)
    relu = ConvNet()
    conv1 = relu.features[0]
    assert conv1.weight.std().item() == pytest.approx(2**0.5 / 5, rel=0.2)  # gain / sqrt(25)


@pytest.mark.parametrize(
    "kwargs,exc,word",
    [
        (dict(widths=()), TypeError, "widths"),
        (dict(widths=(4, 0)), ValueError, "widths"),
        (dict(kernel_size=4), ValueError, "kernel_size"),
        (dict(activation="elu"), ValueError, "activation"),
        (dict(init_std=-1.0), ValueError, "init_std"),
        (dict(image_size=0), ValueError, "image_size"),
    ],
)
def test_conv_net_bad_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        ConvNet(**kwargs)


def test_conv_net_bad_inputs():
    with pytest.raises(ValueError, match="width"):
        ConvNet()(torch.zeros(1, 1, 28, 27))


# ---------------------------------------------------------------- epochs_to_error


def toy_classes(n=64, seed=0):
    """Two linearly separable classes of 1x4x4 images: mean +1 or -1 plus small noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = (2 * y - 1).float()[:, None, None, None] + 0.1 * torch.randn(n, 1, 4, 4, generator=g)
    return x, y


def make_linear():
    """A linear classifier that starts at zero: every image scored the same, half the answers wrong."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    return model


def test_epochs_to_error_matches_a_hand_loop():
    """The winner's epochs equal those of a plain SGD loop on the same batches, checked the same way."""
    x, y = toy_classes()
    race = epochs_to_error(make_linear, [0.05], x, y, 0.05, batch_size=8, max_epochs=5,
                           generator=torch.Generator().manual_seed(3))
    model, g = make_linear(), torch.Generator().manual_seed(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mistakes, step, found = [], 0, None
    for _ in range(5):
        order = torch.randperm(64, generator=g)
        for b in range(8):
            step += 1
            i = order[8 * b:8 * b + 8]
            logits = model(x[i])
            loss = F.cross_entropy(logits, y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mistakes.append((logits.argmax(1) != y[i]).float().mean().item())
            if found is None and step >= 8 and sum(mistakes[-8:]) / 8 <= 0.05:
                found = step
        if found:
            break
    assert race.lr == 0.05 and race.epochs == found / 8 and race.steps_per_epoch == 8


def xor_points(n=128, seed=0):
    """Points of the plane as (N, 1, 1, 2) images, labelled by the XOR of their coordinates' signs."""
    x = torch.randn(n, 1, 1, 2, generator=torch.Generator().manual_seed(seed))
    return x, ((x[:, 0, 0, 0] > 0) ^ (x[:, 0, 0, 1] > 0)).long()


def make_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))


def test_epochs_to_error_picks_the_fastest_rate_and_drops_diverging_ones():
    x, y = xor_points()
    kw = dict(batch_size=16, max_epochs=60)
    race = epochs_to_error(make_mlp, [1e-4, 0.05, math.inf], x, y, 0.15,
                           generator=torch.Generator().manual_seed(3), **kw)
    alone = epochs_to_error(make_mlp, [0.05], x, y, 0.15, generator=torch.Generator().manual_seed(3), **kw)
    assert race.lr == 0.05 and race.epochs == alone.epochs < 60  # racing others changes nothing
    assert race.best == 0.05
    torch.testing.assert_close(race.models[0.05](x), alone.models[0.05](x))  # the same trained model
    assert list(race.dropped) == [math.inf]  # its loss stopped being finite
    assert min(race.running[1e-4]) > 0.15  # the slow rate was still running, far behind


def test_epochs_to_error_reports_the_cap_when_no_rate_gets_there():
    x, y = xor_points()  # no linear classifier gets XOR right
    linear = lambda: nn.Sequential(nn.Flatten(), nn.Linear(2, 2))  # noqa: E731
    race = epochs_to_error(linear, [0.1], x, y, 0.05, batch_size=16, max_epochs=3)
    assert race.lr is None and race.epochs == 3.0
    assert len(race.running[0.1]) == 24 - 8 + 1  # one reading per step once an epoch has passed
    assert race.best == 0.1 and set(race.models) == {0.1}
    two = epochs_to_error(linear, [1e-6, 0.1], x, y, 0.05, batch_size=16, max_epochs=3)
    assert two.best == min(two.running, key=lambda lr: two.running[lr][-1])


@pytest.mark.parametrize(
    "args,kwargs,exc,word",
    [
        ((None, [0.1]), {}, TypeError, "make_model"),
        ((make_linear, []), {}, TypeError, "lrs"),
        ((make_linear, [0.0]), {}, ValueError, "lrs"),
        ((make_linear, [0.1]), dict(threshold=1.5), ValueError, "threshold"),
        ((make_linear, [0.1]), dict(batch_size=100), ValueError, "batch_size"),
        ((make_linear, [0.1]), dict(max_epochs=0), ValueError, "max_epochs"),
    ],
)
def test_epochs_to_error_bad_inputs(args, kwargs, exc, word):
    x, y = toy_classes()
    kw = dict(threshold=0.1) | kwargs
    threshold = kw.pop("threshold")
    with pytest.raises(exc, match=word):
        epochs_to_error(*args, x, y, threshold, **kw)
    with pytest.raises(ValueError, match="labels"):
        epochs_to_error(make_linear, [0.1], x, y[:3], 0.1)


# --- chapter 11: dilated convolutions, receptive fields, the context module -----------

from papers30.convolution import (  # noqa: E402
    LARGE_MULTIPLIERS,
    PAPER_DILATIONS,
    ContextModule,
    PoolingModule,
    conv2d,
    empirical_receptive_field,
    identity_kernel,
    in_view,
    large_widths,
    receptive_field,
    receptive_field_extent,
)

# (input shape, weight shape, stride, padding, dilation): 1x1 kernels, non-square kernels, batch 1,
# a kernel that exactly fills the padded input, large dilations.
CONV_CASES = [
    ((2, 3, 9, 9), (4, 3, 3, 3), 1, 0, 1),
    ((1, 1, 7, 7), (1, 1, 3, 3), 1, 2, 2),
    ((2, 3, 11, 8), (5, 3, 3, 2), 2, 1, 3),
    ((1, 2, 5, 5), (2, 2, 1, 1), 1, 0, 4),
    ((3, 2, 6, 6), (3, 2, 3, 3), 1, 4, 4),
    ((1, 2, 9, 9), (1, 2, 3, 3), 1, 0, 4),
]


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation", CONV_CASES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_conv2d_matches_torch(x_shape, w_shape, stride, padding, dilation, with_bias, gen):
    x = torch.randn(*x_shape, dtype=DT, generator=gen)
    w = torch.randn(*w_shape, dtype=DT, generator=gen)
    b = torch.randn(w_shape[0], dtype=DT, generator=gen) if with_bias else None
    got = conv2d(x, w, b, stride, padding, dilation)
    torch.testing.assert_close(got, F.conv2d(x, w, b, stride, padding, dilation), **TOL)


def test_conv2d_matches_nn_conv2d_with_copied_weights(gen):
    layer = nn.Conv2d(3, 4, 3, padding=2, dilation=2).double()
    x = torch.randn(2, 3, 10, 10, dtype=DT, generator=gen)
    torch.testing.assert_close(conv2d(x, layer.weight, layer.bias, 1, 2, 2), layer(x), **TOL)


def test_conv2d_gradients_match_torch(gen):
    x = torch.randn(2, 2, 8, 8, dtype=DT, generator=gen, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=DT, generator=gen, requires_grad=True)
    r = torch.randn(2, 3, 8, 8, dtype=DT, generator=gen)
    ours = torch.autograd.grad((conv2d(x, w, None, 1, 3, 3) * r).sum(), (x, w))
    theirs = torch.autograd.grad((F.conv2d(x, w, None, 1, 3, 3) * r).sum(), (x, w))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_receptive_field_matches_paper_formula(depth):
    # Yu & Koltun, Sec. 2: 3x3 layers with dilations 1, 2, 4, ..., 2^i see (2^(i+2) - 1)^2 pixels.
    layers = [(3, 2**i) for i in range(depth)]
    assert receptive_field(layers) ** 2 == (2 ** (depth + 1) - 1) ** 2


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3)), min_size=0, max_size=4))
def test_receptive_field_matches_brute_force_offsets(layers):
    # every input offset a stack can reach: sums of one tap offset per layer
    offsets = {0}
    for k, d in layers:
        offsets = {o + d * t for o in offsets for t in range(k)}
    assert receptive_field(layers) == max(offsets) - min(offsets) + 1


@pytest.mark.parametrize("dilations", [(1,), (1, 2), (1, 2, 4), (1, 1, 2, 4), (2, 2), (1, 3, 1)])
def test_receptive_field_matches_empirical_gradient(dilations):
    torch.manual_seed(0)
    stack = nn.Sequential(*[nn.Conv2d(2, 2, 3, padding=d, dilation=d) for d in dilations]).double()
    side = receptive_field([(3, d) for d in dilations])
    x = torch.randn(2, side + 6, side + 6, dtype=DT, generator=torch.Generator().manual_seed(1))
    mask = empirical_receptive_field(stack, x)
    assert receptive_field_extent(mask) == (side, side)
    # the mask is centred on the unit: symmetric under a half turn
    assert torch.equal(mask, mask.flip(0, 1)) or x.shape[-1] % 2 == 0
    # a batch of images gives the union of their masks
    batch = torch.stack([x, torch.zeros_like(x)])
    assert torch.equal(empirical_receptive_field(stack, batch), mask)


def test_gridding_leaves_holes_in_the_receptive_field():
    # dilations 2, 2: the bounding box is 9x9 but only every second row and column is seen
    stack = nn.Sequential(nn.Conv2d(1, 1, 3, padding=2, dilation=2), nn.Conv2d(1, 1, 3, padding=2, dilation=2))
    with torch.no_grad():
        for conv in stack:
            conv.weight.fill_(1.0)
    mask = empirical_receptive_field(stack, torch.ones(1, 15, 15))
    assert receptive_field_extent(mask) == (9, 9)
    assert int(mask.sum()) == 25


def test_context_module_receptive_field_matches_paper():
    module = ContextModule(2, width=8, init="random", generator=torch.Generator().manual_seed(0)).double()
    side = receptive_field(module.layers())
    assert side == 67  # the paper's Table 1: 67x67 after the seventh layer
    x = torch.randn(2, 75, 75, dtype=DT, generator=torch.Generator().manual_seed(1))
    mask = empirical_receptive_field(module, x)
    assert receptive_field_extent(mask) == (side, side)
    assert int(mask.sum()) == side * side


@pytest.mark.parametrize("channels,width", [(1, 1), (2, 2), (2, 8), (3, 6)])
def test_context_module_identity_init_returns_input(channels, width, gen):
    module = ContextModule(channels, width=width).double()
    x = torch.rand(2, channels, 12, 10, dtype=DT, generator=gen)  # non-negative, like ReLU features
    torch.testing.assert_close(module(x), x, **TOL)
    y = torch.randn(2, channels, 12, 10, dtype=DT, generator=gen)
    torch.testing.assert_close(module(y), y.clamp(min=0), **TOL)  # the ReLUs cut negative inputs


def test_identity_kernel_is_the_identity_matrix_at_the_centre():
    w = identity_kernel(3, 3, 3, 3)
    assert torch.equal(w[:, :, 1, 1], torch.eye(3))
    assert w.abs().sum() == 3


def test_context_module_matches_torch_sequential(gen):
    module = ContextModule(2, (1, 2, 4), width=4, init="random", generator=gen).double()
    layers = []
    for conv, d in zip(module.convs, module.dilations):
        ref = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=d, dilation=d).double()
        ref.load_state_dict(conv.state_dict())
        layers += [ref, nn.ReLU()]
    reference = nn.Sequential(*layers, module.final)
    x = torch.randn(2, 2, 9, 9, dtype=DT, generator=gen)
    torch.testing.assert_close(module(x), reference(x), **TOL)
    assert module.layers() == [(3, 1), (3, 2), (3, 4), (1, 1)]
    assert PAPER_DILATIONS == (1, 1, 2, 4, 8, 16, 1)


def test_context_module_parameters_grow_linearly_with_depth():
    counts = [sum(p.numel() for p in ContextModule(2, (1,) * n, width=4).parameters()) for n in (1, 2, 3, 4)]
    steps = {b - a for a, b in zip(counts, counts[1:])}
    assert steps == {4 * 4 * 9 + 4}


def test_large_widths_follow_table_1():
    assert large_widths(21) == (42, 42, 84, 168, 336, 672, 672)
    assert LARGE_MULTIPLIERS == (2, 2, 4, 8, 16, 32, 32)


def test_large_context_module_has_the_paper_widths_and_is_the_identity_at_init(gen):
    module = ContextModule(2, width=large_widths(2)).double()
    assert [c.out_channels for c in module.convs] == [4, 4, 8, 16, 32, 64, 64]
    assert module.final.in_channels == 64 and module.final.out_channels == 2
    x = torch.rand(2, 2, 9, 9, dtype=DT, generator=gen)
    torch.testing.assert_close(module(x), x, **TOL)  # eq. (5) of the paper: C/c_{i+1} on each block


def test_basic_context_module_has_about_64_c_squared_parameters():
    # the paper: "approximately 64 C^2 parameters in total"; exactly 64 C^2 weights plus 8 C biases
    for c in (2, 21):
        n = sum(p.numel() for p in ContextModule(c).parameters())
        assert n == 64 * c * c + 8 * c


def test_pooling_module_has_the_context_module_parameters_and_starts_as_identity(gen):
    ctx, pool = ContextModule(2, width=8), PoolingModule(2, width=8, generator=gen)
    assert [p.shape for p in ctx.parameters()] == [p.shape for p in pool.parameters()]
    x = torch.randn(2, 2, 16, 24, generator=gen)
    torch.testing.assert_close(pool(x), x)


def test_pooling_module_matches_a_hand_written_hourglass(gen):
    torch.manual_seed(0)
    m = PoolingModule(2, width=4, generator=gen).double()
    with torch.no_grad():
        m.final.weight.normal_()
    x = torch.randn(1, 2, 16, 16, dtype=DT, generator=gen)
    c = [(conv.weight, conv.bias) for conv in m.convs]

    def conv(h, i):
        return torch.relu(F.conv2d(h, *c[i], padding=1))

    def up(h):
        return F.interpolate(h, size=(2 * h.shape[-2], 2 * h.shape[-1]), mode="bilinear", align_corners=False)

    h2 = conv(conv(x, 0), 1)
    h3 = conv(F.max_pool2d(h2, 2), 2)
    h4 = conv(F.max_pool2d(h3, 2), 3)
    h5 = conv(F.max_pool2d(h4, 2), 4)
    h7 = conv(up(conv(up(h5) + h4, 5)) + h3, 6)
    want = x + F.conv2d(up(h7) + h2, m.final.weight, m.final.bias)
    torch.testing.assert_close(m(x), want, **TOL)


def test_pooling_module_sees_the_whole_image(gen):
    m = PoolingModule(1, width=2, generator=gen).double()
    with torch.no_grad():
        m.final.weight.fill_(1.0)
    mask = empirical_receptive_field(m, torch.rand(3, 1, 32, 32, dtype=DT, generator=gen) + 0.1)
    assert receptive_field_extent(mask) == (32, 32)


@given(st.integers(0, 2**31 - 1), st.sampled_from([1, 3, 5, 7]))
def test_in_view_matches_brute_force(seed, side):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(2, 6, 7, generator=g) < 0.08
    got = in_view(mask, side)
    r = side // 2
    for b in range(2):
        pts = mask[b].nonzero().tolist()
        for i in range(6):
            for j in range(7):
                want = any(abs(k - i) <= r and abs(l - j) <= r for k, l in pts)
                assert bool(got[b, i, j]) == want


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: conv2d([1.0], torch.zeros(1, 1, 1, 1)), TypeError, "input"),
        (lambda: conv2d(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 1, 1)), ValueError, "weight"),
        (lambda: conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 1, 1), dilation=0), ValueError, "dilation"),
        (lambda: conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 1, 1), padding=-1), ValueError, "padding"),
        (lambda: conv2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), dilation=2), ValueError, "input"),
        (lambda: conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(2, 1, 1, 1), torch.zeros(3)), ValueError, "bias"),
        (lambda: receptive_field([(3, 0)]), ValueError, "layers"),
        (lambda: receptive_field([3, 1]), TypeError, "layers"),
        (lambda: receptive_field("31"), TypeError, "layers"),
        (lambda: empirical_receptive_field(lambda x: x, torch.zeros(1, 3, 3)), TypeError, "module"),
        (lambda: empirical_receptive_field(nn.Identity(), torch.zeros(3, 3)), ValueError, "input"),
        (lambda: empirical_receptive_field(nn.Identity(), torch.zeros(1, 1, 1, 3, 3)), ValueError, "input"),
        (lambda: empirical_receptive_field(nn.Identity(), torch.zeros(1, 3, 3), (5, 0)), ValueError, "position"),
        (lambda: empirical_receptive_field(nn.Identity(), torch.zeros(1, 3, 3), channel=1), ValueError, "channel"),
        (lambda: receptive_field_extent(torch.zeros(3, 3, dtype=torch.bool)), ValueError, "mask"),
        (lambda: ContextModule(0), ValueError, "channels"),
        (lambda: ContextModule(2, width=3), ValueError, "width"),
        (lambda: ContextModule(2, ()), TypeError, "dilations"),
        (lambda: ContextModule(2, (1, 0)), ValueError, "dilations"),
        (lambda: ContextModule(2, init="zeros"), ValueError, "init"),
        (lambda: ContextModule(2, noise=-1.0), ValueError, "noise"),
        (lambda: ContextModule(2)(torch.zeros(1, 3, 4, 4)), ValueError, "input"),
        (lambda: identity_kernel(3, 3, 2, 3), ValueError, "kernel_size"),
        (lambda: identity_kernel(4, 3, 3, 2), ValueError, "groups"),
        (lambda: ContextModule(2, (1, 1), width=(4, 4, 4)), ValueError, "width"),
        (lambda: ContextModule(2, (1, 1), width=(4, 3)), ValueError, "width"),
        (lambda: large_widths(0), ValueError, "channels"),
        (lambda: PoolingModule(2, width=3), ValueError, "width"),
        (lambda: PoolingModule(1)(torch.zeros(1, 1, 12, 12)), ValueError, "input"),
        (lambda: PoolingModule(1)(torch.zeros(1, 2, 16, 16)), ValueError, "input"),
        (lambda: in_view(torch.zeros(3, 3), 3), TypeError, "mask"),
        (lambda: in_view(torch.zeros(3, dtype=torch.bool), 3), ValueError, "mask"),
        (lambda: in_view(torch.zeros(3, 3, dtype=torch.bool), 4), ValueError, "side"),
    ],
)
def test_dilated_bad_inputs(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


# ------------------------------------------------- chapter 7's overfitting run


def test_classification_error_matches_a_per_image_count(gen):
    """Reference: one image at a time, counting wrong argmaxes by hand."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.randn(23, 1, 4, 4, generator=gen)
    y = torch.randint(0, 3, (23,), generator=gen)
    wrong = sum(int(model(x[i : i + 1]).argmax(1).item() != y[i].item()) for i in range(len(y)))
    from papers30.convolution import classification_error

    for chunk in (1, 5, 500):
        assert classification_error(model, x, y, chunk=chunk) == wrong / len(y)


def test_train_small_alexnet_matches_a_hand_written_run():
    """Reference: the same run written out step by step with the package's pieces and torch's SGD."""
    from papers30.convolution import train_small_alexnet
    from papers30.data.images import augment, load_images
    from papers30.runtime import generator, seed_everything

    kw = dict(n_images=40, hidden=16, lr=0.01, batch_size=8, steps=4, every=2, n_eval=30)
    for regularised in (False, True):
        history = train_small_alexnet(regularised, 3, **kw)
        x, y = load_images("fashion_mnist", "train")
        x, y = x[:40], y[:40]
        seed_everything(303)
        model = SmallAlexNet(hidden=16, lrn=False, dropout=0.5 if regularised else 0.0)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        batches, coins = generator(403), generator(503)
        losses = []
        model.train()
        for _ in range(4):
            idx = torch.randint(0, 40, (8,), generator=batches)
            xb = augment(x[idx], coins) if regularised else x[idx]
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert history.losses == pytest.approx(losses, rel=1e-6)
        assert history.eval_steps == [2, 4] and set(history.evals[0]) == {"train", "test"}
        model.eval()
        with torch.no_grad():
            final = (model(x).argmax(1) != y).float().mean().item()
        assert history.evals[-1]["train"] == pytest.approx(final)
        replayed = train_small_alexnet(regularised, 3, **kw, stop_after=2)
        assert replayed.losses == history.losses[:2]


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(regularised=1, seed=0), TypeError, "regularised"),
    (dict(regularised=False, seed=0.5), TypeError, "seed"),
    (dict(regularised=False, seed=0, n_images=0), ValueError, "n_images"),
    (dict(regularised=False, seed=0, lr=0), ValueError, "lr"),
    (dict(regularised=False, seed=0, steps=2.0), TypeError, "steps"),
])
def test_train_small_alexnet_bad_arguments(kwargs, exc, word):
    from papers30.convolution import train_small_alexnet

    with pytest.raises(exc, match=word):
        train_small_alexnet(**kwargs)


def test_classification_error_bad_inputs():
    from papers30.convolution import classification_error

    model = nn.Flatten()
    with pytest.raises(ValueError, match="images"):
        classification_error(model, torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="labels"):
        classification_error(model, torch.zeros(2, 1, 2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        classification_error(model, torch.zeros(2, 1, 2, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk"):
        classification_error(model, torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), chunk=0)
