"""papers30.regularization against brute force: counting, hand-written loops, the real dropout calls."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from papers30.data.text import BPTTBatches
from papers30.language import LanguageModel, evaluate
from papers30.data.text import load_text, tokenize
from papers30.runtime import seed_everything
from papers30.regularization import (UNK, Run, frequent_vocab, overfitting_gap, path_survival,
                                     train_language_model, train_word_model, windowed_perplexity, word_corpus)

WORDS = "the cat sat on the mat and the dog sat on the cat".split()


# ------------------------------------------------------------------ frequent_vocab


@pytest.mark.parametrize("min_count", [1, 2, 3, 5])
def test_frequent_vocab_matches_counter(min_count):
    vocab = frequent_vocab(WORDS, min_count)
    counts = Counter(WORDS)
    kept = {w for w, n in counts.items() if n >= min_count}
    assert set(vocab.itos) == kept | {UNK}
    ids = vocab.encode(WORDS)
    for w, i in zip(WORDS, ids.tolist()):  # rare words become <unk>, the rest themselves
        assert vocab.itos[i] == (w if w in kept else UNK)


def test_frequent_vocab_by_hand():
    vocab = frequent_vocab(WORDS, 2)
    assert vocab.itos == sorted(["the", "cat", "sat", "on", UNK])
    assert vocab.to_text(vocab.encode(["the", "dog", "zebra"]), " ") == f"the {UNK} {UNK}"


@given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=40), st.integers(1, 4))
def test_frequent_vocab_property_size(tokens, min_count):
    vocab = frequent_vocab(tokens, min_count)
    assert len(vocab) == sum(n >= min_count for n in Counter(tokens).values()) + 1


# ----------------------------------------------------------------- overfitting_gap


@pytest.mark.parametrize(
    "curve,gap",
    [([5.0], 1.0), ([9.0, 7.0, 5.0], 1.0), ([9.0, 4.0, 6.0], 1.5), ([3.0, 2.0, 8.0, 4.0], 2.0)],
)
def test_overfitting_gap_by_hand(curve, gap):
    assert overfitting_gap(curve) == pytest.approx(gap)


@given(st.lists(st.floats(0.5, 1e4), min_size=1, max_size=30))
def test_overfitting_gap_brute_force(curve):
    best = curve[0]
    for v in curve:  # the running minimum, by hand
        best = v if v < best else best
    assert overfitting_gap(curve) == pytest.approx(curve[-1] / best)
    assert overfitting_gap(curve) >= 1.0


# ------------------------------------------------------------------- path_survival


def enumerate_survival(p: float, masks: int) -> float:
    """Sum, over every keep/drop pattern of the masks on the path, of the patterns that keep all."""
    total = 0.0
    for pattern in itertools.product([True, False], repeat=masks):
        prob = math.prod((1 - p) if keep else p for keep in pattern)
        total += prob if all(pattern) else 0.0
    return total


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("layers,span", [(1, 0), (1, 3), (2, 1), (3, 4)])
def test_path_survival_matches_enumeration(p, layers, span):
    assert path_survival(p, layers, span, "none") == 1.0
    assert path_survival(p, layers, span) == pytest.approx(enumerate_survival(p, layers + 1))
    got = path_survival(p, layers, span, "recurrent")
    assert got == pytest.approx(enumerate_survival(p, layers + 1 + span))


@given(st.floats(0.01, 0.9), st.integers(1, 4), st.integers(0, 50))
def test_path_survival_span_property(p, layers, span):
    assert path_survival(p, layers, span + 1) == path_survival(p, layers, span)  # span-free
    assert path_survival(p, layers, span + 1, "recurrent") < path_survival(p, layers, span, "recurrent")


@pytest.mark.parametrize("layers,T", [(1, 1), (1, 5), (2, 3)])
def test_mask_count_matches_the_real_lstm(layers, T, monkeypatch):
    """The masks counted by eq. (reg-survival) are the F.dropout calls papers30.recurrent really makes."""
    calls = []
    original = F.dropout

    def counting(x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return original(x, *args, **kwargs)

    monkeypatch.setattr(F, "dropout", counting)
    tokens = torch.zeros(2, T, dtype=torch.long)
    for placement, extra in (("non_recurrent", 0), ("recurrent", layers * T)):
        calls.clear()
        model = LanguageModel(7, 3, layers, dropout=0.5, dropout_placement=placement).train()
        model(tokens)
        # one mask per layer input, one on the top output (no matter T), plus one per recurrent step
        assert len(calls) == layers + 1 + extra
    calls.clear()
    LanguageModel(7, 3, layers, dropout=0.5, dropout_placement="none").train()(tokens)
    assert calls == []


# ----------------------------------------------------------- train_language_model


def tiny_setup(seed: int = 0):
    torch.manual_seed(seed)
    ids = torch.randint(0, 6, (120,), generator=torch.Generator().manual_seed(3))
    train, valid = BPTTBatches(ids[:90], 3, 5), BPTTBatches(ids[90:], 2, 7)
    model = LanguageModel(6, 4, dropout=0.3, init_range=0.1).double()
    return model, train, valid


def hand_loop(model, train, steps, lr, clip):
    """Truncated BPTT written out: carried, detached state; reset at the start of each pass."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses, state = [], None
    model.train()
    for step in range(steps):
        i = step % len(train)
        x, y = train[i]
        state = None if i == 0 else tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, 6), y.reshape(-1)) / math.log(2)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("steps,every", [(1, 1), (7, 3), (12, 4)])
