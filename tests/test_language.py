"""papers30.language against torch built-ins with copied weights, hand-counted n-grams and brute force."""

from __future__ import annotations

import math


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from papers30.data.text import BPTTBatches
from papers30.language import (
    LanguageModel,
    KneserNey,
    NGram,
    best_unit,
    bits_per_token,
    cosine_schedule,
    detach_state,
    distinct_ngrams,
    evaluate,
    fit_kneser_ney,
    fit_ngram,
    hidden_states,
    pearson,
    position_in_line,
    sample,
    sample_next,
    speaker_lines,
    tbptt_loss,
    train_char_model,
    train_language_model,
)

DT = torch.float64
TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def torch_copy(model: LanguageModel, V: int, E: int, H: int, L: int):
    """A hand-assembled nn.Embedding + nn.<runner> + nn.Linear with the model's weights."""
    emb, rnn, head = nn.Embedding(V, E), TORCH[model.kind](E, H, L, batch_first=True), nn.Linear(H, V)
    emb.load_state_dict(model.embedding.state_dict())
    rnn.load_state_dict(model.rnn.state_dict(), strict=True)
    head.load_state_dict(model.head.state_dict())
    return emb.to(DT), rnn.to(DT), head.to(DT)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("B,T,V,E,H,L", [(1, 1, 2, 1, 1, 1), (2, 5, 7, 3, 4, 1), (3, 4, 5, 6, 2, 2)])
def test_language_model_matches_torch_embedding_lstm_linear(kind, B, T, V, E, H, L, gen):
    model = LanguageModel(V, H, L, kind=kind, embedding_size=E).to(DT)
    emb, rnn, head = torch_copy(model, V, E, H, L)
    tokens = torch.randint(V, (B, T), generator=gen)
    logits, state = model(tokens)
    out, ref_state = rnn(emb(tokens))
    assert logits.shape == (B, T, V)
    torch.testing.assert_close(logits, head(out), rtol=1e-6, atol=1e-6)
    flat = lambda s: torch.cat([t.flatten() for t in s]) if isinstance(s, tuple) else s  # noqa: E731
    torch.testing.assert_close(flat(state), flat(ref_state), rtol=1e-6, atol=1e-6)
    # carrying the state over a split equals one long run (what evaluate and tbptt_loss rely on)
    more = torch.randint(V, (B, 3), generator=gen)
    logits2, _ = model(more, state)
    torch.testing.assert_close(logits2, model(torch.cat([tokens, more], 1))[0][:, T:])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("L", [1, 2])
def test_fused_language_model_equals_the_package_runner_with_copied_weights(kind, L, gen):
    V, E, H = 7, 3, 5
    ours = LanguageModel(V, H, L, kind=kind, embedding_size=E).to(DT)
    fused = LanguageModel(V, H, L, kind=kind, embedding_size=E, fused=True).to(DT)
    assert isinstance(fused.rnn, TORCH[kind])
    fused.load_state_dict(ours.state_dict())  # the same parameter names, strict
    tokens = torch.randint(V, (2, 6), generator=gen)
    (a, sa), (b, sb) = ours(tokens), fused(tokens)
    torch.testing.assert_close(a, b)
    flat = lambda s: torch.cat([t.flatten() for t in s]) if isinstance(s, tuple) else s  # noqa: E731
    torch.testing.assert_close(flat(sa), flat(sb))


def test_fused_dropout_masks_the_same_connections_as_the_package_runner(gen):
    """One layer: both draw an input mask, run, draw an output mask, so one seed gives equal logits."""
    V, H = 6, 4
    ours = LanguageModel(V, H, dropout=0.5).to(DT)
    fused = LanguageModel(V, H, dropout=0.5, fused=True).to(DT)
    fused.load_state_dict(ours.state_dict())
    tokens = torch.randint(V, (3, 5), generator=gen)
    torch.manual_seed(11)
    a = ours.train()(tokens)[0]
    torch.manual_seed(11)
    b = fused.train()(tokens)[0]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, fused.eval()(tokens)[0])  # the masks did something in training
    torch.testing.assert_close(ours.eval()(tokens)[0], fused(tokens)[0])  # and nothing in eval mode
    with pytest.raises(ValueError, match="recurrent"):
        LanguageModel(V, H, dropout=0.5, dropout_placement="recurrent", fused=True)
    with pytest.raises(TypeError, match="fused"):
        LanguageModel(V, H, fused=1)


