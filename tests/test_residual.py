"""papers30.residual against hand-composed torch references (float64, tolerance 1e-10)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from papers30.data.images import augment
from papers30.residual import (ARCHS, CifarResNet, PadShortcut, PlainBlock, PreActBlock, PreActResNet,
                               ResidualBlock, build_net, depth_scaling, fashion_mnist_at, init_he_,
                               make_shortcut, propagation_norms, tail_mean, train_classifier,
                               train_on_fashion_mnist, weight_layers)

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)

# (in_channels, out_channels, stride, H, W): same shape, wider, strided, both, odd sizes, 1x1.
BLOCK_SHAPES = [
    (3, 3, 1, 5, 5),
    (2, 4, 1, 4, 6),
    (3, 5, 2, 6, 6),
    (2, 3, 2, 7, 5),
    (2, 2, 2, 3, 3),
    (1, 2, 2, 1, 1),
]


def randomise_norms(module: nn.Module, g: torch.Generator) -> None:
    """Give every batch norm non-trivial affine parameters and running statistics."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g, dtype=DT) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=DT))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=DT))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=DT) + 0.5)


def torch_branch(block: PlainBlock, dt=DT) -> nn.Sequential:
    """``F`` of a block rebuilt from fresh torch.nn layers with the block's weights copied in."""
    c_in, c_out = block.conv1.in_channels, block.conv1.out_channels
    ref = nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=block.conv1.stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
    ).to(dt)
    for i, name in [(0, "conv1"), (1, "bn1"), (3, "conv2"), (4, "bn2")]:
        ref[i].load_state_dict(getattr(block, name).state_dict())
    ref.train(block.training)
    return ref


def pad_reference(x: torch.Tensor, out_channels: int, stride: int) -> torch.Tensor:
    """Option A by brute force: copy every stride-th pixel into a zero tensor of the output shape."""
    B, C, H, W = x.shape
    Ho, Wo = math.ceil(H / stride), math.ceil(W / stride)
    out = torch.zeros(B, out_channels, Ho, Wo, dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            out[:, :C, i, j] = x[:, :, i * stride, j * stride]
    return out


def make_block(c_in, c_out, stride, shortcut, g, train):
    block = ResidualBlock(c_in, c_out, stride, shortcut).to(DT)
    randomise_norms(block, g)
    return block.train(train)


# ---------------------------------------------------------------- blocks


@pytest.mark.parametrize("c_in,c_out,stride,H,W", BLOCK_SHAPES)
@pytest.mark.parametrize("train", [False, True])
def test_residual_block_pad_matches_hand_composed_torch_reference(c_in, c_out, stride, H, W, train, gen):
    block = make_block(c_in, c_out, stride, "pad", gen, train)
    x = torch.randn(3, c_in, H, W, generator=gen, dtype=DT)
    want = F.relu(torch_branch(block)(x) + pad_reference(x, c_out, stride))
    got = block(x)
    assert got.shape == (3, c_out, math.ceil(H / stride), math.ceil(W / stride))
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("c_in,c_out,stride,H,W", BLOCK_SHAPES)
@pytest.mark.parametrize("train", [False, True])
def test_residual_block_projection_matches_hand_composed_torch_reference(c_in, c_out, stride, H, W, train, gen):
    block = make_block(c_in, c_out, stride, "projection", gen, train)
    x = torch.randn(2, c_in, H, W, generator=gen, dtype=DT)
    if c_in == c_out and stride == 1:
        shortcut = x  # the identity, whatever the option
        assert isinstance(block.shortcut, nn.Identity)
    else:
        conv = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False).to(DT)
        norm = nn.BatchNorm2d(c_out).to(DT).train(train)
        conv.load_state_dict(block.shortcut[0].state_dict())
        norm.load_state_dict(block.shortcut[1].state_dict())
        shortcut = norm(conv(x))
    want = F.relu(torch_branch(block)(x) + shortcut)
    torch.testing.assert_close(block(x), want, **TOL)


@pytest.mark.parametrize("c_in,c_out,stride,H,W", BLOCK_SHAPES)
def test_plain_block_matches_hand_composed_torch_reference(c_in, c_out, stride, H, W, gen):
    block = PlainBlock(c_in, c_out, stride).to(DT)
    randomise_norms(block, gen)
    x = torch.randn(2, c_in, H, W, generator=gen, dtype=DT)
    torch.testing.assert_close(block(x), F.relu(torch_branch(block)(x)), **TOL)
    torch.testing.assert_close(block.branch(x), torch_branch(block)(x), **TOL)