def test_train_language_model_matches_hand_loop(steps, every):
    model, train, valid = tiny_setup()
    torch.manual_seed(5)  # the same dropout masks in both runs
    run = train_language_model(model, torch.optim.SGD(model.parameters(), lr=0.5), train, valid, steps,
                               every=every, clip=1.0)
    ref, _, _ = tiny_setup()
    torch.manual_seed(5)
    losses = hand_loop(ref, train, steps, 0.5, 1.0)
    assert isinstance(run, Run)
    assert run.history.losses == pytest.approx(losses, rel=1e-10)
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    want_steps = sorted(set(range(every, steps + 1, every)) | {steps})
    assert run.history.eval_steps == want_steps
    # the final validation figure is the perplexity of the final weights, without dropout
    assert run.final_valid == pytest.approx(evaluate(ref, valid).perplexity, rel=1e-10)


def test_train_language_model_keeps_the_best_weights():
    model, train, valid = tiny_setup(1)
    run = train_language_model(model, torch.optim.SGD(model.parameters(), lr=2.0), train, valid, 20,
                               every=2, train_probe=train)
    curve = run.history.metric("valid")
    i = min(range(len(curve)), key=curve.__getitem__)  # first minimum, by hand
    assert run.best_valid == curve[i] and run.best_step == run.history.eval_steps[i]
    assert len(run.history.metric("train")) == len(curve)
    best, _, _ = tiny_setup(1)
    best.load_state_dict(run.best_state)
    assert evaluate(best, valid).perplexity == pytest.approx(run.best_valid, rel=1e-10)
    if run.best_step != run.history.eval_steps[-1]:  # the copy is not the live weights
        assert not torch.equal(run.best_state["head.weight"], model.head.weight)


# ------------------------------------------------------------- windowed_perplexity


@pytest.mark.parametrize("N,window", [(2, 1), (11, 1), (11, 3), (20, 19), (25, 4)])
def test_windowed_perplexity_matches_window_by_window_loop(N, window):
    model = LanguageModel(5, 3, 2, dropout=0.5, init_range=0.5).double().train()
    ids = torch.randint(0, 5, (N,), generator=torch.Generator().manual_seed(N))
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, N - window, window):  # every full window, one at a time
            x, y = ids[start : start + window], ids[start + 1 : start + window + 1]
            logits, _ = model(x[None])
            total += nn.functional.cross_entropy(logits[0], y, reduction="sum").item()
            count += window
    model.train()
    assert windowed_perplexity(model, ids, window) == pytest.approx(math.exp(total / count), rel=1e-10)
    assert model.training  # mode restored


def test_windowed_perplexity_with_one_window_equals_evaluate():
    """A single window covering the stream is the carried-state evaluation of one row."""
    model = LanguageModel(5, 3, init_range=0.5).double()
    ids = torch.randint(0, 5, (13,), generator=torch.Generator().manual_seed(0))
    want = evaluate(model, BPTTBatches(ids, 1, 4)).perplexity
    assert windowed_perplexity(model, ids, 12) == pytest.approx(want, rel=1e-10)


# ------------------------------------------------------------------- the word corpus


def test_word_corpus_matches_counting_by_hand():
    words = tokenize(load_text("shakespeare").lower(), "word")  # independent: the tokens, counted here
    corpus = word_corpus(3000, 500, min_count=3)
    counts = Counter(words[:3000])
    assert set(corpus.vocab.itos) == {w for w, n in counts.items() if n >= 3} | {UNK}
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (3000, 500, 500)
    back = corpus.vocab.decode(torch.cat([corpus.train, corpus.valid, corpus.test]))
    assert back == [w if counts[w] >= 3 else UNK for w in words[:4000]]


def test_word_corpus_pieces_hold_out_the_end_of_every_piece():
    """Reference: the split written out by hand for 4 pieces of 950 tokens, 100 + 100 held out of each."""
    words = tokenize(load_text("shakespeare").lower(), "word")
    corpus = word_corpus(3000, 400, min_count=2, pieces=4)
    train = [w for i in range(4) for w in words[950 * i : 950 * i + 750]]
    valid = [w for i in range(4) for w in words[950 * i + 750 : 950 * i + 850]]
    test = [w for i in range(4) for w in words[950 * i + 850 : 950 * (i + 1)]]
    counts = Counter(train)
    known = lambda ws: [w if counts[w] >= 2 else UNK for w in ws]  # noqa: E731
    assert corpus.vocab.decode(corpus.train) == known(train)
    assert corpus.vocab.decode(corpus.valid) == known(valid)
    assert corpus.vocab.decode(corpus.test) == known(test)
    assert set(corpus.vocab.itos) == {w for w, n in counts.items() if n >= 2} | {UNK}