def test_language_model_options_and_bad_inputs():
    torch.manual_seed(0)
    model = LanguageModel(5, 4, 2, init_range=0.05, forget_bias=1.0, dropout=0.5,
                          dropout_placement="recurrent")
    assert all(p.abs().max() <= 1.05 for p in model.parameters())
    assert model.embedding.weight.abs().max() <= 0.05
    assert model.rnn.dropout == 0.5 and model.rnn.dropout_placement == "recurrent"
    assert model.rnn.bias_hh_l1[4:8].min() >= 0.95  # forget gates' bias shifted by forget_bias
    with pytest.raises(ValueError, match="kind"):
        LanguageModel(5, 4, kind="transformer")
    with pytest.raises(TypeError, match="vocab_size"):
        LanguageModel(5.0, 4)
    with pytest.raises(ValueError, match="init_range"):
        LanguageModel(5, 4, init_range=-1.0)
    with pytest.raises(ValueError, match="dropout_placement"):
        LanguageModel(5, 4, dropout_placement="everywhere")
    with pytest.raises(TypeError, match="tokens"):
        model(torch.zeros(2, 3))
    for bad in ("h", (torch.zeros(1, 2, 4),), [torch.zeros(1, 2, 4)] * 2):
        with pytest.raises(TypeError, match="^state "):
            model(torch.zeros(2, 3, dtype=torch.long), bad)


def test_bits_per_token_matches_hand_computation():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.125, 0.125, 0.75]]], dtype=DT))
    targets = torch.tensor([[0, 1]])
    # -(log2 0.5 + log2 0.125) / 2 = (1 + 3) / 2
    assert bits_per_token(logits, targets).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="targets"):
        bits_per_token(logits, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="targets"):
        bits_per_token(logits, targets.double())


@pytest.mark.parametrize("B,T", [(1, 3), (2, 4), (3, 50)])
def test_evaluate_equals_one_long_run_per_row(B, T, gen):
    V, n = 6, 61
    model = LanguageModel(V, 5, kind="lstm").to(DT)
    ids = torch.randint(V, (n,), generator=gen)
    batches = BPTTBatches(ids, B, T)
    result = evaluate(model, batches)
    logits, _ = model(batches.data[:, :-1])  # brute force: each row read in one go from zeros
    nats = F.cross_entropy(logits.reshape(-1, V), batches.data[:, 1:].reshape(-1)).item()
    assert result.tokens == batches.tokens == batches.data[:, 1:].numel()
    assert result.nats == pytest.approx(nats, rel=1e-9)
    assert result.bits == pytest.approx(nats / math.log(2), rel=1e-9)
    assert result.perplexity == pytest.approx(math.exp(nats), rel=1e-9)
    assert model.training  # mode restored


def test_untrained_uniform_model_scores_log2_v_bits():
    V = 8
    model = LanguageModel(V, 3)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()  # every prediction uniform: exactly log2 V bits, perplexity V
    result = evaluate(model, BPTTBatches(torch.arange(40) % V, 2, 5))
    assert result.bits == pytest.approx(3.0) and result.perplexity == pytest.approx(V)
    with pytest.raises(TypeError, match="batches"):
        evaluate(model, [(torch.zeros(1, 1), torch.zeros(1, 1))])
    with pytest.raises(TypeError, match="model"):
        evaluate(nn.Linear(2, 2), BPTTBatches(torch.arange(40) % V, 2, 5))


