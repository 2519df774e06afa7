"""Tests for papers30.context: the key-value task, accuracy by position, Wilson intervals, U-margin, attention."""

from __future__ import annotations

import math

import pytest
import torch

from papers30.context import (KVBatch, PositionEval, answer_logits, edge_bins, evaluate_by_position, kv_retrieval,
                              kv_vocab_size, position_accuracy, shuffled_u_margin, train_kv_retrieval, u_margin,
                              wilson_interval)
from papers30.transformer import TransformerLM


def small_model(n_pairs=4, n_keys=6, n_values=5, seed=0):
    torch.manual_seed(seed)
    return TransformerLM(kv_vocab_size(n_keys, n_values), d_model=16, nhead=2, num_layers=2, dim_feedforward=32,
                         dropout=0.0, norm_first=False, max_len=2 * n_pairs + 2)


def test_vocab_size():
    assert kv_vocab_size(16, 16) == 33


def test_kv_retrieval_against_a_loop():
    n, K, V = 5, 7, 4
    batch = kv_retrieval(n, K, V, 50, generator=torch.Generator().manual_seed(0))
    assert isinstance(batch, KVBatch)
    assert batch.tokens.shape == (50, 2 * n + 2)
    for row, answer, pos in zip(batch.tokens.tolist(), batch.answers.tolist(), batch.positions.tolist()):
        keys, values = row[0:2 * n:2], row[1:2 * n:2]
        assert all(0 <= k < K for k in keys) and len(set(keys)) == n  # distinct keys
        assert all(K <= v < K + V for v in values)
        assert row[2 * n] == K + V  # separator
        query = row[-1]
        found = [i for i, k in enumerate(keys) if k == query]  # brute-force lookup
        assert found == [pos]
        assert values[pos] == answer


def test_kv_retrieval_fixed_positions_and_uniform_draws():
    g = torch.Generator().manual_seed(1)
    fixed = kv_retrieval(6, 8, 3, 4, torch.tensor([0, 5, 2, 2]), g)
    assert fixed.positions.tolist() == [0, 5, 2, 2]
    drawn = kv_retrieval(6, 8, 3, 6000, generator=g).positions
    counts = torch.bincount(drawn, minlength=6).double()
    assert (counts / 6000 - 1 / 6).abs().max() < 0.03  # uniform training positions


def test_answer_logits_equal_full_forward():
    model = small_model().eval()
    tokens = kv_retrieval(4, 6, 5, 3, generator=torch.Generator().manual_seed(2)).tokens
    assert torch.allclose(answer_logits(model, tokens), model(tokens)[:, -1], atol=1e-6)


def test_training_lowers_the_loss_and_stops_at_the_target():
    model = small_model()
    g = torch.Generator().manual_seed(3)
    losses, accs = train_kv_retrieval(model, 4, 6, 5, steps=60, batch_size=32, lr=3e-3, generator=g)
    assert len(losses) == len(accs) == 60
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    early, _ = train_kv_retrieval(small_model(), 4, 6, 5, steps=60, batch_size=8, target_accuracy=0.0, window=5,
                                  generator=g)
    assert len(early) == 5


def manual_attention(layer, x):
    """Causal softmax(q k^T / sqrt(E)) of one post-norm layer from its weights, ``(B, H, T, T)``."""
    attn = layer.self_attn
    h = x  # post-norm: the layer attends over its input; LayerNorm comes after the residual sum
    B, T, D = h.shape
    H, E = attn.num_heads, attn.head_dim
    q = (h @ attn.q_proj.weight.T + attn.q_proj.bias).view(B, T, H, E).transpose(1, 2)
    k = (h @ attn.k_proj.weight.T + attn.k_proj.bias).view(B, T, H, E).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(E)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1)


def test_evaluate_by_position_against_a_recomputation():
    n, K, V, per = 4, 6, 5, 7
    model = small_model(n, K, V)
    result = evaluate_by_position(model, n, K, V, per, torch.Generator().manual_seed(4))
    assert isinstance(result, PositionEval)
    assert result.correct.shape == (n * per,) and result.attention.shape == (2, n)
    g = torch.Generator().manual_seed(4)  # replay the same draws
    with torch.no_grad():
        for p in range(n):
            batch = kv_retrieval(n, K, V, per, torch.full((per,), p, dtype=torch.long), g)
            want = model(batch.tokens)[:, -1].argmax(-1) == batch.answers
            assert torch.equal(result.correct[p * per:(p + 1) * per], want)
            assert (result.positions[p * per:(p + 1) * per] == p).all()
            x = model.embed(batch.tokens) * math.sqrt(model.d_model) + model.positions[: batch.tokens.shape[1]]
            first = manual_attention(model.layers[0], x)
            mass = first[:, :, -1, 2 * p:2 * p + 2].sum(-1).mean()
            assert torch.allclose(result.attention[0, p], mass, atol=1e-5)


def test_position_accuracy_against_a_loop():
    g = torch.Generator().manual_seed(5)
    correct = torch.rand(200, generator=g) < 0.6
    positions = torch.randint(0, 7, (200,), generator=g)
    successes, trials = position_accuracy(correct, positions, 7)
    for p in range(7):
        rows = [c for c, q in zip(correct.tolist(), positions.tolist()) if q == p]
        assert trials[p].item() == len(rows)
        assert successes[p].item() == sum(rows)


def test_wilson_against_scipy_and_the_closed_form():
    stats = pytest.importorskip("scipy.stats")
    k = torch.tensor([0.0, 1.0, 17.0, 250.0, 500.0])
    n = torch.tensor([10.0, 3.0, 40.0, 500.0, 500.0])
    lo, hi = wilson_interval(k, n)
    for i in range(5):
        ci = stats.binomtest(int(k[i]), int(n[i])).proportion_ci(confidence_level=0.95, method="wilson")
        assert abs(lo[i].item() - ci.low) < 1e-12 and abs(hi[i].item() - ci.high) < 1e-12
    # the closed form at k = 0: [0, z^2 / (n + z^2)]
    z = 1.959963984540054
    assert abs(hi[0].item() - z * z / (10 + z * z)) < 1e-12 and abs(lo[0].item()) < 1e-12


