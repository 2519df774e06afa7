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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.training import History

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


def _mixture_args(
    mu_q: torch.Tensor, std_q: object, logits: object, stds: object, means: object
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a Gaussian and a mixture's parameters; return ``std_q`` as a tensor and the means (default 0)."""
    _checks.tensor("mu_q", mu_q, kind="float")
    std_q = _std_tensor("std_q", std_q)
    _checks.tensor("logits", logits, ndim=1, kind="float")
    _checks.tensor("stds", stds, ndim=1, kind="float")
    _std_tensor("stds", stds)
    _checks.size_matches("stds", stds.shape[0], logits.shape[0], "number of components")
    if means is None:
        means = torch.zeros_like(stds)
    _checks.tensor("means", means, ndim=1, kind="float")
    _checks.size_matches("means", means.shape[0], logits.shape[0], "number of components")
    return torch.as_tensor(std_q, dtype=mu_q.dtype, device=mu_q.device), means


def mixture_kl(
    mu_q: torch.Tensor,
    std_q: torch.Tensor | float,
    logits: torch.Tensor,
    stds: torch.Tensor,
    means: torch.Tensor | None = None,
    *,
    nodes: int = 129,
) -> torch.Tensor:
    """``KL(N(mu_q, std_q^2) || sum_c pi_c N(means_c, stds_c^2))`` in nats, elementwise over ``mu_q``.

    The mixture weights are ``pi = softmax(logits)``; ``logits``, ``stds`` and
    ``means`` (default: zeros) have shape ``(C,)``. The KL of a Gaussian from
    a mixture has no closed form: ``KL = -H(q) - E_q[log p(w)]``, with the
    Gaussian entropy ``H(q) = log(std_q sqrt(2 pi e))`` exact and the
    expectation computed by the trapezoidal rule on ``nodes`` points spanning
    ``mu_q +- 8 std_q``, eq. (kl-mix) of chapter 5. (Gauss-Hermite
    quadrature converges badly here: a narrow component puts a sharp bend
    into ``log p``.)
    """
    std_q, means = _mixture_args(mu_q, std_q, logits, stds, means)
    _checks.positive_int("nodes", nodes)
    u = torch.linspace(-8.0, 8.0, nodes, dtype=mu_q.dtype, device=mu_q.device)
    w = torch.softmax(-0.5 * u**2, dim=0)  # standard normal weights on the grid, sum 1
    points = mu_q[..., None] + std_q[..., None] * u  # (..., nodes)
    log_pi = torch.log_softmax(logits, dim=0)
    z = (points[..., None] - means) / stds  # (..., nodes, C)
    log_comp = -0.5 * z**2 - torch.log(stds) - 0.5 * math.log(2 * math.pi) + log_pi
    expected_log_p = (torch.logsumexp(log_comp, dim=-1) * w).sum(-1)
    entropy = torch.log(std_q) + 0.5 * math.log(2 * math.pi * math.e)
    return -entropy - expected_log_p  # eq. (kl-mix)


def mixture_code_cost(
    mu_q: torch.Tensor,
    std_q: torch.Tensor | float,
    logits: torch.Tensor,
    stds: torch.Tensor,
    means: torch.Tensor | None = None,
) -> torch.Tensor:
    """The paper's cost of sending ``w ~ N(mu_q, std_q^2)`` with a mixture prior, in nats, elementwise.

    ``-log sum_c pi_c exp(-G_c)`` with ``G_c = KL(N(mu_q, std_q^2) || N(means_c, stds_c^2))``
    and ``pi = softmax(logits)`` (Hinton and van Camp, eq. 17). It is the
    expected length of a bits-back code that first picks a component with
    probability proportional to ``pi_c exp(-G_c)`` and then sends the sample
    with that component, the bits of the choice coming back too (their
    Sec. 7); it is an upper bound on :func:`mixture_kl`, in closed form,
    eq. (mix-cost) of chapter 5.
    """
    std_q, means = _mixture_args(mu_q, std_q, logits, stds, means)
    g = gaussian_kl(mu_q[..., None], std_q[..., None], means, stds)  # (..., C)
    return -torch.logsumexp(torch.log_softmax(logits, dim=0) - g, dim=-1)  # eq. (mix-cost)


class MixturePrior(nn.Module):
    """An adaptive prior for weights: a mixture of Gaussians with learned proportions, widths and (optionally) means.

    Parameters ``logits``, ``means`` and ``log_stds``, each ``(C,)``, start
    from ``means`` and ``stds`` with equal proportions ``softmax(logits)``;
    ``learn_means=False`` keeps the means where they are. The default is a
    "spike and slab": two zero-mean components, one narrow (0.05) for the
    weights that should be nearly zero and one broad (1.0) for the few that
    should not. :meth:`paper` gives the paper's initial prior.
    """

    def __init__(self, means: Sequence[float] = (0.0, 0.0), stds: Sequence[float] = (0.05, 1.0), *,
                 learn_means: bool = False) -> None:
        super().__init__()
        for name, values in [("means", means), ("stds", stds)]:
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise TypeError(f"{name} must be a non-empty sequence of floats, got {values!r}")
        if len(means) != len(stds):
            raise ValueError(f"stds must give one width per mean ({len(means)}), got {len(stds)}")
        widths = [_positive_float("stds", float(w)) for w in stds]
        if not isinstance(learn_means, bool):
            raise TypeError(f"learn_means must be a bool, got {type(learn_means).__name__}")
        self.logits = nn.Parameter(torch.zeros(len(means)))
        self.means = nn.Parameter(torch.tensor([float(m) for m in means]), requires_grad=learn_means)
        self.log_stds = nn.Parameter(torch.log(torch.tensor(widths)))

    @classmethod
    def paper(cls, components: int = 5, spread: float = 0.24) -> MixturePrior:
        """The paper's start: ``components`` Gaussians with learned means evenly spaced over ``+-spread``,
        neighbours two standard deviations apart (Sec. 9)."""
        _checks.positive_int("components", components)
        if components < 2:
            raise ValueError(f"components must be at least 2, got {components}")
        spread = _positive_float("spread", spread)
        means = torch.linspace(-spread, spread, components).tolist()
        return cls(means, [spread / (components - 1)] * components, learn_means=True)

    def stds(self) -> torch.Tensor:
        """The components' standard deviations ``(C,)``."""
        return self.log_stds.exp()

    def proportions(self) -> torch.Tensor:
        """The mixing proportions ``(C,)``, summing to 1."""
        return torch.softmax(self.logits, dim=0)

    def kl(self, mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """``KL(N(mu, std^2) || mixture)`` in nats for every weight, by quadrature (:func:`mixture_kl`)."""
        return mixture_kl(mu, std, self.logits, self.stds(), self.means)

    def code_cost(self, mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The paper's bits-back cost of every weight in nats (:func:`mixture_code_cost`), shape of ``mu``."""
        return mixture_code_cost(mu, std, self.logits, self.stds(), self.means)


class NoisyLinear(nn.Module):
    """A linear layer ``(B, D) -> (B, O)`` whose weights and biases are independent Gaussians.

    Parameters: ``weight_mu``/``weight_log_std`` ``(O, D)`` and
    ``bias_mu``/``bias_log_std`` ``(O,)``. In training mode (or with
    ``sample=True``) each call draws one weight sample
    ``w = mu + std * eps`` (the same for every case of the batch); in eval
    mode (or ``sample=False``) it uses the means, like ``nn.Linear``. The
    means start as ``nn.Linear``'s, or ``N(0, init_mean_std^2)`` when given;
    every standard deviation starts at ``init_std``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init_std: float = 1e-2,
        init_mean_std: float | None = None,
    ) -> None:
        super().__init__()
        _checks.positive_int("in_features", in_features)
        _checks.positive_int("out_features", out_features)
        init_std = _positive_float("init_std", init_std)
        self.in_features, self.out_features = in_features, out_features
        plain = nn.Linear(in_features, out_features)  # the usual initialisation of the means
        weight, bias = plain.weight.detach().clone(), plain.bias.detach().clone()
        if init_mean_std is not None:
            scale = _positive_float("init_mean_std", init_mean_std)
            weight, bias = torch.randn_like(weight) * scale, torch.randn_like(bias) * scale
        self.weight_mu, self.bias_mu = nn.Parameter(weight), nn.Parameter(bias)
        self.weight_log_std = nn.Parameter(torch.full((out_features, in_features), math.log(init_std)))
        self.bias_log_std = nn.Parameter(torch.full((out_features,), math.log(init_std)))

    def forward(self, input: torch.Tensor, sample: bool | None = None) -> torch.Tensor:
        """``input @ w.T + b`` for one sample of the weights (or their means)."""
        _checks.tensor("input", input, kind="float")
        if input.dim() == 0:
            raise ValueError("input must have a feature dimension (..., in_features), got a 0-d tensor")
        _checks.size_matches("input", input.shape[-1], self.in_features, "feature size")
        if not (self.training if sample is None else sample):
            return F.linear(input, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_log_std.exp() * torch.randn_like(self.weight_mu)
        bias = self.bias_mu + self.bias_log_std.exp() * torch.randn_like(self.bias_mu)
        return F.linear(input, weight, bias)

    def moments(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance ``(B, O)`` of the output for inputs with independent entries of ``mean``, ``var`` ``(B, D)``.

        The weights are independent of the inputs and of each other:
        ``E[w x] = mu E[x]`` and ``Var(w x) = (mu^2 + s^2) E[x^2] - mu^2 E[x]^2``,
        summed over the inputs, plus the bias's mean and variance.
        """
        mu, var_w = self.weight_mu, self.weight_log_std.exp() ** 2
        second = var + mean**2  # E[x^2]
        out_mean = F.linear(mean, mu, self.bias_mu)
        out_var = second @ (mu**2 + var_w).T - mean**2 @ (mu**2).T + self.bias_log_std.exp() ** 2
        return out_mean, out_var

    def means(self) -> torch.Tensor:
        """All the layer's means, weights then biases, flattened: ``(O * D + O,)``."""
        return torch.cat([self.weight_mu.flatten(), self.bias_mu])

    def stds(self) -> torch.Tensor:
        """All the layer's standard deviations, in the order of :meth:`means`."""
        return torch.cat([self.weight_log_std.flatten(), self.bias_log_std]).exp()


_NODES, _WEIGHTS = (torch.from_numpy(a) for a in np.polynomial.hermite_e.hermegauss(32))
_WEIGHTS = _WEIGHTS / math.sqrt(2 * math.pi)  # E[f(u)], u ~ N(0, 1), is sum_k w_k f(u_k)


def gaussian_tanh_moments(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``E[tanh(a)]`` and ``E[tanh(a)^2]`` for ``a ~ N(mean, var)``, elementwise.

    Gauss-Hermite quadrature with 32 nodes (the paper uses a lookup table of
    the same integrals). Differentiable in ``mean`` and ``var``.
    """
    _checks.tensor("mean", mean, kind="float")
    _checks.tensor("var", var, kind="float")
    nodes = _NODES.to(mean.dtype).to(mean.device)
    weights = _WEIGHTS.to(mean.dtype).to(mean.device)
    t = torch.tanh(mean[..., None] + var.clamp_min(0.0)[..., None].sqrt() * nodes)
    return (t * weights).sum(-1), (t**2 * weights).sum(-1)


class NoisyMLP(nn.Module):
    """A multilayer perceptron of :class:`NoisyLinear` layers with tanh hidden units, and its weight prior.

    ``sizes = (D, H, ..., O)`` maps ``(B, D)`` to ``(B, O)``; the output is
    linear. Trained by sampling, or with the exact expected error of
    :func:`expected_squared_error`, it is the noisy-weight net of chapter 5;
    used with ``sample=False`` only, it is a plain net with the same
    architecture.

    ``prior`` is one prior shared by all weights and biases, as in the
    paper: a float is a fixed ``N(0, prior^2)``; ``"gaussian"`` is a
    zero-mean Gaussian whose width is always the optimum of eq. (prior-opt);
    a :class:`MixturePrior` (``"mixture"``: its default spike and slab) is
    adaptive, its parameters learned with the weights.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        prior: float | str | MixturePrior = "mixture",
        init_std: float = 1e-2,
        init_mean_std: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
            raise TypeError(f"sizes must be a sequence of ints, got {type(sizes).__name__}")
        if len(sizes) < 2:
            raise ValueError(f"sizes must hold at least an input and an output size, got {list(sizes)}")
        for s in sizes:
            _checks.positive_int("sizes", s)
        if isinstance(prior, str):
            if prior not in ("gaussian", "mixture"):
                raise ValueError(f"prior must be 'gaussian', 'mixture', a float or a MixturePrior, got {prior!r}")
            prior = MixturePrior() if prior == "mixture" else prior
        elif not isinstance(prior, MixturePrior):
            prior = _positive_float("prior", prior)
        self.prior = prior
        self.layers = nn.ModuleList(
            NoisyLinear(a, b, init_std=init_std, init_mean_std=init_mean_std) for a, b in zip(sizes[:-1], sizes[1:])
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

    def means(self) -> torch.Tensor:
        """Every weight's and bias's mean, layer by layer: ``(num_weights,)``."""
        return torch.cat([layer.means() for layer in self.layers])

    def stds(self) -> torch.Tensor:
        """Every weight's and bias's standard deviation, in the order of :meth:`means`."""
        return torch.cat([layer.stds() for layer in self.layers])

    def prior_std(self) -> torch.Tensor:
        """The width of a Gaussian prior: the fixed one, or the optimum ``sqrt(mean(mu^2 + std^2))``.

        The optimum minimises the total KL, eq. (prior-opt) of chapter 5; the
        cost of sending this one number is neglected.
        """
        if isinstance(self.prior, MixturePrior):
            raise ValueError("prior_std is defined for a Gaussian prior; this net's prior is a MixturePrior")
        mu = self.means()
        if self.prior == "gaussian":
            return (mu**2 + self.stds() ** 2).mean().sqrt()  # eq. (prior-opt)
        return torch.tensor(self.prior, dtype=mu.dtype, device=mu.device)

    def weight_cost(self) -> torch.Tensor:
        """What sending every weight and bias costs, in nats: ``(num_weights,)``.

        Under a Gaussian prior it is the KL of eq. (bits-back); under a
        :class:`MixturePrior` it is the paper's code cost
        (:meth:`MixturePrior.code_cost`), slightly above the KL.
        """
        mu, std = self.means(), self.stds()
        if isinstance(self.prior, MixturePrior):
            return self.prior.code_cost(mu, std)
        return gaussian_kl(mu, std, 0.0, self.prior_std())

    def weight_bits(self) -> torch.Tensor:
        """The bits each weight and bias costs, :meth:`weight_cost` ``/ ln 2``: ``(num_weights,)``."""
        return self.weight_cost() / LN2

    @torch.no_grad()
    def set_std(self, std: float) -> None:
        """Give every weight the same standard deviation ``std`` (keeps the means)."""
        log_std = math.log(_positive_float("std", std))
        for layer in self.layers:
            layer.weight_log_std.fill_(log_std)
            layer.bias_log_std.fill_(log_std)


def expected_squared_error(model: NoisyMLP, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The exact ``E_q[(target - f(input; w))^2]`` over the noisy weights, per case: ``(B, O)``.

    For a net with at most one hidden layer: each hidden unit's total input
    is a sum of independent terms, hence Gaussian given the input, with the
    mean and variance of :meth:`NoisyLinear.moments`; the moments of its
    tanh come from :func:`gaussian_tanh_moments`; and the linear output's
    mean and variance follow from the moments again, hidden units being
    independent of each other and of the output weights. Then
    ``E[(y - f)^2] = (y - E f)^2 + Var f``. This is the paper's exact
    expectation (Hinton and van Camp, Sec. 6), eq. (exact-misfit) of chapter 5.
    """
    if not isinstance(model, NoisyMLP):
        raise TypeError(f"model must be a NoisyMLP, got {type(model).__name__}")
    if len(model.layers) > 2:
        raise ValueError(f"model must have at most one hidden layer for the exact expectation, "
                         f"got {len(model.layers) - 1}")
    _checks.tensor("input", input, ndim=2, kind="float")
    _checks.tensor("target", target, ndim=2, kind="float")
    _checks.size_matches("target", target.shape[0], input.shape[0], "batch size")
    mean, var = model.layers[0].moments(input, torch.zeros_like(input))
    if len(model.layers) == 2:
        mean, second = gaussian_tanh_moments(mean, var)
        mean, var = model.layers[1].moments(mean, second - mean**2)
    _checks.size_matches("target", target.shape[1], mean.shape[1], "output size")
    return (target - mean) ** 2 + var


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
    samples: int | None = None,
    noise_std: float | None = None,
) -> DescriptionLength:
    """Bits to send ``target (B, O)`` given ``input (B, D)`` with ``model``'s noisy weights.

    The data part is the expected :func:`misfit_bits`: exactly, through
    :func:`expected_squared_error`, when ``samples`` is None (nets with at
    most one hidden layer), or averaged over ``samples`` draws of the
    weights. With ``noise_std=None`` the misfit code's width is the one that
    minimises it, the root of the mean expected squared residual (eq.
    noise-opt of chapter 5). Differentiable: ``.total`` is the training loss.
    """
    if not isinstance(model, NoisyMLP):
        raise TypeError(f"model must be a NoisyMLP, got {type(model).__name__}")
    _checks.tensor("input", input, ndim=2, kind="float")
    _checks.tensor("target", target, ndim=2, kind="float")
    _checks.size_matches("target", target.shape[0], input.shape[0], "batch size")
    tolerance = _positive_float("tolerance", tolerance)
    if samples is None:
        sq = expected_squared_error(model, input, target)  # (B, O)
    else:
        _checks.positive_int("samples", samples)
        preds = torch.stack([model(input, sample=True) for _ in range(samples)])  # (K, B, O)
        _checks.size_matches("target", target.shape[1], preds.shape[-1], "output size")
        sq = ((preds - target) ** 2).mean(0)
    if noise_std is None:
        std = sq.mean().sqrt()  # eq. (noise-opt)
    else:
        std = torch.tensor(_positive_float("noise_std", noise_std), dtype=sq.dtype, device=sq.device)
    n = sq.numel()  # eq. (misfit), averaged over the weights: only E[r^2] enters
    data = (sq.sum() / (2 * std**2) + n * torch.log(std * math.sqrt(2 * math.pi))) / LN2 - n * math.log2(tolerance)
    return DescriptionLength(weights=model.weight_bits().sum(), data=data, noise_std=std.detach())


def no_network_bits(target: torch.Tensor, *, tolerance: float) -> torch.Tensor:
    """Bits to send ``target (B, O)`` with no network: a Gaussian around their mean, of the best width.

    ``(N / 2) log2(2 pi e var) - N log2(tolerance)`` with ``var`` the mean
    squared deviation from the mean (the cost of sending the mean and the
    width themselves is neglected, as for the nets' priors).
    """
    _checks.tensor("target", target, ndim=2, kind="float")
    tolerance = _positive_float("tolerance", tolerance)
    mean = target.mean(0, keepdim=True)
    std = (target - mean).pow(2).mean().sqrt()
    return misfit_bits(mean.expand_as(target), target, std, tolerance).sum()


PAPER_SCHEDULE = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""The paper's warm-up: the factor on the weights' bits, raised stage by stage (Sec. 9)."""


class _Stop(Exception):
    """Raised inside an L-BFGS closure once ``stop_after`` losses have been logged."""


def _lbfgs(params: list[nn.Parameter], loss_fn: Callable[[], torch.Tensor], iterations: int,
           history: History, stop_after: int | None) -> bool:
    """Run L-BFGS (strong-Wolfe line search) for ``iterations``; log every evaluation; True when stopped."""
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        if stop_after is not None and len(history.losses) >= stop_after:
            raise _Stop
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        history.losses.append(loss.item())
        return loss

    try:
        opt.step(closure)
    except _Stop:
        return True
    return stop_after is not None and len(history.losses) >= stop_after


def _check_xy(input: object, target: object) -> None:
    """``input (B, D)`` and ``target (B, 1)``, floating point, with the same ``B``."""
    _checks.tensor("input", input, ndim=2, kind="float")
    _checks.tensor("target", target, ndim=2, kind="float")
    _checks.size_matches("target", target.shape[0], input.shape[0], "batch size")


def fit_description_length(
    model: NoisyMLP,
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    tolerance: float,
    iterations_per_stage: int = 100,
    final_iterations: int = 500,
    schedule: Sequence[float] = PAPER_SCHEDULE,
    train_means: bool = True,
    stop_after: int | None = None,
) -> History:
    """Minimise the exact description length of ``target`` given ``input``; return the :class:`History`.

    The loss is ``(factor * weight bits + data bits) / N`` per training case,
    with the factor on the weights' bits raised through ``schedule`` (the
    paper's warm-up), ``iterations_per_stage`` L-BFGS iterations per value,
    then ``final_iterations`` more at 1 (the paper uses conjugate gradients,
    100 updates per stage, then runs to convergence). ``train_means=False``
    keeps every weight's mean fixed and learns only the standard deviations
    and the prior: the cheapest way to send a net that was trained some
    other way. ``History.losses`` holds the loss at every evaluation;
    ``stop_after`` stops after that many evaluations.
    """
    _check_xy(input, target)
    if not isinstance(model, NoisyMLP):
        raise TypeError(f"model must be a NoisyMLP, got {type(model).__name__}")
    _checks.positive_int("iterations_per_stage", iterations_per_stage)
    _checks.positive_int("final_iterations", final_iterations)
    if stop_after is not None:
        _checks.positive_int("stop_after", stop_after)
    stages = [float(f) for f in schedule]
    if not stages or any(not 0.0 < f <= 1.0 for f in stages):
        raise ValueError(f"schedule must hold factors in (0, 1], got {list(schedule)}")
    means = {id(p) for layer in model.layers for p in (layer.weight_mu, layer.bias_mu)}
    params = [p for p in model.parameters() if p.requires_grad and (train_means or id(p) not in means)]
    n, history = target.shape[0], History()
    model.train()
    for factor, iterations in [(f, iterations_per_stage) for f in stages] + [(1.0, final_iterations)]:
        def loss(factor: float = factor) -> torch.Tensor:
            dl = description_length(model, input, target, tolerance=tolerance)
            return (factor * dl.weights + dl.data) / n

        if _lbfgs(params, loss, iterations, history, stop_after):
            history.stopped_at = len(history.losses)
            break
    model.eval()
    return history


def fit_weight_decay(
    model: NoisyMLP,
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    decay: float,
    iterations: int,
    stop_after: int | None = None,
) -> History:
    """Train ``model``'s means as a plain net: squared error plus ``decay`` times the sum of squared weights.

    The loss is ``(sum of squared errors + decay * sum(mu^2)) / N``, with
    ``decay`` the ratio of the noise variance to the prior's variance of the
    weights (the paper's weight-decay coefficient); ``decay = 0`` fits the
    training set as closely as it can. L-BFGS for ``iterations``, like
    :func:`fit_description_length`.
    """
    _check_xy(input, target)
    if not isinstance(model, NoisyMLP):
        raise TypeError(f"model must be a NoisyMLP, got {type(model).__name__}")
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay >= 0.0:
        raise ValueError(f"decay must be a non-negative float, got {decay!r}")
    _checks.positive_int("iterations", iterations)
    params = [p for layer in model.layers for p in (layer.weight_mu, layer.bias_mu)]
    n, history = target.shape[0], History()

    def loss() -> torch.Tensor:
        err = (model(input, sample=False) - target).pow(2).sum()
        return (err + decay * sum(p.pow(2).sum() for p in params)) / n

    model.train()
    if _lbfgs(params, loss, iterations, history, stop_after):
        history.stopped_at = len(history.losses)
    model.eval()
    return history


def select_weight_decay(
    make_net: Callable[[], NoisyMLP],
    input: torch.Tensor,
    target: torch.Tensor,
    decays: Sequence[float],
    *,
    held_out: int,
    iterations: int,
) -> tuple[float, list[float]]:
    """Choose a weight-decay coefficient the paper's way: fit on part of the training set, judge on the rest.

    For each of ``decays`` a new net from ``make_net()`` is fitted by
    :func:`fit_weight_decay` to all but the last ``held_out`` cases and
    scored by :func:`relative_error` on those. Returns the best coefficient
    and every score (the caller then retrains on the whole training set).
    """
    _check_xy(input, target)
    if not callable(make_net):
        raise TypeError(f"make_net must be callable, got {type(make_net).__name__}")
    if not callable(make_net):
        raise TypeError(f"make_net must be callable, got {type(make_net).__name__}")
    _checks.positive_int("held_out", held_out)
    if held_out >= target.shape[0]:
        raise ValueError(f"held_out must leave cases to fit on, got {held_out} of {target.shape[0]}")
    if isinstance(decays, (str, bytes)) or not isinstance(decays, Sequence) or not decays:
        raise TypeError(f"decays must be a non-empty sequence of floats, got {decays!r}")
    fit_x, fit_y, val_x, val_y = input[:-held_out], target[:-held_out], input[-held_out:], target[-held_out:]
    scores = []
    for decay in decays:
        net = make_net()
        fit_weight_decay(net, fit_x, fit_y, decay=decay, iterations=iterations)
        with torch.no_grad():
            scores.append(relative_error(net(val_x, sample=False), val_y))
    best = min(range(len(scores)), key=scores.__getitem__)
    return float(decays[best]), scores


def relative_error(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """The paper's relative error: squared error over that of always guessing the targets' mean (eq. 27)."""
    _checks.tensor("prediction", prediction, kind="float")
    _checks.tensor("target", target, kind="float")
    if prediction.shape != target.shape:
        raise ValueError(f"target must have the shape of prediction {tuple(prediction.shape)}, "
                         f"got {tuple(target.shape)}")
    return ((target - prediction).pow(2).sum() / (target - target.mean()).pow(2).sum()).item()


@dataclass
class Regression:
    """A regression data set: ``x (B, D)`` and ``y (B, 1)``."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)


@_checks.typed
def few_example_task(
    n_train: int,
    n_test: int,
    n_inputs: int,
    *,
    noise: float,
    generator: torch.Generator,
    noisy_test: bool = False,
) -> tuple[Regression, Regression]:
    """A regression task with many inputs and few training cases.

    Inputs are standard normal, ``(B, n_inputs)``; the target depends on the
    first three only, ``y = x1 - x2 + 2 tanh(x3) + noise * eps``. Returns
    ``(train, test)``; the test targets are noise-free unless ``noisy_test``
    (then they carry the same noise, like measured test cases).
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

    if not isinstance(noisy_test, bool):
        raise TypeError(f"noisy_test must be a bool, got {type(noisy_test).__name__}")
    return make(n_train, True), make(n_test, noisy_test)


def standardize(train: Regression, *others: Regression) -> tuple[Regression, ...]:
    """Shift and scale inputs and targets to zero mean and unit variance, with the training set's statistics.

    Returns ``(train, *others)`` transformed the same way, as the paper
    normalises its data before training (Sec. 9).
    """
    for name, d in [("train", train), *[("others", o) for o in others]]:
        if not isinstance(d, Regression):
            raise TypeError(f"{name} must be a Regression, got {type(d).__name__}")
    mx, sx = train.x.mean(0), train.x.std(0).clamp_min(1e-12)
    my, sy = train.y.mean(0), train.y.std(0).clamp_min(1e-12)
    return tuple(Regression((d.x - mx) / sx, (d.y - my) / sy) for d in (train, *others))


# --- chapter 23: choosing a polynomial's degree by code length ----------------------

CRITERIA = ("ml", "aic", "bic", "two_part", "mixture")


def legendre_design(x: torch.Tensor, degree: int) -> torch.Tensor:
    """Legendre polynomials ``P_0 .. P_degree`` at ``x (..., B)`` in ``[-1, 1]``: the design ``(..., B, degree + 1)``.

    An orthogonal basis on ``[-1, 1]`` keeps least squares well conditioned
    at every degree; the model "degree k" is the span of the first ``k + 1``
    columns, whatever the basis.
    """
    _checks.tensor("x", x, kind="float")
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be a non-negative int, got {degree!r}")
    cols = [torch.ones_like(x), x]
    for k in range(1, degree):  # Bonnet's recursion: (k+1) P_{k+1} = (2k+1) x P_k - k P_{k-1}
        cols.append(((2 * k + 1) * x * cols[k] - k * cols[k - 1]) / (k + 1))
    return torch.stack(cols[: degree + 1], dim=-1)


def data_bits(rss: torch.Tensor | float, n: int, sigma: float) -> torch.Tensor | float:
    """``-log2`` of the Gaussian density of ``n`` residuals with sum of squares ``rss`` and known ``sigma``.

    Code lengths of continuous data are densities: every model pays the same
    ``n log2(1/eps)`` for writing ``y`` to a precision ``eps``, so it is left out.
    """
    return (n / 2 * math.log(2 * math.pi * sigma**2) + rss / (2 * sigma**2)) / LN2


def nested_fits(x: torch.Tensor, y: torch.Tensor, max_degree: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Least-squares fits of every degree ``0..K`` to data sets ``x, y (..., B)``, from one QR factorisation.

    Returns the residual sums of squares ``(..., K + 1)`` and, per degree
    ``k``, the Legendre coefficients ``(..., k + 1)``. The first ``k + 1``
    columns of ``Q`` span the degree-``k`` model, so
    ``RSS_k = |y|^2 - |Q_k^T y|^2`` and ``theta_k = R_k^{-1} Q_k^T y``.
    """
    _checks.tensor("x", x, kind="float")
    _checks.tensor("y", y, kind="float")
    if x.dim() == 0:
        raise ValueError("x must have a points dimension (..., B)")
    _checks.size_matches("y", tuple(y.shape), tuple(x.shape), "shape (that of x)")
    if isinstance(max_degree, bool) or not isinstance(max_degree, int) or max_degree < 0:
        raise ValueError(f"max_degree must be a non-negative int, got {max_degree!r}")
    if max_degree + 1 > x.shape[-1]:
        raise ValueError(f"max_degree must be below the number of points {x.shape[-1]}, got {max_degree}")
    q, r = torch.linalg.qr(legendre_design(x.double(), max_degree))
    proj = (q.transpose(-1, -2) @ y.double()[..., None])[..., 0]  # (..., K+1)
    rss = (y.double() ** 2).sum(-1, keepdim=True) - (proj**2).cumsum(-1)
    thetas = [torch.linalg.solve_triangular(r[..., : k + 1, : k + 1], proj[..., : k + 1, None], upper=True)[..., 0]
              for k in range(max_degree + 1)]
    return rss.clamp_min(0.0), thetas


def criterion_bits(x: torch.Tensor, y: torch.Tensor, max_degree: int, sigma: float, criterion: str) -> torch.Tensor:
    """The score each degree ``0..K`` gets under ``criterion``, in bits, ``(..., K + 1)``; smaller is better.

    With ``n`` points and ``k + 1`` coefficients:

    * ``"ml"``: the data's code length at the least-squares fit, no penalty;
    * ``"aic"``: plus ``(k + 1) / ln 2`` (Akaike's one nat per parameter);
    * ``"bic"``: plus ``(k + 1)/2 log2 n``;
    * ``"two_part"``: the crude two-part code, eq. (mdl-two-part): each
      coefficient written on a grid of step ``delta = sigma / sqrt(n)`` over
      ``[-8, 8]`` (``log2(16 / delta)`` bits), then the data coded with the
      least-squares coefficients rounded to the grid;
    * ``"mixture"``: the refined code ``-log2 p(y)`` of the Bayesian mixture
      with Zellner's prior ``theta ~ N(0, n sigma^2 (Phi^T Phi)^-1)``, eq.
      (mdl-mixture): ``data_bits(|y|^2 - n/(n+1) |P y|^2) + (k + 1)/2 log2(n + 1)``.
    """
    _checks.one_of("criterion", criterion, CRITERIA)
    _positive_float("sigma", sigma)
    _checks.tensor("x", x, kind="float")
    rss, thetas = nested_fits(x, y, max_degree)
    n = x.shape[-1]
    params = torch.arange(1, max_degree + 2, dtype=torch.float64)
    if criterion == "two_part":
        delta = sigma / math.sqrt(n)
        phi = legendre_design(x.double(), max_degree)
        fits = []
        for k, theta in enumerate(thetas):
            rounded = (theta / delta).round() * delta
            resid = y.double() - (phi[..., : k + 1] @ rounded[..., None])[..., 0]
            fits.append((resid**2).sum(-1))
        return data_bits(torch.stack(fits, -1), n, sigma) + params * math.log2(16.0 / delta)
    if criterion == "mixture":
        total = (y.double() ** 2).sum(-1, keepdim=True)
        return data_bits(total - n / (n + 1) * (total - rss), n, sigma) + params / 2 * math.log2(n + 1)
    penalty = {"ml": 0.0 * params, "aic": params / LN2, "bic": params / 2 * math.log2(n)}[criterion]
    return data_bits(rss, n, sigma) + penalty


def select_degree(x: torch.Tensor, y: torch.Tensor, max_degree: int, sigma: float, criterion: str) -> torch.Tensor:
    """The degree in ``0..max_degree`` with the smallest :func:`criterion_bits` for each data set, ``(...)`` long."""
    return criterion_bits(x, y, max_degree, sigma, criterion).argmin(dim=-1)


def polynomial_task(
    count: int, n: int, degree: int, sigma: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` data sets of ``n`` points: ``x ~ U[-1, 1]``, ``y = sum_j c_j P_j(x) + sigma eps``.

    Returns ``x, y (count, n)`` and the coefficients ``c (count, degree + 1)``,
    float64. The coefficients are standard normal, the top one included: some
    data sets have a top coefficient too small to detect, as real data do.
    """
    _checks.positive_int("count", count)
    _checks.positive_int("n", n)
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be a non-negative int, got {degree!r}")
    _positive_float("sigma", sigma)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    x = torch.rand(count, n, generator=generator, dtype=torch.float64) * 2 - 1
    c = torch.randn(count, degree + 1, generator=generator, dtype=torch.float64)
    noise = sigma * torch.randn(count, n, generator=generator, dtype=torch.float64)
    y = (legendre_design(x, degree) @ c[..., None])[..., 0] + noise
    return x, y, c
