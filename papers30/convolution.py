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
