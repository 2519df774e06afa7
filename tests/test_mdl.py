"""papers30.mdl against torch.distributions, closed forms worked by hand, Monte Carlo and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Categorical, MixtureSameFamily, Normal, kl_divergence

from papers30.mdl import (
    PAPER_SCHEDULE,
    DescriptionLength,
    MixturePrior,
    NoisyLinear,
    NoisyMLP,
    Regression,
    description_length,
    expected_squared_error,
    few_example_task,
    fit_description_length,
    fit_weight_decay,
    gaussian_kl,
    gaussian_tanh_moments,
    misfit_bits,
    mixture_code_cost,
    mixture_kl,
    nats_to_bits,
    no_network_bits,
    relative_error,
    select_weight_decay,
    standardize,
)

DT = torch.float64
SHAPES = [(), (1,), (5,), (3, 4), (2, 1, 3), (0,)]


def positive(*shape, g):
    return torch.rand(tuple(shape), dtype=DT, generator=g) * 2 + 0.05


# ------------------------------------------------------------------ KL and bits


@pytest.mark.parametrize("shape", SHAPES)
def test_gaussian_kl_matches_torch_kl_divergence(shape, gen):
    mu_q, mu_p = torch.randn((2, *shape), dtype=DT, generator=gen)
    std_q, std_p = positive(*shape, g=gen), positive(*shape, g=gen)
    want = kl_divergence(Normal(mu_q, std_q), Normal(mu_p, std_p))
    got = gaussian_kl(mu_q, std_q, mu_p, std_p)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_broadcasts_a_scalar_prior_like_torch(gen):
    mu, std = torch.randn(7, dtype=DT, generator=gen), positive(7, g=gen)
    want = kl_divergence(Normal(mu, std), Normal(torch.zeros(7, dtype=DT), torch.full((7,), 0.7, dtype=DT)))
    torch.testing.assert_close(gaussian_kl(mu, std, 0.0, 0.7), want, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_hand_worked_example_in_bits():
    """mu 0.6, std 0.3 against N(0, 1): ln(1/0.3) + (0.09 + 0.36)/2 - 1/2 = 0.928973 nats = 1.340224 bits."""
    kl = gaussian_kl(torch.tensor([0.6], dtype=DT), 0.3, 0.0, 1.0)
    assert kl.item() == pytest.approx(0.928973, abs=1e-6)
    assert nats_to_bits(kl).item() == pytest.approx(1.340224, abs=1e-6)


@given(mu=st.floats(-5, 5), log_std=st.floats(-4, 2))
def test_gaussian_kl_is_zero_against_itself_and_positive_otherwise(mu, log_std):
    m, s = torch.tensor([mu], dtype=DT), math.exp(log_std)
    assert gaussian_kl(m, s, mu, s).item() == pytest.approx(0.0, abs=1e-12)
    assert gaussian_kl(m, s, mu + 0.5, s).item() > 0.0
    assert gaussian_kl(m, s, mu, 2 * s).item() > 0.0


def test_nats_to_bits_closed_form():
    assert nats_to_bits(math.log(2.0)) == pytest.approx(1.0)
    torch.testing.assert_close(nats_to_bits(torch.tensor([0.0, math.log(8.0)])), torch.tensor([0.0, 3.0]))


@pytest.mark.parametrize("shape", [(), (1,), (4, 3), (0, 2)])
def test_misfit_bits_matches_torch_normal_log_prob(shape, gen):
    pred, target = torch.randn((2, *shape), dtype=DT, generator=gen)
    std = positive(*shape, g=gen)
    want = -Normal(pred, std).log_prob(target) / math.log(2) - math.log2(0.01)
    torch.testing.assert_close(misfit_bits(pred, target, std, 0.01), want, rtol=1e-12, atol=1e-12)


def test_misfit_bits_hand_worked_examples():
    zero = torch.zeros(1, dtype=DT)
    # density 1/(std sqrt(2 pi)) = 1 at the mean when std = 1/sqrt(2 pi): a bin of width 1 costs 0 bits
    assert misfit_bits(zero, zero, 1 / math.sqrt(2 * math.pi), 1.0).item() == pytest.approx(0.0, abs=1e-12)
    # std 1, tolerance 1, residual 0: log2(sqrt(2 pi)) = 1.325748 bits; halving the tolerance adds 1 bit
    assert misfit_bits(zero, zero, 1.0, 1.0).item() == pytest.approx(1.325748, abs=1e-6)
    assert misfit_bits(zero, zero, 1.0, 0.5).item() == pytest.approx(2.325748, abs=1e-6)
    # residual 2 at std 1 adds 2^2 / 2 nats = 2 / ln 2 = 2.885390 bits
    assert misfit_bits(zero, zero + 2, 1.0, 1.0).item() == pytest.approx(1.325748 + 2.885390, abs=1e-6)


@pytest.mark.parametrize("mu,std", [(0.0, 0.01), (0.5, 0.3), (2.0, 0.1), (-1.0, 1.0)])
def test_mixture_kl_matches_monte_carlo_with_torch_mixture(mu, std):
    logits = torch.tensor([0.3, -0.2], dtype=DT)
    stds = torch.tensor([0.05, 1.0], dtype=DT)
    prior = MixtureSameFamily(Categorical(logits=logits), Normal(torch.zeros(2, dtype=DT), stds))
    q = Normal(torch.tensor(mu, dtype=DT), torch.tensor(std, dtype=DT))
    torch.manual_seed(0)
    w = q.sample((200_000,))
    ratio = q.log_prob(w) - prior.log_prob(w)
    mc, err = ratio.mean().item(), ratio.std().item() / math.sqrt(w.numel())
    got = mixture_kl(torch.tensor([mu], dtype=DT), torch.tensor([std], dtype=DT), logits, stds).item()
    assert abs(got - mc) < 5 * err + 2e-3


@pytest.mark.parametrize("shape", [(1,), (6,), (2, 3)])
def test_mixture_kl_with_one_component_is_gaussian_kl(shape, gen):
    mu, std = torch.randn(shape, dtype=DT, generator=gen), positive(*shape, g=gen)
    got = mixture_kl(mu, std, torch.zeros(1, dtype=DT), torch.tensor([1.3], dtype=DT))
    torch.testing.assert_close(got, gaussian_kl(mu, std, 0.0, 1.3), rtol=1e-6, atol=1e-6)


def test_gaussian_and_mixture_kl_gradients_match_numerical(gen):
    mu, std = torch.randn(4, dtype=DT, generator=gen), positive(4, g=gen)
    stds, logits = torch.tensor([0.2, 1.5], dtype=DT), torch.tensor([0.1, -0.4], dtype=DT)
    for t in (mu, std, stds, logits):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m, s: gaussian_kl(m, s, 0.3, 1.1), (mu, std))
    assert torch.autograd.gradcheck(lambda m, s, lg, ps: mixture_kl(m, s, lg, ps), (mu, std, logits, stds))
    assert torch.autograd.gradcheck(lambda p, t: misfit_bits(p, t, 0.7, 0.01), (mu, std))


@pytest.mark.parametrize("mu,std", [(0.0, 0.01), (0.5, 0.3), (2.0, 0.1), (-1.0, 1.0)])
def test_mixture_code_cost_is_the_free_energy_of_the_component_kls(mu, std):
    """Reference: -log sum_c pi_c exp(-G_c) with each G_c from torch's kl_divergence, and it bounds the KL."""
    logits = torch.tensor([0.3, -0.2, 0.5], dtype=DT)
    stds = torch.tensor([0.05, 1.0, 0.3], dtype=DT)
    means = torch.tensor([0.0, 0.4, -1.0], dtype=DT)
    m, s = torch.tensor([mu], dtype=DT), torch.tensor([std], dtype=DT)
    g = torch.stack([kl_divergence(Normal(m, s), Normal(means[c], stds[c])) for c in range(3)], -1)
    pi = torch.softmax(logits, 0)
    want = -torch.log((pi * torch.exp(-g)).sum(-1))
    got = mixture_code_cost(m, s, logits, stds, means)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert got.item() >= mixture_kl(m, s, logits, stds, means).item() - 1e-9


