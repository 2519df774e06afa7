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

Both chapters train with the paper's CIFAR recipe, :func:`train_classifier`
(SGD with momentum and weight decay, the learning rate divided by ten twice,
an optional warm-up), and run their experiments through
:func:`train_on_fashion_mnist`, which builds a network from a seed, trains it
on the book's Fashion-MNIST subset at a reduced resolution and reports its
test error. Chapter 15 measures how the gradient scales with depth with
:func:`depth_scaling`.

Shapes: ``(B, C, H, W)`` with ``B`` batch, ``C`` channels, ``H, W`` height and
width in pixels; ``K`` classes; ``N`` blocks in a stack.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.data.images import augment, load_images
from papers30.runtime import get_device
from papers30.training import History, fit

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
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("out_channels", out_channels)
        _checks.positive_int("stride", stride)
        if out_channels < in_channels:
            raise ValueError(f"out_channels must be at least in_channels {in_channels}, got {out_channels}")
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.tensor("x", x, ndim=4)
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


def init_he_(module: nn.Module) -> nn.Module:
    """He initialisation, in place: the starting point of every network of chapters 10 and 15.

    Every convolution's weight is drawn from a normal distribution with
    variance ``2 / (k * k * C_out)`` for a ``k x k`` kernel (He et al.'s
    rule, ``fan_out`` form, the variance that keeps the signal's size through
    a rectifier), every batch normalisation gets weight 1 and bias 0. Other
    layers keep their own initialisation. Returns ``module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class CifarResNet(nn.Module):
    """The paper's CIFAR network of ``depth = 6n + 2`` weight layers, plain or residual.

    A 3x3 convolution (``in_channels -> widths[0]``, BN, ReLU), three stages of
    ``n`` blocks of widths ``widths`` (the first block of stages two and three
    halves the resolution), global average pooling and a linear layer to
    ``num_classes``: ``(B, in_channels, H, W) -> (B, K)`` logits.

    ``residual=False`` builds :class:`PlainBlock` s, ``residual=True``
    :class:`ResidualBlock` s; with ``shortcut="pad"`` both have the same
    parameters. Weights start as :func:`init_he_` sets them (the paper's He
    initialisation).
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
        init_he_(self)

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
    changes) is applied to the raw input ``x``. ``scale`` multiplies the
    shortcut, ``scale * s(x) + F(x)``: the paper's *constant scaling*
    variant (Sec. 3.1), which breaks the identity; the default 1 keeps it.
    ``(B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "pad", scale: float = 1.0
    ) -> None:
        super().__init__(in_channels, out_channels, stride, shortcut)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(f"scale must be a float, got {type(scale).__name__}")
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
        self.scale = float(scale)
        self.bn1 = nn.BatchNorm2d(in_channels)  # normalises the input, before conv1

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual function ``F(x)``: BN, ReLU, conv, BN, ReLU, conv (eq. preact)."""
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images("x", x, self.in_channels)
        s = self.shortcut(x)
        if self.scale != 1.0:
            s = self.scale * s  # the constant-scaling variant (eq. im-scaled)
        return s + self.branch(x)  # no activation after the sum


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


def depth_scaling(
    blocks: Sequence[nn.Module], x: torch.Tensor, depths: Sequence[int], generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """How the gradient and the signal change through the first ``N`` blocks, for each ``N`` in ``depths``.

    For each ``N``, the stack ``blocks[:N]`` is run on ``x`` (``(B, C, H, W)``)
    and differentiated through a fresh standard-normal linear read-out of its
    output ``x_N`` (drawn from ``generator``), as in :func:`propagation_norms`.
    Returns ``(gradient_ratio, signal_growth)``, each of shape
    ``(len(depths),)``: the RMS of ``dL/dx_0`` over the RMS of ``dL/dx_N``,
    and the RMS of ``x_N`` over the RMS of ``x_0``. A stack of ``N`` blocks of
    one kind is its first ``N`` blocks, so one deep stack serves every depth.
    """
    if isinstance(blocks, nn.Module) and not isinstance(blocks, nn.Sequential):
        raise TypeError("blocks must be a sequence of torch.nn.Module (a list or nn.Sequential)")
    if isinstance(depths, (str, bytes)) or not isinstance(depths, Sequence) or len(depths) == 0:
        raise ValueError(f"depths must be a non-empty sequence of block counts, got {depths!r}")
    for n in depths:
        _checks.positive_int("depths", n)
        if n > len(blocks):
            raise ValueError(f"depths must not exceed the {len(blocks)} blocks given, got {n}")
    _checks.tensor("x", x, ndim=4, kind="float")
    ratios, growths = [], []
    for n in depths:
        stack = list(blocks)[:n]
        with torch.no_grad():
            out = x
            for b in stack:
                out = b(out)
        readout = torch.randn(out.shape, generator=generator, dtype=x.dtype).to(x.device)
        signal, gradient = propagation_norms(stack, x, readout)
        ratios.append(gradient[0] / gradient[-1])
        growths.append(signal[-1] / signal[0])
    return torch.stack(ratios), torch.stack(growths)


# ---------------------------------------------------------------- training: the paper's CIFAR recipe

ARCHS = ("plain", "residual", "preact")


def build_net(arch: str, depth: int, widths: Sequence[int] = (16, 32, 64), *, seed: int) -> CifarResNet:
    """A network of ``depth = 6n + 2`` layers for 1-channel images and 10 classes, initialised from ``seed``.

    ``arch`` is ``"plain"`` or ``"residual"`` (:class:`CifarResNet`, chapter
    10) or ``"preact"`` (:class:`PreActResNet`, chapter 15). The same seed
    gives a plain and a residual net identical weights (they have the same
    layers); the global random state is left as it was.
    """
    _checks.one_of("arch", arch, ARCHS)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "preact":
            return PreActResNet(depth, widths=tuple(widths))
        return CifarResNet(depth, residual=arch == "residual", widths=tuple(widths))


def _check_recipe(model, images, labels, steps, batch_size, lr, generator, momentum, weight_decay,
                  milestones, warmup_error, stop_after, crop_padding, flip) -> None:
    """Validate the arguments of :func:`train_classifier`, naming the offending one."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _checks.tensor("images", images, ndim=4, kind="float")
    _checks.tensor("labels", labels, ndim=1, kind="int")
    _checks.size_matches("labels", labels.shape[0], images.shape[0], "length")
    _checks.positive_int("steps", steps)
    _checks.positive_int("batch_size", batch_size)
    if batch_size > images.shape[0]:
        raise ValueError(f"batch_size must not exceed the {images.shape[0]} images, got {batch_size}")
    for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(value).__name__}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite non-negative number, got {value}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    for m in milestones:
        _checks.probability("milestones", m)
    if warmup_error is not None:
        _checks.probability("warmup_error", warmup_error, inclusive_one=True)
    if stop_after is not None:
        _checks.positive_int("stop_after", stop_after)
    if isinstance(crop_padding, bool) or not isinstance(crop_padding, int):
        raise TypeError(f"crop_padding must be an int, got {type(crop_padding).__name__}")
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be non-negative, got {crop_padding}")
    if not isinstance(flip, bool):
        raise TypeError(f"flip must be a bool, got {type(flip).__name__}")


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    milestones: Sequence[float] = (0.5, 0.75),
    warmup_error: float | None = None,
    evaluate: Callable[[], dict[str, float]] | None = None,
    stop_after: int | None = None,
    crop_padding: int = 0,
    flip: bool = False,
) -> History:
    """Train ``model`` on ``(images, labels)`` with chapter 10's CIFAR recipe; return its :class:`History`.

    The recipe of He et al. (Sec. 4.2): SGD with ``momentum`` and
    ``weight_decay``, the learning rate ``lr`` divided by 10 at each of the
    ``milestones`` (fractions of ``steps``; the paper's 32k and 48k of 64k
    iterations are 0.5 and 0.75). With ``warmup_error`` set, training starts
    at ``lr / 10`` and switches to ``lr`` after the first step whose
    mini-batch training error is below ``warmup_error`` (the paper's warm-up
    of its 110-layer net uses 0.8). Mini-batches of ``batch_size`` are drawn
    without replacement, epoch after epoch, from permutations made with
    ``generator``, so two models trained with equally seeded generators see
    the same batches. ``images`` ``(B, C, H, W)`` and ``labels`` ``(B,)``
    must be on the model's device. ``evaluate`` (optional, no arguments,
    returning a dict of floats) runs once, after the last step, in eval mode;
    the last evaluation also records ``"warmup_steps"``. ``stop_after`` ends
    the run early without changing the schedule (to replay the start of a
    recorded run).

    Augmentation, the paper's (Sec. 4.2): with ``crop_padding > 0`` every
    mini-batch image is zero-padded by that many pixels and cropped back at
    a random offset, and with ``flip`` mirrored left-right with probability
    1/2 (:func:`papers30.data.images.augment`). The draws come from
    ``generator`` too, right after the epoch's permutation, so models trained
    with equally seeded generators still see the same images. The defaults
    train on the images as given.

    Speed: the model and images are put in the ``channels_last`` memory
    format, which suits the CPU's convolution kernels, and the SGD update is
    torch's fused one where the installed torch has it.
    """
    _check_recipe(model, images, labels, steps, batch_size, lr, generator, momentum, weight_decay,
                  milestones, warmup_error, stop_after, crop_padding, flip)
    model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
    try:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                              fused=True)
    except (RuntimeError, TypeError):  # an older torch without the fused CPU step
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    drops = [round(m * steps) for m in milestones]
    warming = [warmup_error is not None]  # a cell the closures share
    warm_steps = [0]

    def factor(step: int) -> float:  # the schedule after ``step`` optimiser steps
        return (0.1 if warming[0] else 1.0) * 0.1 ** sum(step >= d for d in drops)

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    n = images.shape[0]
    per_epoch = n // batch_size
    order: list[torch.Tensor] = []

    def loss_fn(step: int) -> torch.Tensor:
        epoch, k = divmod(step - 1, per_epoch)
        while len(order) <= epoch:
            order.append(torch.randperm(n, generator=generator).to(images.device))
        i = order[epoch][k * batch_size:(k + 1) * batch_size]
        batch = images[i]
        if crop_padding or flip:
            batch = augment(batch, generator, padding=crop_padding, flip=flip)
            batch = batch.contiguous(memory_format=torch.channels_last)
        logits = model(batch)
        if warming[0]:
            warm_steps[0] += 1
            if (logits.argmax(dim=1) != labels[i]).float().mean().item() < warmup_error:
                warming[0] = False  # lr goes back up from the next step
        return F.cross_entropy(logits, labels[i])

    history = fit(model, opt, loss_fn, steps, scheduler=schedule, every=steps,
                  evaluate=evaluate or (lambda: {}), stop_after=stop_after)
    if history.evals:
        history.evals[-1]["warmup_steps"] = float(warm_steps[0])
    return history


