"""BM25, in-batch negative loss, dual encoder and top-k accuracy (papers30.retrieval), against hand
computations, explicit loops and brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from papers30.retrieval import BM25, DualEncoder, in_batch_loss, term_counts, top_k_accuracy, train_dual_encoder


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# the hand example of chapter 28: three passages, query "1 3", k1 = 1.2, b = 0.75, avgdl = 3
HAND_PASSAGES = [[1, 1, 2], [2, 3], [3, 3, 3, 4]]
HAND_SCORES = [
    (2 * 2.2 / (2 + 1.2)) * math.log(8 / 3),  # token 1: f = 2, |d| = 3, n = 1
    (1 * 2.2 / (1 + 0.9)) * math.log(1.6),  # token 3: f = 1, |d| = 2, n = 2
    (3 * 2.2 / (3 + 1.5)) * math.log(1.6),  # token 3: f = 3, |d| = 4
]


def test_bm25_matches_the_hand_computed_example():
    got = BM25(HAND_PASSAGES, 5, k1=1.2, b=0.75).scores([[1, 3]])[0]
    torch.testing.assert_close(got, torch.tensor(HAND_SCORES, dtype=torch.float64), rtol=0, atol=1e-12)
    assert abs(HAND_SCORES[0] - 1.3486) < 1e-4


def _bm25_loop(query, docs, k1, b):
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    out = []
    for d in docs:
        s = 0.0
        for t in query:
            df = sum(t in e for e in docs)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            f = d.count(t)
            s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(d) / avgdl))
        out.append(s)
    return out


@pytest.mark.parametrize("k1,b", [(0.9, 0.4), (1.5, 0.75), (0.3, 0.0), (1.2, 1.0)])
def test_bm25_equals_a_loop_over_the_formula(k1, b):
    g = gen(1)
    docs = [torch.randint(0, 12, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist()
            for _ in range(15)]
    queries = [torch.randint(0, 14, (4,), generator=g).tolist() for _ in range(6)]
    got = BM25(docs, 14, k1, b).scores(queries)
    want = torch.tensor([_bm25_loop(q, docs, k1, b) for q in queries], dtype=torch.float64)
    torch.testing.assert_close(got, want)


def test_term_counts_counts():
    c = term_counts([[0, 2, 2], []], 3)
    assert c.tolist() == [[1, 0, 2], [0, 0, 0]]


def test_in_batch_loss_equals_explicit_softmax():
    g = gen(2)
    q, p = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    want = 0.0
    for i in range(5):
        logits = [float(q[i] @ p[j]) for j in range(5)]
        want -= logits[i] - math.log(sum(math.exp(x) for x in logits))
    assert abs(in_batch_loss(q, p).item() - want / 5) < 1e-12
    assert abs(in_batch_loss(q, p, negatives=4).item() - want / 5) < 1e-12


def test_in_batch_loss_with_one_negative_is_a_pairwise_softmax():
    g = gen(3)
    q, p = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    sim = q @ p.T
    got = in_batch_loss(q, p, negatives=1, generator=gen(9)).item()
    # each row keeps its positive and one other: the loss lies between the best and worst single negative
    pair = torch.stack([torch.log1p(torch.exp(sim[i] - sim[i, i])) for i in range(6)])  # (6, 6)
    pair.fill_diagonal_(float("nan"))
    lo = torch.stack([row[~row.isnan()].min() for row in pair]).mean().item()
    hi = torch.stack([row[~row.isnan()].max() for row in pair]).mean().item()
    assert lo - 1e-12 <= got <= hi + 1e-12


def test_in_batch_loss_gradient_matches_autograd_reference():
    g = gen(4)
    q = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: in_batch_loss(a, b), (q, p))


def test_dual_encoder_is_a_sum_of_token_embeddings_and_starts_shared():
    m = DualEncoder(7, 4, gen(5))
    torch.testing.assert_close(m.question, m.passage)
    bags = term_counts([[1, 1, 3], [6]], 7).float()
    want = torch.stack([2 * m.question[1] + m.question[3], m.question[6]])
    torch.testing.assert_close(m.encode_questions(bags), want)
    torch.testing.assert_close(m.scores(bags, bags), want @ want.T)


def test_train_dual_encoder_learns_a_synonym():
    # question word 10 + i always means passage word 20 + i; passages also hold noise words
    g = gen(6)
    qs, ps = [], []
    for _ in range(400):
        i = int(torch.randint(0, 8, (1,), generator=g))
        qs.append([10 + i])
        ps.append([20 + i] + torch.randint(0, 8, (3,), generator=g).tolist())
    model, losses = train_dual_encoder(qs, ps, 30, dim=16, batch_size=8, epochs=10, lr=0.05, generator=g)
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20
    with torch.no_grad():
        s = model.scores(term_counts([[10 + i] for i in range(8)], 30), term_counts([[20 + i] for i in range(8)], 30))
    assert (s.argmax(1) == torch.arange(8)).all()


def _brute_top_k(scores, gold, k):
    total = 0.0
    for q in range(scores.shape[0]):
        hits = 0
        perms = list(itertools.permutations(range(scores.shape[1])))
        for perm in perms:  # a tie-break order: earlier in perm wins ties
            order = sorted(range(scores.shape[1]), key=lambda j: (-scores[q, j].item(), perm.index(j)))
            hits += gold[q].item() in order[:k]
        total += hits / len(perms)
    return total / scores.shape[0]


def test_top_k_accuracy_equals_brute_force_over_tie_breaks():
    scores = torch.tensor([[1.0, 2.0, 2.0, 0.0, 2.0], [3.0, 3.0, 3.0, 3.0, 3.0], [0.0, 5.0, 1.0, 1.0, 4.0]])
    gold = torch.tensor([1, 2, 3])
    for k in [1, 2, 3, 5]:
        assert abs(top_k_accuracy(scores, gold, [k])[0] - _brute_top_k(scores, gold, k)) < 1e-12


def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="k1"):
        BM25(HAND_PASSAGES, 5, k1=-1.0)
    with pytest.raises(ValueError, match="b"):
        BM25(HAND_PASSAGES, 5, b=1.5)
    with pytest.raises(ValueError, match="texts"):
        term_counts([[0, 9]], 5)
    with pytest.raises(TypeError, match="passages"):
        BM25("abc", 5)
    with pytest.raises(ValueError, match="negatives"):
        in_batch_loss(torch.randn(3, 2), torch.randn(3, 2), negatives=3)
    with pytest.raises(ValueError, match="p must"):
        in_batch_loss(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="batch_size"):
        train_dual_encoder([[1], [2]], [[1], [2]], 3, batch_size=5)
    with pytest.raises(ValueError, match="passages"):
        train_dual_encoder([[1], [2]], [[1]], 3)
    with pytest.raises(ValueError, match="gold"):
        top_k_accuracy(torch.zeros(2, 3), torch.tensor([0]), [1])
    with pytest.raises(ValueError, match="ks"):
        top_k_accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), [0])