def test_mixture_code_cost_with_one_component_is_gaussian_kl(gen):
    mu, std = torch.randn(5, dtype=DT, generator=gen), positive(5, g=gen)
    got = mixture_code_cost(mu, std, torch.zeros(1, dtype=DT), torch.tensor([0.7], dtype=DT), torch.tensor([0.2], dtype=DT))
    torch.testing.assert_close(got, gaussian_kl(mu, std, 0.2, 0.7))


def test_mixture_kl_with_means_matches_monte_carlo():
    logits, stds, means = (torch.tensor(v, dtype=DT) for v in ([0.0, 0.5], [0.1, 0.6], [-0.5, 1.0]))
    prior = MixtureSameFamily(Categorical(logits=logits), Normal(means, stds))
    q = Normal(torch.tensor(0.3, dtype=DT), torch.tensor(0.2, dtype=DT))
    torch.manual_seed(0)
    w = q.sample((200_000,))
    ratio = q.log_prob(w) - prior.log_prob(w)
    got = mixture_kl(torch.tensor([0.3], dtype=DT), torch.tensor([0.2], dtype=DT), logits, stds, means).item()
    assert abs(got - ratio.mean().item()) < 5 * ratio.std().item() / math.sqrt(w.numel()) + 2e-3


def test_mixture_prior_starts_where_asked_and_the_paper_prior_matches_the_paper():
    prior = MixturePrior()
    torch.testing.assert_close(prior.proportions(), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(prior.stds(), torch.tensor([0.05, 1.0]))
    assert not prior.means.requires_grad
    paper = MixturePrior.paper()  # Sec. 9: 5 means evenly spaced in [-0.24, 0.24], 2 std apart
    torch.testing.assert_close(paper.means.detach(), torch.tensor([-0.24, -0.12, 0.0, 0.12, 0.24]))
    torch.testing.assert_close(paper.stds(), torch.full((5,), 0.06))
    assert paper.means.requires_grad
    mu, std = torch.tensor([0.1, -0.3]), torch.tensor([0.05, 0.2])
    torch.testing.assert_close(prior.code_cost(mu, std), mixture_code_cost(mu, std, prior.logits, prior.stds()))
    torch.testing.assert_close(prior.kl(mu, std), mixture_kl(mu, std, prior.logits, prior.stds()))


# ------------------------------------------------------------------ noisy layers


@pytest.mark.parametrize("B,D,O", [(1, 1, 1), (3, 5, 2), (4, 1, 6)])
def test_noisy_linear_means_match_torch_linear(B, D, O, gen):
    layer = NoisyLinear(D, O).double()
    x = torch.randn(B, D, dtype=DT, generator=gen)
    want = F.linear(x, layer.weight_mu, layer.bias_mu)
    torch.testing.assert_close(layer(x, sample=False), want)
    layer.eval()
    torch.testing.assert_close(layer(x), want)


def test_noisy_linear_samples_have_the_closed_form_mean_and_variance(gen):
    """Output j: mean x mu_j + b_j, variance sum_i x_i^2 std_ji^2 + std_bj^2 (independent weights)."""
    layer = NoisyLinear(3, 2).double()
    with torch.no_grad():
        layer.weight_log_std.copy_(torch.log(positive(2, 3, g=gen) * 0.5))
        layer.bias_log_std.fill_(math.log(0.2))
    x = torch.randn(1, 3, dtype=DT, generator=gen)
    torch.manual_seed(0)
    out = torch.cat([layer(x, sample=True) for _ in range(20_000)])  # (K, O)
    mean = F.linear(x, layer.weight_mu, layer.bias_mu)[0]
    var = (x**2) @ layer.weight_log_std.exp().T ** 2 + 0.2**2
    torch.testing.assert_close(out.mean(0), mean.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(out.var(0), var[0].detach(), atol=0.0, rtol=0.05)


def test_noisy_linear_moments_match_monte_carlo(gen):
    """Reference: the sample mean and variance of the outputs over weight draws and random inputs."""
    layer = NoisyLinear(3, 2).double()
    with torch.no_grad():
        layer.weight_log_std.copy_(torch.log(positive(2, 3, g=gen) * 0.3))
    mean, var = torch.randn(1, 3, dtype=DT, generator=gen), positive(1, 3, g=gen) * 0.5
    torch.manual_seed(0)
    x = mean + var.sqrt() * torch.randn(10_000, 3, dtype=DT)
    out = torch.cat([layer(x[k : k + 1], sample=True) for k in range(10_000)])
    m, v = layer.moments(mean, var)
    torch.testing.assert_close(out.mean(0), m[0].detach(), atol=0.06, rtol=0)
    torch.testing.assert_close(out.var(0), v[0].detach(), atol=0.0, rtol=0.08)


def test_noisy_mlp_weight_bits_sum_gaussian_kl_over_weights_and_biases():
    net = NoisyMLP((2, 1), prior=1.0).double()
    with torch.no_grad():
        net.layers[0].weight_mu.copy_(torch.tensor([[0.6, 0.0]]))
        net.layers[0].bias_mu.fill_(0.0)
        net.layers[0].weight_log_std.copy_(torch.log(torch.tensor([[0.3, 1.0]])))
        net.layers[0].bias_log_std.fill_(0.0)
    # by hand: 1.340224 bits for the first weight, 0 for the two that equal the prior
    torch.testing.assert_close(net.weight_bits(), torch.tensor([1.340224, 0.0, 0.0], dtype=DT), atol=1e-6, rtol=0)


def test_adaptive_gaussian_prior_is_the_best_fixed_width_brute_force(gen):
    net = NoisyMLP((4, 3), prior="gaussian").double()
    with torch.no_grad():
        net.layers[0].weight_log_std.copy_(torch.log(positive(3, 4, g=gen)))
    best = net.weight_cost().sum().item()
    widths = torch.linspace(0.05, 3.0, 400, dtype=DT)
    grid = [gaussian_kl(net.means(), net.stds(), 0.0, w.item()).sum().item() for w in widths]
    assert best <= min(grid) + 1e-12
    assert best == pytest.approx(min(grid), abs=1e-3)


def test_mixture_prior_net_costs_use_the_shared_prior():
    net = NoisyMLP((3, 2, 1)).double()
    want = mixture_code_cost(net.means(), net.stds(), net.prior.logits, net.prior.stds(), net.prior.means)
    torch.testing.assert_close(net.weight_cost(), want)
    net.weight_cost().sum().backward()
    assert net.prior.logits.grad is not None and net.prior.log_stds.grad.abs().sum() > 0


def test_noisy_linear_gradient_matches_numerical_for_a_fixed_noise_draw(gen):
    """Reference: gradcheck (finite differences) of w = mu + exp(log_std) * eps with the layer's eps."""
    layer = NoisyLinear(3, 2).double()
    with torch.no_grad():
        layer.weight_log_std.add_(2.0)
    x = torch.randn(4, 3, dtype=DT, generator=gen)
    torch.manual_seed(7)
    out = layer(x, sample=True)
    out.pow(2).sum().backward()
    torch.manual_seed(7)  # the same draws as the layer: eps for the weights, then for the biases
    eps_w, eps_b = torch.randn_like(layer.weight_mu), torch.randn_like(layer.bias_mu)
    b = (layer.bias_mu + layer.bias_log_std.exp() * eps_b).detach()

    def loss(mu, log_std):
        return F.linear(x, mu + log_std.exp() * eps_w, b).pow(2).sum()

    mu = layer.weight_mu.detach().clone().requires_grad_(True)
    log_std = layer.weight_log_std.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (mu, log_std))
    g_mu, g_log_std = torch.autograd.grad(loss(mu, log_std), (mu, log_std))
    torch.testing.assert_close(layer.weight_mu.grad, g_mu)
    torch.testing.assert_close(layer.weight_log_std.grad, g_log_std)
    assert g_log_std.abs().sum() > 0


@pytest.mark.parametrize("sizes", [(1, 1), (3, 4, 1), (5, 2, 3, 2)])
def test_noisy_mlp_means_match_a_torch_sequential(sizes, gen):
    net = NoisyMLP(sizes).double()
    layers = []
    for i, layer in enumerate(net.layers):
        lin = torch.nn.Linear(layer.in_features, layer.out_features).double()
        lin.load_state_dict({"weight": layer.weight_mu, "bias": layer.bias_mu})
        layers += [lin] + ([torch.nn.Tanh()] if i < len(net.layers) - 1 else [])
    x = torch.randn(6, sizes[0], dtype=DT, generator=gen)
    torch.testing.assert_close(net(x, sample=False), torch.nn.Sequential(*layers)(x))
    assert net.num_weights() == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    assert net.weight_bits().shape == (net.num_weights(),)


def test_set_std_gives_every_weight_the_same_std():
    net = NoisyMLP((3, 4, 1))
    net.set_std(0.25)
    for layer in net.layers:
        torch.testing.assert_close(layer.stds(), torch.full_like(layer.stds(), 0.25))


# ------------------------------------------------------------------ description length


def test_description_length_hand_worked_example():
    """A 1 -> 1 net with (almost) noiseless weights: w = 2, b = 0, prior N(0, 1), tolerance 0.1.

    Targets y = 2x + r with residuals r = (0.1, -0.1): the optimal code width is
    sqrt(mean r^2) = 0.1, so each case costs log2(0.1 sqrt(2 pi) / 0.1) + 1/(2 ln 2)
    = 1.325748 + 0.721348 bits, 4.094192 bits for the two. The weights cost the
    KL of N(2, s^2) and N(0, s^2) from N(0, 1), computed with the closed form.
    """
    net = NoisyMLP((1, 1), prior=1.0).double()
    with torch.no_grad():
        net.layers[0].weight_mu.fill_(2.0)
        net.layers[0].bias_mu.fill_(0.0)
    net.set_std(1e-9)
    x = torch.tensor([[1.0], [-1.0]], dtype=DT)
    y = torch.tensor([[2.1], [-2.1]], dtype=DT)  # residuals +0.1 and -0.1
    dl = description_length(net, x, y, tolerance=0.1, samples=3)
    assert isinstance(dl, DescriptionLength)
    assert dl.noise_std.item() == pytest.approx(0.1, rel=1e-6)
    assert dl.data.item() == pytest.approx(4.094192, abs=1e-5)
    s = 1e-9
    want_w = (math.log(1 / s) + (s**2 + 4) / 2 - 0.5) + (math.log(1 / s) + s**2 / 2 - 0.5)
    assert dl.weights.item() == pytest.approx(want_w / math.log(2), rel=1e-9)
    assert dl.total.item() == pytest.approx(dl.weights.item() + dl.data.item())


def test_description_length_data_part_matches_monte_carlo_misfit(gen):
    """Reference: misfit_bits averaged over weight samples drawn with the same seed."""
    net = NoisyMLP((3, 4, 2), prior="gaussian").double()
    net.set_std(0.2)
    x, y = torch.randn(5, 3, dtype=DT, generator=gen), torch.randn(5, 2, dtype=DT, generator=gen)
    torch.manual_seed(3)
    dl = description_length(net, x, y, tolerance=0.01, samples=4, noise_std=0.5)
    torch.manual_seed(3)
    want = torch.stack([misfit_bits(net(x, sample=True), y, 0.5, 0.01).sum() for _ in range(4)]).mean()
    torch.testing.assert_close(dl.data, want)
    torch.testing.assert_close(dl.weights, net.weight_bits().sum())


def test_optimal_noise_std_minimises_the_data_bits(gen):
    net = NoisyMLP((3, 1), prior="gaussian").double()
    x, y = torch.randn(8, 3, dtype=DT, generator=gen), torch.randn(8, 1, dtype=DT, generator=gen)
    torch.manual_seed(1)
    best = description_length(net, x, y, tolerance=0.01, samples=2)
    for scale in (0.5, 0.9, 1.1, 2.0):
        torch.manual_seed(1)
        other = description_length(net, x, y, tolerance=0.01, samples=2, noise_std=best.noise_std.item() * scale)
        assert other.data.item() > best.data.item()


def test_description_length_backpropagates_to_means_and_stds(gen):
    net = NoisyMLP((3, 4, 1)).double()
    x, y = torch.randn(5, 3, dtype=DT, generator=gen), torch.randn(5, 1, dtype=DT, generator=gen)
    description_length(net, x, y, tolerance=0.01).total.backward()
    for layer in net.layers:
        assert layer.weight_mu.grad.abs().sum() > 0 and layer.weight_log_std.grad.abs().sum() > 0


@pytest.mark.parametrize("mean,var", [(0.0, 0.0), (0.3, 0.5), (-2.0, 4.0), (1.0, 0.01)])
def test_gaussian_tanh_moments_match_monte_carlo(mean, var):
    torch.manual_seed(0)
    a = mean + math.sqrt(var) * torch.randn(400_000, dtype=DT)
    m1, m2 = gaussian_tanh_moments(torch.tensor([mean], dtype=DT), torch.tensor([var], dtype=DT))
    assert m1.item() == pytest.approx(torch.tanh(a).mean().item(), abs=5e-3)
    assert m2.item() == pytest.approx(torch.tanh(a).pow(2).mean().item(), abs=5e-3)


@pytest.mark.parametrize("sizes", [(3, 1), (4, 3, 2)])
def test_expected_squared_error_matches_monte_carlo(sizes, gen):
    """Reference: the squared error averaged over 8,000 weight draws, case by case."""
    net = NoisyMLP(sizes, init_std=0.3).double()
    x = torch.randn(5, sizes[0], dtype=DT, generator=gen)
    y = torch.randn(5, sizes[-1], dtype=DT, generator=gen)
    torch.manual_seed(0)
    mc = torch.stack([(net(x, sample=True) - y).pow(2) for _ in range(8_000)]).mean(0)
    exact = expected_squared_error(net, x, y)
    assert exact.shape == (5, sizes[-1])
    torch.testing.assert_close(exact, mc, rtol=0.05, atol=0.02)


def test_expected_squared_error_with_noise_free_weights_is_the_squared_error(gen):
    net = NoisyMLP((4, 3, 1)).double()
    net.set_std(1e-12)
    x, y = torch.randn(6, 4, dtype=DT, generator=gen), torch.randn(6, 1, dtype=DT, generator=gen)
    torch.testing.assert_close(expected_squared_error(net, x, y), (net(x, sample=False) - y) ** 2)


def test_exact_description_length_matches_monte_carlo(gen):
    net = NoisyMLP((3, 4, 1), init_std=0.2).double()
    x, y = torch.randn(8, 3, dtype=DT, generator=gen), torch.randn(8, 1, dtype=DT, generator=gen)
    exact = description_length(net, x, y, tolerance=0.01)
    torch.manual_seed(0)
    mc = description_length(net, x, y, tolerance=0.01, samples=5_000)
    assert exact.data.item() == pytest.approx(mc.data.item(), abs=0.2)
    torch.testing.assert_close(exact.weights, mc.weights)


def test_no_network_bits_closed_form():
    """(N / 2) log2(2 pi e var) - N log2(t) for targets 1, 3 (mean 2, var 1), tolerance 0.5."""
    y = torch.tensor([[1.0], [3.0]], dtype=DT)
    want = math.log2(2 * math.pi * math.e) + 2 * 1.0
    assert no_network_bits(y, tolerance=0.5).item() == pytest.approx(want, abs=1e-9)


def test_relative_error_and_standardize_by_hand():
    y = torch.tensor([1.0, 2.0, 3.0], dtype=DT)
    assert relative_error(torch.full_like(y, 2.0), y) == pytest.approx(1.0)  # guessing the mean
    assert relative_error(y + 1.0, y) == pytest.approx(3.0 / 2.0)
    tr = Regression(torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [6.0]]))
    te = Regression(torch.tensor([[5.0]]), torch.tensor([[4.0]]))
    s_tr, s_te = standardize(tr, te)
    torch.testing.assert_close(s_tr.x, torch.tensor([[-1.0], [1.0]]) / math.sqrt(2))
    torch.testing.assert_close(s_te.y, torch.tensor([[0.0]]))
    torch.testing.assert_close(s_te.x, torch.tensor([[3.0 / math.sqrt(2)]]))