def test_tbptt_loss_carries_state_within_a_pass_and_resets_after(gen):
    V = 5
    model = LanguageModel(V, 4).to(DT)
    batches = BPTTBatches(torch.randint(V, (41,), generator=gen), 2, 5)  # 4 batches per pass
    loss_fn = tbptt_loss(model, batches)
    losses = [loss_fn(s).item() for s in range(1, 2 * len(batches) + 1)]
    state = None
    for i, (x, y) in enumerate(batches):  # reference: the carried state, by hand
        logits, state = model(x, detach_state(state))
        assert losses[i] == pytest.approx(bits_per_token(logits, y).item())
    assert losses[len(batches):] == pytest.approx(losses[: len(batches)])  # second pass restarts


# ------------------------------------------------------------------------------ n-grams


def test_ngram_bits_match_hand_computation():
    # train "abab" over V = 3 (a=0, b=1, c=2), k = 1; held-out "abc"
    train, held = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 2])
    # unigram: counts a2 b2 c0, N = 4: p = (2+1)/7, (2+1)/7, (0+1)/7
    uni = NGram(1, 3).fit(train)
    assert uni.bits(held) == pytest.approx(-(2 * math.log2(3 / 7) + math.log2(1 / 7)) / 3)
    # bigram: contexts a (2, followed by b twice), b (1, followed by a once)
    # p(a) = 3/7 (unigram for the first token); p(b|a) = (2+1)/(2+3); p(c|b) = (0+1)/(1+3)
    bi = NGram(2, 3).fit(train)
    assert bi.bits(held) == pytest.approx(-(math.log2(3 / 7) + math.log2(3 / 5) + math.log2(1 / 4)) / 3)
    # trigram: contexts ab (1, then a), ba (1, then b); p(c|ab) = (0+1)/(1+3)
    tri = NGram(3, 3).fit(train)
    assert tri.bits(held) == pytest.approx(-(math.log2(3 / 7) + math.log2(3 / 5) + math.log2(1 / 4)) / 3)
    assert tri.bits(torch.tensor([1, 0, 1])) == pytest.approx(
        -(math.log2(3 / 7) + math.log2(2 / 4) + math.log2(2 / 4)) / 3)
    # add-k with k = 0.5: p(b|a) = 2.5/3.5 after p(a) = 2.5/5.5
    half = NGram(2, 3, k=0.5).fit(train)
    assert half.bits(torch.tensor([0, 1])) == pytest.approx(-(math.log2(2.5 / 5.5) + math.log2(2.5 / 3.5)) / 2)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ngram_distributions_sum_to_one(order, gen):
    V = 4
    model = NGram(order, V, k=0.3).fit(torch.randint(V, (50,), generator=gen))
    ctx = torch.randint(V, (order - 1,), generator=gen)
    probs = [2 ** model.log2_probs(torch.cat([ctx, torch.tensor([w])]))[-1].item() for w in range(V)]
    assert sum(probs) == pytest.approx(1.0)


def test_fit_ngram_picks_k_with_fewest_validation_bits(gen):
    V = 5
    train, valid = torch.randint(V, (200,), generator=gen), torch.randint(V, (50,), generator=gen)
    ks = (0.01, 0.1, 1.0, 10.0)
    model = fit_ngram(2, V, train, valid, ks)
    brute = min(ks, key=lambda k: NGram(2, V, k).fit(train).bits(valid))
    assert model.k == brute and model.order == 2


def test_ngram_bad_inputs():
    with pytest.raises(ValueError, match="k"):
        NGram(2, 3, k=0)
    with pytest.raises(TypeError, match="order"):
        NGram(2.0, 3)
    with pytest.raises(ValueError, match="ids"):
        NGram(2, 3).fit(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="ids"):
        NGram(3, 3).fit(torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="fit"):
        NGram(2, 3).bits(torch.tensor([0]))
    with pytest.raises(ValueError, match="ks"):
        fit_ngram(2, 3, torch.tensor([0, 1, 2]), torch.tensor([0]), ks=())


