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


# ---------------------------------------------------------------- RAG (chapter 29)

from papers30.retrieval import (PassageReader, rag_sequence_decode, rag_sequence_log_likelihood,  # noqa: E402
                                rag_token_greedy, rag_token_log_likelihood, reader_next_log_probs,
                                reader_token_log_probs, retrieve, sequence_log_probs, train_reader)


class TableGenerator:
    """A random generator p(y_i | z, y_<i) over a tiny vocabulary, stored as a table: the brute-force reference."""

    def __init__(self, b, k, v, t, seed=0):
        g = gen(seed)
        self.b, self.k, self.v, self.t = b, k, v, t
        self.table = {}
        for prefix_len in range(t):
            for prefix in itertools.product(range(v), repeat=prefix_len):
                self.table[prefix] = torch.log_softmax(3 * torch.randn(b, k, v, generator=g, dtype=torch.float64), 2)
        self.prior = torch.log_softmax(torch.randn(b, k, generator=g, dtype=torch.float64), 1)

    def next_log_probs(self, prefix):
        b, k, s, t = prefix.shape
        out = torch.empty(b, k, s, self.v, dtype=torch.float64)
        for i in range(b):
            for j in range(k):
                for h in range(s):
                    out[i, j, h] = self.table[tuple(prefix[i, j, h].tolist())][i, j]
        return out

    def token_log_probs(self, y):
        """(K,) per-token log-probs (K, T) of one answer y for question row i is self.tlp(i, y)."""
        return torch.stack([torch.stack([self.table[tuple(y[:n])][i, :, y[n]] for n in range(self.t)], 1)
                            for i in range(self.b)])  # (B, K, T)

    def all_answers(self):
        return list(itertools.product(range(self.v), repeat=self.t))


def test_rag_with_one_document_is_the_generator_likelihood():
    g = gen(10)
    lp = torch.log_softmax(torch.randn(4, 1, 3, 6, generator=g, dtype=torch.float64), 3)[..., 0]  # (B, 1, T)
    prior = torch.zeros(4, 1, dtype=torch.float64)
    torch.testing.assert_close(rag_sequence_log_likelihood(prior, lp), lp.sum((1, 2)), rtol=0, atol=1e-12)
    torch.testing.assert_close(rag_token_log_likelihood(prior, lp), lp.sum((1, 2)), rtol=0, atol=1e-12)


def test_rag_token_equals_enumeration_of_a_document_per_token():
    m = TableGenerator(2, 3, 3, 3, seed=1)
    for y in m.all_answers():
        lp = m.token_log_probs(list(y))  # (B, K, T)
        got = rag_token_log_likelihood(m.prior, lp)
        for i in range(m.b):
            want = 0.0
            for zs in itertools.product(range(m.k), repeat=m.t):  # one latent document per token
                want += math.prod(math.exp(m.prior[i, z].item() + lp[i, z, n].item()) for n, z in enumerate(zs))
            assert abs(got[i].item() - math.log(want)) < 1e-10


def test_rag_token_and_sequence_are_distributions_over_answers():
    m = TableGenerator(2, 3, 3, 3, seed=2)
    for f in (rag_token_log_likelihood, rag_sequence_log_likelihood):
        total = sum(f(m.prior, m.token_log_probs(list(y))).exp() for y in m.all_answers())
        torch.testing.assert_close(total, torch.ones(2, dtype=torch.float64))


def test_rag_sequence_equals_explicit_mixture():
    m = TableGenerator(2, 3, 3, 2, seed=3)
    for y in m.all_answers():
        lp = m.token_log_probs(list(y))
        got = rag_sequence_log_likelihood(m.prior, lp)
        for i in range(m.b):
            want = sum(math.exp(m.prior[i, z].item() + lp[i, z].sum().item()) for z in range(m.k))
            assert abs(got[i].item() - math.log(want)) < 1e-12


def test_rag_mask_ignores_padding():
    m = TableGenerator(2, 3, 3, 2, seed=4)
    lp = m.token_log_probs([1, 2])
    padded = torch.cat([lp, torch.randn(2, 3, 1, dtype=torch.float64)], 2)
    mask = torch.tensor([[True, True, False]] * 2)
    for f in (rag_token_log_likelihood, rag_sequence_log_likelihood):
        torch.testing.assert_close(f(m.prior, padded, mask), f(m.prior, lp))


def test_rag_token_greedy_follows_the_marginal_step_by_step():
    m = TableGenerator(2, 3, 4, 3, seed=5)
    got = rag_token_greedy(m.prior, m.next_log_probs, 3)
    for i in range(2):
        prefix = []
        for _ in range(3):
            marginal = [sum(math.exp(m.prior[i, z] + m.table[tuple(prefix)][i, z, w]) for z in range(3)) for w in range(4)]
            prefix.append(max(range(4), key=lambda w: marginal[w]))
        assert got[i].tolist() == prefix


def test_rag_sequence_thorough_decoding_with_a_full_beam_is_the_exact_argmax():
    m = TableGenerator(3, 3, 3, 3, seed=6)
    got = rag_sequence_decode(m.prior, m.next_log_probs, 3, beam=9)
    answers = m.all_answers()
    scores = torch.stack([rag_sequence_log_likelihood(m.prior, m.token_log_probs(list(y))) for y in answers], 1)
    assert got.tolist() == [list(answers[j]) for j in scores.argmax(1).tolist()]


