"""papers30.metrics against sacrebleu, hand-worked examples and brute force."""

from __future__ import annotations

import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU

from papers30.metrics import corpus_bleu, critical_path, exact_match, mean_iou, strip_after


def sacre(candidates, references, max_n=4):
    """sacrebleu on whitespace-joined tokens: no tokenisation, no smoothing, one reference stream."""
    bleu = BLEU(tokenize="none", smooth_method="none", force=True, max_ngram_order=max_n)
    join = lambda seqs: [" ".join(map(str, s)) for s in seqs]  # noqa: E731
    return bleu.corpus_score(join(candidates), [join(references)])


def noisy_corpus(seed, n=12, vocab=6):
    """References of 4-15 tokens; candidates are references with substitutions, deletions, insertions."""
    rng = random.Random(seed)
    cands, refs = [], []
    for _ in range(n):
        ref = [rng.randrange(vocab) for _ in range(rng.randint(4, 15))]
        cand = []
        for tok in ref:
            r = rng.random()
            if r < 0.1:
                continue  # deletion
            cand.append(rng.randrange(vocab) if r < 0.25 else tok)
            if rng.random() < 0.1:
                cand.append(rng.randrange(vocab))  # insertion
        cands.append(cand)
        refs.append(ref)
    return cands, refs


@pytest.mark.parametrize("seed", range(12))
def test_corpus_bleu_matches_sacrebleu_on_random_corpora(seed):
    cands, refs = noisy_corpus(seed, n=3 + seed)
    want = sacre(cands, refs)
    assert all(m > 0 for m in want.counts)  # every order matched, so the score is not trivially 0
    assert corpus_bleu(cands, refs) == pytest.approx(want.score, rel=1e-6)


@pytest.mark.parametrize("max_n", [1, 2, 3])
def test_corpus_bleu_lower_orders_match_sacrebleu_max_ngram_order(max_n):
    cands, refs = noisy_corpus(100 + max_n)
    want = sacre(cands, refs, max_n=max_n)
    assert corpus_bleu(cands, refs, max_n=max_n) == pytest.approx(want.score, rel=1e-6)