def test_edge_bins_and_u_margin():
    assert edge_bins(8) == ([0, 1], [3, 4], [6, 7])
    assert edge_bins(10) == ([0, 1], [4, 5], [8, 9])
    assert edge_bins(5, 0.2) == ([0], [2], [4])
    u = torch.tensor([0.9, 0.8, 0.6, 0.5, 0.5, 0.6, 0.7, 0.8])
    assert abs(u_margin(u) - (min(0.85, 0.75) - 0.5)) < 1e-6
    falling = torch.linspace(1.0, 0.3, 8)
    assert u_margin(falling) < 0


def test_shuffled_u_margin_is_the_permuted_statistic():
    g = torch.Generator().manual_seed(6)
    correct = torch.rand(400, generator=g) < 0.5
    positions = torch.arange(8).repeat(50)
    got = shuffled_u_margin(correct, positions, 8, generator=torch.Generator().manual_seed(7))
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(7))
    k, n = position_accuracy(correct, positions[perm], 8)
    assert got == u_margin((k / n).float())
    assert shuffled_u_margin(torch.ones(400, dtype=torch.bool), positions, 8, generator=g) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="n_pairs"):
        kv_retrieval(9, 8, 3, 2)
    with pytest.raises(ValueError, match="positions"):
        kv_retrieval(4, 8, 3, 2, torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="generator"):
        kv_retrieval(4, 8, 3, 2, generator=0)
    with pytest.raises(TypeError, match="model"):
        answer_logits(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="trials"):
        wilson_interval(torch.tensor([3.0]), torch.tensor([2.0]))
    with pytest.raises(ValueError, match="trials"):
        wilson_interval(torch.tensor([1.0]), torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match="z"):
        wilson_interval(torch.tensor([1.0]), torch.tensor([2.0]), z=0.0)
    with pytest.raises(ValueError, match="n_positions"):
        edge_bins(2)
    with pytest.raises(ValueError, match="lr"):
        train_kv_retrieval(small_model(), 4, 6, 5, steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="positions"):
        position_accuracy(torch.ones(2, dtype=torch.bool), torch.tensor([0, 3]), 3)


def test_warmup_equals_torch_lambdalr_and_zero_changes_nothing():
    """Reference: a hand-written Adam loop scheduled by torch's LambdaLR, lr * min(1, (t + 1) / warmup)."""
    import copy

    import torch.nn.functional as F

    from papers30.context import answer_logits

    def reference(model, warmup, steps, seed):
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / warmup) if warmup else 1.0)
        model.train()
        losses, lrs = [], []
        for _ in range(steps):
            batch = kv_retrieval(4, 6, 5, 8, generator=g)
            loss = F.cross_entropy(answer_logits(model, batch.tokens), batch.answers)
            opt.zero_grad()
            loss.backward()
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            losses.append(loss.item())
        return losses, lrs

    base = small_model()
    for warmup in (0, 4):
        ref_model, model = copy.deepcopy(base), copy.deepcopy(base)
        ref, lrs = reference(ref_model, warmup, 12, seed=5)
        got, _ = train_kv_retrieval(model, 4, 6, 5, steps=12, batch_size=8, lr=3e-3, warmup=warmup,
                                    generator=torch.Generator().manual_seed(5))
        assert got == pytest.approx(ref, rel=1e-6, abs=1e-7)
        for p, q in zip(model.parameters(), ref_model.parameters()):
            assert torch.allclose(p, q, atol=1e-6)
    assert lrs[:4] == pytest.approx([7.5e-4, 1.5e-3, 2.25e-3, 3e-3]) and lrs[4:] == pytest.approx([3e-3] * 8)
    slow, _ = train_kv_retrieval(copy.deepcopy(base), 4, 6, 5, steps=12, batch_size=8, lr=3e-3, warmup=4,
                                 generator=torch.Generator().manual_seed(5))
    plain, _ = train_kv_retrieval(copy.deepcopy(base), 4, 6, 5, steps=12, batch_size=8, lr=3e-3,
                                  generator=torch.Generator().manual_seed(5))
    assert slow[0] == plain[0] and slow[1] != plain[1]  # the same first batch, then a smaller first step
    with pytest.raises(ValueError, match="warmup"):
        train_kv_retrieval(small_model(), 4, 6, 5, steps=1, warmup=-1)
    with pytest.raises(TypeError, match="warmup"):
        train_kv_retrieval(small_model(), 4, 6, 5, steps=1, warmup=2.0)


def test_train_kv_model_is_seeded_and_stops_after():
    from papers30.context import KVRun, train_kv_model

    a = train_kv_model(3, 4, 6, 5, d_model=16, steps=30, target_accuracy=None)
    b = train_kv_model(3, 4, 6, 5, d_model=16, steps=30, target_accuracy=None, stop_after=10)
    assert isinstance(a, KVRun) and len(a.losses) == 30 and len(b.losses) == 10
    assert a.losses[:10] == b.losses  # the same seed replays the same first steps
    c = train_kv_model(3, 4, 6, 5, d_model=16, steps=30, target_accuracy=None, stop_after=10, warmup=10)
    assert c.losses[0] == b.losses[0] and c.losses[1:] != b.losses[1:]  # warmup reaches the optimiser
    with pytest.raises(ValueError, match="stop_after"):
        train_kv_model(3, 4, 6, 5, stop_after=0)
