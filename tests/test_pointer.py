"""papers30.pointer against brute-force references (float64).

The decoder is checked against a loop built from ``torch.nn.LSTMCell`` (with
copied weights) and the additive scores written out slot by slot (with and
without a glimpse); the fixed-vocabulary baseline against its softmax layer
written out by hand; the fused sequence run against the cell step by step;
greedy decoding against the teacher-forced pass fed its own choices; the
network's masking against running each row of a padded batch on its own;
the training loop's batches against a second, identical model.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.data.geometry import hull_dataset
from papers30.pointer import (
    IGNORE,
    PointerDecoder,
    PointerNetwork,
    Seq2SeqNetwork,
    VocabularyDecoder,
    fit_hulls,
    hull_targets,
    run_lstm_cell,
)
from papers30.recurrent import LSTMCell

DT = torch.float64
TOL = dict(rtol=1e-9, atol=1e-9)


def randn(*shape, g):
    return torch.randn(*shape, dtype=DT, generator=g)


def _scores_by_hand(att, query, memory_row, allowed_row):
    """v^T tanh(W_1 m_j + W_2 q), slot by slot, as a list (None where not allowed)."""
    wq, wk, v = att.query_proj.weight, att.key_proj.weight, att.v
    return [float(v @ torch.tanh(wk @ memory_row[j] + wq @ query)) if allowed_row[j] else None
            for j in range(len(memory_row))]


def _log_softmax_by_hand(u):
    z = math.log(sum(math.exp(x) for x in u if x is not None))
    return [x - z if x is not None else float("-inf") for x in u]


@torch.no_grad()
def loop_reference(dec, inputs, memory, targets, state, allowed_fn, readout):
    """Loop reference: torch.nn.LSTMCell with copied weights, then ``readout(h_b, memory_b, allowed_b)`` by hand.

    ``readout`` returns one row's log-probabilities as a list; step ``t`` is fed the target of step ``t - 1``,
    or the decoder's ``start`` vector again when the decoder does not feed back its choices.
    """
    cell = torch.nn.LSTMCell(dec.input_size, dec.hidden_size).double()
    cell.load_state_dict(dec.cell.state_dict())
    B, N, _ = memory.shape
    h, c = state
    x = dec.start.expand(B, -1)
    out = torch.empty(B, targets.shape[1], N, dtype=DT)
    for t in range(targets.shape[1]):
        h, c = cell(x, (h, c))
        allowed = allowed_fn(t)
        for b in range(B):
            out[b, t] = torch.tensor(readout(h[b], memory[b], allowed[b]), dtype=DT)
        if dec.feed_chosen:
            x = torch.stack([inputs[b, max(int(targets[b, t]), 0)] for b in range(B)])
    return out


def pointer_readout(dec):
    """The pointer's readout by hand: optional glimpse read, scores slot by slot, log-softmax."""

    def readout(h, memory, allowed):
        query = h
        if dec.glimpse is not None:
            weights = [math.exp(x) for x in _log_softmax_by_hand(_scores_by_hand(dec.glimpse, h, memory, allowed))]
            query = torch.cat([h, sum(w * memory[j] for j, w in enumerate(weights))])
        return _log_softmax_by_hand(_scores_by_hand(dec.attention, query, memory, allowed))

    return readout


def decoder_reference(dec, inputs, memory, targets, state, allowed_fn):
    """The pointer decoder by hand (see loop_reference and pointer_readout)."""
    return loop_reference(dec, inputs, memory, targets, state, allowed_fn, pointer_readout(dec))


