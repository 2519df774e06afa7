"""papers30.generative against torch.distributions, hand-worked bits, autograd causality and brute force."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from papers30.generative import (
    ELBO,
    VAE,
    CausalConvLayer,
    PixelCNN,
    bernoulli_bits,
    binarize,
    coarse_error,
    context_size,
    elbo_bits,
    pixel_error,
    receptive_field,
    reparameterize,
    train_vae,
    window_mask,
)

DT = torch.float64


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (2, 16)])
def test_elbo_kl_matches_torch_kl_divergence(shape, gen):
    mu = torch.randn(shape, dtype=DT, generator=gen)
    log_var = torch.randn(shape, dtype=DT, generator=gen)
    logits = torch.zeros(shape[0], 1, 2, 2, dtype=DT)
    out = elbo_bits(logits, torch.ones_like(logits), mu, log_var)
    want = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(torch.zeros_like(mu), 1.0)).sum(1)
    torch.testing.assert_close(out.kl, want / math.log(2), rtol=1e-12, atol=1e-12)


def test_elbo_hand_worked_example():
    """One image of 4 pixels at p = 1/2 costs 4 bits; mu = 1, var = 1 costs 1/2 nat = 0.7213 bits."""
    logits = torch.zeros(1, 1, 2, 2, dtype=DT)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=DT)
    out = elbo_bits(logits, target, torch.tensor([[1.0]], dtype=DT), torch.tensor([[0.0]], dtype=DT))
    assert isinstance(out, ELBO)
    assert out.reconstruction.item() == pytest.approx(4.0, abs=1e-12)
    assert out.kl.item() == pytest.approx(0.5 / math.log(2), abs=1e-12)
    assert out.total.item() == pytest.approx(4.0 + 0.5 / math.log(2), abs=1e-12)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 1, 4, 5), (2, 2, 3, 3)])
def test_bernoulli_bits_matches_torch_bernoulli(shape, gen):
    logits = torch.randn(shape, dtype=DT, generator=gen)
    target = (torch.rand(shape, dtype=DT, generator=gen) < 0.5).to(DT)
    want = -Bernoulli(logits=logits).log_prob(target).flatten(1).sum(1) / math.log(2)
    torch.testing.assert_close(bernoulli_bits(logits, target), want)


def test_reparameterize_moments_and_gradients(gen):
    mu = torch.full((20000, 1), 1.5, dtype=DT, requires_grad=True)
    log_var = torch.full((20000, 1), math.log(0.25), dtype=DT, requires_grad=True)
    z = reparameterize(mu, log_var, gen)
    assert abs(z.mean().item() - 1.5) < 0.02 and abs(z.std().item() - 0.5) < 0.02
    z.sum().backward()  # dz/dmu = 1 for every sample
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    eps = (z - 1.5) / 0.5  # dz/dlog_var = 0.5 * std * eps
    torch.testing.assert_close(log_var.grad, 0.25 * eps.detach())


def test_binarize_matches_brute_force_block_means(gen):
    x = torch.rand(2, 1, 6, 4, generator=gen)
    got = binarize(x, 2, 0.5)
    assert got.shape == (2, 1, 3, 2)
    for b in range(2):
        for i in range(3):
            for j in range(2):
                block = x[b, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean()
                assert got[b, 0, i, j].item() == float(block > 0.5)


@pytest.mark.parametrize("k,layers", [(3, 1), (3, 2), (5, 1), (5, 3), (7, 2)])
def test_context_size_is_the_window_mask_away_from_the_borders(k, layers):
    """Reference: count the closed-form window at a pixel far from every border."""
    reach = layers * (k // 2)
    size = 4 * reach + 3
    mask = window_mask(size, k, layers, (2 * reach + 1, 2 * reach + 1))
    assert int(mask.sum()) == context_size(k, layers) == (reach + 1) * (2 * reach + 1) + reach


@pytest.mark.parametrize("k,layers", [(3, 1), (3, 2), (5, 2), (7, 3)])
@pytest.mark.parametrize("p", [(0, 0), (0, 4), (3, 0), (5, 5), (8, 8), (4, 7)])
def test_pixelcnn_receptive_field_by_autograd_is_the_window(k, layers, p):
    """Reference: autograd through the stack equals the brute-force window, which holds only earlier pixels."""
    torch.manual_seed(0)
    net = PixelCNN(8, k, layers).double()
    seen = receptive_field(net, 9, p, tries=4, generator=torch.Generator().manual_seed(1))
    want = window_mask(9, k, layers, p)
    assert torch.equal(seen, want)
    earlier = torch.tensor([[(i, j) < p for j in range(9)] for i in range(9)])
    assert not (want & ~earlier).any()


def test_enough_layers_see_every_earlier_pixel():
    torch.manual_seed(0)
    net = PixelCNN(8, 7, 5).double()
    for p in [(13, 13), (7, 0), (1, 12)]:
        seen = receptive_field(net, 14, p, tries=4)
        earlier = torch.tensor([[(i, j) < p for j in range(14)] for i in range(14)])
        assert torch.equal(seen, earlier)


def test_causal_conv_layer_first_excludes_the_pixel_itself_later_layers_include_it():
    """Reference: gradients of h' with respect to h at the same pixel, by autograd."""
    torch.manual_seed(0)
    first, later = CausalConvLayer(1, 4, 3, first=True).double(), CausalConvLayer(4, 4, 3, first=False).double()
    with torch.no_grad():  # positive weights and inputs: no ReLU is switched off
        for p in [*first.parameters(), *later.parameters()]:
            p.copy_(torch.rand_like(p) + 0.1)
    x = torch.rand(1, 1, 5, 5, dtype=DT, requires_grad=True)
    first(x, x)[1][0, :, 2, 2].sum().backward()
    assert x.grad[0, 0, 2, 2].item() == 0.0 and x.grad[0, 0, 2, 1].item() != 0.0
    h = torch.rand(1, 4, 5, 5, dtype=DT, requires_grad=True)
    later(torch.rand(1, 4, 5, 5, dtype=DT), h)[1][0, :, 2, 2].sum().backward()
    assert h.grad[0, :, 2, 2].abs().sum().item() > 0.0  # its own (already causal) features
    assert h.grad[0, :, 2, 3:].abs().sum().item() == 0.0 and h.grad[0, :, 3:].abs().sum().item() == 0.0


