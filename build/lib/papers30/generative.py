"""Variational autoencoders with an autoregressive decoder: ELBO in bits, causal convolutions.

Chapter 17 (Chen et al., 2017, "Variational Lossy Autoencoder") trains a
variational autoencoder (VAE) on small binary images and asks how much
information its latent code carries, measured as the KL term of the evidence
lower bound (ELBO) in bits per image. The decoder is either factorised (a
plain VAE: every pixel independent given the code) or autoregressive, a
PixelCNN: stacked causal convolutions in which pixel ``p`` sees only pixels
before it in raster order, within a window that grows with the number of
layers (:func:`context_size`), from a few neighbours to every earlier pixel.
:func:`pixel_error` and :func:`coarse_error` measure what a reconstruction
keeps. The Gaussian KL is the one of chapter 5
(:func:`papers30.mdl.gaussian_kl`).

Shapes: ``B`` batch, ``C`` channels, ``H`` x ``W`` image height x width,
``L`` latent size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.mdl import LN2, gaussian_kl
from papers30.training import History, fit

__all__ = [
    "ELBO",
    "VAE",
    "CausalConvLayer",
    "PixelCNN",
    "bernoulli_bits",
    "binarize",
    "coarse_error",
    "context_size",
    "elbo_bits",
    "pixel_error",
    "receptive_field",
    "reparameterize",
    "train_vae",
    "window_mask",
]


def binarize(images: torch.Tensor, factor: int = 2, threshold: float = 0.5) -> torch.Tensor:
    """Downsample ``images (B, C, H, W)`` by averaging ``factor x factor`` blocks, then threshold.

    Returns a float tensor of 0s and 1s, ``(B, C, H // factor, W // factor)``:
    1 where the block's mean exceeds ``threshold``.
    """
    _checks.tensor("images", images, ndim=4, kind="float")
    _checks.positive_int("factor", factor)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a float, got {type(threshold).__name__}")
    if images.shape[-1] < factor or images.shape[-2] < factor:
        raise ValueError(f"factor must not exceed the image size, got {factor} for {tuple(images.shape)}")
    pooled = F.avg_pool2d(images, factor) if factor > 1 else images
    return (pooled > threshold).to(images.dtype)


def reparameterize(
    mu: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A sample ``z = mu + exp(log_var / 2) * eps``, ``eps ~ N(0, I)``, differentiable in both.

    ``mu`` and ``log_var`` have the same shape, e.g. ``(B, L)``. The noise is
    drawn on the CPU from ``generator`` (default: torch's global one) and moved
    to ``mu``'s device, so a seeded generator gives the same sample anywhere.
    """
    _checks.tensor("mu", mu, kind="float")
    _checks.tensor("log_var", log_var, kind="float")
    if log_var.shape != mu.shape:
        raise ValueError(f"log_var must have the shape of mu {tuple(mu.shape)}, got {tuple(log_var.shape)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return mu + torch.exp(0.5 * log_var) * eps  # eq. (vlae-reparam)


def bernoulli_bits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bits to code binary ``target (B, ...)`` with Bernoulli probabilities ``sigmoid(logits)``.

    ``-log2 p(target)`` summed over all but the batch dimension: ``(B,)``.
    """
    _checks.tensor("logits", logits, kind="float")
    _checks.tensor("target", target, kind="float")
    if target.shape != logits.shape:
        raise ValueError(f"target must have the shape of logits {tuple(logits.shape)}, got {tuple(target.shape)}")
    if logits.dim() < 1:
        raise ValueError("logits must have a batch dimension")
    nats = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return nats.flatten(1).sum(1) / LN2


@dataclass
class ELBO:
    """The two terms of the negative ELBO, in bits per image, each ``(B,)``.

    ``reconstruction``: ``-log2 p(x | z)`` at one sample ``z ~ q(z | x)``;
    ``kl``: ``KL(q(z | x) || N(0, I)) / ln 2``, the bits the code carries.
    """

    reconstruction: torch.Tensor
    kl: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def total(self) -> torch.Tensor:
        """``reconstruction + kl``: the negative ELBO, an upper bound on ``-log2 p(x)``, eq. (vlae-elbo)."""
        return self.reconstruction + self.kl


def elbo_bits(logits: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> ELBO:
    """The negative ELBO of binary ``target (B, C, H, W)`` in bits, eq. (vlae-elbo).

    ``logits`` (same shape as ``target``) are the decoder's outputs for one
    sample of the code; ``mu`` and ``log_var`` ``(B, L)`` describe the
    encoder's Gaussian ``q(z | x)``; the prior is ``N(0, I)``.
    """
    _checks.tensor("mu", mu, ndim=2, kind="float")
    _checks.tensor("log_var", log_var, ndim=2, kind="float")
    if log_var.shape != mu.shape:
        raise ValueError(f"log_var must have the shape of mu {tuple(mu.shape)}, got {tuple(log_var.shape)}")
    recon = bernoulli_bits(logits, target)
    _checks.size_matches("mu", mu.shape[0], recon.shape[0], "batch size")
    kl = gaussian_kl(mu, torch.exp(0.5 * log_var), 0.0, 1.0).sum(1) / LN2  # eq. (vlae-kl)
    return ELBO(reconstruction=recon, kl=kl)


def context_size(kernel_size: int, layers: int) -> int:
    """Earlier pixels a :class:`PixelCNN` of ``layers`` layers of odd ``kernel_size`` sees, away from the borders.

    With ``r = kernel_size // 2`` each layer reaches ``r`` pixels further:
    the ``layers * r + 1`` rows above, ``layers * r`` pixels either side,
    plus ``layers * r`` pixels to the left on the pixel's own row, eq.
    (vlae-ctx) of chapter 17: ``(L r + 1)(2 L r + 1) + L r``.
    """
    _checks.positive_int("kernel_size", kernel_size)
    _checks.positive_int("layers", layers)
    if kernel_size % 2 == 0 or kernel_size < 3:
        raise ValueError(f"kernel_size must be odd and at least 3, got {kernel_size}")
    reach = layers * (kernel_size // 2)
    return (reach + 1) * (2 * reach + 1) + reach


def window_mask(image_size: int, kernel_size: int, layers: int, position: tuple[int, int]) -> torch.Tensor:
    """The earlier pixels a :class:`PixelCNN` sees from ``position`` in an ``S x S`` image: ``(S, S)`` bool.

    With reach ``R = layers * (kernel_size // 2)``: rows ``i - 1 - R .. i - 1``
    within ``R`` columns of ``j``, and ``R`` pixels to the left on row ``i``,
    clipped to the image (the closed form behind :func:`context_size`).
    """
    _checks.positive_int("image_size", image_size)
    context_size(kernel_size, layers)  # validates both
    if not (isinstance(position, tuple) and len(position) == 2 and all(isinstance(p, int) for p in position)):
        raise TypeError(f"position must be a (row, column) tuple of ints, got {position!r}")
    i, j = position
    if not (0 <= i < image_size and 0 <= j < image_size):
        raise ValueError(f"position must lie inside the {image_size}x{image_size} image, got {position}")
    reach = layers * (kernel_size // 2)
    rows = torch.arange(image_size)[:, None]
    cols = torch.arange(image_size)[None, :]
    above = (rows < i) & (rows >= i - 1 - reach) & ((cols - j).abs() <= reach)
    left = (rows == i) & (cols < j) & (cols >= j - reach)
    return above | left


class CausalConvLayer(nn.Module):
    """One layer of a PixelCNN without a blind spot: a vertical and a horizontal stack.

    The *vertical* stack ``v`` convolves the ``r + 1`` rows up to and
    including the current one (``r = kernel_size // 2``) over ``2r + 1``
    columns; it reaches the horizontal stack only shifted down by one row, so
    pixel ``(i, j)`` gets features of rows ``< i``. The *horizontal* stack
    ``h`` convolves the current row: pixels ``j - r .. j - 1`` in the first
    layer (the image itself must not leak), ``j - r .. j`` in later layers,
    whose input at ``j`` already depends only on earlier pixels. This is the
    two-stack design of van den Oord et al. (2016, "Conditional image
    generation with PixelCNN decoders"), without its gates. Maps
    ``(B, C_in, H, W)`` pairs to ``(B, C, H, W)`` pairs.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, first: bool) -> None:
        super().__init__()
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("channels", channels)
        context_size(kernel_size, 1)  # validates kernel_size
        if not isinstance(first, bool):
            raise TypeError(f"first must be a bool, got {type(first).__name__}")
        r = kernel_size // 2
        self.r, self.first = r, first
        self.vertical = nn.Conv2d(in_channels, channels, (r + 1, kernel_size))
        self.horizontal = nn.Conv2d(in_channels, channels, (1, r if first else r + 1))
        self.link = nn.Conv2d(channels, channels, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer: ``(v, h) -> (v', h')``; ``h'`` at pixel ``p`` depends on the image only before ``p``."""
        _checks.tensor("v", v, ndim=4, kind="float")
        _checks.tensor("h", h, ndim=4, kind="float")
        _checks.size_matches("h", tuple(h.shape), tuple(v.shape), "shape (that of v)")
        r, width = self.r, h.shape[-1]
        v = self.vertical(F.pad(v, (r, r, r, 0)))  # rows i - r .. i, columns j - r .. j + r
        above = F.pad(v, (0, 0, 1, 0))[..., :-1, :]  # shift down: row i sees rows < i
        row = self.horizontal(F.pad(h, (r, 0, 0, 0)))[..., :width]  # columns j - r .. j (- 1 if first)
        out = torch.relu(row + self.link(above))
        return torch.relu(v), out if self.first else h + out


class PixelCNN(nn.Module):
    """A stack of :class:`CausalConvLayer`: features of the earlier pixels, ``(B, 1, H, W) -> (B, C, H, W)``.

    The feature at pixel ``p`` depends on the image only at pixels before
    ``p`` in raster order, within the window of :func:`context_size`:
    ``layers * (kernel_size // 2)`` pixels in every direction above and to
    the left. One layer of kernel 3 sees 7 earlier pixels; enough layers see
    every earlier pixel of the image.
    """

    def __init__(self, channels: int, kernel_size: int, layers: int) -> None:
        super().__init__()
        context_size(kernel_size, layers)  # validates both
        self.kernel_size, self.num_layers = kernel_size, layers
        self.layers = nn.ModuleList(
            CausalConvLayer(1 if i == 0 else channels, channels, kernel_size, first=i == 0) for i in range(layers)
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Features ``(B, C, H, W)`` of ``input (B, 1, H, W)``, causal in raster order."""
        _checks.tensor("input", input, ndim=4, kind="float")
        v = h = input
        for layer in self.layers:
            v, h = layer(v, h)
        return h


def receptive_field(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image_size: int,
    position: tuple[int, int],
    *,
    tries: int = 3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The pixels of the input that output pixel ``position`` depends on, found by autograd: ``(S, S)`` bool.

    ``fn`` maps images ``(1, 1, S, S)`` to outputs ``(1, C, S, S)``. The
    gradient of the output's channels at ``position`` is taken at ``tries``
    random float64 inputs (a ReLU can hide a dependence at one input), and a
    pixel counts when any gradient there is non-zero.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _checks.positive_int("image_size", image_size)
    _checks.positive_int("tries", tries)
    if not (isinstance(position, tuple) and len(position) == 2 and all(isinstance(p, int) for p in position)):
        raise TypeError(f"position must be a (row, column) tuple of ints, got {position!r}")
    if not all(0 <= p < image_size for p in position):
        raise ValueError(f"position must lie inside the {image_size}x{image_size} image, got {position}")
    seen = torch.zeros(image_size, image_size, dtype=torch.bool)
    for _ in range(tries):
        x = torch.rand(1, 1, image_size, image_size, dtype=torch.float64, generator=generator).requires_grad_()
        fn(x)[0, :, position[0], position[1]].sum().backward()
        seen |= x.grad[0, 0] != 0
    return seen


class VAE(nn.Module):
    """A VAE for binary ``(B, 1, S, S)`` images with a factorised or an autoregressive decoder.

    Encoder: an MLP ``S*S -> hidden -> 2L`` giving ``mu`` and ``log_var`` of
    ``q(z | x)``. Decoder: the code is mapped by a linear layer to
    ``channels`` feature maps ``(B, channels, S, S)``. With
    ``kernel_size=None`` (a plain VAE) these alone give each pixel's logit,
    through two 1x1 convolutions: pixels are independent given ``z``. With an
    odd ``kernel_size`` a :class:`PixelCNN` of ``layers`` layers adds features
    of the earlier pixels in its window (:func:`context_size` of them) before
    the same 1x1 convolutions: a PixelCNN conditioned on ``z``, eq. (vlae-ar)
    of chapter 17.
    """

    def __init__(
        self,
        image_size: int,
        latent: int = 16,
        hidden: int = 128,
        channels: int = 16,
        kernel_size: int | None = None,
        layers: int = 1,
    ) -> None:
        super().__init__()
        for name, value in [("image_size", image_size), ("latent", latent), ("hidden", hidden), ("channels", channels)]:
            _checks.positive_int(name, value)
        self.image_size, self.latent, self.kernel_size = image_size, latent, kernel_size
        pixels = image_size * image_size
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.condition = nn.Linear(latent, channels * pixels)
        self.context = None if kernel_size is None else PixelCNN(channels, kernel_size, layers)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, 1, 1))

    def _check_images(self, x: torch.Tensor) -> None:
        _checks.tensor("x", x, ndim=4, kind="float")
        want = (1, self.image_size, self.image_size)
        if tuple(x.shape[1:]) != want:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu, log_var``, each ``(B, L)``, of ``q(z | x)`` for images ``x (B, 1, S, S)``."""
        self._check_images(x)
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        return mu, log_var

    def decode(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel logits ``(B, 1, S, S)`` given codes ``z (B, L)`` and, if autoregressive, images ``x``.

        The logit at pixel ``p`` depends on ``z`` and on ``x`` only at pixels
        before ``p`` (teacher forcing: one pass scores a whole image).
        """
        _checks.tensor("z", z, ndim=2, kind="float")
        _checks.size_matches("z", z.shape[1], self.latent, "latent size")
        S = self.image_size
        h = self.condition(z).view(z.shape[0], -1, S, S)
        if self.context is not None:
            if x is None:
                raise ValueError("x is required by an autoregressive decoder")
            self._check_images(x)
            _checks.size_matches("x", x.shape[0], z.shape[0], "batch size")
            h = h + self.context(x)
        return self.head(h)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> ELBO:
        """The negative ELBO of ``x (B, 1, S, S)`` in bits per image, with one sample of ``z``."""
        mu, log_var = self.encode(x)
        z = reparameterize(mu, log_var, generator)
        return elbo_bits(self.decode(z, x), x, mu, log_var)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary images ``(B, 1, S, S)`` drawn from ``p(x | z)`` for codes ``z (B, L)``.

        A factorised decoder draws all pixels at once; an autoregressive one
        draws them one at a time in raster order, each given those before it.
        """
        _checks.tensor("z", z, ndim=2, kind="float")
        S = self.image_size
        x = torch.zeros(z.shape[0], 1, S, S, dtype=z.dtype, device=z.device)
        order = [None] if self.context is None else [(i, j) for i in range(S) for j in range(S)]
        for pos in order:
            probs = torch.sigmoid(self.decode(z, x))
            u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype).to(probs.device)
            draw = (u < probs).to(z.dtype)
            if pos is None:
                x = draw
            else:
                x[:, :, pos[0], pos[1]] = draw[:, :, pos[0], pos[1]]
        return x


def train_vae(
    model: VAE,
    images: torch.Tensor,
    *,
    steps: int,
    batch: int,
    generator: torch.Generator,
    lr: float = 2e-3,
    stop_after: int | None = None,
) -> History:
    """Minimise the negative ELBO (bits per image) of ``images (N, 1, S, S)`` with Adam; return the :class:`History`.

    Each step draws ``batch`` images at random and one code sample per image
    from ``generator`` (on the CPU), so two models trained with equally
    seeded generators see the same batches. No KL annealing or free bits.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a VAE, got {type(model).__name__}")
    model._check_images(images)
    _checks.positive_int("batch", batch)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def loss(step: int) -> torch.Tensor:
        idx = torch.randint(0, images.shape[0], (batch,), generator=generator).to(images.device)
        return model(images[idx], generator).total.mean()  # eq. (vlae-elbo)

    return fit(model, opt, loss, steps, stop_after=stop_after)


def pixel_error(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image, the mean absolute difference of ``input`` and ``target (B, C, H, W)``: ``(B,)``.

    For binary images it is the fraction of pixels that differ.
    """
    _checks.tensor("input", input, ndim=4, kind="float")
    _checks.tensor("target", target, ndim=4, kind="float")
    if input.shape != target.shape:
        raise ValueError(f"target must have the shape of input {tuple(input.shape)}, got {tuple(target.shape)}")
    return (input - target).abs().flatten(1).mean(1)


def coarse_error(input: torch.Tensor, target: torch.Tensor, factor: int) -> torch.Tensor:
    """Per image, :func:`pixel_error` after averaging ``factor x factor`` blocks of both images: ``(B,)``.

    It compares how much ink each block holds, not where exactly it lies
    inside the block: the coarse structure of the images.
    """
    _checks.tensor("input", input, ndim=4, kind="float")
    _checks.positive_int("factor", factor)
    if input.shape[-1] < factor or input.shape[-2] < factor:
        raise ValueError(f"factor must not exceed the image size, got {factor} for {tuple(input.shape)}")
    _checks.tensor("target", target, ndim=4, kind="float")
    if input.shape != target.shape:
        raise ValueError(f"target must have the shape of input {tuple(input.shape)}, got {tuple(target.shape)}")
    return pixel_error(F.avg_pool2d(input, factor), F.avg_pool2d(target, factor))