def kn_brute(train: list[int], V: int, order: int, D: list[float]):
    """Interpolated Kneser-Ney from Python dictionaries, written from the textbook recursion."""
    from collections import Counter

    grams = {m: Counter(tuple(train[i : i + m]) for i in range(len(train) - m + 1)) for m in range(1, order + 1)}
    cont = {m: Counter(g[1:] for g in grams[m + 1]) for m in range(1, order)}  # distinct left neighbours

    def p(context: tuple, w: int, top: bool) -> float:
        m = len(context) + 1
        lower = 1.0 / V if m == 1 else p(context[1:], w, top=False)
        counts = grams[m] if top else cont[m]
        mine = {g: c for g, c in counts.items() if g[:-1] == context}
        total = sum(mine.values())
        if total == 0:
            return lower
        d = D[m - 1]
        return (max(mine.get((*context, w), 0) - d, 0) + d * len(mine) * lower) / total

    return p


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_matches_dictionary_recursion(order, gen):
    V = 4
    train = torch.randint(V, (60,), generator=gen)
    held = torch.cat([train[10:14], torch.randint(V, (10,), generator=gen)])  # seen and unseen contexts
    D = [0.3, 0.5, 0.7, 0.9][:order]
    model = KneserNey(order, V, D).fit(train)
    p = kn_brute(train.tolist(), V, order, D)
    h = held.tolist()
    ref = [math.log2(p(tuple(h[max(0, t - order + 1) : t]), h[t], top=True)) for t in range(len(h))]
    torch.testing.assert_close(model.log2_probs(held), torch.tensor(ref, dtype=torch.float64))
    assert model.bits(held) == pytest.approx(-sum(ref) / len(ref))


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_kneser_ney_distributions_sum_to_one(order, gen):
    V = 5
    model = KneserNey(order, V, 0.6).fit(torch.randint(3, (80,), generator=gen))  # ids 3, 4 never seen
    for ctx in (torch.randint(3, (order - 1,), generator=gen), torch.full((order - 1,), 4)):
        probs = [2 ** model.log2_probs(torch.cat([ctx, torch.tensor([w])]))[-1].item() for w in range(V)]
        assert sum(probs) == pytest.approx(1.0)
        assert min(probs) > 0  # interpolation down to 1/V: no zero probabilities


def test_fit_kneser_ney_tunes_each_order_on_validation(gen):
    V = 4
    train, valid = torch.randint(V, (300,), generator=gen), torch.randint(V, (80,), generator=gen)
    grid = (0.2, 0.6, 1.0)
    model = fit_kneser_ney(3, V, train, valid, grid, sweeps=1)
    assert all(d in grid for d in model.discount)
    for d in grid:  # the order tuned last is optimal given the others (brute force over its grid)
        other = KneserNey(3, V, [*model.discount[:2], d]).fit(train)
        assert other.bits(valid) >= model.bits(valid) - 1e-12
    start = KneserNey(3, V, grid[1]).fit(train)  # coordinate descent never ends worse than its start
    assert model.bits(valid) <= start.bits(valid)


def test_kneser_ney_bad_inputs():
    with pytest.raises(ValueError, match="discount"):
        KneserNey(2, 3, 0.0)
    with pytest.raises(ValueError, match="discount"):
        KneserNey(2, 3, [0.5])
    with pytest.raises(TypeError, match="order"):
        KneserNey(2.0, 3)
    with pytest.raises(ValueError, match="ids"):
        KneserNey(3, 3).fit(torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="fit"):
        KneserNey(2, 3).bits(torch.tensor([0]))
    with pytest.raises(ValueError, match="discounts"):
        fit_kneser_ney(2, 3, torch.tensor([0, 1, 2]), torch.tensor([0]), discounts=())