def test_train_word_model_is_reproducible_and_uses_dropout():
    kw = dict(seed=2, n_train=2000, n_valid=300, hidden=8, batch=4, bptt=5, steps=6, every=3)
    full = train_word_model(**kw, dropout=0.5)
    assert train_word_model(**kw, dropout=0.5, stop_after=4).losses == full.losses[:4]
    assert full.model.dropout == 0.5 and full.model.fused
    assert full.history.eval_steps == [3, 6] and full.best_step in (3, 6)
    plain = train_word_model(**kw)
    assert plain.losses[0] != full.losses[0]  # same weights and batch, but no masks


def test_train_word_model_cosine_schedule_matches_a_hand_built_run():
    """Reference: the same run assembled by hand with torch's CosineAnnealingLR."""
    kw = dict(n_train=2000, n_valid=300, min_count=2, batch=4, bptt=5)
    run = train_word_model(seed=3, hidden=8, steps=6, every=3, lr=1e-2, schedule="cosine", **kw)
    corpus = word_corpus(2000, 300, 2)
    seed_everything(3)
    model = LanguageModel(len(corpus.vocab), 8, 1, init_range=0.1, fused=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 6)
    hand = train_language_model(model, optimizer, BPTTBatches(corpus.train, 4, 5), BPTTBatches(corpus.valid, 10, 50),
                                6, every=3, clip=5.0, scheduler=decay)
    assert run.losses == hand.losses
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # decayed to 0 at the last step
    constant = train_word_model(seed=3, hidden=8, steps=6, every=3, lr=1e-2, **kw)
    assert constant.losses[:2] == run.losses[:2] and constant.losses[2:] != run.losses[2:]


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: frequent_vocab("abc", 1), TypeError, "tokens"),
        (lambda: frequent_vocab(WORDS, 0), ValueError, "min_count"),
        (lambda: frequent_vocab(WORDS, 1.5), TypeError, "min_count"),
        (lambda: overfitting_gap([]), ValueError, "perplexities"),
        (lambda: overfitting_gap(torch.ones(3)), TypeError, "perplexities"),
        (lambda: overfitting_gap([1.0, -2.0]), ValueError, "perplexities"),
        (lambda: path_survival(1.0, 1, 0), ValueError, "p"),
        (lambda: path_survival("0.5", 1, 0), TypeError, "p"),
        (lambda: path_survival(0.5, 0, 0), ValueError, "num_layers"),
        (lambda: path_survival(0.5, 1, -1), ValueError, "span"),
        (lambda: path_survival(0.5, 1, 1.0), TypeError, "span"),
        (lambda: path_survival(0.5, 1, 1, "everywhere"), ValueError, "placement"),
        (lambda: windowed_perplexity(nn.Linear(2, 2), torch.zeros(5, dtype=torch.long), 2), TypeError, "model"),
        (lambda: windowed_perplexity(LanguageModel(3, 2), torch.zeros(5), 2), TypeError, "ids"),
        (lambda: windowed_perplexity(LanguageModel(3, 2), torch.zeros(5, dtype=torch.long), 0), ValueError,
         "window"),
        (lambda: windowed_perplexity(LanguageModel(3, 2), torch.zeros(3, dtype=torch.long), 3), ValueError,
         "ids"),
        (lambda: word_corpus(0, 10), ValueError, "n_train"),
        (lambda: word_corpus(10**7, 10), ValueError, "n_train"),
        (lambda: word_corpus(1000, 10, pieces=0), ValueError, "pieces"),
        (lambda: word_corpus(1000, 10, pieces=3), ValueError, "n_valid"),
        (lambda: word_corpus(10, 100, pieces=100), ValueError, "pieces"),
        (lambda: word_corpus(1000, 10, pieces=2.0), TypeError, "pieces"),
        (lambda: train_word_model(steps=1, schedule="linear"), ValueError, "schedule"),
        (lambda: train_word_model(steps=1, schedule=None), TypeError, "schedule"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_train_language_model_bad_inputs_name_the_argument():
    model, train, valid = tiny_setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="model"):
        train_language_model(nn.Linear(2, 2), opt, train, valid, 1)
    with pytest.raises(TypeError, match="valid"):
        train_language_model(model, opt, train, [1, 2], 1)
    with pytest.raises(TypeError, match="train_probe"):
        train_language_model(model, opt, train, valid, 1, train_probe="x")
    with pytest.raises(ValueError, match="clip"):
        train_language_model(model, opt, train, valid, 1, clip=0.0)
    with pytest.raises(ValueError, match="steps"):
        train_language_model(model, opt, train, valid, 0)