def test_pixel_and_coarse_error_match_brute_force(gen):
    a = (torch.rand(3, 1, 4, 6, generator=gen) < 0.5).float()
    b = (torch.rand(3, 1, 4, 6, generator=gen) < 0.5).float()
    for n in range(3):
        assert pixel_error(a, b)[n].item() == pytest.approx((a[n] != b[n]).float().mean().item())
        blocks = [abs(a[n, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean() - b[n, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean())
                  for i in range(2) for j in range(3)]
        assert coarse_error(a, b, 2)[n].item() == pytest.approx(sum(blocks).item() / 6)
    torch.testing.assert_close(coarse_error(a, b, 1), pixel_error(a, b))
    assert (coarse_error(a, b, 2) <= pixel_error(a, b) + 1e-7).all()  # averaging never adds error


def test_vae_decoder_is_causal_in_x_by_autograd():
    torch.manual_seed(0)
    model = VAE(6, latent=3, hidden=8, channels=4, kernel_size=5, layers=2).double()
    x = torch.rand(1, 1, 6, 6, dtype=DT, requires_grad=True)
    z = torch.randn(1, 3, dtype=DT)
    p = (3, 2)
    model.decode(z, x)[0, 0, p[0], p[1]].backward()
    later = torch.tensor([[(i, j) >= p for j in range(6)] for i in range(6)])
    assert x.grad[0, 0][later].abs().max().item() == 0.0
    assert x.grad[0, 0][~later].abs().max().item() > 0.0


@pytest.mark.parametrize("k", [None, 3])
@pytest.mark.parametrize("batch", [1, 5])
def test_vae_shapes_and_elbo_is_nonnegative(k, batch):
    torch.manual_seed(0)
    model = VAE(8, latent=4, hidden=16, channels=4, kernel_size=k)
    x = (torch.rand(batch, 1, 8, 8) < 0.3).float()
    mu, log_var = model.encode(x)
    assert mu.shape == log_var.shape == (batch, 4)
    out = model(x)
    assert out.reconstruction.shape == out.kl.shape == (batch,)
    assert (out.kl >= 0).all() and (out.reconstruction >= 0).all()
    s = model.sample(mu, torch.Generator().manual_seed(0))
    assert s.shape == x.shape and set(s.unique().tolist()) <= {0.0, 1.0}


def test_train_vae_lowers_the_bound_and_equal_generators_give_equal_runs():
    """Reference: the same run twice from the same seeds (same batches, same code samples)."""
    x = (torch.rand(40, 1, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = VAE(6, latent=2, hidden=8, channels=4, kernel_size=3)
        history = train_vae(model, x, steps=30, batch=8, generator=torch.Generator().manual_seed(1))
        runs.append(history.losses)
    assert runs[0] == runs[1]
    assert sum(runs[0][-5:]) < sum(runs[0][:5])
    short = train_vae(model, x, steps=30, batch=8, generator=torch.Generator().manual_seed(1), stop_after=4)
    assert len(short.losses) == 4


def test_bad_inputs_name_the_argument():
    with pytest.raises(TypeError, match="images"):
        binarize([[0.0]])
    with pytest.raises(ValueError, match="factor"):
        binarize(torch.rand(1, 1, 2, 2), 0)
    with pytest.raises(ValueError, match="log_var"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="generator"):
        reparameterize(torch.zeros(2), torch.zeros(2), generator=1)
    with pytest.raises(ValueError, match="target"):
        bernoulli_bits(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="kernel_size"):
        context_size(4, 1)
    with pytest.raises(ValueError, match="layers"):
        PixelCNN(4, 3, 0)
    with pytest.raises(TypeError, match="first"):
        CausalConvLayer(1, 2, 3, first=1)
    with pytest.raises(ValueError, match="position"):
        window_mask(5, 3, 1, (5, 0))
    with pytest.raises(TypeError, match="fn"):
        receptive_field(3, 5, (0, 0))
    with pytest.raises(ValueError, match="target"):
        pixel_error(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match="factor"):
        coarse_error(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 3)
    with pytest.raises(TypeError, match="generator"):
        train_vae(VAE(4, latent=2, hidden=4, channels=2), torch.zeros(3, 1, 4, 4), steps=1, batch=2, generator=1)
    with pytest.raises(TypeError, match="model"):
        train_vae(torch.nn.Linear(2, 2), torch.zeros(3, 1, 4, 4), steps=1, batch=2, generator=torch.Generator())
    with pytest.raises(TypeError, match="image_size"):
        VAE(8.0)
    model = VAE(4, latent=2, hidden=4, channels=2, kernel_size=3)
    with pytest.raises(ValueError, match="x"):
        model.encode(torch.zeros(1, 1, 5, 5))
    with pytest.raises(ValueError, match="x is required"):
        model.decode(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="z"):
        model.decode(torch.zeros(1, 3), torch.zeros(1, 1, 4, 4))