@pytest.mark.parametrize("B,N,T,D,M,H", [(1, 1, 1, 1, 1, 1), (2, 4, 3, 2, 5, 3), (3, 6, 6, 2, 4, 4)])
def test_pointer_decoder_matches_lstmcell_loop_reference(B, N, T, D, M, H, gen):
    dec = PointerDecoder(D, M, H, attention_size=3).double()
    inputs, memory = randn(B, N, D, g=gen), randn(B, N, M, g=gen)
    state = (randn(B, H, g=gen), randn(B, H, g=gen))
    targets = torch.randint(0, N, (B, T), generator=gen)
    got = dec(inputs, memory, targets, state).detach()
    want = decoder_reference(dec, inputs, memory, targets, state, lambda t: torch.ones(B, N, dtype=torch.bool))
    assert got.shape == (B, T, N)
    torch.testing.assert_close(got, want.detach(), **TOL)


@pytest.mark.parametrize("glimpse", [False, True])
def test_pointer_decoder_exclude_chosen_matches_loop_reference(glimpse, gen):
    B, N, T = 2, 5, 4
    dec = PointerDecoder(2, 3, 4, glimpse=glimpse).double()
    inputs, memory = randn(B, N, 2, g=gen), randn(B, N, 3, g=gen)
    targets = torch.stack([torch.randperm(N, generator=gen)[:T] for _ in range(B)])
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 4] = False
    targets[1] = torch.tensor([3, 0, 2, 1])

    def allowed(t):  # the mask, minus every slot chosen before step t
        a = mask.clone()
        for b in range(B):
            a[b, targets[b, :t]] = False
        return a

    zeros = (torch.zeros(B, 4, dtype=DT), torch.zeros(B, 4, dtype=DT))
    got = dec(inputs, memory, targets, None, mask, exclude_chosen=True).detach()
    want = decoder_reference(dec, inputs, memory, targets, zeros, allowed).detach()
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("glimpse", [False, True])
def test_decoder_without_feedback_matches_loop_reference_fed_start_every_step(glimpse, gen):
    B, N, T = 3, 5, 5
    dec = PointerDecoder(2, 3, 4, glimpse=glimpse, feed_chosen=False).double()
    inputs, memory = randn(B, N, 2, g=gen), randn(B, N, 3, g=gen)
    state = (randn(B, 4, g=gen), randn(B, 4, g=gen))
    targets = torch.randint(0, N, (B, T), generator=gen)
    got = dec(inputs, memory, targets, state).detach()
    everywhere = lambda t: torch.ones(B, N, dtype=torch.bool)  # noqa: E731
    torch.testing.assert_close(got, decoder_reference(dec, inputs, memory, targets, state, everywhere), **TOL)
    # the fed-back inputs and the targets before the last step no longer matter; with feedback they do
    other = torch.randint(0, N, (B, T), generator=gen)
    other[:, -1] = targets[:, -1]
    torch.testing.assert_close(dec(inputs * 7.0, memory, other, state).detach(), got, **TOL)
    dec.feed_chosen = True
    assert not torch.allclose(dec(inputs * 7.0, memory, other, state).detach(), got)


@pytest.mark.parametrize("glimpse", [False, True])
@pytest.mark.parametrize("feed_chosen", [True, False])
def test_greedy_equals_argmax_of_teacher_forced_pass_on_its_own_choices(glimpse, feed_chosen, gen):
    dec = PointerDecoder(2, 3, 5, glimpse=glimpse, feed_chosen=feed_chosen).double()
    inputs, memory = randn(3, 6, 2, g=gen), randn(3, 6, 3, g=gen)
    picks, logp = dec.greedy(inputs, memory, steps=6)
    forced = dec(inputs, memory, picks, exclude_chosen=True).detach()
    torch.testing.assert_close(logp, forced, **TOL)
    assert torch.equal(forced.argmax(-1), picks)


