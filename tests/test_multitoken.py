"""papers30.multitoken against hand computations, brute force and plain greedy decoding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from papers30.multitoken import (
    InductionRun,
    MultiTokenLM,
    SpeculativeResult,
    answer_accuracy,
    greedy_generate,
    induction_batch,
    multi_token_loss,
    self_speculative_generate,
    train_induction,
)
from papers30.transformer import EncoderLayer, TransformerLM


def small(n: int, seed: int = 0, vocab: int = 7, dtype: torch.dtype = torch.float64) -> MultiTokenLM:
    """A random model; float64 makes near-ties between logits (where float rounding could decide) negligible."""
    torch.manual_seed(seed)
    return MultiTokenLM(vocab, n_future=n, d_model=16, nhead=2, num_layers=1, dim_feedforward=32).to(dtype)


@pytest.mark.parametrize("norm_first", [False, True])  # post-norm first: tests/_fuzz.py replays the first call
def test_causal_layer_ignores_later_positions(norm_first):
    """Self-speculative decoding rests on this: a causal layer's output at t depends on inputs <= t only."""
    torch.manual_seed(0)
    layer = EncoderLayer(16, 2, 32, dropout=0.0, norm_first=norm_first)
    a = torch.randn(1, 7, 16)
    b = a.clone()
    b[0, 5:] = torch.randn(2, 16)
    torch.testing.assert_close(layer(a, is_causal=True)[:, :5], layer(b, is_causal=True)[:, :5])
    assert not torch.allclose(layer(a, is_causal=True)[:, 5:], layer(b, is_causal=True)[:, 5:])


def test_shapes_and_shared_unembedding():
    m = small(3, dtype=torch.float32)  # the first calls are float32 (tests/_fuzz.py replays them)
    tokens = torch.randint(0, 7, (2, 5))
    out = m(tokens)
    assert out.shape == (2, 5, 3, 7)
    assert isinstance(m.trunk, TransformerLM)
    z = m.trunk.hidden(tokens)
    for i in (1, 2, 3):  # each head: its own layer and norm, then the trunk's embedding transposed
        h = m.head_norms[i - 1](m.heads[i - 1](z, is_causal=True))
        torch.testing.assert_close(out[:, :, i - 1], h @ m.trunk.embed.weight.T)
    torch.testing.assert_close(m.next_token_logits(tokens), out[:, :, 0])


