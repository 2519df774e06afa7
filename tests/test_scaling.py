"""Tests of papers30.scaling: hand counts, fits on synthetic data with a known exponent, the schedule, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from papers30.scaling import PowerLaw, fit_power_law, kaplan_params, non_embedding_params, train_lm, warmup_cosine
from papers30.transformer import TransformerLM


def _lm(d: int, layers: int = 2, ff: int | None = None) -> TransformerLM:
    return TransformerLM(73, d_model=d, nhead=max(1, d // 8), num_layers=layers, dim_feedforward=ff or 4 * d,
                         dropout=0.0, norm_first=True, max_len=32)


@pytest.mark.parametrize("d, layers, ff", [(8, 2, 32), (16, 3, 40), (48, 2, 192)])
def test_non_embedding_params_hand_count(d, layers, ff):
    # per layer: q, k, v, out projections 4 (D^2 + D); linear1 D F + F; linear2 F D + D; two norms 4 D
    per_layer = 4 * (d * d + d) + (d * ff + ff) + (ff * d + d) + 4 * d
    assert non_embedding_params(_lm(d, layers, ff)) == layers * per_layer + 2 * d  # + final norm (pre-norm)


def test_non_embedding_params_excludes_embedding_and_bad_input():
    model = _lm(8)
    total = sum(p.numel() for p in model.parameters())
    assert total - non_embedding_params(model) == 73 * 8
    with pytest.raises(TypeError, match="model"):
        non_embedding_params("not a model")


def test_non_embedding_params_post_norm_has_no_final_norm():
    tokens = torch.randint(0, 73, (2, 5))
    post = TransformerLM(73, d_model=8, nhead=1, num_layers=2, dim_feedforward=32, dropout=0.0, max_len=32)
    pre = _lm(8)
    assert post(tokens).shape == pre(tokens).shape == (2, 5, 73)
    assert non_embedding_params(pre) - non_embedding_params(post) == 2 * 8


def test_kaplan_params_is_12_l_d2():
    assert kaplan_params(2, 48, 192) == 12 * 2 * 48**2
    assert kaplan_params(1, 10, 7) == 2 * 10 * (20 + 7)
    with pytest.raises(ValueError, match="d_model"):
        kaplan_params(2, 0, 4)


def test_fit_power_law_exact_and_noisy():
    n = np.geomspace(1e3, 5e4, 6)
    exact = fit_power_law(n, (8.8e13 / n) ** 0.076)
    assert exact.alpha == pytest.approx(0.076, abs=1e-12)
    assert exact.n_c == pytest.approx(8.8e13, rel=1e-8)
    assert exact.irreducible == 0.0
    assert exact(1e5) == pytest.approx((8.8e13 / 1e5) ** 0.076)
    rng = np.random.default_rng(0)
    alphas, ses = [], []
    for _ in range(400):
        fit = fit_power_law(n, (8.8e13 / n) ** 0.076 * np.exp(0.01 * rng.standard_normal(6)))
        alphas.append(fit.alpha)
        ses.append(fit.alpha_se)
    # unbiased, and the reported standard error matches the spread over noise draws
    assert np.mean(alphas) == pytest.approx(0.076, abs=0.001)
    want = 0.01 / math.sqrt(np.sum((np.log(n) - np.log(n).mean()) ** 2))  # closed-form OLS slope error
    assert np.std(alphas) == pytest.approx(want, rel=0.15)
    assert np.mean(ses) == pytest.approx(want, rel=0.15)


def test_fit_power_law_two_points_has_no_error_bar():
    fit = fit_power_law([1e3, 1e4], [2.0, 1.0])
    assert fit.alpha == pytest.approx(math.log10(2))
    assert math.isnan(fit.alpha_se)


def test_fit_power_law_with_irreducible_term():
    n = np.geomspace(1e3, 5e4, 8)
    loss = 1.5 + (2e3 / n) ** 0.5
    fit = fit_power_law(n, loss, irreducible=True)
    assert fit.alpha == pytest.approx(0.5, abs=1e-4)
    assert fit.irreducible == pytest.approx(1.5, abs=1e-4)
    assert fit.n_c == pytest.approx(2e3, rel=1e-3)
    assert fit(1e6) == pytest.approx(1.5 + (2e3 / 1e6) ** 0.5, abs=1e-4)
    rng = np.random.default_rng(1)
    errors = [fit_power_law(n, loss * np.exp(0.002 * rng.standard_normal(8)), irreducible=True).alpha - 0.5
              for _ in range(50)]
    assert abs(np.mean(errors)) < 0.05


def test_fit_power_law_bad_input():
    with pytest.raises(ValueError, match="loss"):
        fit_power_law([1, 2, 3], [1.0, 2.0])
    with pytest.raises(ValueError, match="n must"):
        fit_power_law([0, 2, 3], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="loss must"):
        fit_power_law([1, 2, 3], [1.0, -2.0, 3.0])
    with pytest.raises(ValueError, match="at least 4"):
        fit_power_law([1, 2, 3], [3.0, 2.0, 1.0], irreducible=True)
    with pytest.raises(TypeError, match="irreducible"):
        fit_power_law([1, 2, 3], [3.0, 2.0, 1.0], irreducible=1)
    with pytest.raises(TypeError, match="n must"):
        fit_power_law(3, [1.0])
    with pytest.raises(ValueError, match="n must"):
        PowerLaw(0.1, 10.0, 0.0, 0.01)(-1.0)


def test_warmup_cosine():
    assert warmup_cosine(5, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)
    assert warmup_cosine(1, 4, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    with pytest.raises(ValueError, match="warmup"):
        warmup_cosine(1, 10, 10)


def test_train_lm_learns_and_replays():
    torch.set_num_threads(1)
    history = train_lm(8, steps=30, batch_size=8, context=16, lr=2e-2, warmup=3, seed=0, every=10, eval_windows=32)
    assert len(history.losses) == 30
    losses = history.metric("loss")
    assert history.eval_steps == [10, 20, 30]
    assert losses[-1] < losses[0] < math.log(73) + 0.5
    again = train_lm(8, steps=30, batch_size=8, context=16, lr=2e-2, warmup=3, seed=0, every=10, eval_windows=32,
                     stop_after=12)
    assert again.losses == pytest.approx(history.losses[:12], abs=1e-6)


def test_train_lm_bad_input():
    with pytest.raises(ValueError, match="d_model"):
        train_lm(0, steps=2)
    with pytest.raises(ValueError, match="lr"):
        train_lm(8, steps=2, warmup=0, lr=2.0)
    with pytest.raises(ValueError, match="warmup"):
        train_lm(8, steps=2, warmup=5)
    with pytest.raises(TypeError, match="seed"):
        train_lm(8, steps=2, warmup=0, seed="a")
