"""papers30.data.synthetic against an independent re-implementation of the task."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.data import BOS, EOS, PAD, ToyTranslation, pad_batch
from papers30.data.synthetic import N_SPECIAL, Batch


def until(row: list[int], stop: int) -> list[int]:
    return row[: row.index(stop)] if stop in row else row


def reference_translation(task: ToyTranslation, words: list[int]) -> tuple[list[int], list[int]]:
    """Reverse the sentence, look each word up in ``task.dictionary``; align each output to its source index."""
    out, align = [], []
    for i, w in reversed(list(enumerate(words))):
        out += task.dictionary[w]
        align += [i] * len(task.dictionary[w])
    return out, align


@pytest.fixture(scope="module")
def task():
    g = torch.Generator().manual_seed(3)
    return ToyTranslation(n_words=12, min_len=1, max_len=7, two_word_fraction=0.5, generator=g)


@pytest.mark.parametrize("batch_size", [1, 5, 33])
def test_batch_labels_match_independent_reimplementation(task, batch_size):
    b = task.sample(batch_size, torch.Generator().manual_seed(batch_size))
    assert b.src.shape[0] == b.tgt_in.shape[0] == b.tgt_out.shape[0] == len(b.align) == batch_size
    for src, tgt_out, align in zip(b.src.tolist(), b.tgt_out.tolist(), b.align):
        words = until(src, EOS)
        want, want_align = reference_translation(task, words)
        assert until(tgt_out, EOS) == want
        assert align == want_align


def test_alignment_points_at_the_source_word_that_produced_each_target_word(task):
    b = task.sample(40, torch.Generator().manual_seed(0))
    for src, tgt_out, align in zip(b.src.tolist(), b.tgt_out.tolist(), b.align):
        target = until(tgt_out, EOS)
        assert len(align) == len(target)
        for j, i in enumerate(align):
            assert target[j] in task.dictionary[src[i]]
        assert align == sorted(align, reverse=True)  # reversed word order
        assert set(align) == set(range(len(until(src, EOS))))  # every source word is translated


def test_batch_framing_eos_bos_shift_and_padding(task):
    b = task.sample(40, torch.Generator().manual_seed(1))
    assert (b.tgt_in[:, 0] == BOS).all()
    for src, tin, tout in zip(b.src.tolist(), b.tgt_in.tolist(), b.tgt_out.tolist()):
        n = len(until(src, EOS))
        assert src[n] == EOS and all(t == PAD for t in src[n + 1 :])
        assert PAD not in src[:n] and BOS not in src[:n]
        m = len(until(tout, EOS))
        assert tout[m] == EOS and all(t == PAD for t in tout[m + 1 :])
        assert tin[1 : m + 1] == tout[:m]  # tgt_in[:, 1:] == tgt_out[:, :-1] on non-pad positions
        assert all(t == PAD for t in tin[m + 1 :])
    assert ((b.tgt_in != PAD).sum(1) == (b.tgt_out != PAD).sum(1)).all()


def test_lengths_lie_in_range_and_lengths_argument_overrides(task):
    b = task.sample(60, torch.Generator().manual_seed(2))
    n = (b.src != PAD).sum(1) - 1
    assert n.min() >= 1 and n.max() <= 7
    assert set(n.tolist()) == set(range(1, 8))  # 60 draws cover all seven lengths
    b = task.sample(20, torch.Generator().manual_seed(2), lengths=(9, 9))
    assert ((b.src != PAD).sum(1) == 10).all()


@pytest.mark.parametrize("n_words,frac", [(1, 0.0), (1, 1.0), (2, 0.5), (24, 0.25), (10, 0.33)])
def test_dictionary_and_vocab_sizes_closed_form(n_words, frac):
    task = ToyTranslation(n_words=n_words, min_len=1, max_len=2, two_word_fraction=frac)
    n_two = round(frac * n_words)
    assert task.src_vocab == N_SPECIAL + n_words
    assert task.tgt_vocab == N_SPECIAL + n_words + n_two
    assert sorted(task.dictionary) == list(range(N_SPECIAL, N_SPECIAL + n_words))
    assert sum(len(v) == 2 for v in task.dictionary.values()) == n_two
    assert all(1 <= len(v) <= 2 for v in task.dictionary.values())
    used = [t for v in task.dictionary.values() for t in v]
    assert sorted(used) == list(range(N_SPECIAL, task.tgt_vocab))  # every target word used exactly once


def test_same_seed_same_task_and_samples_different_seed_differs():
    make = lambda s: ToyTranslation(generator=torch.Generator().manual_seed(s))  # noqa: E731
    a, b, c = make(5), make(5), make(6)
    assert a.dictionary == b.dictionary and a.dictionary != c.dictionary
    x = a.sample(16, torch.Generator().manual_seed(9))
    y = b.sample(16, torch.Generator().manual_seed(9))
    z = a.sample(16, torch.Generator().manual_seed(10))
    assert torch.equal(x.src, y.src) and torch.equal(x.tgt_in, y.tgt_in) and torch.equal(x.tgt_out, y.tgt_out)
    assert x.align == y.align
    assert not torch.equal(x.src, z.src)


def test_default_generator_is_seeded():
    assert ToyTranslation().dictionary == ToyTranslation().dictionary


@pytest.mark.parametrize("keep", list(itertools.product([3, 4], repeat=2)))
def test_exclude_keeps_excluded_sentences_out_brute_force_enumeration(keep):
    """Two words, length two: four possible sentences; exclude three, every sample is the fourth."""
    task = ToyTranslation(n_words=2, min_len=2, max_len=2)
    every = set(itertools.product([3, 4], repeat=2))
    b = task.sample(25, torch.Generator().manual_seed(0), exclude=every - {keep})
    assert all(tuple(row[:2]) == keep for row in b.src.tolist())
    assert (b.src[:, 2] == EOS).all()


@given(seed=st.integers(0, 2**16), batch_size=st.integers(1, 8))
def test_all_tokens_are_in_their_vocabularies_property(task, seed, batch_size):
    b = task.sample(batch_size, torch.Generator().manual_seed(seed))
    assert 0 <= b.src.min() and b.src.max() < task.src_vocab
    assert 0 <= b.tgt_in.min() and b.tgt_in.max() < task.tgt_vocab
    assert 0 <= b.tgt_out.min() and b.tgt_out.max() < task.tgt_vocab
    assert b.src.dtype == b.tgt_in.dtype == b.tgt_out.dtype == torch.long


def test_translate_by_hand():
    task = ToyTranslation(n_words=3, two_word_fraction=1.0)
    d = task.dictionary
    out, align = task.translate([3, 5, 3])
    assert out == d[3] + d[5] + d[3]
    assert align == [2, 2, 1, 1, 0, 0]


def test_batch_method_by_hand():
    task = ToyTranslation(n_words=3, two_word_fraction=0.0)
    d = {w: v[0] for w, v in task.dictionary.items()}
    b = task.batch([[3], [4, 5]])
    assert b.src.tolist() == [[3, EOS, PAD], [4, 5, EOS]]
    assert b.tgt_in.tolist() == [[BOS, d[3], PAD], [BOS, d[5], d[4]]]
    assert b.tgt_out.tolist() == [[d[3], EOS, PAD], [d[5], d[4], EOS]]
    assert b.align == [[0], [1, 0]]
    moved = b.to(torch.device("cpu"))
    assert isinstance(moved, Batch) and torch.equal(moved.src, b.src) and moved.align == b.align


def test_pad_batch_by_hand():
    assert pad_batch([[5], [6, 7, 8], []]).tolist() == [[5, 0, 0], [6, 7, 8], [0, 0, 0]]
    assert pad_batch([[1, 2]], pad=9).tolist() == [[1, 2]]
    assert pad_batch([[1], [2, 3]], pad=9).tolist() == [[1, 9], [2, 3]]
    assert pad_batch([[4]]).dtype == torch.long


def test_pad_batch_rejects_empty_list():
    with pytest.raises(ValueError, match="seqs"):
        pad_batch([])


@pytest.mark.parametrize(
    "kw,exc,name",
    [
        ({"n_words": 0}, ValueError, "n_words"),
        ({"n_words": 2.0}, TypeError, "n_words"),
        ({"min_len": 0}, ValueError, "min_len"),
        ({"max_len": 3.5}, TypeError, "max_len"),
        ({"min_len": 5, "max_len": 4}, ValueError, "min_len"),
        ({"two_word_fraction": 1.5}, ValueError, "two_word_fraction"),
        ({"two_word_fraction": "0.5"}, TypeError, "two_word_fraction"),
    ],
)
def test_toy_translation_rejects_bad_arguments(kw, exc, name):
    with pytest.raises(exc, match=name):
        ToyTranslation(**kw)


@pytest.mark.parametrize("bs,exc", [(0, ValueError), (2.0, TypeError)])
def test_sample_rejects_bad_batch_size(task, bs, exc):
    with pytest.raises(exc, match="batch_size"):
        task.sample(bs, torch.Generator().manual_seed(0))


# ------------------------------------------------------------- remember_symbol (chapter 3)


@pytest.mark.parametrize("batch,lag,k,n", [(1, 1, 1, 1), (5, 3, 4, 4), (64, 20, 3, 7)])
def test_remember_symbol_labels_match_a_scan_for_the_only_symbol(batch, lag, k, n):
    """Reference: walk each sequence, keep the one token below ``k``, and check its position."""
    from papers30.data.synthetic import remember_symbol

    tokens, labels = remember_symbol(batch, lag, k, n, torch.Generator().manual_seed(5))
    assert tokens.shape == (batch, lag + 1) and labels.shape == (batch,)
    for row, label in zip(tokens.tolist(), labels.tolist()):
        symbols = [(t, tok) for t, tok in enumerate(row) if tok < k]
        assert symbols == [(0, label)]  # one symbol, lag steps before the end
        assert all(k <= tok < k + n for tok in row[1:])


def test_remember_symbol_is_seeded_and_covers_every_class():
    from papers30.data.synthetic import remember_symbol

    a = remember_symbol(400, 4, generator=torch.Generator().manual_seed(9))
    b = remember_symbol(400, 4, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert set(a[1].tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("arg,value,exc", [("lag", 0, ValueError), ("batch_size", 2.0, TypeError),
                                           ("n_symbols", 0, ValueError)])
def test_remember_symbol_bad_inputs_name_the_argument(arg, value, exc):
    from papers30.data.synthetic import remember_symbol

    kwargs = {"batch_size": 2, "lag": 3, "n_symbols": 2} | {arg: value}
    with pytest.raises(exc, match=arg):
        remember_symbol(**kwargs)


# ------------------------------------------------------------------ sorting_task (chapter 8)


@pytest.mark.parametrize("batch,n", [(1, 1), (3, 5), (50, 10)])
def test_sorting_task_labels_match_python_sorted(batch, n):
    """Reference: Python's ``sorted`` over (value, position) pairs of each row."""
    from papers30.data.synthetic import sorting_task

    x, order = sorting_task(batch, n, torch.Generator().manual_seed(n))
    assert x.shape == order.shape == (batch, n)
    assert x.dtype == torch.float32 and order.dtype == torch.long
    assert bool(((x >= 0) & (x < 1)).all())
    for row, labels in zip(x.tolist(), order.tolist()):
        assert labels == [i for _, i in sorted((v, i) for i, v in enumerate(row))]
        assert [row[i] for i in labels] == sorted(row)