# ------------------------------------------------------------------------------ sampling


def test_sample_next_at_temperature_zero_is_argmax(gen):
    logits = torch.randn(6, 9, generator=gen)
    assert torch.equal(sample_next(logits, 0.0), logits.argmax(-1))
    assert torch.equal(sample_next(logits, 1e-4, torch.Generator().manual_seed(0)), logits.argmax(-1))


def test_sample_next_at_temperature_one_matches_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(20_000, 4)
    draws = sample_next(logits, 1.0, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    p = torch.softmax(logits[0].double(), -1)
    # chi-square goodness of fit, 3 degrees of freedom: 16.27 is the 0.1 % critical value
    chi2 = (len(draws) * (freq - p) ** 2 / p).sum().item()
    assert chi2 < 16.27
    hot = sample_next(logits, 2.0, torch.Generator().manual_seed(0))
    assert torch.bincount(hot, minlength=4)[0] < torch.bincount(draws, minlength=4)[0]  # flatter


def test_sample_continues_prompt_like_a_manual_loop(gen):
    V = 6
    model = LanguageModel(V, 5)
    prompt = torch.randint(V, (2, 3), generator=gen)
    ids = sample(model, prompt, 7, temperature=0.8, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    seq, ref = prompt, []
    with torch.no_grad():
        for _ in range(7):  # brute force: re-read the whole sequence each step
            nxt = sample_next(model(seq)[0][:, -1], 0.8, g)
            ref.append(nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
    assert ids.shape == (2, 7)
    assert torch.equal(ids, torch.stack(ref, 1))
    assert sample(model, prompt[0], 4, 0.0).shape == (4,)


def test_sampling_bad_inputs():
    model = LanguageModel(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        sample_next(torch.zeros(1, 4), -1.0)
    with pytest.raises(TypeError, match="generator"):
        sample_next(torch.zeros(1, 4), 1.0, generator=0)
    with pytest.raises(TypeError, match="prompt"):
        sample(model, torch.zeros(3), 2)
    with pytest.raises(ValueError, match="prompt"):
        sample(model, torch.zeros(0, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="steps"):
        sample(model, torch.zeros(1, dtype=torch.long), 2.0)


# -------------------------------------------------------------------------------- probes


def test_features_by_hand():
    assert position_in_line("ab\ncd\n").tolist() == [0, 1, 2, 0, 1, 2]
    play = "Ham.\nO, that this.\n\nLADY MACBETH.\nGo.\n\nA line of speech.\nNo.\n"
    want = [1.0 if i < 4 or 20 <= i < 33 else 0.0 for i in range(len(play))]  # "Ham." and "LADY MACBETH."
    assert speaker_lines(play).tolist() == want
    assert speaker_lines("x\nHam.\n").sum() == 0  # a name line follows a blank line
    with pytest.raises(TypeError, match="text"):
        position_in_line(3)
    with pytest.raises(TypeError, match="text"):
        speaker_lines(None)


def test_hidden_states_are_the_runner_outputs(gen):
    model = LanguageModel(5, 4, 2)
    ids = torch.randint(5, (9,), generator=gen)
    h = hidden_states(model, ids)
    out, _ = model.rnn(model.embedding(ids[None]))
    assert h.shape == (9, 4)
    torch.testing.assert_close(h, out[0].detach())


def test_hidden_states_cells_match_torch_lstm_step_by_step(gen):
    model = LanguageModel(5, 4, 2).to(DT)
    emb, rnn, _ = torch_copy(model, 5, 4, 4, 2)
    ids = torch.randint(5, (6,), generator=gen)
    c = hidden_states(model, ids, which="c")
    state, ref = None, []
    for t in range(6):  # torch.nn.LSTM one token at a time: the top layer's c_t
        _, state = rnn(emb(ids[None, t : t + 1]), state)
        ref.append(state[1][-1, 0])
    torch.testing.assert_close(c, torch.stack(ref).detach())
    with pytest.raises(ValueError, match="which"):
        hidden_states(LanguageModel(5, 4, kind="rnn"), ids, which="c")
    with pytest.raises(ValueError, match="ids"):
        hidden_states(model, ids[:0])


def test_best_unit_matches_numpy_corrcoef(gen):
    import numpy as np

    a = torch.randn(30, 5, dtype=DT, generator=gen)
    f = a[:, 3] * -2 + 0.5 * torch.randn(30, dtype=DT, generator=gen)
    a[:, 1] = 1.0  # a constant unit gets r = 0
    r = pearson(a, f)
    for j in (0, 2, 3, 4):
        assert r[j].item() == pytest.approx(np.corrcoef(a[:, j].numpy(), f.numpy())[0, 1])
    assert r[1].item() == 0.0
    i, best = best_unit(a, f)
    assert i == 3 and best < -0.8
    with pytest.raises(ValueError, match="feature"):
        best_unit(a, f[:-1])


def test_distinct_ngrams_by_brute_force():
    ids = torch.tensor([0, 1, 0, 1, 0, 2])
    grams = {tuple(ids[i : i + 2].tolist()) for i in range(5)}  # 01 10 01 10 02 -> 3 distinct of 5
    assert distinct_ngrams(ids, 2) == pytest.approx(len(grams) / 5)
    assert distinct_ngrams(ids, 1) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="ids"):
        distinct_ngrams(ids, 7)
    with pytest.raises(TypeError, match="n"):
        distinct_ngrams(ids, 1.0)


# ------------------------------------------------------- the plots chapter 2 adds to plotting


# ------------------------------------------------------------------------- training


def test_cosine_schedule_matches_closed_form():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.3)
    sched = cosine_schedule(opt, 8)
    rates = []
    for _ in range(10):
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    want = [0.3 * 0.5 * (1 + math.cos(math.pi * min(s, 8) / 8)) for s in range(1, 11)]
    assert rates == pytest.approx(want)
    with pytest.raises(TypeError, match="steps"):
        cosine_schedule(opt, 8.0)


def test_train_language_model_snapshots_bits_and_stop_after(gen):
    V = 5
    ids = torch.randint(V, (400,), generator=gen)
    train, valid = BPTTBatches(ids[:300], 4, 6), BPTTBatches(ids[300:], 2, 10)

    def run(**kw):
        torch.manual_seed(0)
        model = LanguageModel(V, 6)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        return train_language_model(model, opt, train, valid, 9, every=3, scheduler=cosine_schedule(opt, 9), **kw)

    full = run(snapshots=[3, 6])
    assert sorted(full.snapshots) == [3, 6] and full.model is not None
    early = LanguageModel(V, 6)
    early.load_state_dict(full.snapshots[3])
    assert evaluate(early, valid).perplexity == pytest.approx(full.history.evals[0]["valid"], rel=1e-10)
    for e in full.history.evals:  # bits and perplexity are one figure: perplexity = 2 ** bits
        assert e["valid"] == pytest.approx(2 ** e["bits"])
    assert full.best_bits == pytest.approx(math.log2(full.best_valid))
    assert full.losses == full.history.losses
    part = run(stop_after=4)
    assert part.losses == full.losses[:4]  # the schedule does not depend on stop_after


def test_train_char_model_is_reproducible_and_replays_its_first_steps():
    kw = dict(seed=3, hidden=8, embed=4, batch=4, seq=8, steps=6, every=3)
    full = train_char_model(**kw)
    again = train_char_model(**kw, stop_after=4)
    assert again.losses == full.losses[:4]
    assert isinstance(full.model.rnn, nn.LSTM) and len(full.losses) == 6
    assert full.history.eval_steps == [3, 6]
    rnn = train_char_model(**{**kw, "steps": 2, "every": 2}, kind="rnn")
    assert isinstance(rnn.model.rnn, nn.RNN)