@given(c=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_residual_block_with_zeroed_branch_is_relu_of_input_closed_form(c, h, w, seed):
    """With the last batch norm's scale and shift at zero, F(x) = 0 and the block is ReLU(x)."""
    g = torch.Generator().manual_seed(seed)
    block = ResidualBlock(c, c).to(DT)
    randomise_norms(block, g)
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    x = torch.randn(2, c, h, w, generator=g, dtype=DT)
    torch.testing.assert_close(block.train()(x), torch.relu(x), **TOL)
    torch.testing.assert_close(block.eval()(x), torch.relu(x), **TOL)


def test_residual_block_with_zeroed_branch_and_pad_shortcut_is_relu_of_padded_input(gen):
    block = ResidualBlock(2, 5, stride=2).to(DT)
    with torch.no_grad():
        block.bn2.weight.zero_()
    x = torch.randn(2, 2, 7, 7, generator=gen, dtype=DT)
    torch.testing.assert_close(block(x), torch.relu(pad_reference(x, 5, 2)), **TOL)


def test_plain_block_with_zeroed_branch_is_zero_unlike_the_residual_block(gen):
    """The contrast the chapter draws: a zero residual passes the signal on, a zero plain block kills it."""
    plain, res = PlainBlock(3, 3).to(DT), ResidualBlock(3, 3).to(DT)
    res.load_state_dict(plain.state_dict())
    for b in (plain, res):
        with torch.no_grad():
            b.bn2.weight.zero_()
    x = torch.randn(2, 3, 4, 4, generator=gen, dtype=DT)
    assert torch.count_nonzero(plain(x)) == 0
    assert torch.count_nonzero(res(x)) == torch.count_nonzero(torch.relu(x)) > 0


@pytest.mark.parametrize("c_in,c_out,stride,H,W", BLOCK_SHAPES)
def test_pad_shortcut_matches_brute_force_loop(c_in, c_out, stride, H, W, gen):
    x = torch.randn(2, c_in, H, W, generator=gen, dtype=DT)
    torch.testing.assert_close(PadShortcut(c_in, c_out, stride)(x), pad_reference(x, c_out, stride), **TOL)


def test_make_shortcut_kinds_by_hand():
    assert isinstance(make_shortcut(4, 4, 1, "pad"), nn.Identity)
    assert isinstance(make_shortcut(4, 4, 1, "projection"), nn.Identity)
    assert isinstance(make_shortcut(4, 8, 2, "pad"), PadShortcut)
    proj = make_shortcut(4, 8, 2, "projection")
    assert isinstance(proj[0], nn.Conv2d) and proj[0].kernel_size == (1, 1) and proj[0].stride == (2, 2)
    assert isinstance(proj[1], nn.BatchNorm2d)
    assert sum(p.numel() for p in make_shortcut(4, 8, 2, "pad").parameters()) == 0


@pytest.mark.parametrize("shortcut", ["pad", "projection"])
def test_residual_block_gradient_matches_numerical_gradient(shortcut, gen):
    block = make_block(2, 3, 2, shortcut, gen, train=True)
    x = torch.randn(2, 2, 4, 4, generator=gen, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-6)


def test_block_gradient_reaches_the_input_through_the_shortcut_when_the_branch_is_zero(gen):
    """d ReLU(0 + x)/dx = 1 where x > 0: the identity path carries the gradient unchanged."""
    block = ResidualBlock(2, 2).to(DT)
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    x = torch.randn(2, 2, 3, 3, generator=gen, dtype=DT, requires_grad=True)
    block(x).sum().backward()
    torch.testing.assert_close(x.grad, (x > 0).to(DT), **TOL)


# ---------------------------------------------------------------- the network


def functional_net(net: CifarResNet, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode forward pass written with torch.nn.functional and the net's tensors only."""

    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    h = F.relu(bn(F.conv2d(x, net.stem[0].weight, padding=1), net.stem[1]))
    for b in net.blocks:
        f = F.relu(bn(F.conv2d(h, b.conv1.weight, stride=b.conv1.stride, padding=1), b.bn1))
        f = bn(F.conv2d(f, b.conv2.weight, padding=1), b.bn2)
        if isinstance(b, ResidualBlock):
            f = f + pad_reference(h, f.shape[1], b.conv1.stride[0])
        h = F.relu(f)
    return F.linear(h.mean(dim=(2, 3)), net.fc.weight, net.fc.bias)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("depth,H", [(8, 28), (14, 9), (8, 1)])
def test_net_matches_functional_composition(depth, H, residual, gen):
    net = CifarResNet(depth, residual=residual, widths=(2, 3, 4), num_classes=5).to(DT)
    randomise_norms(net, gen)
    net.eval()
    x = torch.randn(2, 1, H, H, generator=gen, dtype=DT)
    got = net(x)
    assert got.shape == (2, 5)
    torch.testing.assert_close(got, functional_net(net, x), **TOL)


@pytest.mark.parametrize("depth", [8, 14, 20, 32, 56])
def test_plain_and_residual_nets_have_equal_parameter_counts(depth):
    plain = CifarResNet(depth, residual=False)
    res = CifarResNet(depth, residual=True)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in res.parameters())
    assert plain.state_dict().keys() == res.state_dict().keys()
    res.load_state_dict(plain.state_dict())  # strict: same tensors, same names


def test_projection_shortcuts_add_exactly_two_1x1_convolutions_and_norms_closed_form():
    w = (16, 32, 64)
    plain = sum(p.numel() for p in CifarResNet(20, residual=False, widths=w).parameters())
    proj = sum(p.numel() for p in CifarResNet(20, widths=w, shortcut="projection").parameters())
    extra = (w[0] * w[1] + 2 * w[1]) + (w[1] * w[2] + 2 * w[2])
    assert proj - plain == extra


@pytest.mark.parametrize("depth", [8, 14, 20, 32, 110])
@pytest.mark.parametrize("shortcut", ["pad", "projection"])
def test_depth_equals_weight_layer_count_closed_form(depth, shortcut):
    net = CifarResNet(depth, shortcut=shortcut, widths=(2, 2, 2) if shortcut == "pad" else (2, 3, 4))
    n = (depth - 2) // 6
    assert len(net.blocks) == 3 * n
    assert weight_layers(net) == depth == 6 * n + 2
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert convs == depth - 1 + (2 if shortcut == "projection" else 0)


def test_stages_halve_resolution_and_widen_by_hand():
    net = CifarResNet(14, widths=(4, 6, 8)).eval()
    h = net.stem(torch.zeros(1, 1, 28, 28))
    shapes = []
    for b in net.blocks:
        h = b(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(4, 28, 28)] * 2 + [(6, 14, 14)] * 2 + [(8, 7, 7)] * 2


def test_he_initialisation_std_closed_form():
    """kaiming_normal_(mode='fan_out'): std = sqrt(2 / (out_channels * 3 * 3))."""
    torch.manual_seed(0)
    net = CifarResNet(8, widths=(64, 64, 64))
    w = net.blocks[1].conv1.weight
    assert abs(w.std().item() - math.sqrt(2 / (64 * 9))) < 0.02 * math.sqrt(2 / (64 * 9))
    assert torch.equal(net.blocks[1].bn1.weight, torch.ones(64))


def test_net_gradient_matches_numerical_gradient(gen):
    net = CifarResNet(8, widths=(2, 2, 3), num_classes=3).to(DT)
    x = torch.randn(2, 1, 4, 4, generator=gen, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_net_runs_on_the_device_of_its_input():
    net = CifarResNet(8, widths=(2, 3, 4)).cuda()
    assert net(torch.randn(2, 1, 8, 8, device="cuda")).device.type == "cuda"


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(depth=9), ValueError, "depth"),
        (dict(depth=2), ValueError, "depth"),
        (dict(depth=0), ValueError, "depth"),
        (dict(depth=20.0), TypeError, "depth"),
        (dict(depth=True), TypeError, "depth"),
        (dict(depth=8, residual=1), TypeError, "residual"),
        (dict(depth=8, widths=(4, 8)), ValueError, "widths"),
        (dict(depth=8, widths=(4, 0, 8)), ValueError, "widths"),
        (dict(depth=8, widths=(4, 8, 6)), ValueError, "out_channels"),
        (dict(depth=8, in_channels=0), ValueError, "in_channels"),
        (dict(depth=8, num_classes=1.5), TypeError, "num_classes"),
        (dict(depth=8, shortcut="zeros"), ValueError, "shortcut"),
        (dict(depth=8, shortcut=None), TypeError, "shortcut"),
    ],
)
def test_net_rejects_bad_arguments_naming_them(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        CifarResNet(**kwargs)


@pytest.mark.parametrize(
    "args,exc,name",
    [
        ((0, 4), ValueError, "in_channels"),
        ((4, 2), ValueError, "out_channels"),
        ((4, 4, 0), ValueError, "stride"),
        ((4, 4, 1.0), TypeError, "stride"),
        ((4, 4, 1, "zero"), ValueError, "shortcut"),
    ],
)
def test_block_and_shortcut_reject_bad_arguments_naming_them(args, exc, name):
    with pytest.raises(exc, match=name):
        ResidualBlock(*args)
    with pytest.raises(exc, match=name):
        make_shortcut(*args)


@pytest.mark.parametrize(
    "module,c", [(PlainBlock(2, 2), 2), (ResidualBlock(2, 4, 2), 2), (CifarResNet(8, widths=(2, 2, 2)), 1)]
)
@pytest.mark.parametrize(
    "make,exc",
    [
        (lambda c: torch.zeros(2, c, 4), ValueError),
        (lambda c: torch.zeros(2, c + 1, 4, 4), ValueError),
        (lambda c: torch.zeros(2, c, 4, 4, dtype=torch.long), TypeError),
        (lambda c: [[0.0] * c], TypeError),
    ],
)
def test_forward_rejects_bad_input_naming_x(module, c, make, exc):
    with pytest.raises(exc, match="^x "):
        module(make(c))


def test_weight_layers_rejects_non_module():
    with pytest.raises(TypeError, match="model"):
        weight_layers([nn.Linear(2, 2)])


# ---------------------------------------------------------------- the plot helper this chapter added


# ---------------------------------------------------------------- chapter 15: pre-activation

from papers30.residual import PreActBlock, PreActResNet, propagation_norms


def torch_preact_branch(block: PreActBlock) -> nn.Sequential:
    """``F`` of a pre-activation block rebuilt from torch.nn layers with the block's weights copied in."""
    c_in, c_out = block.conv1.in_channels, block.conv1.out_channels
    ref = nn.Sequential(
        nn.BatchNorm2d(c_in),
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, 3, stride=block.conv1.stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
    ).to(DT)
    for i, name in [(0, "bn1"), (2, "conv1"), (3, "bn2"), (5, "conv2")]:
        ref[i].load_state_dict(getattr(block, name).state_dict())
    return ref.train(block.training)


def zero_branch(block: PreActBlock) -> None:
    with torch.no_grad():
        block.conv2.weight.zero_()


@pytest.mark.parametrize("c_in,c_out,stride,H,W", BLOCK_SHAPES)
@pytest.mark.parametrize("train", [False, True])
def test_preact_block_matches_hand_composed_torch_reference(c_in, c_out, stride, H, W, train, gen):
    block = PreActBlock(c_in, c_out, stride).to(DT)
    randomise_norms(block, gen)
    block.train(train)
    x = torch.randn(3, c_in, H, W, generator=gen, dtype=DT)
    want = torch_preact_branch(block)(x) + pad_reference(x, c_out, stride)  # no ReLU after the sum
    got = block(x)
    assert got.shape == (3, c_out, math.ceil(H / stride), math.ceil(W / stride))
    torch.testing.assert_close(got, want, **TOL)
    assert (got < 0).any()  # the output is not rectified


@given(c=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_preact_block_with_zeroed_branch_is_exactly_the_identity_unlike_the_original(c, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    pre, post = PreActBlock(c, c).to(DT), ResidualBlock(c, c).to(DT)
    randomise_norms(pre, g)
    zero_branch(pre)
    with torch.no_grad():
        post.bn2.weight.zero_()
        post.bn2.bias.zero_()
    x = torch.randn(2, c, h, w, generator=g, dtype=DT)  # signed input
    assert torch.equal(pre.train()(x), x)
    assert torch.equal(pre.eval()(x), x)
    torch.testing.assert_close(post(x), torch.relu(x), **TOL)  # the original clips the negative part


def test_preact_block_zeroed_by_its_second_norm_is_the_identity(gen):
    """gamma = beta = 0 in BN2 gives ReLU(0) = 0 into a bias-free convolution: F(x) = 0."""
    block = PreActBlock(3, 3).to(DT)
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    x = torch.randn(2, 3, 5, 5, generator=gen, dtype=DT)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("n", [1, 5, 40])
def test_signal_and_gradient_unchanged_through_zeroed_preact_stack_closed_form(n, gen):
    blocks = [PreActBlock(2, 2).to(DT) for _ in range(n)]
    for b in blocks:
        zero_branch(b)
    x = torch.randn(3, 2, 4, 4, generator=gen, dtype=DT)
    readout = torch.randn(3, 2, 4, 4, generator=gen, dtype=DT)
    signal, grad = propagation_norms(blocks, x, readout)
    assert signal.shape == grad.shape == (n + 1,)
    torch.testing.assert_close(signal, torch.full((n + 1,), x.pow(2).mean().sqrt().item(), dtype=DT), **TOL)
    torch.testing.assert_close(grad, torch.full((n + 1,), readout.pow(2).mean().sqrt().item(), dtype=DT), **TOL)


@pytest.mark.parametrize("kind", [PreActBlock, ResidualBlock])
@pytest.mark.parametrize("train", [False, True])
def test_propagation_norms_match_brute_force_autograd_from_each_point(kind, train, gen):
    """Reference: restart the forward pass from a detached x_l and differentiate from there."""
    blocks = [kind(2, 2).to(DT).train(train) for _ in range(3)] + [kind(2, 3, 2).to(DT).train(train)]
    for b in blocks:
        randomise_norms(b, gen)
    x = torch.randn(4, 2, 5, 5, generator=gen, dtype=DT)
    readout = torch.randn(4, 3, 3, 3, generator=gen, dtype=DT)
    signal, grad = propagation_norms(blocks, x, readout)
    h = x
    for l in range(len(blocks) + 1):
        xl = h.detach().requires_grad_(True)
        out = xl
        for b in blocks[l:]:
            out = b(out)
        (g,) = torch.autograd.grad((readout * out).sum(), xl)
        torch.testing.assert_close(signal[l], h.pow(2).mean().sqrt(), **TOL)
        torch.testing.assert_close(grad[l], g.pow(2).mean().sqrt(), **TOL)
        if l < len(blocks):
            h = blocks[l](h)
    assert all(p.grad is None for b in blocks for p in b.parameters())


@pytest.mark.parametrize("depth,H", [(8, 28), (14, 9), (8, 1)])
def test_preact_net_matches_functional_composition(depth, H, gen):
    net = PreActResNet(depth, widths=(2, 3, 4), num_classes=5).to(DT)
    randomise_norms(net, gen)
    net.eval()

    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    x = torch.randn(2, 1, H, H, generator=gen, dtype=DT)
    h = F.conv2d(x, net.stem[0].weight, padding=1)  # a bare convolution
    for b in net.blocks:
        f = F.conv2d(F.relu(bn(h, b.bn1)), b.conv1.weight, stride=b.conv1.stride, padding=1)
        f = F.conv2d(F.relu(bn(f, b.bn2)), b.conv2.weight, padding=1)
        h = f + pad_reference(h, f.shape[1], b.conv1.stride[0])
    h = F.relu(bn(h, net.post[0]))
    want = F.linear(h.mean(dim=(2, 3)), net.fc.weight, net.fc.bias)
    torch.testing.assert_close(net(x), want, **TOL)


@pytest.mark.parametrize("depth", [8, 20, 110])
@pytest.mark.parametrize("shortcut", ["pad", "projection"])
def test_preact_net_depth_equals_weight_layer_count_closed_form(depth, shortcut):
    net = PreActResNet(depth, shortcut=shortcut, widths=(2, 3, 4))
    assert weight_layers(net) == depth
    assert all(isinstance(b, PreActBlock) for b in net.blocks) and len(net.blocks) == 3 * ((depth - 2) // 6)


def test_preact_block_gradient_matches_numerical_gradient(gen):
    block = PreActBlock(2, 3, 2, "projection").to(DT)
    randomise_norms(block, gen)
    x = torch.randn(2, 2, 4, 4, generator=gen, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "make,exc,name",
    [
        (lambda: PreActBlock(4, 2), ValueError, "out_channels"),
        (lambda: PreActBlock(4, 4, 0), ValueError, "stride"),
        (lambda: PreActBlock(4, 4, 1, "zero"), ValueError, "shortcut"),
        (lambda: PreActResNet(9), ValueError, "depth"),
        (lambda: PreActResNet(8, widths=(4, 8)), ValueError, "widths"),
        (lambda: PreActBlock(2, 2)(torch.zeros(1, 3, 4, 4)), ValueError, "^x "),
        (lambda: propagation_norms(PreActBlock(2, 2), torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)),
         TypeError, "blocks"),
        (lambda: propagation_norms([], torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)), ValueError, "blocks"),
        (lambda: propagation_norms([3], torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)), TypeError, "blocks"),
        (lambda: propagation_norms([PreActBlock(2, 2)], torch.zeros(2, 3, 3), torch.zeros(1, 2, 3, 3)),
         ValueError, "^x "),
        (lambda: propagation_norms([PreActBlock(2, 2)], torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 2, 3)),
         ValueError, "readout"),
        (lambda: propagation_norms([PreActBlock(2, 2)], torch.zeros(1, 2, 3, 3), [0.0]), TypeError, "readout"),
    ],
)
def test_preact_rejects_bad_inputs_naming_them(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


# ---------------------------------------------------------------- He initialisation, scaled shortcut


def test_init_he_std_closed_form_and_norms_reset():
    """kaiming_normal_(mode='fan_out'): std = sqrt(2 / (C_out * k * k)); BN weight 1, bias 0."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(8, 64, 3), nn.BatchNorm2d(64), nn.Conv2d(64, 32, 1))
    with torch.no_grad():
        m[1].weight.fill_(3.0)
        m[1].bias.fill_(-1.0)
    assert init_he_(m) is m
    assert abs(m[0].weight.std().item() - math.sqrt(2 / (64 * 9))) < 0.03 * math.sqrt(2 / (64 * 9))
    assert abs(m[2].weight.std().item() - math.sqrt(2 / 32)) < 0.03 * math.sqrt(2 / 32)
    assert torch.equal(m[1].weight, torch.ones(64)) and torch.equal(m[1].bias, torch.zeros(64))


def test_init_he_rejects_non_module():
    with pytest.raises(TypeError, match="module"):
        init_he_([nn.Conv2d(1, 1, 3)])


@pytest.mark.parametrize("c_in,c_out,stride,H,W", BLOCK_SHAPES)
@pytest.mark.parametrize("scale", [0.5, 1.1, 0.0])
def test_scaled_preact_block_matches_hand_composed_torch_reference(c_in, c_out, stride, H, W, scale, gen):
    block = PreActBlock(c_in, c_out, stride, scale=scale).to(DT)
    randomise_norms(block, gen)
    x = torch.randn(3, c_in, H, W, generator=gen, dtype=DT)
    want = torch_preact_branch(block)(x) + scale * pad_reference(x, c_out, stride)
    torch.testing.assert_close(block(x), want, **TOL)


def test_scale_one_is_the_unscaled_block(gen):
    a, b = PreActBlock(3, 3).to(DT), PreActBlock(3, 3, scale=1.0).to(DT)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 4, 4, generator=gen, dtype=DT)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("scale,exc", [("0.5", TypeError), (True, TypeError), (float("nan"), ValueError),
                                       (float("inf"), ValueError)])
def test_preact_block_rejects_bad_scale_naming_it(scale, exc):
    with pytest.raises(exc, match="scale"):
        PreActBlock(2, 2, scale=scale)


# ---------------------------------------------------------------- depth scaling


@pytest.mark.parametrize("lam", [1.0, 0.5, 1.3])
def test_depth_scaling_of_zeroed_scaled_stack_is_lambda_to_the_n_closed_form(lam, gen):
    """A zero branch leaves x_{l+1} = lam x_l: signal and gradient ratio are both lam**N."""
    blocks = [PreActBlock(2, 2, scale=lam).to(DT) for _ in range(12)]
    for b in blocks:
        zero_branch(b)
    x = torch.randn(3, 2, 4, 4, generator=gen, dtype=DT)
    ratio, growth = depth_scaling(blocks, x, [1, 5, 12], generator=gen)
    want = torch.tensor([lam ** n for n in (1, 5, 12)], dtype=DT)
    torch.testing.assert_close(ratio, want, **TOL)
    torch.testing.assert_close(growth, want, **TOL)


@pytest.mark.parametrize("kind", [PreActBlock, ResidualBlock, PlainBlock])
def test_depth_scaling_matches_propagation_norms_of_each_substack(kind, gen):
    """Reference: propagation_norms on blocks[:N] with the read-outs drawn in the same order."""
    blocks = [kind(2, 2).to(DT) for _ in range(6)]
    for b in blocks:
        randomise_norms(b, gen)
    x = torch.randn(4, 2, 3, 3, generator=gen, dtype=DT)
    seed = 7
    ratio, growth = depth_scaling(blocks, x, [2, 6, 3], generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    for k, n in enumerate([2, 6, 3]):
        readout = torch.randn(x.shape, generator=g, dtype=DT)
        signal, grad = propagation_norms(blocks[:n], x, readout)
        torch.testing.assert_close(ratio[k], grad[0] / grad[-1], **TOL)
        torch.testing.assert_close(growth[k], signal[-1] / signal[0], **TOL)


@pytest.mark.parametrize(
    "blocks,depths,x,exc,name",
    [
        (PreActBlock(2, 2), [1], torch.zeros(1, 2, 3, 3), TypeError, "blocks"),
        ([PreActBlock(2, 2)], [], torch.zeros(1, 2, 3, 3), ValueError, "depths"),
        ([PreActBlock(2, 2)], [2], torch.zeros(1, 2, 3, 3), ValueError, "depths"),
        ([PreActBlock(2, 2)], [0], torch.zeros(1, 2, 3, 3), ValueError, "depths"),
        ([PreActBlock(2, 2)], [1.0], torch.zeros(1, 2, 3, 3), TypeError, "depths"),
        ([PreActBlock(2, 2)], "1", torch.zeros(1, 2, 3, 3), ValueError, "depths"),
        ([PreActBlock(2, 2)], [1], torch.zeros(2, 3, 3), ValueError, "^x "),
    ],
)
def test_depth_scaling_rejects_bad_inputs_naming_them(blocks, depths, x, exc, name):
    with pytest.raises(exc, match=name):
        depth_scaling(blocks, x, depths)


# ---------------------------------------------------------------- the training recipe


def test_build_net_same_seed_same_weights_for_plain_and_residual_and_keeps_global_rng():
    state = torch.random.get_rng_state()
    plain, res = build_net("plain", 8, (2, 3, 4), seed=5), build_net("residual", 8, (2, 3, 4), seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not plain.residual and res.residual
    for (k, v), (k2, v2) in zip(plain.state_dict().items(), res.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    other = build_net("plain", 8, (2, 3, 4), seed=6)
    assert not torch.equal(other.stem[0].weight, plain.stem[0].weight)
    assert isinstance(build_net("preact", 8, (2, 3, 4), seed=5), PreActResNet)


@pytest.mark.parametrize("kwargs,exc,name", [(dict(arch="dense", depth=8, seed=0), ValueError, "arch"),
                                             (dict(arch="plain", depth=8, seed=1.0), TypeError, "seed"),
                                             (dict(arch="plain", depth=9, seed=0), ValueError, "depth")])
def test_build_net_rejects_bad_arguments_naming_them(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        build_net(**kwargs)
    assert ARCHS == ("plain", "residual", "preact")


def toy_problem(n=24, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def reference_losses(model, x, y, *, steps, batch, lr, seed, lr_at):
    """Reference: a hand-written loop with torch.optim.SGD (unfused) on the same permutations.

    ``lr_at(step)`` is the learning rate of 1-based step ``step``.
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    g, order, losses = torch.Generator().manual_seed(seed), [], []
    per_epoch = len(x) // batch
    model.train()
    for step in range(1, steps + 1):
        epoch, k = divmod(step - 1, per_epoch)
        while len(order) <= epoch:
            order.append(torch.randperm(len(x), generator=g))
        i = order[epoch][k * batch:(k + 1) * batch]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("warmup_error,factor", [(None, 1.0), (0.0, 0.1)])
def test_train_classifier_matches_hand_written_sgd_loop_with_step_schedule(warmup_error, factor):
    """lr divided by 10 at half and three quarters of the steps; a warm-up never met keeps lr / 10."""
    x, y = toy_problem(dtype=DT)
    steps, batch, lr = 16, 8, 0.05
    a = CifarResNet(8, widths=(2, 2, 3), num_classes=3).to(DT)
    b = CifarResNet(8, widths=(2, 2, 3), num_classes=3).to(DT)
    b.load_state_dict(a.state_dict())
    history = train_classifier(a, x, y, steps=steps, batch_size=batch, lr=lr,
                               generator=torch.Generator().manual_seed(3), warmup_error=warmup_error)
    want = reference_losses(b, x, y, steps=steps, batch=batch, lr=lr, seed=3,
                            lr_at=lambda s: factor * lr * 0.1 ** ((s > 8) + (s > 12)))
    torch.testing.assert_close(torch.tensor(history.losses, dtype=DT), torch.tensor(want, dtype=DT),
                               rtol=1e-9, atol=1e-9)
    if warmup_error is not None:
        assert history.evals[-1]["warmup_steps"] == steps
    assert not a.training  # fit leaves the model in eval mode


def test_train_classifier_warmup_ends_after_the_first_step_below_the_error_threshold():
    """warmup_error = 1 is met at once (an error below 100 %): lr / 10 for step 1 only."""
    x, y = toy_problem(dtype=DT)
    torch.manual_seed(0)  # weights whose first batch is not all wrong, whatever ran before
    a = CifarResNet(8, widths=(2, 2, 3), num_classes=3).to(DT)
    b = CifarResNet(8, widths=(2, 2, 3), num_classes=3).to(DT)
    b.load_state_dict(a.state_dict())
    history = train_classifier(a, x, y, steps=6, batch_size=8, lr=0.05, milestones=(),
                               generator=torch.Generator().manual_seed(1), warmup_error=1.0)
    want = reference_losses(b, x, y, steps=6, batch=8, lr=0.05, seed=1,
                            lr_at=lambda s: 0.005 if s == 1 else 0.05)
    torch.testing.assert_close(torch.tensor(history.losses, dtype=DT), torch.tensor(want, dtype=DT),
                               rtol=1e-9, atol=1e-9)
    assert history.evals[-1]["warmup_steps"] == 1


class Recorder(nn.Module):
    """A model that remembers which images it saw (each image holds its own index)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []

    def forward(self, x):
        self.seen += x[:, 0, 0, 0].long().tolist()
        return self.w * torch.zeros(len(x), 3)


def test_train_classifier_draws_each_epoch_without_replacement():
    n, batch = 12, 4
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    model = Recorder()
    train_classifier(model, x, torch.zeros(n, dtype=torch.long), steps=9, batch_size=batch, lr=0.1,
                     generator=torch.Generator().manual_seed(0))
    epochs = [model.seen[k:k + n] for k in range(0, 9 * batch, n)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert epochs[0] != epochs[1]  # a fresh permutation each epoch


class BatchRecorder(nn.Module):
    """A model that keeps a copy of every mini-batch it is fed."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.batches: list[torch.Tensor] = []

    def forward(self, x):
        self.batches.append(x.detach().clone())
        return self.w * torch.zeros(len(x), 3)


def variants(image, padding):
    """Brute force: every crop of the zero-padded image, and its mirror image."""
    _, h, w = image.shape
    padded = F.pad(image, (padding,) * 4)
    crops = [padded[:, dy:dy + h, dx:dx + w] for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)]
    return crops + [c.flip(-1) for c in crops]