def test_sorting_task_is_seeded():
    from papers30.data.synthetic import sorting_task

    a = sorting_task(20, 6, torch.Generator().manual_seed(4))
    b = sorting_task(20, 6, torch.Generator().manual_seed(4))
    c = sorting_task(20, 6, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(sorting_task(3, 2)[0], sorting_task(3, 2)[0])  # default generator is seeded


@pytest.mark.parametrize("arg,value,exc", [("batch_size", 0, ValueError), ("n", 2.0, TypeError), ("n", -1, ValueError)])
def test_sorting_task_bad_inputs_name_the_argument(arg, value, exc):
    from papers30.data.synthetic import sorting_task

    kwargs = {"batch_size": 2, "n": 3} | {arg: value}
    with pytest.raises(exc, match=arg):
        sorting_task(**kwargs)


# ---- chapter 18: the N-th farthest task, against a brute-force ranking


def _nth_farthest_brute(inputs: torch.Tensor, dim: int, K: int) -> list[int]:
    """Decode each example's vectors, IDs, n and m from the inputs; rank distances in plain Python."""
    answers = []
    for row in inputs.tolist():
        vecs = [r[:dim] for r in row]
        ids = [r[dim : dim + K].index(1.0) for r in row]
        n = row[0][dim + K : dim + 2 * K].index(1.0)
        m = row[0][dim + 2 * K :].index(1.0)
        ref = vecs[ids.index(m)]
        dists = [sum((a - b) ** 2 for a, b in zip(v, ref)) ** 0.5 for v in vecs]
        ranked = sorted(range(K), key=lambda k: -dists[k])
        answers.append(ids[ranked[n]])
    return answers


@pytest.mark.parametrize("B,K,dim", [(1, 1, 1), (7, 4, 2), (16, 8, 16), (5, 3, 5)])
def test_nth_farthest_matches_brute_force(B, K, dim):
    from papers30.data.synthetic import nth_farthest

    g = torch.Generator().manual_seed(18)
    inputs, targets = nth_farthest(B, K, dim, generator=g)
    assert inputs.shape == (B, K, dim + 3 * K) and inputs.dtype == torch.float32
    assert targets.shape == (B,) and targets.dtype == torch.long
    assert targets.tolist() == _nth_farthest_brute(inputs, dim, K)
    ids = inputs[..., dim : dim + K].argmax(-1)
    assert (ids.sort(dim=1).values == torch.arange(K)).all()  # IDs are a permutation
    assert (inputs[..., dim + K :] == inputs[:, :1, dim + K :]).all()  # the question is repeated


@pytest.mark.parametrize("ranks", [[0], [0, 1, 2], (2,)])
def test_nth_farthest_ranks_restricts_the_question(ranks):
    from papers30.data.synthetic import nth_farthest

    inputs, targets = nth_farthest(300, 4, 3, generator=torch.Generator().manual_seed(5), ranks=ranks)
    asked = inputs[:, 0, 3 + 4 : 3 + 8].argmax(-1)
    assert set(asked.tolist()) == set(ranks)
    assert targets.tolist() == _nth_farthest_brute(inputs, 3, 4)


@pytest.mark.parametrize("ranks", [[], [4], [-1], [0.0], "0", [True]])
def test_nth_farthest_rejects_bad_ranks(ranks):
    from papers30.data.synthetic import nth_farthest

    with pytest.raises(ValueError, match="ranks"):
        nth_farthest(2, 4, 2, ranks=ranks)


def test_nth_farthest_is_seeded_and_covers_all_answers():
    from papers30.data.synthetic import nth_farthest

    a = nth_farthest(200, 4, 2, generator=torch.Generator().manual_seed(3))
    b = nth_farthest(200, 4, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert set(a[1].tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("arg,value,exc", [("batch_size", 0, ValueError), ("n_vectors", 2.0, TypeError),
                                           ("dim", -1, ValueError)])
def test_nth_farthest_rejects_bad_sizes(arg, value, exc):
    from papers30.data.synthetic import nth_farthest

    kwargs = {"batch_size": 2, "n_vectors": 4, "dim": 2, arg: value}
    with pytest.raises(exc, match=arg):
        nth_farthest(**kwargs)


# ------------------------------------------------------------ copy task (chapter 20)


@pytest.mark.parametrize("batch_size,length,width", [(1, 1, 1), (3, 4, 8), (2, 7, 3)])
def test_copy_task_matches_step_by_step_construction(batch_size, length, width):
    from papers30.data.synthetic import copy_task

    inputs, targets = copy_task(batch_size, length, width, torch.Generator().manual_seed(length))
    assert inputs.shape == (batch_size, 2 * length + 1, width + 1)
    assert targets.shape == (batch_size, length, width)
    for b in range(batch_size):
        rows = [list(map(float, v)) + [0.0] for v in targets[b].tolist()]  # the bits, flag off
        rows += [[0.0] * width + [1.0]]  # the delimiter
        rows += [[0.0] * (width + 1)] * length  # blanks while the copy is written
        assert inputs[b].tolist() == rows
    assert set(targets.unique().tolist()) <= {0.0, 1.0}


def test_copy_task_is_seeded_and_bits_are_fair():
    from papers30.data.synthetic import copy_task

    a = copy_task(64, 10, 8, torch.Generator().manual_seed(1))
    b = copy_task(64, 10, 8, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert abs(a[1].mean().item() - 0.5) < 0.05  # 5120 fair bits: sd 0.007


def test_copy_task_bad_inputs_name_the_argument():
    from papers30.data.synthetic import copy_task

    with pytest.raises(ValueError, match="^length "):
        copy_task(2, 0)
    with pytest.raises(TypeError, match="^width "):
        copy_task(2, 3, 2.5)


# --- chapter 11: nearest-seed segmentation ---------------------------------------------

from papers30.data.synthetic import nearest_seed_segmentation  # noqa: E402


def reference_nearest_seed(image: torch.Tensor) -> tuple[list[list[int]], list[list[float]]]:
    """Find the seeds in a one-hot image (C, H, W) and label each pixel by a loop over them."""
    seeds = [(c, i, j) for c, i, j in image.nonzero().tolist()]
    _, H, W = image.shape
    labels, dist = [], []
    for y in range(H):
        row_l, row_d = [], []
        for x in range(W):
            best = min((y - i) ** 2 + (x - j) ** 2 for _, i, j in seeds)
            classes = {c for c, i, j in seeds if (y - i) ** 2 + (x - j) ** 2 == best}
            row_l.append(classes)
            row_d.append(best**0.5)
        labels.append(row_l)
        dist.append(row_d)
    return labels, dist


@pytest.mark.parametrize("size,n_seeds,n_classes", [(1, 1, 1), (5, 1, 2), (8, 3, 2), (9, 5, 3), (4, 16, 2)])
def test_nearest_seed_labels_match_brute_force(size, n_seeds, n_classes):
    images, labels, distance = nearest_seed_segmentation(3, size, n_seeds, n_classes, torch.Generator().manual_seed(7))
    assert images.shape == (3, n_classes, size, size) and labels.shape == distance.shape == (3, size, size)
    assert labels.dtype == torch.long and images.dtype == torch.float32
    for b in range(3):
        assert int(images[b].sum()) == n_seeds  # distinct positions, one class each
        assert images[b].sum(0).max() == 1
        ref_labels, ref_dist = reference_nearest_seed(images[b])
        for y in range(size):
            for x in range(size):
                # on an exact tie any tied seed's class is a correct label; off ties the set has one class
                assert int(labels[b, y, x]) in ref_labels[y][x]
        torch.testing.assert_close(distance[b], torch.tensor(ref_dist), rtol=1e-6, atol=1e-6)


def test_nearest_seed_ties_go_to_the_first_seed_drawn():
    # with every pixel a seed, each pixel is its own nearest seed at distance 0
    images, labels, distance = nearest_seed_segmentation(2, 3, 9, 4, torch.Generator().manual_seed(0))
    assert torch.equal(labels, images.argmax(1))
    assert distance.abs().max() == 0


def test_nearest_seed_is_seeded():
    a = nearest_seed_segmentation(2, 6, 3, 2, torch.Generator().manual_seed(3))
    b = nearest_seed_segmentation(2, 6, 3, 2, torch.Generator().manual_seed(3))
    for u, v in zip(a, b):
        assert torch.equal(u, v)


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=1, size=2.0), TypeError, "size"),
        (dict(batch_size=1, size=2, n_seeds=5), ValueError, "n_seeds"),
        (dict(batch_size=1, n_classes=0), ValueError, "n_classes"),
    ],
)
def test_nearest_seed_bad_inputs(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        nearest_seed_segmentation(**kwargs)


# ---------------------------------------------------------------- toy_translation_data


def test_sentences_by_hand():
    task = ToyTranslation(n_words=3, two_word_fraction=0.0)
    assert task.batch([[3], [4, 5, 3]]).sentences() == [(3,), (4, 5, 3)]


def test_translation_data_is_one_draw_per_seed():
    """Two calls with one seed agree in everything (the batches two models see); another seed differs."""
    from papers30.data import toy_translation_data

    a, b, c = toy_translation_data(7, 5), toy_translation_data(7, 5), toy_translation_data(8, 5)
    assert a.task.dictionary == b.task.dictionary != c.task.dictionary
    for x, y in [(a.test, b.test), (a.valid, b.valid)] + list(zip(a.batches, b.batches)):
        assert torch.equal(x.src, y.src) and torch.equal(x.tgt_out, y.tgt_out) and x.align == y.align
    assert not torch.equal(a.test.src, c.test.src)


def test_translation_data_first_batches_do_not_depend_on_steps():
    from papers30.data import toy_translation_data

    short, long = toy_translation_data(3, 4), toy_translation_data(3, 9)
    assert len(short.batches) == 4 and len(long.batches) == 9
    for x, y in zip(short.batches, long.batches):
        assert torch.equal(x.src, y.src) and torch.equal(x.tgt_in, y.tgt_in)


def test_translation_data_keeps_held_out_sentences_out_brute_force():
    """Every training sentence checked against every held-out one; the two held-out sets are disjoint."""
    from papers30.data import toy_translation_data

    data = toy_translation_data(0, 50, batch_size=16, valid_size=60, test_size=80, n_words=3, min_len=1, max_len=4)
    test, valid = data.test.sentences(), data.valid.sentences()
    assert len(test) == 80 and len(valid) == 60
    assert not set(test) & set(valid)
    held = set(test) | set(valid)
    trained = [s for b in data.batches for s in b.sentences()]
    assert len(trained) == 50 * 16 and not [s for s in trained if s in held]
    assert all(1 <= len(s) <= 4 for s in trained + test + valid)


@pytest.mark.parametrize(
    "kw,exc,name",
    [({"seed": 1.0}, TypeError, "seed"), ({"steps": 0}, ValueError, "steps"), ({"valid_size": 0}, ValueError, "valid_size"),
     ({"test_size": -1}, ValueError, "test_size"), ({"batch_size": 0}, ValueError, "batch_size")],
)
def test_translation_data_rejects_bad_arguments(kw, exc, name):
    from papers30.data import toy_translation_data

    args = {"seed": 0, "steps": 1, **kw}
    with pytest.raises(exc, match=name):
        toy_translation_data(**args)