def test_fit_weight_decay_on_a_linear_net_is_ridge_regression(gen):
    """Reference: the closed-form ridge solution with the bias penalised like the weights."""
    x, y = torch.randn(12, 3, dtype=DT, generator=gen), torch.randn(12, 1, dtype=DT, generator=gen)
    net = NoisyMLP((3, 1)).double()
    fit_weight_decay(net, x, y, decay=0.7, iterations=200)
    a = torch.cat([x, torch.ones(12, 1, dtype=DT)], 1)
    beta = torch.linalg.solve(a.T @ a + 0.7 * torch.eye(4, dtype=DT), a.T @ y)
    torch.testing.assert_close(net.means(), beta[:, 0], atol=1e-6, rtol=0)


def test_select_weight_decay_picks_the_best_held_out_score_by_brute_force(gen):
    """Reference: fit every coefficient by hand on the same split and compare the scores."""
    x = torch.randn(30, 4, dtype=DT, generator=gen)
    y = x[:, :1] + 0.5 * torch.randn(30, 1, dtype=DT, generator=gen)

    def make():
        torch.manual_seed(0)
        return NoisyMLP((4, 1)).double()

    best, scores = select_weight_decay(make, x, y, [0.0, 1.0, 100.0], held_out=10, iterations=100)
    for decay, score in zip([0.0, 1.0, 100.0], scores):
        net = make()
        fit_weight_decay(net, x[:20], y[:20], decay=decay, iterations=100)
        with torch.no_grad():
            assert score == pytest.approx(relative_error(net(x[20:], sample=False), y[20:]), rel=1e-9)
    assert best == [0.0, 1.0, 100.0][scores.index(min(scores))]