def tail_mean(losses: Sequence[float], fraction: float = 0.2) -> float:
    """The mean of the last ``fraction`` of ``losses`` (at least one value): a run's final training loss.

    After the learning rate's last drop the per-step losses are flat but
    noisy; averaging the last fifth gives one number per run.
    """
    _checks.probability("fraction", fraction, inclusive_one=True)
    if fraction == 0:
        raise ValueError("fraction must be positive, got 0")
    if len(losses) == 0:
        raise ValueError("losses must hold at least one value")
    k = max(1, round(fraction * len(losses)))
    return float(sum(losses[-k:]) / k)


def fashion_mnist_at(size: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
    """The book's Fashion-MNIST subset, standardised and average-pooled to ``size x size`` pixels.

    Returns ``(x_train, y_train, x_test, y_test)``: images ``(N, 1, size, size)``
    standardised with the training set's mean and standard deviation (one
    number each), labels ``(N,)``. ``size`` must divide 28 (28, 14, 7, 4, 2, 1).
    """
    _checks.positive_int("size", size)
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must name a torch device, got {device!r}") from err
    if 28 % size:
        raise ValueError(f"size must divide 28 (28, 14, 7, 4, 2 or 1), got {size}")
    x_train, y_train = load_images("fashion_mnist", "train", device=device)
    x_test, y_test = load_images("fashion_mnist", "test", device=device)
    mean, std = x_train.mean(), x_train.std()
    k = 28 // size
    pool = (lambda t: F.avg_pool2d(t, k)) if k > 1 else (lambda t: t)
    return pool((x_train - mean) / std), y_train, pool((x_test - mean) / std), y_test


def train_on_fashion_mnist(
    *,
    arch: str,
    depth: int,
    widths: Sequence[int],
    size: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    warmup_error: float | None = None,
    stop_after: int | None = None,
    crop_padding: int = 0,
    flip: bool = False,
) -> History:
    """Chapters 10 and 15's experiment: one network trained by :func:`train_classifier`; return its History.

    Builds ``build_net(arch, depth, widths, seed=seed)``, trains it on
    :func:`fashion_mnist_at` ``(size)`` with batches drawn from a generator
    seeded with ``seed`` (so every architecture trained with one seed sees
    the same batches, augmented alike when ``crop_padding`` or ``flip`` asks
    for the paper's crops and flips), and evaluates the test error once at the end:
    ``history.evals[-1]["test_error"]`` (a fraction), with
    ``history.evals[-1]["warmup_steps"]``. Every argument is a plain value so
    that a recorded run can call it again (:func:`papers30.provenance.traced`).
    Runs on CUDA when there is one.
    """
    device = get_device()
    x_train, y_train, x_test, y_test = fashion_mnist_at(size, device)
    model = build_net(arch, depth, widths, seed=seed).to(device)
    x_test = x_test.contiguous(memory_format=torch.channels_last)

    def evaluate() -> dict[str, float]:
        wrong = sum((model(x_test[i:i + 1000]).argmax(dim=1) != y_test[i:i + 1000]).sum().item()
                    for i in range(0, len(y_test), 1000))
        return {"test_error": wrong / len(y_test)}

    return train_classifier(model, x_train, y_train, steps=steps, batch_size=batch_size, lr=lr,
                            generator=torch.Generator().manual_seed(seed), warmup_error=warmup_error,
                            evaluate=evaluate, stop_after=stop_after, crop_padding=crop_padding, flip=flip)
