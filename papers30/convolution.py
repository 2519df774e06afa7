"""Convolutional pieces of AlexNet (chapter 7): local response normalisation and a small AlexNet.

:func:`local_response_norm` and :class:`LocalResponseNorm` implement the
paper's across-channel normalisation from its formula, with the name,
argument order and defaults of ``torch.nn.functional.local_response_norm``
and ``torch.nn.LocalResponseNorm``. :class:`SmallAlexNet` is a scaled-down
AlexNet for 28x28 images (the book's Fashion-MNIST set, chapters 7 and 10):
the same sequence of convolution, non-linearity, normalisation and
overlapping max-pooling stages, and a dropout-regularised classifier, with
switches for the activation (ReLU or tanh), LRN and dropout.

Shapes: ``B`` batch, ``C`` channels, ``H`` x ``W`` image height x width,
``K`` classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks

__all__ = ["ACTIVATIONS", "LocalResponseNorm", "SmallAlexNet", "local_response_norm"]

ACTIVATIONS = ("relu", "tanh")


def _check_lrn_args(size: object, alpha: object, beta: object, k: object) -> None:
    _checks.positive_int("size", size)
    for name, value in (("alpha", alpha), ("beta", beta), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")


def local_response_norm(
    input: torch.Tensor,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
) -> torch.Tensor:
    """Normalise each activation by the energy of its neighbours across channels.

    ``input`` is ``(B, C, *)`` with at least one trailing dimension (e.g.
    ``(B, C, H, W)``); the output has the same shape. For channel ``c``,

    ``out[:, c] = input[:, c] / (k + alpha / size * sum_j input[:, j] ** 2) ** beta``

    where ``j`` runs over the ``size`` channels ``c - size // 2 ..
    c + (size - 1) // 2`` that exist (channels beyond the edges count as zero,
    and the sum is still divided by ``size``). This is the convention of
    ``torch.nn.functional.local_response_norm``; the paper writes the
    constant as ``alpha`` without the ``1 / size`` (its ``alpha = 1e-4`` with
    ``size = 5`` is ``alpha = 5e-4`` here) and uses ``k = 2``, ``beta = 0.75``.
    """
    _checks.tensor("input", input, kind="float")
    if input.dim() < 3:
        shape = tuple(input.shape)
        raise ValueError(f"input must have 3 or more dimensions (B, C, ...), got shape {shape}")
    _check_lrn_args(size, alpha, beta, k)
    C = input.shape[1]
    before, after = size // 2, (size - 1) // 2
    # zero channels at both edges: (B, before + C + after, *)
    padded = F.pad(input.square(), (0, 0) * (input.dim() - 2) + (before, after))
    energy = sum(padded[:, i : i + C] for i in range(size))  # window sums, (B, C, *)
    return input / (k + alpha / size * energy).pow(beta)


class LocalResponseNorm(nn.Module):
    """Module form of :func:`local_response_norm` (as ``torch.nn.LocalResponseNorm``)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        _check_lrn_args(size, alpha, beta, k)
        self.size, self.alpha, self.beta, self.k = size, float(alpha), float(beta), float(k)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C, *)`` -> ``(B, C, *)``."""
        return local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def _activation(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.Tanh()


class SmallAlexNet(nn.Module):
    """A scaled-down AlexNet for small grey or colour images.

    Features, for ``widths = (w1, w2, w3)``:

    1. 5x5 convolution to ``w1`` channels, activation, LRN, 3x3 max-pool with stride 2;
    2. 3x3 convolution to ``w2`` channels, activation, LRN, 3x3 max-pool with stride 2;
    3. two 3x3 convolutions to ``w3`` channels, each followed by the activation,
       then a 3x3 max-pool with stride 2.

    The pools overlap (window 3 > stride 2) as in the paper. A 28x28 input
    shrinks to 13x13, 6x6 and 2x2. The classifier is dropout, a hidden layer
    of ``hidden`` units with the activation, dropout, and a linear layer to
    ``num_classes`` logits. ``activation`` is ``"relu"`` or ``"tanh"``;
    ``lrn=False`` drops the normalisation; ``dropout`` is the probability of
    zeroing a classifier input (0 turns dropout off). LRN uses the paper's
    constants (``k = 2``, ``beta = 0.75``, ``n = 5``, paper ``alpha = 1e-4``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        image_size: int = 28,
        widths: tuple[int, int, int] = (16, 32, 32),
        hidden: int = 64,
        activation: str = "relu",
        lrn: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("num_classes", num_classes)
        _checks.positive_int("image_size", image_size)
        if not isinstance(widths, (tuple, list)) or len(widths) != 3:
            raise TypeError(f"widths must be a tuple of three ints, got {widths!r}")
        for w in widths:
            _checks.positive_int("widths", w)
        _checks.positive_int("hidden", hidden)
        _checks.one_of("activation", activation, ACTIVATIONS)
        if not isinstance(lrn, bool):
            raise TypeError(f"lrn must be a bool, got {type(lrn).__name__}")
        _checks.probability("dropout", dropout)
        side = image_size
        for _ in range(3):
            side = (side - 3) // 2 + 1  # each 3x3, stride-2 pool
        if side < 1:
            raise ValueError(f"image_size must be at least 15 for three poolings, got {image_size}")
        w1, w2, w3 = widths

        def norm() -> nn.Module:
            return LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w1, 5, padding=2), _activation(activation), norm(),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(w1, w2, 3, padding=1), _activation(activation), norm(),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(w2, w3, 3, padding=1), _activation(activation),
            nn.Conv2d(w3, w3, 3, padding=1), _activation(activation),
            nn.MaxPool2d(3, stride=2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(w3 * side * side, hidden),
            _activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.in_channels, self.image_size = in_channels, image_size
        gain = nn.init.calculate_gain(activation)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # keep the signal's variance through each layer for this activation
                nn.init.normal_(m.weight, std=gain / math.sqrt(m.weight[0].numel()))
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` with ``H = W = image_size`` -> logits ``(B, K)``."""
        _checks.tensor("images", images, ndim=4, kind="float")
        _checks.size_matches("images", images.shape[1], self.in_channels, "channels")
        _checks.size_matches("images", images.shape[-1], self.image_size, "width")
        _checks.size_matches("images", images.shape[-2], self.image_size, "height")
        return self.classifier(self.features(images))


# --- Dilated convolutions and the context module (chapter 11) -------------------------
#
# Yu and Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions" (ICLR 2016).
# :func:`conv2d` computes a (dilated) convolution from its definition, with the
# name and argument order of ``torch.nn.functional.conv2d``;
# :func:`receptive_field` is the analytic receptive field of a stack of
# stride-1 layers and :func:`empirical_receptive_field` measures it with a
# gradient; :class:`ContextModule` is the paper's stack of 3x3 convolutions with
# growing dilation, with its identity initialisation.

from collections.abc import Sequence  # noqa: E402

PAPER_DILATIONS = (1, 1, 2, 4, 8, 16, 1)  # layers 1-7 of the paper's context module


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """A 2-D convolution with dilation, summed tap by tap from the definition.

    ``input`` is ``(B, C, H, W)``, ``weight`` is ``(O, C, k, k')`` and ``bias``
    ``(O,)`` or None. With ``l = dilation`` and zero padding of ``padding`` on
    every side,

    ``out[b, o, i, j] = bias[o] + sum_{c, s, t} weight[o, c, s, t] * x[b, c, i*stride + l*s, j*stride + l*t]``

    so kernel tap ``(s, t)`` reads the input ``l`` times further away than in
    an ordinary convolution (``l = 1``). Like torch (and most libraries) this is
    a cross-correlation: the paper's convolution, which sums over
    ``p = s + l t``, is the same with the kernel flipped. Output
    ``(B, O, H', W')`` with ``H' = (H + 2 padding - l (k - 1) - 1) // stride + 1``.
    """
    _checks.tensor("input", input, ndim=4, kind="float")
    _checks.tensor("weight", weight, ndim=4, kind="float")
    _checks.size_matches("weight", weight.shape[1], input.shape[1], "input channels")
    if bias is not None:
        _checks.tensor("bias", bias, ndim=1, kind="float")
        _checks.size_matches("bias", bias.shape[0], weight.shape[0], "length")
    _checks.positive_int("stride", stride)
    _checks.positive_int("dilation", dilation)
    if isinstance(padding, bool) or not isinstance(padding, int):
        raise TypeError(f"padding must be an int, got {type(padding).__name__}")
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    x = F.pad(input, (padding,) * 4)
    kh, kw = weight.shape[-2:]
    h_out = (x.shape[-2] - dilation * (kh - 1) - 1) // stride + 1
    w_out = (x.shape[-1] - dilation * (kw - 1) - 1) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"input of shape {tuple(input.shape)} is smaller than the dilated kernel")
    out = input.new_zeros(input.shape[0], weight.shape[0], h_out, w_out)
    for s in range(kh):
        for t in range(kw):
            # the input pixels that tap (s, t) reads, for every output pixel: (B, C, H', W')
            window = x[..., s * dilation :: stride, t * dilation :: stride][..., :h_out, :w_out]
            out = out + torch.einsum("oc,bchw->bohw", weight[:, :, s, t], window)
    if bias is not None:
        out = out + bias[:, None, None]
    return out


def receptive_field(layers: Sequence[tuple[int, int]]) -> int:
    """Side of the receptive field of a stack of stride-1 ``(kernel, dilation)`` layers.

    A ``k x k`` layer with dilation ``l`` lets one output pixel see ``l (k - 1)``
    more input pixels along each axis than its input pixels saw, so the side
    is ``1 + sum_i l_i (k_i - 1)``; the receptive field is that side squared.
    An empty stack sees one pixel.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of (kernel, dilation) pairs, got {layers!r}")
    side = 1
    for layer in layers:
        if not isinstance(layer, (tuple, list)) or len(layer) != 2:
            raise TypeError(f"layers must hold (kernel, dilation) pairs, got {layer!r}")
        kernel, dilation = layer
        _checks.positive_int("layers", kernel)
        _checks.positive_int("layers", dilation)
        side += dilation * (kernel - 1)
    return side


def empirical_receptive_field(
    module: nn.Module,
    input: torch.Tensor,
    position: tuple[int, int] | None = None,
    channel: int = 0,
) -> torch.Tensor:
    """The input pixels on which one output unit of ``module`` depends, found with a gradient.

    ``input`` is one image ``(C, H, W)`` or ``N`` images ``(N, C, H, W)``;
    ``module`` maps ``(N, C, H, W)`` to ``(N, O, H, W)`` (same resolution) and
    treats the images independently. The unit is ``output[n, channel, i, j]``
    with ``(i, j) = position`` (default: the centre). Returns a bool mask
    ``(H, W)``: True where, for at least one image ``n``, the gradient of that
    unit with respect to some input channel at that pixel is non-zero. Outside
    the receptive field the gradient is exactly zero; inside it vanishes only
    by accident (a switched-off ReLU on every path, or an exact cancellation)
    and taking several random images makes such accidents negligible.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    _checks.tensor("input", input, ndim=(3, 4), kind="float")
    H, W = input.shape[-2:]
    i, j = (H // 2, W // 2) if position is None else position
    if not (0 <= i < H and 0 <= j < W):
        raise ValueError(f"position must lie inside the {H}x{W} image, got {position}")
    x = input.detach().reshape(-1, *input.shape[-3:]).requires_grad_(True)  # (N, C, H, W)
    out = module(x)
    if out.dim() != 4 or out.shape[-2:] != input.shape[-2:]:
        raise ValueError(f"module must keep the resolution, got output shape {tuple(out.shape)}")
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < out.shape[1]:
        raise ValueError(f"channel must be an int in [0, {out.shape[1]}), got {channel!r}")
    # the images are independent, so the gradient of the sum holds each image's own gradient
    (grad,) = torch.autograd.grad(out[:, channel, i, j].sum(), x)
    return grad.ne(0).any(dim=1).any(dim=0)


def receptive_field_extent(mask: torch.Tensor) -> tuple[int, int]:
    """Height and width of the bounding box of the True pixels of a ``(H, W)`` mask."""
    _checks.tensor("mask", mask, ndim=2, kind="bool")
    if not mask.any():
        raise ValueError("mask must have at least one True pixel")
    rows, cols = mask.nonzero().T
    return int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1


def identity_kernel(out_channels: int, in_channels: int, kernel_size: int, groups: int) -> torch.Tensor:
    """The paper's identity initialisation of a ``(out, in, k, k)`` kernel.

    All taps but the centre are zero. At the centre, with ``G = groups``
    (the paper's number of classes ``C``), output channel ``b`` reads input
    channel ``a`` with weight ``G / out`` when ``a`` and ``b`` fall in the same
    of ``G`` equal blocks of channels (``a G // in == b G // out``), else 0.
    With ``in = out = G`` this is the identity matrix; a stack of such layers
    that widens from ``G`` channels and narrows back to ``G`` computes the
    identity on non-negative inputs.
    """
    for name, v in (("out_channels", out_channels), ("in_channels", in_channels),
                    ("kernel_size", kernel_size), ("groups", groups)):
        _checks.positive_int(name, v)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd to have a centre tap, got {kernel_size}")
    if out_channels % groups or in_channels % groups:
        raise ValueError(f"groups must divide in_channels and out_channels, got {groups}")
    a = torch.arange(in_channels) * groups // in_channels
    b = torch.arange(out_channels) * groups // out_channels
    weight = torch.zeros(out_channels, in_channels, kernel_size, kernel_size)
    weight[:, :, kernel_size // 2, kernel_size // 2] = (b[:, None] == a[None, :]) * (groups / out_channels)
    return weight


class ContextModule(nn.Module):
    """The context module: 3x3 convolutions with growing dilation, then a 1x1 convolution.

    Maps ``(B, C, H, W)`` to ``(B, C, H, W)``: one 3x3 layer per entry of
    ``dilations`` (padding = dilation, so the resolution is kept), each
    followed by a ReLU, from ``channels`` to ``width`` channels and on at
    ``width``; then a linear 1x1 layer back to ``channels``. The paper's
    *basic* module has ``width = channels`` and dilations 1, 1, 2, 4, 8, 16, 1.

    ``init="identity"`` starts every layer at :func:`identity_kernel` with
    zero bias, plus Gaussian noise of standard deviation ``noise`` on every
    weight (the paper adds such noise when ``width > channels`` so the copies
    of a channel can become different); with ``noise=0`` the module is the
    identity on non-negative inputs. ``init="random"`` uses He-normal weights.
    The weights are drawn from ``generator`` when given.
    """

    def __init__(
        self,
        channels: int,
        dilations: Sequence[int] = PAPER_DILATIONS,
        *,
        width: int | None = None,
        init: str = "identity",
        noise: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _checks.positive_int("channels", channels)
        width = channels if width is None else _checks.positive_int("width", width)
        if width % channels:
            raise ValueError(f"width must be a multiple of channels ({channels}), got {width}")
        if isinstance(dilations, (str, bytes)) or not isinstance(dilations, Sequence) or not dilations:
            raise TypeError(f"dilations must be a non-empty sequence of ints, got {dilations!r}")
        for d in dilations:
            _checks.positive_int("dilations", d)
        _checks.one_of("init", init, ("identity", "random"))
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
            raise ValueError(f"noise must be a non-negative float, got {noise!r}")
        self.channels, self.width, self.dilations = channels, width, tuple(dilations)
        sizes = [channels] + [width] * len(dilations)
        self.convs = nn.ModuleList(nn.Conv2d(c_in, width, 3) for c_in in sizes[:-1])
        self.final = nn.Conv2d(width, channels, 1)
        for conv in [*self.convs, self.final]:
            c_out, c_in, k, _ = conv.weight.shape
            with torch.no_grad():
                if init == "identity":
                    w = identity_kernel(c_out, c_in, k, channels)
                    w += noise * torch.randn(w.shape, generator=generator)
                else:
                    w = torch.randn(conv.weight.shape, generator=generator)
                    w *= math.sqrt(2.0 / (c_in * k * k))  # He initialisation for ReLU
                conv.weight.copy_(w)
                conv.bias.zero_()

    def layers(self) -> list[tuple[int, int]]:
        """The ``(kernel, dilation)`` pairs of the stack, for :func:`receptive_field`."""
        return [(3, d) for d in self.dilations] + [(1, 1)]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        _checks.tensor("input", input, ndim=4, kind="float")
        _checks.size_matches("input", input.shape[1], self.channels, "channels")
        x = input
        for conv, d in zip(self.convs, self.dilations):
            x = torch.relu(F.conv2d(x, conv.weight, conv.bias, padding=d, dilation=d))
        return self.final(x)