def test_fit_description_length_shortens_the_description_and_can_keep_the_means(gen):
    x = torch.randn(20, 3, dtype=DT, generator=gen)
    y = x[:, :1] - 0.5 * x[:, 1:2] + 0.1 * torch.randn(20, 1, dtype=DT, generator=gen)
    torch.manual_seed(0)
    net = NoisyMLP((3, 2, 1), init_std=0.1).double()
    before = description_length(net, x, y, tolerance=0.01).total.item()
    history = fit_description_length(net, x, y, tolerance=0.01, iterations_per_stage=5, final_iterations=50)
    assert description_length(net, x, y, tolerance=0.01).total.item() < before
    assert history.losses[-1] * 20 == pytest.approx(description_length(net, x, y, tolerance=0.01).total.item(),
                                                   rel=1e-6)
    means = net.means().detach().clone()
    fit_description_length(net, x, y, tolerance=0.01, schedule=(1.0,), iterations_per_stage=1,
                           final_iterations=20, train_means=False)
    torch.testing.assert_close(net.means(), means)
    short = fit_description_length(NoisyMLP((3, 2, 1)).double(), x, y, tolerance=0.01, stop_after=7)
    assert len(short.losses) == 7 and short.stopped_at == 7
    assert PAPER_SCHEDULE[0] == 0.05 and PAPER_SCHEDULE[-1] == 1.0 and len(PAPER_SCHEDULE) == 12