@given(
    corpus=st.lists(
        st.tuples(
            st.lists(st.integers(0, 3), min_size=1, max_size=8),
            st.lists(st.integers(0, 3), min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_corpus_bleu_matches_sacrebleu_on_any_corpus_property(corpus):
    """Including corpora where some order has no match (both give 0)."""
    cands, refs = [c for c, _ in corpus], [r for _, r in corpus]
    assert corpus_bleu(cands, refs) == pytest.approx(sacre(cands, refs).score, rel=1e-6, abs=1e-9)


def test_corpus_bleu_hand_worked_example():
    """Two sentences, worked by hand.

    1. candidate ``a b c d e``, reference ``a b c d f``: 1-grams 4/5, 2-grams 3/4,
       3-grams 2/3, 4-grams 1/2 (only ``e`` and the n-grams ending in it miss).
    2. candidate ``x y``, reference ``x y z``: 1-grams 2/2, 2-grams 1/1, no 3- or 4-grams.

    Pooled: p1 = 6/7, p2 = 4/5, p3 = 2/3, p4 = 1/2; their product is 48/210 = 8/35.
    Lengths c = 7, r = 8, so BP = exp(1 - 8/7) = exp(-1/7).
    BLEU = 100 * exp(-1/7) * (8/35)^(1/4) = 100 * 0.866878 * 0.691440 = 59.939...
    """
    cands = [list("abcde"), list("xy")]
    refs = [list("abcdf"), list("xyz")]
    want = 100 * math.exp(-1 / 7) * (8 / 35) ** 0.25
    assert want == pytest.approx(59.939, abs=1e-3)
    assert corpus_bleu(cands, refs) == pytest.approx(want, rel=1e-12)


def test_corpus_bleu_clips_repeated_ngrams_by_hand():
    """``the the the the`` against ``the cat``: the unigram count is clipped to 1 of 4; no brevity penalty."""
    assert corpus_bleu([["the"] * 4], [["the", "cat"]], max_n=1) == pytest.approx(25.0, rel=1e-12)


def test_corpus_bleu_is_zero_when_no_four_gram_matches_by_hand():
    """``a b c d`` vs ``a b c e``: p1..p3 = 3/4, 2/3, 1/2 but p4 = 0/1, so BLEU = 0."""
    assert corpus_bleu([list("abcd")], [list("abce")]) == 0.0
    assert corpus_bleu([list("abcd")], [list("abce")], max_n=3) > 0


@pytest.mark.parametrize("c,r", [(4, 5), (4, 12), (7, 9), (10, 10)])
def test_corpus_bleu_brevity_penalty_closed_form(c, r):
    """A candidate that is a prefix of its reference has all precisions 1: BLEU = 100 exp(1 - r/c) if c < r."""
    ref = list(range(r))
    want = 100.0 * (math.exp(1 - r / c) if c < r else 1.0)
    assert corpus_bleu([ref[:c]], [ref]) == pytest.approx(want, rel=1e-12)


@given(sentence=st.lists(st.integers(0, 50), min_size=1, max_size=20))
def test_corpus_bleu_of_sentence_against_itself_closed_form(sentence):
    """100 when the sentence has a 4-gram (length >= 4), else 0: no 4-gram to match."""
    want = 100.0 if len(sentence) >= 4 else 0.0
    assert corpus_bleu([sentence], [sentence]) == pytest.approx(want, rel=1e-12)


def test_corpus_bleu_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="references"):
        corpus_bleu([[1, 2]], [[1, 2], [3]])


@pytest.mark.parametrize("max_n,exc", [(0, ValueError), (2.0, TypeError)])
def test_corpus_bleu_rejects_bad_max_n(max_n, exc):
    with pytest.raises(exc, match="max_n"):
        corpus_bleu([[1, 2]], [[1, 2]], max_n=max_n)


# ---------------------------------------------------------------- exact match, strip_after


def test_exact_match_by_hand():
    cands = [[1, 2], [3], [4, 5, 6], []]
    refs = [[1, 2], [3, 4], (4, 5, 6), []]
    assert exact_match(cands, refs) == 0.75


@given(
    pairs=st.lists(
        st.tuples(st.lists(st.integers(0, 2), max_size=3), st.lists(st.integers(0, 2), max_size=3)),
        min_size=1,
        max_size=10,
    )
)
def test_exact_match_equals_brute_force_count_and_lies_in_unit_interval(pairs):
    cands, refs = [c for c, _ in pairs], [r for _, r in pairs]
    got = exact_match(cands, refs)
    count = 0
    for c, r in pairs:
        count += len(c) == len(r) and all(a == b for a, b in zip(c, r))
    assert 0.0 <= got <= 1.0
    assert got == count / len(pairs)


def test_exact_match_rejects_empty_and_mismatched():
    with pytest.raises(ValueError, match="candidates"):
        exact_match([], [])
    with pytest.raises(ValueError, match="references"):
        exact_match([[1]], [[1], [2]])


def test_strip_after_by_hand():
    tokens = torch.tensor([[5, 6, 2, 7, 2], [2, 5, 5, 5, 5], [5, 6, 7, 8, 9], [5, 0, 0, 2, 0]])
    assert strip_after(tokens, eos=2) == [[5, 6], [], [5, 6, 7, 8, 9], [5, 0, 0]]


def test_strip_after_single_element_edge():
    assert strip_after(torch.tensor([[2]]), eos=2) == [[]]
    assert strip_after(torch.tensor([[3]]), eos=2) == [[3]]


@pytest.mark.parametrize(
    "bad,exc", [(torch.tensor([1, 2]), ValueError), (torch.ones(2, 2), TypeError), ([[1, 2]], TypeError)]
)
def test_strip_after_rejects_bad_tokens(bad, exc):
    with pytest.raises(exc, match="tokens"):
        strip_after(bad, eos=2)


# ---------------------------------------------------------------- critical path


def _all_path_costs(fn) -> list[int]:
    """Brute force: the cost of every path from ``fn`` down to a leaf, enumerated one by one."""
    from papers30.metrics import VIEW_NODES, _node_kind

    own = 0 if _node_kind(fn) in VIEW_NODES else 1
    children = [c for c, _ in fn.next_functions if c is not None]
    if not children:
        return [own]
    return [own + rest for c in children for rest in _all_path_costs(c)]


@pytest.mark.parametrize("n", [1, 2, 7])
def test_critical_path_of_a_chain_closed_form(n):
    x = torch.randn(3, requires_grad=True)
    y = x
    for _ in range(n):
        y = y.tanh()
    assert critical_path(y) == n


def test_critical_path_views_are_free_and_branches_take_the_longer_by_hand():
    x = torch.randn(3, requires_grad=True)
    y = (x * 2).view(3, 1).t().squeeze(0).sin()  # mul, sin: two operations; view, t, squeeze: free
    assert critical_path(y) == 2
    assert critical_path(y + x.exp()) == 3  # add on top of the longer branch (mul, sin), not of exp


@pytest.mark.parametrize("T", [1, 2, 3])
def test_critical_path_matches_brute_force_path_enumeration(T, gen):
    from papers30.recurrent import GRU

    rnn = GRU(2, 3, batch_first=True)
    out, _ = rnn(torch.randn(2, T, 2, generator=gen))
    loss = out.square().mean()
    assert critical_path(loss) == max(_all_path_costs(loss.grad_fn))


def test_critical_path_grows_linearly_in_recurrent_steps_and_not_in_attention_length(gen):
    """A recurrence adds the same chain per step; self-attention over more positions adds none."""
    from papers30.attention import MultiheadAttention
    from papers30.recurrent import GRU

    rnn = GRU(2, 3, batch_first=True)
    rnn_depth = [critical_path(rnn(torch.randn(1, T, 2, generator=gen))[0].sum()) for T in (2, 3, 4, 5)]
    steps = [b - a for a, b in zip(rnn_depth, rnn_depth[1:])]
    assert len(set(steps)) == 1 and steps[0] > 0
    mha = MultiheadAttention(4, 2)
    att_depth = [critical_path(mha(x, x, x)[0].sum()) for x in (torch.randn(1, L, 4, generator=gen) for L in (2, 9))]
    assert att_depth[0] == att_depth[1]


def test_critical_path_rejects_bad_output():
    with pytest.raises(TypeError, match="output"):
        critical_path([1.0])
    with pytest.raises(ValueError, match="output"):
        critical_path(torch.ones(2))


# ---------------------------------------------------------------- mean IoU (chapter 11)


@given(st.integers(0, 2**31 - 1), st.integers(2, 5))
def test_mean_iou_matches_a_confusion_matrix_counted_pixel_by_pixel(seed, k):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (3, 5, 4), generator=g)
    pred = torch.where(torch.rand(3, 5, 4, generator=g) < 0.6, target, torch.randint(0, k, (3, 5, 4), generator=g))
    confusion = [[0] * k for _ in range(k)]
    for t, q in zip(target.flatten().tolist(), pred.flatten().tolist()):
        confusion[t][q] += 1
    ious = []
    for c in range(k):
        tp = confusion[c][c]
        union = sum(confusion[c]) + sum(row[c] for row in confusion) - tp
        if union:
            ious.append(tp / union)
    assert mean_iou(pred, target, k) == pytest.approx(100 * sum(ious) / len(ious))


def test_mean_iou_by_hand():
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    # class 0: 1 / 2; class 1: 2 / 3
    assert mean_iou(pred, target, 2) == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert mean_iou(target, target, 3) == 100.0  # class 2 absent from both: not counted


@pytest.mark.parametrize(
    "args,exc,word",
    [
        ((torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long), 2), TypeError, "pred"),
        ((torch.zeros(2, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long), 2), ValueError, "pred"),
        ((torch.full((2,), 2), torch.zeros(2, dtype=torch.long), 2), ValueError, "pred"),
        ((torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), 0), ValueError, "num_classes"),
    ],
)
def test_mean_iou_bad_inputs(args, exc, word):
    with pytest.raises(exc, match=word):
        mean_iou(*args)


