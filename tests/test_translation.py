"""papers30.translation against independent references: greedy decoding scored by
exact_match, torch's cross-entropy, the warm-up schedule's closed form, and the
run's own records recomputed from its history."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from papers30.data import PAD, toy_translation_data
from papers30.metrics import corpus_bleu, critical_path, exact_match
from papers30.seq2seq import RNNEncDec, RNNSearch
from papers30.transformer import Transformer, warmup_inverse_sqrt
from papers30.translation import (
    MODELS,
    SIZES,
    _optimizer,
    make_model,
    run_translation,
    score,
    teacher_forced_exact,
    training_loss,
    translate,
)

TINY_TASK = dict(n_words=4, min_len=1, max_len=3, valid_size=40, test_size=40)
TINY = {
    "RNNencdec": dict(embed_size=8, hidden_size=8),
    "RNNsearch": dict(embed_size=8, hidden_size=8),
    "Transformer": dict(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16),
}


def tiny_run(name, steps, **kw):
    args = dict(batch_size=16, every=10, warmup=5, task=TINY_TASK, sizes=TINY[name])
    return run_translation(name, 0, steps, 1e-2, **{**args, **kw})


@pytest.fixture(scope="module")
def partly_trained():
    """One tiny model of each kind, trained until it translates some but not all test sentences."""
    return {name: tiny_run(name, steps) for name, steps in
            (("RNNencdec", 40), ("RNNsearch", 80), ("Transformer", 20))}


def test_make_model_kinds_and_sizes():
    task = toy_translation_data(0, 1).task
    assert isinstance(make_model("RNNencdec", task), RNNEncDec)
    assert isinstance(make_model("RNNsearch", task), RNNSearch)
    t = make_model("Transformer", task)
    assert isinstance(t, Transformer) and t.d_model == SIZES["Transformer"]["d_model"]
    assert make_model("RNNsearch", task, hidden_size=5).decoder.hidden_size == 5
    with pytest.raises(ValueError, match="name"):
        make_model("LSTM", task)


@pytest.mark.parametrize("name", MODELS)
def test_teacher_forced_exact_equals_exact_match_of_greedy_decoding(name, partly_trained):
    run = partly_trained[name]
    got = teacher_forced_exact(run.model, run.data.test)
    want = exact_match(*translate(run.model, run.data.test))
    assert 0.0 < want < 1.0  # the comparison is not between two trivial answers
    assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_training_loss_matches_torch_cross_entropy(name):
    data = toy_translation_data(1, 1)
    model = make_model(name, data.task, **TINY[name])
    batch = data.batches[0]
    out = model(batch.src, batch.tgt_in)
    logits = out[0] if isinstance(out, tuple) else out
    smoothing = 0.1 if name == "Transformer" else 0.0
    want = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD,
                           label_smoothing=smoothing)
    torch.testing.assert_close(training_loss(model, batch), want)


def test_score_matches_direct_bleu_and_exact_match(partly_trained):
    run = partly_trained["RNNsearch"]
    hyp, ref = translate(run.model, run.data.test)
    got = score(run.model, run.data.test, buckets=((1, 1), (2, 3)))
    assert got["bleu_all"] == corpus_bleu(hyp, ref) and got["exact_all"] == exact_match(hyp, ref)
    short = [k for k, s in enumerate(run.data.test.sentences()) if len(s) == 1]
    assert got["exact"][0] == exact_match([hyp[k] for k in short], [ref[k] for k in short])
    assert sum(got["count"]) == len(ref)


def test_run_records_agree_with_its_history_and_batches():
    """Steps to target, sequential cost and the critical paths recomputed from what the run kept."""
    run = tiny_run("RNNencdec", 60, target=0.1)
    exact = run.history.metric("exact")
    first = next(s for s, e in zip(run.history.eval_steps, exact) if e >= 0.1)
    assert run.steps_to_target == first
    assert run.sequential_to_target == sum(run.sequential[:first])
    assert len(run.sequential) == len(run.losses) == 60
    assert tiny_run("RNNencdec", 20, target=1.0).sequential_to_target is None  # never reached
    model = make_model("RNNencdec", run.data.task, **TINY["RNNencdec"])
    for k in (0, 59):  # the critical path depends on the batch's shape only, not on the weights
        assert run.sequential[k] == critical_path(training_loss(model, run.data.batches[k]))


def test_same_seed_same_run_and_stop_after_replays_the_start():
    a, b = tiny_run("Transformer", 30), tiny_run("Transformer", 30)
    assert a.losses == b.losses
    start = tiny_run("Transformer", 30, stop_after=7)
    assert start.losses == a.losses[:7]


def test_after_target_stops_and_restore_best_keeps_the_best_validation_parameters():
    run = tiny_run("RNNencdec", 80, target=0.05, after_target=20, restore_best=True)
    assert run.steps_to_target is not None
    assert len(run.losses) == run.steps_to_target + 20
    assert teacher_forced_exact(run.model, run.data.valid) == pytest.approx(max(run.history.metric("exact")))


def test_checkpoints_score_the_test_set_at_those_steps():
    buckets = ((1, 1), (2, 3))
    run = tiny_run("RNNsearch", 20, checkpoints=[10, 20], buckets=[list(b) for b in buckets])
    assert sorted(run.checkpoints) == [10, 20]
    assert run.checkpoints[20] == score(run.model, run.data.test, buckets)  # the model after its last step
    assert set(run.checkpoints[10]) == {"bleu", "exact", "count", "bleu_all", "exact_all"}


@pytest.mark.parametrize("w,peak", [(5, 1e-2), (50, 3e-3)])
def test_transformer_schedule_is_the_papers_rescaled_to_peak_at_lr_closed_form(w, peak):
    model = make_model("Transformer", toy_translation_data(0, 1).task, **TINY["Transformer"])
    opt, schedule, clip = _optimizer(model, peak, w)
    assert clip is None and opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-9
    for n in range(1, 3 * w):
        want = peak * min(n / w, math.sqrt(w / n))  # D^-1/2 min(n^-1/2, n w^-3/2), divided by its peak
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12)
        assert want == pytest.approx(peak * warmup_inverse_sqrt(n, 16, w) / warmup_inverse_sqrt(w, 16, w))
        opt.step()
        schedule.step()


def test_rnn_recipe_is_constant_rate_with_clipping():
    model = make_model("RNNsearch", toy_translation_data(0, 1).task, **TINY["RNNsearch"])
    opt, schedule, clip = _optimizer(model, 3e-3, 50)
    assert schedule is None and clip == 1.0 and opt.param_groups[0]["lr"] == 3e-3


@pytest.mark.parametrize(
    "kw,exc,name",
    [
        (dict(model="GRU"), ValueError, "model"),
        (dict(steps=0), ValueError, "steps"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr="fast"), ValueError, "lr"),
        (dict(every=0), ValueError, "every"),
        (dict(checkpoints=[15]), ValueError, "checkpoints"),
        (dict(checkpoints=[40]), ValueError, "checkpoints"),
        (dict(target=1.5), ValueError, "target"),
    ],
)
def test_run_translation_rejects_bad_arguments(kw, exc, name):
    args = dict(model="RNNsearch", seed=0, steps=20, lr=1e-2, every=10)
    with pytest.raises(exc, match=name):
        run_translation(**{**args, **kw})