def test_rag_sequence_fast_decoding_drops_candidates_outside_a_documents_beam():
    m = TableGenerator(3, 3, 3, 2, seed=7)
    beam = 2
    got = rag_sequence_decode(m.prior, m.next_log_probs, 2, beam=beam, fast=True)
    for i in range(3):
        beams = []
        for z in range(3):
            seq = {y: sum(m.table[tuple(y[:n])][i, z, y[n]].item() for n in range(2)) for y in m.all_answers()}
            beams.append(dict(sorted(seq.items(), key=lambda kv: -kv[1])[:beam]))  # beam 2 over 9 = exact top-2 here
        cands = set().union(*beams)
        score = {y: math.log(sum(math.exp(m.prior[i, z].item() + beams[z][y]) for z in range(3) if y in beams[z]))
                 for y in cands}
        assert tuple(got[i].tolist()) == max(score, key=score.get)


def test_sequence_log_probs_teacher_forces():
    m = TableGenerator(2, 3, 3, 2, seed=8)
    cands = torch.tensor([[[0, 1], [2, 2]], [[1, 0], [0, 0]]])
    got = sequence_log_probs(m.next_log_probs, cands, 3)
    for i in range(2):
        for c in range(2):
            y = cands[i, c].tolist()
            torch.testing.assert_close(got[i, :, c], m.token_log_probs(y)[i].sum(1))


def test_passage_reader_prefix_rows_are_causal_and_normalised():
    g = gen(11)
    model = PassageReader(20, 3, dim=8, hidden=16, generator=g)
    q, p = torch.randint(0, 20, (5, 4), generator=g), torch.randint(0, 20, (5, 6), generator=g)
    y = torch.randint(0, 20, (5, 2), generator=g)
    full = model(q, p, y)
    assert full.shape == (5, 3, 20)
    torch.testing.assert_close(full.exp().sum(2), torch.ones(5, 3))
    torch.testing.assert_close(model(q, p, y[:, :1]), full[:, :2])


def test_reader_helpers_agree_with_the_model():
    g = gen(12)
    model = PassageReader(15, 2, dim=8, hidden=16, generator=g)
    q, p = torch.randint(0, 15, (3, 4), generator=g), torch.randint(0, 15, (3, 2, 5), generator=g)
    y = torch.randint(0, 15, (3, 2), generator=g)
    lp = reader_token_log_probs(model, q, p, y)
    for i in range(3):
        for z in range(2):
            direct = model(q[i:i + 1], p[i, z:z + 1], y[i:i + 1, :1])[0]
            torch.testing.assert_close(lp[i, z], direct[[0, 1], y[i]], atol=1e-6, rtol=0)
    nxt = reader_next_log_probs(model, q, p)(y[:, None, None, :1].expand(3, 2, 1, 1))
    torch.testing.assert_close(nxt[:, :, 0], torch.stack([model(q, p[:, z], y[:, :1])[:, 1] for z in range(2)], 1))


def test_train_reader_learns_to_copy_and_closed_book_runs():
    g = gen(13)
    q = torch.randint(3, 10, (200, 2), generator=g)
    answers = torch.randint(10, 20, (200, 2), generator=g)
    passages = torch.cat([q, answers], 1).unsqueeze(1)  # one passage per question, holding its answer
    model, losses = train_reader(q, answers, 20, passages=passages, doc_log_prior=torch.zeros(200, 1), steps=300,
                                 batch_size=32, lr=1e-2, dim=16, hidden=32, generator=g)
    y = rag_token_greedy(torch.zeros(200, 1), reader_next_log_probs(model, q, passages), 2)
    assert (y == answers).all(1).float().mean() > 0.9 and losses[-1] < losses[0]
    _, closed = train_reader(q, answers, 20, steps=5, generator=g)
    assert len(closed) == 5


def test_retrieve_returns_top_k_and_a_normalised_prior():
    g = gen(14)
    enc = DualEncoder(12, 4, g)
    passages = [[1, 2], [3, 4, 5], [6], [7, 8]]
    index = enc.encode_passages(term_counts(passages, 12)).detach()
    prior, idx = retrieve(enc, [[1, 3], [8]], index, 2)
    scores = enc.scores(term_counts([[1, 3], [8]], 12), term_counts(passages, 12)).detach()
    assert idx.tolist() == scores.topk(2, 1).indices.tolist()
    torch.testing.assert_close(prior.exp().sum(1), torch.ones(2))


def test_rag_bad_inputs_raise():
    prior = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="token_log_probs"):
        rag_sequence_log_likelihood(prior, torch.zeros(2, 4, 5))
    with pytest.raises(TypeError, match="doc_log_prior"):
        rag_token_log_likelihood(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="mask"):
        rag_token_log_likelihood(prior, torch.zeros(2, 3, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="next_log_probs"):
        rag_token_greedy(prior, None, 2)
    with pytest.raises(ValueError, match="beam"):
        rag_sequence_decode(prior, lambda p: p, 2, beam=0)
    with pytest.raises(ValueError, match="marginal"):
        train_reader(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), 5, marginal="both")
    with pytest.raises(ValueError, match="passages and doc_log_prior"):
        train_reader(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), 5,
                     passages=torch.zeros(2, 1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="prefix"):
        PassageReader(5, 2)(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long),
                            torch.zeros(1, 2, dtype=torch.long))
