"""Variational autoencoders with an autoregressive decoder: ELBO in bits, masked convolutions.

Chapter 17 (Chen et al., 2017, "Variational Lossy Autoencoder") trains a
variational autoencoder (VAE) on small binary images and asks how much
information its latent code carries, measured as the KL term of the evidence
lower bound (ELBO) in bits per image. The decoder is either factorised (a
plain VAE: every pixel independent given the code) or autoregressive, a
PixelCNN-style stack whose first layer is a *masked* convolution: pixel ``p``
sees only the pixels before it in raster order that fall inside a
``kernel_size x kernel_size`` window, so the kernel size sets the decoder's
receptive field. The Gaussian KL is the one of chapter 5
(:func:`papers30.mdl.gaussian_kl`).

Shapes: ``B`` batch, ``C`` channels, ``H`` x ``W`` image height x width,
``L`` latent size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.mdl import LN2, gaussian_kl

__all__ = [
    "ELBO",
    "VAE",
    "MaskedConv2d",
    "bernoulli_bits",
    "binarize",
    "causal_mask",
    "context_size",
    "elbo_bits",
    "reparameterize",
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


def causal_mask(kernel_size: int, include_center: bool) -> torch.Tensor:
    """The ``(k, k)`` 0/1 mask of a raster-order causal convolution.

    Ones on the rows above the centre, and on the centre row left of the
    centre (and at the centre itself when ``include_center``, PixelCNN's mask
    "B"; without it, mask "A").
    """
    _checks.positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    if not isinstance(include_center, bool):
        raise TypeError(f"include_center must be a bool, got {type(include_center).__name__}")
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c] = 1.0
    mask[c, : c + int(include_center)] = 1.0
    return mask


def context_size(kernel_size: int) -> int:
    """Pixels a mask-"A" convolution of odd ``kernel_size`` sees: ``(k // 2) * k + k // 2``."""
    return int(causal_mask(kernel_size, False).sum().item())


class MaskedConv2d(nn.Conv2d):
    """A ``same``-padded 2-D convolution whose kernel is multiplied by :func:`causal_mask`.

    ``mask_type="A"`` excludes the centre pixel (the first layer: output ``p``
    must not see input ``p``); ``"B"`` includes it (later layers, whose input
    at ``p`` already depends only on pixels before ``p``). Maps
    ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str = "A") -> None:
        _checks.one_of("mask_type", mask_type, ("A", "B"))
        mask = causal_mask(kernel_size, mask_type == "B")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.mask_type = mask_type
        self.register_buffer("mask", mask)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Convolve ``input (B, C, H, W)`` with the masked kernel."""
        _checks.tensor("input", input, ndim=4, kind="float")
        return F.conv2d(input, self.weight * self.mask, self.bias, padding=self.padding)


class VAE(nn.Module):
    """A VAE for binary ``(B, 1, S, S)`` images with a factorised or an autoregressive decoder.

    Encoder: an MLP ``S*S -> hidden -> 2L`` giving ``mu`` and ``log_var`` of
    ``q(z | x)``. Decoder: the code is mapped by a linear layer to
    ``channels`` feature maps ``(B, channels, S, S)``. With
    ``kernel_size=None`` (a plain VAE) these alone give each pixel's logit,
    through two 1x1 convolutions: pixels are independent given ``z``. With an
    odd ``kernel_size`` a mask-"A" :class:`MaskedConv2d` of that size adds
    features of the pixels before each pixel in raster order (its
    :func:`context_size` of them), then the same 1x1 convolutions: a PixelCNN
    of receptive field ``kernel_size`` conditioned on ``z``, eq. (vlae-ar).
    """

    def __init__(
        self,
        image_size: int,
        latent: int = 16,
        hidden: int = 256,
        channels: int = 32,
        kernel_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in [("image_size", image_size), ("latent", latent), ("hidden", hidden), ("channels", channels)]:
            _checks.positive_int(name, value)
        self.image_size, self.latent, self.kernel_size = image_size, latent, kernel_size
        pixels = image_size * image_size
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.condition = nn.Linear(latent, channels * pixels)
        self.context = None if kernel_size is None else MaskedConv2d(1, channels, kernel_size, "A")
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