def test_train_classifier_crops_and_flips_every_image_of_each_epoch():
    """Each image fed is a crop or a mirrored crop of its epoch's image, and the draws repeat with the seed."""
    n, batch, steps = 12, 4, 6
    x = torch.randn(n, 1, 3, 3, generator=torch.Generator().manual_seed(4))
    seen = []
    for _ in range(2):
        model = BatchRecorder()
        train_classifier(model, x, torch.zeros(n, dtype=torch.long), steps=steps, batch_size=batch, lr=0.1,
                         generator=torch.Generator().manual_seed(0), crop_padding=1, flip=True)
        seen.append(torch.cat(model.batches))
    assert torch.equal(seen[0], seen[1])  # the same seed, the same augmented images
    g, fed, changed = torch.Generator().manual_seed(0), seen[0], 0
    for epoch in range(steps * batch // n):
        order = torch.randperm(n, generator=g)
        for k, i in enumerate(order):
            image = fed[epoch * n + k]
            assert any(torch.equal(image, v) for v in variants(x[i], 1))
            changed += not torch.equal(image, x[i])
        for _ in range(n // batch):  # the augmentation draws of the epoch's batches
            torch.randint(0, 3, (2, batch), generator=g)
            torch.rand(batch, generator=g)
    assert changed >= n  # most of the 24 images fed are shifted or mirrored (17 of 18 variants differ)


def test_train_classifier_with_augmentation_matches_hand_written_loop():
    """The recipe on augmented batches: the reference draws the permutation, then augment's crops and flips."""
    x, y = toy_problem(dtype=DT)
    a = CifarResNet(8, widths=(2, 2, 3), num_classes=3).to(DT)
    b = CifarResNet(8, widths=(2, 2, 3), num_classes=3).to(DT)
    b.load_state_dict(a.state_dict())
    history = train_classifier(a, x, y, steps=6, batch_size=8, lr=0.05, milestones=(),
                               generator=torch.Generator().manual_seed(3), crop_padding=2, flip=True)
    opt = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    g, order, want = torch.Generator().manual_seed(3), [], []
    b.train()
    for step in range(6):
        epoch, k = divmod(step, len(x) // 8)
        while len(order) <= epoch:
            order.append(torch.randperm(len(x), generator=g))
        i = order[epoch][k * 8:(k + 1) * 8]
        loss = F.cross_entropy(b(augment(x[i], g, padding=2, flip=True)), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        want.append(loss.item())
    torch.testing.assert_close(torch.tensor(history.losses, dtype=DT), torch.tensor(want, dtype=DT),
                               rtol=1e-9, atol=1e-9)
    plain = train_classifier(CifarResNet(8, widths=(2, 2, 3), num_classes=3).to(DT), x, y, steps=6, batch_size=8,
                             lr=0.05, milestones=(), generator=torch.Generator().manual_seed(3))
    assert plain.losses != history.losses


def test_train_classifier_stop_after_replays_the_start_of_a_run():
    x, y = toy_problem()
    runs = []
    for stop in (None, 3):
        torch.manual_seed(0)
        model = CifarResNet(8, widths=(2, 2, 3), num_classes=3)
        runs.append(train_classifier(model, x, y, steps=10, batch_size=8, lr=0.05, stop_after=stop,
                                     generator=torch.Generator().manual_seed(2)).losses)
    assert runs[1] == runs[0][:3]


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(model="net"), TypeError, "model"),
        (dict(images=torch.zeros(24, 16)), ValueError, "images"),
        (dict(labels=torch.zeros(24)), TypeError, "labels"),
        (dict(labels=torch.zeros(23, dtype=torch.long)), ValueError, "labels"),
        (dict(steps=0), ValueError, "steps"),
        (dict(batch_size=25), ValueError, "batch_size"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr="0.1"), TypeError, "lr"),
        (dict(momentum=-0.1), ValueError, "momentum"),
        (dict(generator=0), TypeError, "generator"),
        (dict(milestones=(0.5, 1.5)), ValueError, "milestones"),
        (dict(warmup_error=1.5), ValueError, "warmup_error"),
        (dict(stop_after=0), ValueError, "stop_after"),
        (dict(crop_padding=-1), ValueError, "crop_padding"),
        (dict(crop_padding=1.0), TypeError, "crop_padding"),
        (dict(flip=1), TypeError, "flip"),
    ],
)
def test_train_classifier_rejects_bad_arguments_naming_them(kwargs, exc, name):
    x, y = toy_problem()
    args = dict(model=CifarResNet(8, widths=(2, 2, 3), num_classes=3), images=x, labels=y, steps=4,
                batch_size=8, lr=0.1, generator=torch.Generator())
    args.update(kwargs)
    model, images, labels = args.pop("model"), args.pop("images"), args.pop("labels")
    with pytest.raises(exc, match=name):
        train_classifier(model, images, labels, **args)