def test_heads_are_causal():
    """Changing a later token leaves every head's logits at earlier positions unchanged."""
    m = small(4).eval()
    a = torch.randint(0, 7, (1, 9))
    b = a.clone()
    b[0, 6] = (b[0, 6] + 1) % 7
    torch.testing.assert_close(m(a)[:, :6], m(b)[:, :6], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(m(a)[:, 6], m(b)[:, 6])


def test_loss_against_hand_computation():
    """Two heads, three tokens: head 1 scores tokens 1 and 2, head 2 scores token 2 only."""
    logits = torch.tensor([[[[1.0, 0.0, 2.0], [0.5, 0.5, 0.0]],
                            [[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]],
                            [[1.0, 1.0, 1.0], [0.0, 0.0, 9.0]]]], dtype=torch.float64)  # (1, 3, 2, 3)
    tokens = torch.tensor([[2, 1, 0]])

    def nll(row, target):
        return -(row[target] - math.log(sum(math.exp(v) for v in row)))

    rows = logits[0].tolist()
    head1 = (nll(rows[0][0], 1) + nll(rows[1][0], 0)) / 2  # position 0 -> token 1, position 1 -> token 2
    head2 = nll(rows[0][1], 0)  # position 0 -> token 2
    assert multi_token_loss(logits, tokens).item() == pytest.approx(head1 + head2, abs=1e-12)


def test_loss_with_one_head_is_next_token_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 6, 1, 5, generator=g)
    tokens = torch.randint(0, 5, (3, 6), generator=g)
    want = F.cross_entropy(logits[:, :-1, 0].reshape(-1, 5), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(multi_token_loss(logits, tokens), want)


def test_greedy_generate_against_brute_force():
    m = small(2, seed=3).eval()
    prompt = torch.tensor([1, 4, 2])
    seq = prompt.tolist()
    for _ in range(6):  # brute force: score every candidate next token by its logit, keep the best
        logits = m.next_token_logits(torch.tensor([seq]))[0, -1]
        seq.append(max(range(7), key=lambda v: logits[v].item()))
    assert greedy_generate(m, prompt, 6).tolist() == seq[3:]


@pytest.mark.parametrize("seed", range(12))
def test_speculative_equals_greedy_on_random_models(seed):
    n = (2, 3, 4)[seed % 3]
    m = small(n, seed=seed, vocab=5 + seed % 4)
    g = torch.Generator().manual_seed(seed)
    for length in (1, 3, 6):
        prompt = torch.randint(0, m.vocab_size, (length,), generator=g)
        for steps in (1, 2, 5, 11):
            for k in range(1, n + 1):
                r = self_speculative_generate(m, prompt, steps, k=k)
                assert torch.equal(r.tokens, greedy_generate(m, prompt, steps))
                # pass count: one to start, then one per block; each block emits 1..k tokens
                assert 1 + math.ceil((steps - 1) / k) <= r.passes <= steps
                assert r.drafted >= r.accepted >= 0


def test_pass_count_when_every_draft_is_right():
    """A model whose heads all predict the constant token accepts every draft: ceil((steps - 1) / k) + 1 passes."""
    m = small(4, seed=0)
    with torch.no_grad():
        for head in m.heads:
            for p in head.parameters():
                p.zero_()
        for norm in m.head_norms:
            norm.weight.zero_()
            norm.bias.copy_(m.trunk.embed.weight[3])  # every head's state is token 3's embedding
    prompt = torch.tensor([0, 1])
    for steps, k in [(9, 4), (10, 4), (12, 3), (7, 2), (5, 1)]:
        r = self_speculative_generate(m, prompt, steps, k=k)
        assert r.tokens.tolist() == [3] * steps
        assert r.passes == 1 + math.ceil((steps - 1) / k)
        assert r.accepted == r.drafted
        assert r.acceptance_rate == (1.0 if r.drafted else 0.0)
    r = self_speculative_generate(m, prompt, 9, k=4)
    assert r.passes == 3 and r.tokens_per_pass == 3.0  # 1 + 4 + 4 tokens in passes 1, 2, 3


def test_speculative_result_fields():
    r = SpeculativeResult(torch.tensor([1, 2, 3, 4]), 2, 6, 3)
    assert r.acceptance_rate == 0.5 and r.tokens_per_pass == 2.0
    with pytest.raises(TypeError, match="passes"):
        SpeculativeResult(torch.tensor([1]), "2", 0, 0)


def test_induction_batch_labels_by_brute_force():
    g = torch.Generator().manual_seed(5)
    tokens, answer = induction_batch(64, 24, 16, g, 4, 8)
    assert tokens.shape == answer.shape == (64, 24)
    for row, marks in zip(tokens.tolist(), answer.tolist()):
        # brute force: the smallest period L in 4..8 such that the row from some start on repeats with period L
        found = None
        for L in range(4, 9):
            for at in range(0, 24 - 2 * L + 1):
                if all(row[t] == row[t - L] for t in range(at + L, 24)):
                    want = [at + L + 1 <= t for t in range(24)]
                    if want == marks:
                        found = (L, at)
        assert found is not None
        assert sum(marks) >= 3


def test_answer_accuracy_against_direct_count():
    m = small(2, seed=4, vocab=16).float()
    tokens, answer = induction_batch(8, 24, 16, torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = m.next_token_logits(tokens)
    hits = total = 0
    for b in range(8):
        for t in range(1, 24):
            if answer[b, t]:
                total += 1
                hits += int(logits[b, t - 1].argmax().item() == tokens[b, t].item())
    assert answer_accuracy(m, tokens, answer) == pytest.approx(hits / total)


def test_train_induction_same_batches_and_learns():
    m1, l1 = train_induction(1, 3, seed=0, batch_size=4)
    m4, l4 = train_induction(4, 3, seed=0, batch_size=4)
    assert len(l1) == len(l4) == 3 and m4.n_future == 4
    # the first step's next-token loss is computed before any update, from the same batch and trunk init
    assert all(math.isfinite(x) for x in l1 + l4)
    run = train_induction(1, 3, seed=0, batch_size=4, stop_after=2)
    assert isinstance(run, InductionRun) and run.model.n_future == 1
    short = run.losses
    assert short == l1[:2]
    _, long = train_induction(1, 60, seed=1, batch_size=16, lr=1e-2)
    assert sum(long[-10:]) / 10 < sum(long[:10]) / 10


def test_bad_input():
    m = small(2)
    with pytest.raises(TypeError, match="model"):
        greedy_generate("m", torch.tensor([1]), 2)
    with pytest.raises(ValueError, match="k must be at most"):
        self_speculative_generate(m, torch.tensor([1]), 2, k=3)
    with pytest.raises(ValueError, match="prompt"):
        self_speculative_generate(m, torch.tensor([], dtype=torch.long), 2)
    with pytest.raises(ValueError, match="heads"):
        multi_token_loss(torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="length"):
        induction_batch(2, 10, 5, torch.Generator(), 4, 8)
    with pytest.raises(ValueError, match="lr"):
        train_induction(1, 1, 0, lr=-1.0)
    with pytest.raises(ValueError, match="n_future"):
        MultiTokenLM(5, n_future=0)


def test_induction_run_checks_fields():
    with pytest.raises(TypeError, match="model"):
        InductionRun("not a model", [1.0])