def test_alignment_accuracy_counts_argmax_hits_per_head_by_brute_force():
    from papers30.metrics import alignment_accuracy

    g = torch.Generator().manual_seed(0)
    weights = torch.rand(3, 2, 5, 6, generator=g)
    alignments = [[0, 1, 2], [5, 4], [3, 3, 3, 3, 3]]
    got = alignment_accuracy(weights, alignments)
    for h in range(2):
        hits = total = 0
        for b, align in enumerate(alignments):
            for t, s in enumerate(align):
                row = weights[b, h, t].tolist()
                hits += row.index(max(row)) == s
                total += 1
        assert got[h].item() == pytest.approx(hits / total)


def test_alignment_accuracy_rejects_bad_input():
    from papers30.metrics import alignment_accuracy

    w = torch.rand(2, 1, 3, 3)
    with pytest.raises(ValueError, match="alignments"):
        alignment_accuracy(w, [[0]])
    with pytest.raises(ValueError, match="alignments"):
        alignment_accuracy(w, [[0, 1, 2, 0], [0]])
    with pytest.raises(ValueError, match="alignments"):
        alignment_accuracy(w, [[], []])
    with pytest.raises(ValueError, match="weights"):
        alignment_accuracy(torch.rand(2, 3, 3), [[0], [0]])