@given(N=st.integers(1, 7), B=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_greedy_with_exclusion_is_a_permutation_property(N, B, seed):
    g = torch.Generator().manual_seed(seed)
    dec = PointerDecoder(2, 2, 3)
    inputs = torch.randn(B, N, 2, generator=g)
    picks, logp = dec.greedy(inputs, inputs, steps=N)
    for row in picks.tolist():
        assert sorted(row) == list(range(N))
    assert torch.all(torch.isfinite(logp.gather(-1, picks[..., None])))


def test_greedy_never_chooses_a_masked_slot_and_stops_at_end(gen):
    dec = PointerDecoder(2, 2, 3).double()
    inputs = randn(4, 6, 2, g=gen)
    mask = torch.rand(4, 6, generator=gen) < 0.5
    mask[:, 0] = True
    picks, logp = dec.greedy(inputs, inputs, steps=10, mask=mask, end_index=0)
    assert torch.all(mask.gather(1, picks))  # every pick allowed
    assert torch.all(torch.exp(logp)[~mask[:, None, :].expand_as(logp)] == 0.0)
    for row in picks.tolist():  # once the end slot is chosen, it stays chosen
        assert 0 in row
        k = row.index(0)
        assert all(s == 0 for s in row[k:])
        assert len(set(row[:k])) == k  # no repeats before the end


def test_hull_targets_closed_form():
    got = hull_targets([[2, 0, 1], [3]])
    want = torch.tensor([[3, 1, 2, 0], [4, 0, IGNORE, IGNORE]])
    assert torch.equal(got, want)


def test_pointer_network_padded_batch_matches_rows_run_alone(gen):
    torch.manual_seed(0)
    net = PointerNetwork(2, 6).double()
    a, b = randn(1, 5, 2, g=gen), randn(1, 3, 2, g=gen)
    padded = torch.cat([a, torch.cat([b, randn(1, 2, 2, g=gen)], dim=1)])
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    targets = hull_targets([[0, 2, 4], [1, 0]])
    both = net(padded, targets, mask).detach()
    alone_a = net(a, targets[:1]).detach()
    alone_b = net(b, targets[1:, :3]).detach()
    torch.testing.assert_close(both[0], alone_a[0], **TOL)
    torch.testing.assert_close(both[1, :3, :4], alone_b[0], **TOL)
    assert torch.all(both[1, :, 4:] == float("-inf"))
    assert net.predict(padded, mask)[1] == net.predict(b)[0]


def test_pointer_network_encoder_matches_torch_lstm(gen):
    net = PointerNetwork(2, 5).double()
    lstm = torch.nn.LSTM(2, 5, batch_first=True).double()
    lstm.load_state_dict({k + "_l0": v for k, v in net.encoder.state_dict().items()})
    points = randn(3, 4, 2, g=gen)
    inputs, memory, (h, c), full = net.encode(points)
    want, (h_n, c_n) = lstm(inputs)
    torch.testing.assert_close(memory, want, **TOL)
    torch.testing.assert_close((h, c), (h_n[0], c_n[0]), **TOL)
    assert bool(full.all()) and torch.equal(inputs[:, 1:], points)


def test_pointer_network_loss_is_mean_nll_by_hand_and_has_gradients(gen):
    net = PointerNetwork(2, 4).double()
    points = randn(2, 4, 2, g=gen)
    targets = hull_targets([[0, 1, 2], [3]])
    logp = net(points, targets)
    picked = [logp[b, t, targets[b, t]] for b in range(2) for t in range(4) if targets[b, t] != IGNORE]
    loss = net.loss(points, targets)
    torch.testing.assert_close(loss, -sum(picked) / len(picked), **TOL)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_predict_returns_point_indices_before_end(gen):
    net = PointerNetwork(2, 4).double()
    points = randn(3, 5, 2, g=gen)
    preds = net.predict(points)
    assert len(preds) == 3
    for seq in preds:
        assert len(set(seq)) == len(seq) and all(0 <= i < 5 for i in seq)


def test_glimpse_decoder_matches_loop_reference_with_a_glimpse(gen):
    B, N, T = 3, 4, 3
    dec = PointerDecoder(2, 3, 4, attention_size=5, glimpse=True).double()
    inputs, memory = randn(B, N, 2, g=gen), randn(B, N, 3, g=gen)
    state = (randn(B, 4, g=gen), randn(B, 4, g=gen))
    targets = torch.randint(0, N, (B, T), generator=gen)
    got = dec(inputs, memory, targets, state).detach()
    want = decoder_reference(dec, inputs, memory, targets, state, lambda t: torch.ones(B, N, dtype=torch.bool))
    torch.testing.assert_close(got, want, **TOL)
    assert dec.attention.query_size == 4 + 3  # the pointer's query is [d_t ; g_t]


@pytest.mark.parametrize("B,T,D,H", [(1, 1, 1, 1), (3, 5, 2, 4), (2, 8, 3, 6)])
def test_run_lstm_cell_matches_the_cell_step_by_step(B, T, D, H, gen):
    cell = LSTMCell(D, H).double()
    x = randn(B, T, D, g=gen)
    h, c = randn(B, H, g=gen), randn(B, H, g=gen)
    out, (h_n, c_n) = run_lstm_cell(cell, x, (h, c))
    steps = []
    for t in range(T):
        h, c = cell(x[:, t], (h, c))
        steps.append(h)
    torch.testing.assert_close(out, torch.stack(steps, dim=1), **TOL)
    torch.testing.assert_close((h_n, c_n), (h, c), **TOL)


def test_run_lstm_cell_gradients_reach_the_cells_weights(gen):
    """Reference: autograd through the step-by-step cell, with the same weights."""
    cell = LSTMCell(2, 3).double()
    x = randn(2, 4, 2, g=gen)
    zeros = (torch.zeros(2, 3, dtype=DT), torch.zeros(2, 3, dtype=DT))
    run_lstm_cell(cell, x, zeros)[0].square().sum().backward()
    fused = [p.grad.clone() for p in cell.parameters()]
    cell.zero_grad()
    h, c = zeros
    total = 0.0
    for t in range(4):
        h, c = cell(x[:, t], (h, c))
        total = total + h.square().sum()
    total.backward()
    for a, p in zip(fused, cell.parameters()):
        torch.testing.assert_close(a, p.grad, **TOL)


def vocabulary_reference(dec, inputs, memory, targets, state, mask):
    """The baseline by hand: optional attention read, tanh layer, softmax over the first N symbols."""

    def readout(h, memory_row, allowed):
        feat = h
        if dec.attention is not None:
            scores = _scores_by_hand(dec.attention, h, memory_row, allowed)
            read = sum(math.exp(v) * memory_row[j] for j, v in enumerate(_log_softmax_by_hand(scores)))
            feat = torch.tanh(dec.combine.weight @ torch.cat([h, read]) + dec.combine.bias)
        logits = dec.output.weight[: len(memory_row)] @ feat + dec.output.bias[: len(memory_row)]
        return _log_softmax_by_hand([float(z) if allowed[j] else None for j, z in enumerate(logits)])

    return loop_reference(dec, inputs, memory, targets, state, lambda t: mask, readout)


@pytest.mark.parametrize("attention", [True, False])
def test_vocabulary_decoder_matches_softmax_layer_by_hand(attention, gen):
    B, N, T, V = 2, 4, 3, 6
    dec = VocabularyDecoder(2, 3, 5, vocab_size=V, attention=attention).double()
    inputs, memory = randn(B, N, 2, g=gen), randn(B, N, 3, g=gen)
    state = (randn(B, 5, g=gen), randn(B, 5, g=gen))
    mask = torch.tensor([[True, True, True, True], [True, False, True, True]])
    targets = torch.tensor([[0, 2, 1], [3, 0, 2]])
    got = dec(inputs, memory, targets, state, mask).detach()
    want = vocabulary_reference(dec, inputs, memory, targets, state, mask)
    torch.testing.assert_close(got, want, **TOL)
    assert (dec.attention is None) == (not attention) and dec.output.out_features == V


def test_vocabulary_greedy_equals_argmax_of_teacher_forced_pass(gen):
    dec = VocabularyDecoder(2, 3, 5, vocab_size=8).double()
    inputs, memory = randn(3, 6, 2, g=gen), randn(3, 6, 3, g=gen)
    picks, logp = dec.greedy(inputs, memory, steps=6)
    forced = dec(inputs, memory, picks, exclude_chosen=True).detach()
    torch.testing.assert_close(logp, forced, **TOL)
    assert sorted(picks[0].tolist()) == list(range(6))


def test_seq2seq_network_shares_the_pointer_network_except_its_output(gen):
    """Reference: PointerNetwork's encoder with the same weights; the decoder is a VocabularyDecoder."""
    torch.manual_seed(3)
    net = Seq2SeqNetwork(2, 4, max_points=6).double()
    ptr = PointerNetwork(2, 4).double()
    ptr.encoder.load_state_dict(net.encoder.state_dict())
    ptr.end.data.copy_(net.end.data)
    points = randn(2, 5, 2, g=gen)
    for a, b in zip(net.encode(points), ptr.encode(points)):
        torch.testing.assert_close(a, b, **TOL)
    assert isinstance(net.decoder, VocabularyDecoder) and net.decoder.vocab_size == 7
    targets = hull_targets([[0, 1, 2], [4, 3]])
    loss = net.loss(points, targets)
    loss.backward()
    assert torch.isfinite(loss) and net.decoder.output.weight.grad is not None
    for seq in net.predict(points):
        assert len(set(seq)) == len(seq) and all(0 <= i < 5 for i in seq)


def test_seq2seq_network_cannot_name_more_points_than_its_vocabulary():
    net = Seq2SeqNetwork(2, 4, max_points=3)
    net.predict(torch.rand(1, 3, 2))
    with pytest.raises(ValueError, match="vocab_size"):
        net.predict(torch.rand(1, 4, 2))


def test_fit_hulls_draws_the_same_batches_for_every_model_with_the_same_seed(gen):
    """Reference: a second model with the same weights; the same seed must give the same losses."""
    train = {n: hull_dataset(n, 32, gen) for n in (4, 5)}
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = PointerNetwork(2, 4)
        losses.append(fit_hulls(model, train, steps=6, batch=8, lr=1e-2, seed=3).losses)
    assert losses[0] == losses[1] and len(losses[0]) == 6
    torch.manual_seed(0)
    other = fit_hulls(PointerNetwork(2, 4), train, steps=6, batch=8, lr=1e-2, seed=4).losses
    assert other != losses[0]
    torch.manual_seed(0)
    short = fit_hulls(PointerNetwork(2, 4), train, steps=6, batch=8, lr=1e-2, seed=3, stop_after=2).losses
    assert short == losses[0][:2]


def test_fit_hulls_trains_on_the_targets_hull_targets_makes_per_batch(gen):
    """Reference: a plain loop that draws each batch the same way and pads its hulls with hull_targets."""
    from papers30.runtime import generator
    from papers30.training import fit

    train = {n: hull_dataset(n, 32, gen) for n in (4, 7)}
    torch.manual_seed(0)
    got = fit_hulls(PointerNetwork(2, 4), train, steps=6, batch=8, lr=1e-2, seed=3, clip=1.0).losses
    torch.manual_seed(0)
    model, draw, sizes = PointerNetwork(2, 4), generator(3), sorted(train)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 6)

    def loss_fn(step):
        points, hulls = train[sizes[step % len(sizes)]]
        idx = torch.randint(0, len(hulls), (8,), generator=draw)
        return model.loss(points[idx], hull_targets([hulls[i] for i in idx.tolist()]))

    want = fit(model, optimizer, loss_fn, 6, scheduler=schedule, clip=1.0).losses
    assert got == want


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(model="net"), TypeError, "model"),
        (dict(train={}), ValueError, "train"),
        (dict(batch=0), ValueError, "batch"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(steps=0), ValueError, "steps"),
    ],
)
def test_fit_hulls_rejects_bad_arguments(kwargs, exc, name, gen):
    args = dict(model=PointerNetwork(2, 3), train={4: hull_dataset(4, 4, gen)}, steps=2, batch=2, lr=1e-2, seed=0)
    with pytest.raises(exc, match=name):
        fit_hulls(**(args | kwargs))


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: VocabularyDecoder(2, 3, 4, vocab_size=0), ValueError, "vocab_size"),
        (lambda: VocabularyDecoder(2, 3, 4, vocab_size=3, attention=1), TypeError, "attention"),
        (lambda: Seq2SeqNetwork(2, 4, max_points=0), ValueError, "max_points"),
        (lambda: PointerDecoder(2, 3, 4, glimpse="yes"), TypeError, "glimpse"),
        (lambda: PointerDecoder(2, 3, 4, feed_chosen=1), TypeError, "feed_chosen"),
    ],
)
def test_baselines_and_glimpse_reject_bad_arguments(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


# ----------------------------------------------------------------- bad input


@pytest.fixture
def dec():
    return PointerDecoder(2, 3, 4)


@pytest.mark.parametrize(
    "kwargs,name,exc",
    [
        (dict(inputs=torch.ones(2, 5, 2, dtype=torch.long)), "inputs", TypeError),
        (dict(inputs=torch.ones(2, 4, 2)), "inputs", ValueError),
        (dict(memory=torch.ones(2, 5, 2)), "memory", ValueError),
        (dict(targets=torch.ones(2, 3)), "targets", TypeError),
        (dict(targets=torch.full((2, 3), 5)), "targets", ValueError),
        (dict(state=torch.zeros(2, 4)), "state", TypeError),
        (dict(state=(torch.zeros(2, 4), torch.zeros(2, 3))), "state", ValueError),
        (dict(mask=torch.ones(2, 5)), "mask", TypeError),
        (dict(mask=torch.zeros(2, 5, dtype=torch.bool)), "mask", ValueError),
    ],
)
def test_pointer_decoder_rejects_bad_input(dec, kwargs, name, exc):
    args = dict(inputs=torch.ones(2, 5, 2), memory=torch.ones(2, 5, 3), targets=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(exc, match=name):
        dec(**(args | kwargs))


def test_greedy_rejects_bad_steps_and_end_index(dec):
    x, m = torch.ones(2, 5, 2), torch.ones(2, 5, 3)
    with pytest.raises(ValueError, match="steps"):
        dec.greedy(x, m, steps=0)
    with pytest.raises(ValueError, match="end_index"):
        dec.greedy(x, m, steps=2, end_index=5)


@pytest.mark.parametrize("arg", ["input_size", "memory_size", "hidden_size", "attention_size"])
def test_pointer_decoder_rejects_bad_sizes(arg):
    sizes = dict(input_size=2, memory_size=2, hidden_size=2, attention_size=2) | {arg: 0}
    with pytest.raises(ValueError, match=arg):
        PointerDecoder(**sizes)


def test_pointer_network_rejects_bad_points_and_mask():
    net = PointerNetwork(2, 4)
    with pytest.raises(ValueError, match="points"):
        net.predict(torch.ones(2, 5, 3))
    with pytest.raises(TypeError, match="points"):
        net.predict(torch.ones(2, 5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="mask"):
        net.predict(torch.ones(2, 5, 2), mask=torch.ones(2, 4, dtype=torch.bool))


def test_hull_targets_rejects_bad_sequences():
    with pytest.raises(TypeError, match="sequences"):
        hull_targets([1, 2])
    with pytest.raises(ValueError, match="sequences"):
        hull_targets([[0, -1]])
    with pytest.raises(ValueError, match="sequences"):
        hull_targets([])