@pytest.mark.parametrize("losses,fraction,want", [([4.0, 2.0, 1.0, 3.0, 5.0], 0.2, 5.0),
                                                  ([4.0, 2.0, 1.0, 3.0, 5.0], 0.4, 4.0),
                                                  ([1.0, 2.0], 0.1, 2.0), ([1.0, 3.0], 1.0, 2.0)])
def test_tail_mean_closed_form(losses, fraction, want):
    assert tail_mean(losses, fraction) == want


@pytest.mark.parametrize("losses,fraction,exc", [([], 0.2, ValueError), ([1.0], 0.0, ValueError),
                                                 ([1.0], 1.5, ValueError), ([1.0], "0.2", TypeError)])
def test_tail_mean_rejects_bad_arguments(losses, fraction, exc):
    with pytest.raises(exc, match="losses|fraction"):
        tail_mean(losses, fraction)


# ---------------------------------------------------------------- the experiment's data and runs


def test_fashion_mnist_at_pools_the_standardised_images_by_brute_force():
    from papers30.data.images import load_images

    x_train, y_train, x_test, y_test = fashion_mnist_at(7)
    raw, labels = load_images("fashion_mnist", "train")
    z = (raw - raw.mean()) / raw.std()
    assert x_train.shape == (len(labels), 1, 7, 7) and torch.equal(y_train, labels)
    for i, j in [(0, 0), (3, 5), (6, 6)]:
        torch.testing.assert_close(x_train[:, 0, i, j], z[:, 0, 4 * i:4 * i + 4, 4 * j:4 * j + 4].mean(dim=(1, 2)))
    full = fashion_mnist_at(28)
    torch.testing.assert_close(full[0], z)
    assert x_test.shape[1:] == (1, 7, 7) and len(y_test) == len(x_test)


@pytest.mark.parametrize("size,exc", [(5, ValueError), (0, ValueError), (7.0, TypeError)])
def test_fashion_mnist_at_rejects_bad_size(size, exc):
    with pytest.raises(exc, match="size"):
        fashion_mnist_at(size)


def test_train_on_fashion_mnist_is_deterministic_and_reports_test_error():
    kw = dict(arch="residual", depth=8, widths=[2, 2, 4], size=7, steps=3, batch_size=16, lr=0.1, seed=4)
    a, b = train_on_fashion_mnist(**kw), train_on_fashion_mnist(**kw)
    assert a.losses == b.losses and len(a.losses) == 3
    assert 0.0 <= a.evals[-1]["test_error"] <= 1.0 and a.evals[-1]["warmup_steps"] == 0
    replay = train_on_fashion_mnist(**{**kw, "stop_after": 2})
    assert replay.losses == a.losses[:2]
    plain = train_on_fashion_mnist(**{**kw, "arch": "plain"})
    assert plain.losses[0] != a.losses[0] or plain.losses[1] != a.losses[1]
