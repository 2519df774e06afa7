"""Residual networks: blocks with and without a shortcut, and a CIFAR-style net.

Chapter 10 (He, Zhang, Ren and Sun, *Deep Residual Learning for Image
Recognition*, CVPR 2016) uses the original, *post-activation* block

    y = ReLU(F(x) + s(x)),   F(x) = BN(conv(ReLU(BN(conv(x))))),

where ``s`` is the identity when the shape is unchanged and otherwise either
subsamples and pads with zero channels (the paper's option A) or projects with
a strided 1x1 convolution (option B). :class:`PlainBlock` holds exactly the
same layers and returns ``ReLU(F(x))``, so a plain and a residual network can
be compared at equal parameter counts. :class:`CifarResNet` stacks three
stages of blocks into the paper's CIFAR-10 network of depth ``6n + 2``.

Chapter 15 (*Identity Mappings in Deep Residual Networks*) adds the
pre-activation block next to these: a new block class, used by a network that
overrides :meth:`CifarResNet.make_block`.

Shapes: ``(B, C, H, W)`` with ``B`` batch, ``C`` channels, ``H, W`` height and
width in pixels; ``K`` classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks

SHORTCUTS = ("pad", "projection")


def _check_block_args(in_channels: object, out_channels: object, stride: object, shortcut: object) -> None:
    _checks.positive_int("in_channels", in_channels)
    _checks.positive_int("out_channels", out_channels)
    _checks.positive_int("stride", stride)
    _checks.one_of("shortcut", shortcut, SHORTCUTS)
    if out_channels < in_channels:  # type: ignore[operator]
        raise ValueError(f"out_channels must be >= in_channels ({in_channels}), got {out_channels}")


def _check_images(name: str, x: object, channels: int) -> torch.Tensor:
    _checks.tensor(name, x, ndim=4, kind="float")
    _checks.size_matches(name, x.shape[1], channels, "channel count")  # type: ignore[union-attr]
    return x  # type: ignore[return-value]


class PadShortcut(nn.Module):
    """Parameter-free shortcut (option A): keep every ``stride``-th pixel, append zero channels.

    Maps ``(B, C_in, H, W)`` to ``(B, C_out, ceil(H / stride), ceil(W / stride))``,
    the same shape as a 3x3 convolution with padding 1 and that stride.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # zeros after the last channel


def make_shortcut(in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "pad") -> nn.Module:
    """The shortcut ``s(x)`` of a block from ``in_channels`` to ``out_channels`` at ``stride``.

    The identity when the shape is unchanged; otherwise :class:`PadShortcut`
    (``shortcut="pad"``, no parameters) or a strided 1x1 convolution followed
    by batch normalisation (``shortcut="projection"``).
    """
    _check_block_args(in_channels, out_channels, stride, shortcut)
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    if shortcut == "pad":
        return PadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class PlainBlock(nn.Module):
    """Two 3x3 convolutions with batch normalisation: ``ReLU(F(x))``, no shortcut.

    ``(B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))``.
    The first convolution carries the stride; neither has a bias (batch
    normalisation follows each).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, stride, "pad")
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual function ``F(x)``: conv, BN, ReLU, conv, BN (eq. resblock)."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("x", x, self.in_channels)
        return F.relu(self.branch(x))


class ResidualBlock(PlainBlock):
    """The post-activation residual block: ``ReLU(F(x) + s(x))``.

    The same layers as :class:`PlainBlock` plus the shortcut ``s`` of
    :func:`make_shortcut` (parameter-free unless ``shortcut="projection"``
    and the shape changes).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "pad") -> None:
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("x", x, self.in_channels)
        return F.relu(self.branch(x) + self.shortcut(x))  # eq. (resblock)