def test_few_example_task_labels_match_the_formula(gen):
    train, test = few_example_task(7, 9, 5, noise=0.0, generator=gen)
    assert train.x.shape == (7, 5) and train.y.shape == (7, 1) and test.x.shape == (9, 5)
    for d in (train, test):
        x = d.x.double()
        want = x[:, 0] - x[:, 1] + 2 * torch.tanh(x[:, 2])
        torch.testing.assert_close(d.y[:, 0].double(), want, rtol=1e-6, atol=1e-6)
    noisy, noisy_test = few_example_task(2000, 2000, 5, noise=0.3, generator=gen, noisy_test=True)
    for d in (noisy, noisy_test):
        resid = d.y[:, 0] - (d.x[:, 0] - d.x[:, 1] + 2 * torch.tanh(d.x[:, 2]))
        assert resid.std().item() == pytest.approx(0.3, rel=0.1)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: gaussian_kl([0.0], 1.0, 0.0, 1.0), TypeError, "mu_q"),
        (lambda: gaussian_kl(torch.zeros(2), -1.0, 0.0, 1.0), ValueError, "std_q"),
        (lambda: gaussian_kl(torch.zeros(2), 1.0, 0.0, torch.tensor([0.0, 1.0])), ValueError, "std_p"),
        (lambda: gaussian_kl(torch.zeros(2), 1.0, "0", 1.0), TypeError, "mu_p"),
        (lambda: misfit_bits(torch.zeros(2), torch.zeros(2), 1.0, 0.0), ValueError, "tolerance"),
        (lambda: misfit_bits(torch.zeros(2), [0.0, 1.0], 1.0, 0.1), TypeError, "target"),
        (lambda: mixture_kl(torch.zeros(2), 1.0, torch.zeros(2), torch.ones(3)), ValueError, "stds"),
        (lambda: mixture_kl(torch.zeros(2), 1.0, torch.zeros(2), torch.ones(2), nodes=0), ValueError, "nodes"),
        (lambda: nats_to_bits("3"), TypeError, "nats"),
        (lambda: NoisyLinear(0, 2), ValueError, "in_features"),
        (lambda: NoisyMLP((2, 2), prior="laplace"), ValueError, "prior"),
        (lambda: NoisyMLP((2, 2), prior=-1.0), ValueError, "prior"),
        (lambda: NoisyLinear(2, 2, init_std=0.0), ValueError, "init_std"),
        (lambda: NoisyLinear(2, 3)(torch.zeros(4, 5)), ValueError, "input"),
        (lambda: NoisyMLP((2, 3), prior="mixture").prior_std(), ValueError, "prior_std"),
        (lambda: MixturePrior((0.0, 1.0), (0.1,)), ValueError, "stds"),
        (lambda: MixturePrior("ab", (0.1, 0.2)), TypeError, "means"),
        (lambda: MixturePrior.paper(1), ValueError, "components"),
        (lambda: mixture_code_cost(torch.zeros(2), 1.0, torch.zeros(2), torch.ones(2), torch.zeros(3)),
         ValueError, "means"),
        (lambda: expected_squared_error(NoisyMLP((3, 2, 2, 1)), torch.zeros(2, 3), torch.zeros(2, 1)),
         ValueError, "model"),
        (lambda: expected_squared_error(NoisyMLP((3, 2, 1)), torch.zeros(2, 3), torch.zeros(2, 2)),
         ValueError, "target"),
        (lambda: fit_description_length(NoisyMLP((3, 1)), torch.zeros(2, 3), torch.zeros(2, 1), tolerance=0.1,
                                        schedule=(0.0,)), ValueError, "schedule"),
        (lambda: fit_weight_decay(NoisyMLP((3, 1)), torch.zeros(2, 3), torch.zeros(2, 1), decay=-1.0,
                                  iterations=5), ValueError, "decay"),
        (lambda: relative_error(torch.zeros(3), torch.zeros(2)), ValueError, "target"),
        (lambda: select_weight_decay(lambda: NoisyMLP((3, 1)), torch.zeros(4, 3), torch.zeros(4, 1), [1.0],
                                     held_out=4, iterations=2), ValueError, "held_out"),
        (lambda: select_weight_decay(3, torch.zeros(4, 3), torch.zeros(4, 1), [1.0], held_out=1, iterations=2),
         TypeError, "make_net"),
        (lambda: standardize(torch.zeros(3)), TypeError, "train"),
        (lambda: few_example_task(5, 5, 4, noise=0.1, generator=torch.Generator(), noisy_test=1), TypeError,
         "noisy_test"),
        (lambda: NoisyMLP((3,)), ValueError, "sizes"),
        (lambda: NoisyMLP(3), TypeError, "sizes"),
        (lambda: NoisyMLP((3, 1)).set_std(-1.0), ValueError, "std"),
        (lambda: description_length(torch.nn.Linear(3, 1), torch.zeros(2, 3), torch.zeros(2, 1), tolerance=0.1),
         TypeError, "model"),
        (lambda: description_length(NoisyMLP((3, 1)), torch.zeros(2, 3), torch.zeros(3, 1), tolerance=0.1),
         ValueError, "target"),
        (lambda: description_length(NoisyMLP((3, 1)), torch.zeros(2, 3), torch.zeros(2, 1), tolerance=0.1,
                                    samples=0), ValueError, "samples"),
        (lambda: few_example_task(5, 5, 2, noise=0.1, generator=torch.Generator()), ValueError, "n_inputs"),
        (lambda: few_example_task(5, 5, 4, noise=0.1, generator=0), TypeError, "generator"),
    ],
)
def test_bad_input_names_the_argument(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
