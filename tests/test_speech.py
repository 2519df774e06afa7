"""CTC loss, decoding, error rates and the acoustic model (papers30.speech), and the generated utterances
(papers30.data.speech), against torch.nn.functional.ctc_loss, brute-force enumeration, explicit loops and
independent recomputation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from papers30.data.speech import make_alphabet, make_utterances
from papers30.speech import (AcousticModel, RecurrentLayer, SequenceBatchNorm, character_error_rate, ctc_loss,
                             edit_distance, evaluate, greedy_decode, prefix_beam_search, sortagrad_batches,
                             train_acoustic, uniform_alignment)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def case(seed: int = 0, T: int = 12, B: int = 7, C: int = 5, S: int = 5):
    """Random log-probs with the hard cases: repeated labels, an empty target, a minimal input length
    (labels plus the blanks between repeats) and an impossible alignment."""
    g = gen(seed)
    x = torch.randn(T, B, C, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, C, (B, S), generator=g)
    targets[0, :4] = torch.tensor([2, 2, 2, 3])           # repeats: needs 6 frames
    targets[1, :3] = torch.tensor([1, 1, 4])              # minimal: 3 labels + 1 blank = 4 frames
    targets[5, :3] = torch.tensor([2, 2, 2])              # impossible: needs 5 frames, has 4
    input_lengths = torch.tensor([T, 4, T - 1, 6, 9, 4, 1])
    target_lengths = torch.tensor([4, 3, S, 2, 0, 3, 1])
    return x, targets, input_lengths, target_lengths


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_loss_equals_torch_values(reduction, zero_infinity):
    x, targets, il, tl = case()
    lp = x.log_softmax(2)
    got = ctc_loss(lp, targets, il, tl, reduction=reduction, zero_infinity=zero_infinity)
    want = F.ctc_loss(lp, targets, il, tl, reduction=reduction, zero_infinity=zero_infinity)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_ctc_loss_equals_torch_gradients_with_zero_infinity(reduction):
    x, targets, il, tl = case(1)
    lp = x.log_softmax(2)
    got = ctc_loss(lp, targets, il, tl, reduction=reduction, zero_infinity=True)
    want = F.ctc_loss(lp, targets, il, tl, reduction=reduction, zero_infinity=True)
    (g1,) = torch.autograd.grad(got.sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-10)
    assert g1[:, 5].abs().max() == 0  # the impossible utterance contributes nothing


def test_ctc_loss_impossible_is_inf_and_other_gradients_agree():
    x, targets, il, tl = case(2)
    lp = x.log_softmax(2)
    got = ctc_loss(lp, targets, il, tl, reduction="none")
    want = F.ctc_loss(lp, targets, il, tl, reduction="none")
    assert math.isinf(got[5].item()) and math.isinf(want[5].item())
    possible = torch.arange(7) != 5
    (g1,) = torch.autograd.grad(got[possible].sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(want[possible].sum(), x)
    # torch's gradient is nan in the impossible utterance's column even with a zero output gradient; ours is 0
    torch.testing.assert_close(g1[:, possible], g2[:, possible], rtol=0, atol=1e-10)
    assert g1[:, 5].abs().max() == 0


def test_ctc_loss_concatenated_targets_and_blank_elsewhere():
    x, targets, il, tl = case(3)
    lp = x.log_softmax(2)
    flat = torch.cat([targets[b, :tl[b]] for b in range(7)])
    torch.testing.assert_close(ctc_loss(lp, flat, il, tl, reduction="none"),
                               F.ctc_loss(lp, flat, il, tl, reduction="none"))
    # the blank as the last class: relabel so no target uses it
    t2 = targets.clone()
    t2[t2 == 4] = 0
    torch.testing.assert_close(ctc_loss(lp, t2, tuple(il.tolist()), tuple(tl.tolist()), blank=4, reduction="none"),
                               F.ctc_loss(lp, t2, tuple(il.tolist()), tuple(tl.tolist()), blank=4, reduction="none"))


def test_ctc_loss_unbatched_and_float32():
    g = gen(4)
    lp = torch.randn(6, 4, generator=g).log_softmax(1)
    t = torch.tensor([1, 3, 3])
    got = ctc_loss(lp, t, torch.tensor(6), torch.tensor(3))
    want = F.ctc_loss(lp, t, torch.tensor(6), torch.tensor(3))
    torch.testing.assert_close(got, want)


def test_ctc_loss_all_targets_empty():
    g = gen(5)
    lp = torch.randn(5, 3, 4, generator=g, dtype=torch.float64).log_softmax(2)
    t = torch.zeros(3, 0, dtype=torch.long)
    il, tl = torch.tensor([5, 3, 1]), torch.tensor([0, 0, 0])
    torch.testing.assert_close(ctc_loss(lp, t, il, tl, reduction="none"), F.ctc_loss(lp, t, il, tl, reduction="none"))


def _brute_force(lp: torch.Tensor, blank: int = 0) -> dict[tuple[int, ...], float]:
    """Probability of every labelling: sum over all C^T frame paths of their product, collapsed."""
    T, C = lp.shape
    p = lp.exp().tolist()
    out: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(C), repeat=T):
        labels, prev = [], None
        for c in path:
            if c != prev and c != blank:
                labels.append(c)
            prev = c
        prob = math.prod(p[t][c] for t, c in enumerate(path))
        out[tuple(labels)] = out.get(tuple(labels), 0.0) + prob
    return out


def test_ctc_loss_equals_brute_force_enumeration():
    g = gen(6)
    lp = torch.randn(4, 3, generator=g, dtype=torch.float64).log_softmax(1)
    probs = _brute_force(lp)
    for labels, prob in probs.items():
        got = ctc_loss(lp[:, None], torch.tensor([list(labels) or [1]]), [4], [len(labels)], reduction="sum")
        assert abs(got.item() + math.log(prob)) < 1e-10


@pytest.mark.parametrize("seed", range(10))
def test_prefix_beam_search_is_exact_when_wide(seed):
    g = gen(100 + seed)
    lp = (2 * torch.randn(4, 3, generator=g, dtype=torch.float64)).log_softmax(1)
    probs = _brute_force(lp)
    best = max(probs, key=probs.get)
    got, score = prefix_beam_search(lp, beam_width=64)
    assert tuple(got) == best
    assert abs(score - math.log(probs[best])) < 1e-10


def test_prefix_beam_width_one_keeps_one_prefix_and_greedy_matches_argmax():
    g = gen(7)
    lp = torch.randn(6, 2, 4, generator=g).log_softmax(2)
    paths = lp.argmax(2).T.tolist()
    want = []
    for path, n in zip(paths, [6, 3]):
        labels, prev = [], None
        for c in path[:n]:
            if c != prev and c != 0:
                labels.append(c)
            prev = c
        want.append(labels)
    assert greedy_decode(lp, [6, 3]) == want
    labels, score = prefix_beam_search(lp[:, 0], beam_width=1)
    assert isinstance(labels, list) and score <= 0


def test_edit_distance_and_cer():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 3], [1, 2, 3]) == 1
    # against a brute-force recursion
    def rec(a, b):
        if not a or not b:
            return len(a) + len(b)
        return min(rec(a[1:], b) + 1, rec(a, b[1:]) + 1, rec(a[1:], b[1:]) + (a[0] != b[0]))
    g = gen(8)
    for _ in range(20):
        a = torch.randint(0, 3, (int(torch.randint(0, 6, (1,), generator=g)),), generator=g).tolist()
        b = torch.randint(0, 3, (int(torch.randint(0, 6, (1,), generator=g)),), generator=g).tolist()
        assert edit_distance(a, b) == rec(a, b)
    assert character_error_rate([[1, 2], [3]], [[1, 2, 3], [3]]) == pytest.approx(1 / 4)


def test_sequence_batch_norm_ignores_padding_and_matches_batchnorm1d():
    g = gen(9)
    x = torch.randn(3, 5, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    bn = SequenceBatchNorm(4)
    got = bn(x, mask)[mask]
    ref = torch.nn.BatchNorm1d(4)
    torch.testing.assert_close(got, ref(x[mask]))
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    bn.eval(), ref.eval()
    torch.testing.assert_close(bn(x, mask)[mask], ref(x[mask]))


def test_recurrent_layer_gru_equals_torch_gru_without_batch_norm():
    g = gen(10)
    layer = RecurrentLayer(3, 4, cell="gru", batch_norm=False)
    ref = torch.nn.GRU(3, 4, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(layer.input.weight)
        ref.bias_ih_l0.copy_(layer.input.bias)
        ref.weight_hh_l0.copy_(layer.recurrent.weight)
        ref.bias_hh_l0.copy_(layer.recurrent.bias)
    x = torch.randn(2, 6, 3, generator=g)
    torch.testing.assert_close(layer(x, torch.ones(2, 6, dtype=torch.bool)), ref(x)[0])


def test_recurrent_layer_rnn_is_clipped_relu_of_normalised_input():
    g = gen(11)
    layer = RecurrentLayer(3, 4, cell="rnn", batch_norm=True)
    x = torch.randn(2, 5, 3, generator=g)
    mask = torch.ones(2, 5, dtype=torch.bool)
    wx = layer.input(x)
    wx = (wx - wx.mean((0, 1))) / torch.sqrt(wx.var((0, 1), unbiased=False) + 1e-5)
    h, out = torch.zeros(2, 4), []
    for t in range(5):
        h = torch.clamp(wx[:, t] + h @ layer.recurrent.weight.T, 0, 20)
        out.append(h)
    torch.testing.assert_close(layer(x, mask), torch.stack(out, 1))


def test_acoustic_model_shapes_and_padding_does_not_leak_into_recurrent_outputs():
    torch.manual_seed(0)
    for kind in ("recurrent", "conv"):
        model = AcousticModel(8, 5, hidden_size=6, layers=2, channels=4, kind=kind).eval()
        x = torch.randn(2, 9, 8)
        lp, out_len = model(x, torch.tensor([9, 5]))
        assert lp.shape == (5, 2, 5) and out_len.tolist() == [5, 3]
        torch.testing.assert_close(lp.exp().sum(2), torch.ones(5, 2))
    model = AcousticModel(8, 5, hidden_size=6, layers=2, channels=4, kind="recurrent").eval()
    x = torch.randn(1, 9, 8)
    y = torch.cat([x, torch.zeros(1, 4, 8)], 1)
    torch.testing.assert_close(model(x, torch.tensor([9]))[0], model(y, torch.tensor([9]))[0][:5])


def test_sortagrad_batches_sorted_in_first_epoch_only():
    lengths = torch.tensor([9, 3, 7, 1, 5, 8, 2, 6, 4, 10])
    first = sortagrad_batches(lengths, 3, 0, True, gen(0))
    maxima = [int(lengths[b].max()) for b in first]
    assert maxima == sorted(maxima) and len(first) == 3
    assert sorted(torch.cat(first).tolist()) == sorted(torch.argsort(lengths)[:9].tolist())
    later = sortagrad_batches(lengths, 3, 1, True, gen(0))
    assert torch.equal(torch.cat(later), torch.cat(sortagrad_batches(lengths, 3, 0, False, gen(0))))


def tiny_setup(seed: int):
    """A small alphabet, 64 short utterances and a small model, for training tests."""
    g = gen(seed)
    data = make_utterances(make_alphabet(4, 8, g), 64, g, max_chars=4)
    torch.manual_seed(0)
    return g, data, AcousticModel(8, 5, hidden_size=16, layers=1, channels=8)


def test_training_lowers_the_loss_and_evaluate_agrees_with_torch_ctc():
    g, data, model = tiny_setup(12)
    history = train_acoustic(model, data.features, data.lengths, data.labels, data.label_lengths, steps=30,
                             batch_size=16, lr=1e-2, generator=g,
                             eval_data=(data.features, data.lengths, data.labels, data.label_lengths), eval_every=10)
    assert len(history["loss"]) == 30 and history["eval_step"] == [10, 20, 30]
    assert sum(history["loss"][-5:]) < sum(history["loss"][:5])
    loss, cer = evaluate(model, data.features, data.lengths, data.labels, data.label_lengths)
    model.eval()
    with torch.no_grad():
        lp, out_len = model(data.features, data.lengths)
    want = F.ctc_loss(lp, data.labels, out_len, data.label_lengths, reduction="sum").item() / 64
    assert abs(loss - want) < 1e-3 and 0 <= cer


def test_generator_recomputed_independently():
    g = gen(13)
    alphabet = make_alphabet(6, 12, g)
    data = make_utterances(alphabet, 40, g)
    f = torch.arange(12, dtype=torch.float64)
    for i in range(40):
        k = int(data.label_lengths[i])
        labels = data.labels[i, :k].tolist()
        assert all(a != b for a, b in zip(labels, labels[1:])) and all(1 <= a <= 6 for a in labels)
        dur = data.durations[i, :k].tolist()
        assert min(dur) >= 2 and sum(dur) == int(data.lengths[i])
        frames = []
        for c, d in zip(labels, dur):  # templates by an explicit loop over formants
            spec = [sum(float(alphabet.height[c, j]) * math.exp(-(fr - float(alphabet.centre[c, j])
                        - float(data.shift[i])) ** 2 / (2 * float(alphabet.width[c, j]) ** 2))
                        for j in range(alphabet.centre.shape[1])) for fr in f.tolist()]
            frames += [spec] * d
        frames = torch.tensor(frames, dtype=torch.float64) * float(data.gain[i])
        n = len(frames)
        smooth = torch.stack([(frames[max(t - 1, 0)] + 2 * frames[t] + frames[min(t + 1, n - 1)]) / 4
                              for t in range(n)])
        torch.testing.assert_close(data.clean[i, :n].double(), smooth, rtol=1e-5, atol=1e-5)
        assert data.features[i, n:].abs().max() == 0 if n < data.features.shape[1] else True
    noise = (data.features - data.clean)[data.clean.abs().sum(2) > 0]
    assert abs(noise.std().item() - 0.3) < 0.02


def test_uniform_alignment_equals_a_loop():
    targets = torch.tensor([[3, 1, 2, 0], [4, 2, 0, 0]])
    got = uniform_alignment(torch.tensor([7, 3]), targets, torch.tensor([3, 2]))
    want = [[targets[0, t * 3 // 7].item() for t in range(7)],
            [targets[1, t * 2 // 3].item() for t in range(3)] + [-100] * 4]
    assert got.tolist() == want


def test_fused_gru_equals_the_loop_with_batch_norm():
    torch.manual_seed(1)
    layer = RecurrentLayer(5, 7, "gru", True).double()
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    mask = torch.ones(3, 6, dtype=torch.bool)
    a, b = layer(x, mask), layer(x, mask, fused=False)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(a.square().sum(), list(layer.parameters()), retain_graph=True)
    gb = torch.autograd.grad(b.square().sum(), list(layer.parameters()))
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v)


def test_flat_start_training_runs_and_learns():
    g, data, model = tiny_setup(15)
    history = train_acoustic(model, data.features, data.lengths, data.labels, data.label_lengths, steps=20,
                             batch_size=16, lr=1e-2, loss="flat", generator=g)
    assert sum(history["loss"][-4:]) < sum(history["loss"][:4])


def test_bad_inputs_name_the_argument():
    x, targets, il, tl = case()
    lp = x.log_softmax(2)
    with pytest.raises(ValueError, match="reduction"):
        ctc_loss(lp, targets, il, tl, reduction="avg")
    with pytest.raises(TypeError, match="targets"):
        ctc_loss(lp, targets.float(), il, tl)
    with pytest.raises(ValueError, match="input_lengths"):
        ctc_loss(lp, targets, il + 100, tl)
    with pytest.raises(ValueError, match="targets"):
        ctc_loss(lp, torch.zeros_like(targets), il, tl)
    with pytest.raises(ValueError, match="beam_width"):
        prefix_beam_search(lp[:, 0], beam_width=0)
    with pytest.raises(ValueError, match="max_chars"):
        make_utterances(make_alphabet(3, 4, gen()), 2, gen(), min_chars=5, max_chars=2)
    with pytest.raises(ValueError, match="kind"):
        AcousticModel(4, 3, kind="mlp")