class CifarResNet(nn.Module):
    """The paper's CIFAR network of ``depth = 6n + 2`` weight layers, plain or residual.

    A 3x3 convolution (``in_channels -> widths[0]``, BN, ReLU), three stages of
    ``n`` blocks of widths ``widths`` (the first block of stages two and three
    halves the resolution), global average pooling and a linear layer to
    ``num_classes``: ``(B, in_channels, H, W) -> (B, K)`` logits.

    ``residual=False`` builds :class:`PlainBlock` s, ``residual=True``
    :class:`ResidualBlock` s; with ``shortcut="pad"`` both have the same
    parameters. Convolutions get He initialisation (the paper's), batch norms
    weight 1 and bias 0.
    """

    def __init__(
        self,
        depth: int,
        *,
        residual: bool = True,
        widths: Sequence[int] = (16, 32, 64),
        in_channels: int = 1,
        num_classes: int = 10,
        shortcut: str = "pad",
    ) -> None:
        super().__init__()
        _checks.positive_int("depth", depth)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
        if not isinstance(residual, bool):
            raise TypeError(f"residual must be a bool, got {type(residual).__name__}")
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) != 3:
            raise ValueError(f"widths must be a sequence of three channel counts, got {widths!r}")
        for w in widths:
            _checks.positive_int("widths", w)
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("num_classes", num_classes)
        _check_block_args(widths[0], widths[0], 1, shortcut)
        self.depth, self.residual, self.shortcut = depth, residual, shortcut
        self.in_channels = in_channels
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        prev = widths[0]
        for stage, width in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(self.make_block(prev, width, stride))
                prev = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(prev, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def make_block(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        """One block of a stage; a subclass overrides this to use another block type."""
        if self.residual:
            return ResidualBlock(in_channels, out_channels, stride, self.shortcut)
        return PlainBlock(in_channels, out_channels, stride)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature maps ``(B, widths[2], H', W')``."""
        _check_images("x", x, self.in_channels)
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def weight_layers(model: nn.Module) -> int:
    """The number of convolutional and linear layers on the main path of ``model``.

    This is the depth the paper counts: shortcut projections are not counted.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shortcut_ids = {
        id(m)
        for block in model.modules()
        if isinstance(block, ResidualBlock)
        for m in block.shortcut.modules()
    }
    return sum(
        1 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in shortcut_ids
    )


# ---------------------------------------------------------------- chapter 15: pre-activation


class PreActBlock(ResidualBlock):
    """The pre-activation residual block of chapter 15: ``s(x) + F(x)`` with nothing after the sum.

    ``F(x) = conv2(ReLU(BN2(conv1(ReLU(BN1(x))))))``: each convolution is
    preceded by batch normalisation and a rectifier instead of followed by
    them (eq. preact). The layers have the names of :class:`ResidualBlock`'s,
    but ``bn1`` normalises the block's input, so it has ``in_channels``
    channels. The shortcut ``s`` (identity, or option A/B when the shape
    changes) is applied to the raw input ``x``.
    ``(B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "pad") -> None:
        super().__init__(in_channels, out_channels, stride, shortcut)
        self.bn1 = nn.BatchNorm2d(in_channels)  # normalises the input, before conv1

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual function ``F(x)``: BN, ReLU, conv, BN, ReLU, conv (eq. preact)."""
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("x", x, self.in_channels)
        return self.shortcut(x) + self.branch(x)  # no activation after the sum


class PreActResNet(CifarResNet):
    """:class:`CifarResNet` built from :class:`PreActBlock` s, as in chapter 15.

    Same stages, widths, shortcuts and ``depth = 6n + 2`` as the original.
    Two changes follow from moving the activations into the blocks: the stem
    is a bare 3x3 convolution (the first block normalises and rectifies its
    input itself), and a final batch normalisation and ReLU (``post``) act on
    the last block's output before the pooling, since no block ends in one.
    ``(B, in_channels, H, W) -> (B, K)`` logits.
    """

    def __init__(
        self,
        depth: int,
        *,
        widths: Sequence[int] = (16, 32, 64),
        in_channels: int = 1,
        num_classes: int = 10,
        shortcut: str = "pad",
    ) -> None:
        super().__init__(
            depth, residual=True, widths=widths, in_channels=in_channels, num_classes=num_classes,
            shortcut=shortcut,
        )
        self.stem = nn.Sequential(self.stem[0])  # conv only
        self.post = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU())

    def make_block(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        """A :class:`PreActBlock` (the override chapter 10's class was designed for)."""
        return PreActBlock(in_channels, out_channels, stride, self.shortcut)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature maps after the final BN and ReLU, ``(B, widths[2], H', W')``."""
        _check_images("x", x, self.in_channels)
        return self.post(self.blocks(self.stem(x)))


def propagation_norms(
    blocks: Sequence[nn.Module], x: torch.Tensor, readout: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Root-mean-square size of the signal and of its gradient at every point of a stack of blocks.

    Runs ``x_0 = x`` (``(B, C, H, W)``) through ``blocks`` in order,
    ``x_{l+1} = blocks[l](x_l)``, and differentiates the loss
    ``L = sum(readout * x_N)``, a fixed linear read-out of the last output
    (``readout`` has the shape of ``x_N``). Returns ``(signal, gradient)``,
    each of shape ``(N + 1,)``: ``signal[l]`` is the RMS of ``x_l`` and
    ``gradient[l]`` the RMS of ``dL/dx_l``. The blocks' parameters get no
    gradient; their train/eval mode is left as it is.
    """
    if isinstance(blocks, nn.Module) and not isinstance(blocks, nn.Sequential):
        raise TypeError("blocks must be a sequence of torch.nn.Module (a list or nn.Sequential)")
    if not isinstance(blocks, (Sequence, nn.Sequential)) or len(blocks) == 0:
        raise ValueError(f"blocks must be a non-empty sequence of modules, got {blocks!r}")
    for b in blocks:
        if not isinstance(b, nn.Module):
            raise TypeError(f"blocks must hold torch.nn.Module s, got {type(b).__name__}")
    _checks.tensor("x", x, ndim=4, kind="float")
    _checks.tensor("readout", readout, kind="float")
    xs = [x.detach().requires_grad_(True)]
    with torch.enable_grad():
        for b in blocks:
            xs.append(b(xs[-1]))
        if readout.shape != xs[-1].shape:
            raise ValueError(
                f"readout must have the output's shape {tuple(xs[-1].shape)}, got {tuple(readout.shape)}"
            )
        grads = torch.autograd.grad((readout * xs[-1]).sum(), xs)
    rms = [torch.stack([t.detach().pow(2).mean().sqrt() for t in ts]) for ts in (xs, grads)]
    return rms[0], rms[1]
