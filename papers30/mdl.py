"""Description length of a network's weights: noisy weights, KL and bits back.

Chapter 5 (Hinton and van Camp, 1993) trains a network whose every weight is a
Gaussian, with a learned mean and a learned standard deviation, by minimising
the number of bits needed to communicate the training targets: the bits for
the weights (the KL divergence from the weights' Gaussians to a prior, which
is what sending noisy weights costs once the "bits back" are refunded) plus
the bits for the targets' misfit under a Gaussian code. Chapter 17 reuses the
Gaussian KL, and chapter 23 (the MDL tutorial) reuses the bit accounting.

Each layer has its own prior: the paper's adaptive mixture of two zero-mean
Gaussians (its KL computed by quadrature), or a single zero-mean Gaussian,
fixed or with the width that minimises the layer's KL. The expected misfit is
estimated by sampling weights with the reparameterisation
``w = mu + std * eps``, not by the paper's exact formula for linear output
units.

Shapes: ``B`` batch (training cases), ``D`` inputs, ``H`` hidden units,
``O`` outputs, ``K`` weight samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks

LN2 = math.log(2.0)


def _positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not value > 0.0 or math.isinf(value):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


def _std_tensor(name: str, value: torch.Tensor | float) -> torch.Tensor | float:
    """A standard deviation: a positive float or a float tensor of positive entries."""
    if isinstance(value, torch.Tensor):
        _checks.tensor(name, value, kind="float")
        if value.numel() and not bool((value > 0).all()):
            raise ValueError(f"{name} must be positive everywhere")
        return value
    return _positive_float(name, value)


def nats_to_bits(nats: torch.Tensor | float) -> torch.Tensor | float:
    """Convert an information quantity from nats to bits (divide by ``ln 2``)."""
    if isinstance(nats, bool) or not isinstance(nats, (torch.Tensor, int, float)):
        raise TypeError(f"nats must be a tensor or a number, got {type(nats).__name__}")
    return nats / LN2


def gaussian_kl(
    mu_q: torch.Tensor,
    std_q: torch.Tensor | float,
    mu_p: torch.Tensor | float,
    std_p: torch.Tensor | float,
) -> torch.Tensor:
    """``KL(N(mu_q, std_q^2) || N(mu_p, std_p^2))`` in nats, elementwise (broadcasting).

    ``log(std_p / std_q) + (std_q^2 + (mu_q - mu_p)^2) / (2 std_p^2) - 1/2``,
    eq. (kl-gauss) of chapter 5; the same as
    ``torch.distributions.kl_divergence(Normal(mu_q, std_q), Normal(mu_p, std_p))``.
    """
    _checks.tensor("mu_q", mu_q, kind="float")
    std_q = _std_tensor("std_q", std_q)
    std_p = _std_tensor("std_p", std_p)
    if isinstance(mu_p, torch.Tensor):
        _checks.tensor("mu_p", mu_p, kind="float")
    elif isinstance(mu_p, bool) or not isinstance(mu_p, (int, float)):
        raise TypeError(f"mu_p must be a tensor or a float, got {type(mu_p).__name__}")
    var_ratio = (torch.as_tensor(std_q, dtype=mu_q.dtype, device=mu_q.device) / std_p) ** 2
    gap = ((mu_q - mu_p) / std_p) ** 2
    return 0.5 * (var_ratio + gap - 1.0 - torch.log(var_ratio))  # eq. (kl-gauss)


def misfit_bits(
    input: torch.Tensor,
    target: torch.Tensor,
    noise_std: torch.Tensor | float,
    tolerance: float,
) -> torch.Tensor:
    """Bits to send each ``target`` value, quantised to width ``tolerance``, given ``input``.

    The code is a Gaussian of width ``noise_std`` around the prediction
    ``input``: ``-log2(tolerance * N(target; input, noise_std^2))``, eq.
    (misfit) of chapter 5. Elementwise; ``input`` and ``target`` broadcast.
    """
    _checks.tensor("input", input, kind="float")
    _checks.tensor("target", target, kind="float")
    noise_std = _std_tensor("noise_std", noise_std)
    tolerance = _positive_float("tolerance", tolerance)
    std = torch.as_tensor(noise_std, dtype=input.dtype, device=input.device)
    nats = 0.5 * ((target - input) / std) ** 2 + torch.log(std) + 0.5 * math.log(2 * math.pi)
    return nats / LN2 - math.log2(tolerance)  # eq. (misfit)


def mixture_kl(
    mu_q: torch.Tensor,
    std_q: torch.Tensor,
    logits: torch.Tensor,
    stds: torch.Tensor,
    *,
    nodes: int = 129,
) -> torch.Tensor:
    """``KL(N(mu_q, std_q^2) || sum_c pi_c N(0, stds_c^2))`` in nats, elementwise over ``mu_q``.

    The mixture weights are ``pi = softmax(logits)``; ``logits`` and
    ``stds`` have shape ``(C,)``. The KL of a Gaussian from a mixture has no
    closed form: ``KL = -H(q) - E_q[log p(w)]``, with the Gaussian entropy
    ``H(q) = log(std_q sqrt(2 pi e))`` exact and the expectation computed by
    the trapezoidal rule on ``nodes`` points spanning ``mu_q +- 8 std_q``, eq.
    (kl-mix) of chapter 5. (Gauss-Hermite quadrature converges badly here: a
    narrow component puts a sharp bend into ``log p``.)
    """
    _checks.tensor("mu_q", mu_q, kind="float")
    std_q = _std_tensor("std_q", std_q)
    _checks.tensor("logits", logits, ndim=1, kind="float")
    _checks.tensor("stds", stds, ndim=1, kind="float")
    _std_tensor("stds", stds)
    _checks.size_matches("stds", stds.shape[0], logits.shape[0], "number of components")
    _checks.positive_int("nodes", nodes)
    u = torch.linspace(-8.0, 8.0, nodes, dtype=mu_q.dtype, device=mu_q.device)
    w = torch.softmax(-0.5 * u**2, dim=0)  # standard normal weights on the grid, sum 1
    std_q = torch.as_tensor(std_q, dtype=mu_q.dtype, device=mu_q.device)
    points = mu_q[..., None] + std_q[..., None] * u  # (..., nodes)
    log_pi = torch.log_softmax(logits, dim=0)
    z = points[..., None] / stds  # (..., nodes, C)
    log_comp = -0.5 * z**2 - torch.log(stds) - 0.5 * math.log(2 * math.pi) + log_pi
    expected_log_p = (torch.logsumexp(log_comp, dim=-1) * w).sum(-1)
    entropy = torch.log(std_q) + 0.5 * math.log(2 * math.pi * math.e)
    return -entropy - expected_log_p  # eq. (kl-mix)


class NoisyLinear(nn.Module):
    """A linear layer ``(B, D) -> (B, O)`` whose weights and biases are independent Gaussians.

    Parameters: ``weight_mu``/``weight_log_std`` ``(O, D)`` and
    ``bias_mu``/``bias_log_std`` ``(O,)``. In training mode (or with
    ``sample=True``) each call draws one weight sample
    ``w = mu + std * eps`` (the same for every case of the batch); in eval
    mode (or ``sample=False``) it uses the means, like ``nn.Linear``.

    ``prior`` chooses the layer's prior: a float is a fixed ``N(0, prior^2)``;
    ``"gaussian"`` is a zero-mean Gaussian whose width is always the optimum
    of eq. (prior-opt); ``"mixture"`` is the paper's adaptive prior, a mixture
    of two zero-mean Gaussians (one narrow, one broad) whose mixing
    proportions and widths (``prior_logits``, ``prior_log_stds``, ``(2,)``)
    are learned with the weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        prior: float | str = "mixture",
        init_std: float = 1e-2,
    ) -> None:
        super().__init__()
        _checks.positive_int("in_features", in_features)
        _checks.positive_int("out_features", out_features)
        if isinstance(prior, str):
            if prior not in ("gaussian", "mixture"):
                raise ValueError(f"prior must be 'gaussian', 'mixture' or a float, got {prior!r}")
            self.prior = prior
        else:
            self.prior = _positive_float("prior", prior)
        init_std = _positive_float("init_std", init_std)
        self.in_features, self.out_features = in_features, out_features
        plain = nn.Linear(in_features, out_features)  # the usual initialisation of the means
        self.weight_mu = nn.Parameter(plain.weight.detach().clone())
        self.bias_mu = nn.Parameter(plain.bias.detach().clone())
        self.weight_log_std = nn.Parameter(torch.full((out_features, in_features), math.log(init_std)))
        self.bias_log_std = nn.Parameter(torch.full((out_features,), math.log(init_std)))
        if self.prior == "mixture":
            self.prior_logits = nn.Parameter(torch.zeros(2))
            self.prior_log_stds = nn.Parameter(torch.tensor([math.log(0.05), 0.0]))

    def forward(self, input: torch.Tensor, sample: bool | None = None) -> torch.Tensor:
        """``input @ w.T + b`` for one sample of the weights (or their means)."""
        _checks.tensor("input", input, kind="float")
        _checks.size_matches("input", input.shape[-1], self.in_features, "feature size")
        if not (self.training if sample is None else sample):
            return F.linear(input, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_log_std.exp() * torch.randn_like(self.weight_mu)
        bias = self.bias_mu + self.bias_log_std.exp() * torch.randn_like(self.bias_mu)
        return F.linear(input, weight, bias)

    def means(self) -> torch.Tensor:
        """All the layer's means, weights then biases, flattened: ``(O * D + O,)``."""
        return torch.cat([self.weight_mu.flatten(), self.bias_mu])

    def stds(self) -> torch.Tensor:
        """All the layer's standard deviations, in the order of :meth:`means`."""
        return torch.cat([self.weight_log_std.flatten(), self.bias_log_std]).exp()

    def prior_std(self) -> torch.Tensor:
        """The width of a Gaussian prior: the fixed one, or the optimum ``sqrt(mean(mu^2 + std^2))``.

        The optimum minimises the layer's total KL, eq. (prior-opt) of
        chapter 5; the cost of sending this one number is neglected.
        """
        if self.prior == "mixture":
            raise ValueError("prior_std is defined for a Gaussian prior; this layer's prior is 'mixture'")
        if self.prior == "gaussian":
            return (self.means() ** 2 + self.stds() ** 2).mean().sqrt()  # eq. (prior-opt)
        return torch.tensor(self.prior, dtype=self.weight_mu.dtype, device=self.weight_mu.device)

    def kl(self) -> torch.Tensor:
        """KL of every weight and bias from the prior, in nats: ``(O * D + O,)``."""
        if self.prior == "mixture":
            return mixture_kl(self.means(), self.stds(), self.prior_logits, self.prior_log_stds.exp())
        return gaussian_kl(self.means(), self.stds(), 0.0, self.prior_std())


class NoisyMLP(nn.Module):
    """A multilayer perceptron of :class:`NoisyLinear` layers with tanh hidden units.

    ``sizes = (D, H, ..., O)`` maps ``(B, D)`` to ``(B, O)``; the output is
    linear. Trained by sampling, it is the noisy-weight net of chapter 5; used
    with ``sample=False`` only, it is a plain net with the same architecture.
    """

    def __init__(self, sizes: Sequence[int], *, prior: float | str = "mixture", init_std: float = 1e-2) -> None:
        super().__init__()
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise TypeError(f"sizes must be a sequence of ints, got {type(sizes).__name__}")
        if len(sizes) < 2:
            raise ValueError(f"sizes must hold at least an input and an output size, got {list(sizes)}")
        for s in sizes:
            _checks.positive_int("sizes", s)
        self.layers = nn.ModuleList(
            NoisyLinear(a, b, prior=prior, init_std=init_std) for a, b in zip(sizes[:-1], sizes[1:])
        )

    def forward(self, input: torch.Tensor, sample: bool | None = None) -> torch.Tensor:
        """One forward pass with one weight sample per layer (or the means)."""
        h = input
        for i, layer in enumerate(self.layers):
            h = layer(h, sample)
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return h

    def num_weights(self) -> int:
        """The number of weights and biases (each has a mean and a std)."""
        return sum(layer.means().numel() for layer in self.layers)

    def weight_bits(self) -> torch.Tensor:
        """The bits each weight and bias costs, ``KL / ln 2``, all layers concatenated."""
        return torch.cat([layer.kl() for layer in self.layers]) / LN2

    @torch.no_grad()
    def set_std(self, std: float) -> None:
        """Give every weight the same standard deviation ``std`` (keeps the means)."""
        log_std = math.log(_positive_float("std", std))
        for layer in self.layers:
            layer.weight_log_std.fill_(log_std)
            layer.bias_log_std.fill_(log_std)


@dataclass
class DescriptionLength:
    """The two parts of a description length, in bits (scalar tensors).

    ``weights``: bits for the weights, the KL of eq. (bits-back); ``data``:
    expected bits for the targets given the weights, eq. (misfit);
    ``noise_std``: the width of the misfit code that was used.
    """

    weights: torch.Tensor
    data: torch.Tensor
    noise_std: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        """``weights + data``, eq. (dl)."""
        return self.weights + self.data


def description_length(
    model: NoisyMLP,
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    tolerance: float,
    samples: int = 1,
    noise_std: float | None = None,
) -> DescriptionLength:
    """Bits to send ``target (B, O)`` given ``input (B, D)`` with ``model``'s noisy weights.

    The data part averages :func:`misfit_bits` over ``samples`` draws of the
    weights. With ``noise_std=None`` the misfit code's width is the one that
    minimises it, the root of the mean expected squared residual (eq.
    noise-opt of chapter 5). Differentiable: ``.total`` is the training loss.
    """
    if not isinstance(model, NoisyMLP):
        raise TypeError(f"model must be a NoisyMLP, got {type(model).__name__}")
    _checks.tensor("input", input, ndim=2, kind="float")
    _checks.tensor("target", target, ndim=2, kind="float")
    _checks.size_matches("target", target.shape[0], input.shape[0], "batch size")
    _checks.positive_int("samples", samples)
    tolerance = _positive_float("tolerance", tolerance)
    preds = torch.stack([model(input, sample=True) for _ in range(samples)])  # (K, B, O)
    _checks.size_matches("target", target.shape[1], preds.shape[-1], "output size")
    if noise_std is None:
        std = ((preds - target) ** 2).mean().sqrt()  # eq. (noise-opt)
    else:
        std = torch.tensor(_positive_float("noise_std", noise_std), dtype=preds.dtype, device=preds.device)
    data = misfit_bits(preds, target, std, tolerance).sum(dim=(1, 2)).mean()
    return DescriptionLength(weights=model.weight_bits().sum(), data=data, noise_std=std.detach())


@dataclass
class Regression:
    """A regression data set: ``x (B, D)`` and ``y (B, 1)``."""

    x: torch.Tensor
    y: torch.Tensor


def few_example_task(
    n_train: int,
    n_test: int,
    n_inputs: int,
    *,
    noise: float,
    generator: torch.Generator,
) -> tuple[Regression, Regression]:
    """A regression task with many inputs and few training cases.

    Inputs are standard normal, ``(B, n_inputs)``; the target depends on the
    first three only, ``y = x1 - x2 + 2 tanh(x3) + noise * eps``. Returns
    ``(train, test)``; the test targets are noise-free.
    """
    _checks.positive_int("n_train", n_train)
    _checks.positive_int("n_test", n_test)
    _checks.positive_int("n_inputs", n_inputs)
    if n_inputs < 3:
        raise ValueError(f"n_inputs must be at least 3, got {n_inputs}")
    noise = float(noise)
    if not noise >= 0.0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")

    def make(n: int, noisy: bool) -> Regression:
        x = torch.randn(n, n_inputs, generator=generator)
        y = x[:, 0] - x[:, 1] + 2.0 * torch.tanh(x[:, 2])
        if noisy:
            y = y + noise * torch.randn(n, generator=generator)
        return Regression(x, y[:, None])

    return make(n_train, True), make(n_test, False)
