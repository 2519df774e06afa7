"""papers30.seq2seq against independent references: torch's bidirectional GRU on
packed batches (copied weights, float64), flip-based reversal, a step-by-step
decoding loop, and the teacher-forced pass fed the greedy output."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from papers30.seq2seq import BidirectionalGRU, RNNEncDec, RNNSearch, reverse_padded

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)
MODELS = [RNNEncDec, RNNSearch]


def torch_bigru(ours: BidirectionalGRU) -> nn.GRU:
    theirs = nn.GRU(ours.input_size, ours.hidden_size, batch_first=True, bidirectional=True).to(DT)
    state = {}
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        state[f"{name}_l0"] = getattr(ours.forward_rnn, f"{name}_l0")
        state[f"{name}_l0_reverse"] = getattr(ours.backward_rnn, f"{name}_l0")
    theirs.load_state_dict(state)
    return theirs


@pytest.mark.parametrize("B,T,D,H", [(1, 1, 1, 1), (1, 4, 3, 2), (3, 5, 2, 4), (4, 7, 5, 3)])
def test_bidirectional_gru_matches_torch_packed(B, T, D, H, gen):
    ours = BidirectionalGRU(D, H).to(DT)
    theirs = torch_bigru(ours)
    x = torch.randn(B, T, D, dtype=DT, generator=gen)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T  # pad_packed_sequence pads to the longest row
    out, h_n = ours(x, lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    want_packed, want_h = theirs(packed)
    want, _ = pad_packed_sequence(want_packed, batch_first=True, total_length=T)
    assert out.shape == (B, T, 2 * H) and h_n.shape == (2, B, H)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(h_n, want_h, **TOL)


def test_bidirectional_gru_matches_torch_unpadded(gen):
    ours = BidirectionalGRU(3, 4).to(DT)
    x = torch.randn(2, 6, 3, dtype=DT, generator=gen, requires_grad=True)
    out, h_n = ours(x)
    want, want_h = torch_bigru(ours)(x)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(h_n, want_h, **TOL)
    (g_ours,) = torch.autograd.grad(out.sum(), x)
    (g_theirs,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, **TOL)


def test_reverse_padded_matches_flip(gen):
    x = torch.randn(3, 5, 2, generator=gen)
    lengths = torch.tensor([5, 2, 1])
    got = reverse_padded(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(got[b, :n], x[b, :n].flip(0))
        torch.testing.assert_close(got[b, n:], x[b, n:])
    torch.testing.assert_close(reverse_padded(got, lengths), x)


def make(cls, g, V=9):
    torch.manual_seed(int(torch.randint(0, 10**6, (1,), generator=g)))
    return cls(V, V + 2, embed_size=5, hidden_size=6).to(DT)


def sources(g, B=4, S=6, V=9):
    src = torch.randint(3, V, (B, S), generator=g)
    lengths = torch.randint(1, S + 1, (B,), generator=g)
    lengths[0] = S
    src[torch.arange(S)[None, :] >= lengths[:, None]] = 0
    return src, lengths


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("B,S,T", [(1, 1, 1), (1, 4, 3), (4, 6, 5)])
def test_forward_shapes(cls, B, S, T, gen):
    model = make(cls, gen)
    src, _ = sources(gen, B, S)
    tgt = torch.randint(1, 11, (B, T), generator=gen)
    logits, weights = model(src, tgt)
    assert logits.shape == (B, T, 11)
    if cls is RNNSearch:
        assert weights.shape == (B, T, S)
    else:
        assert weights is None


def test_attention_weights_sum_to_one_and_ignore_padding(gen):
    model = make(RNNSearch, gen)
    src, lengths = sources(gen)
    tgt = torch.randint(1, 11, (4, 5), generator=gen)
    logits, weights = model(src, tgt)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 5, dtype=DT), **TOL)
    pad = torch.arange(src.shape[1])[None, :] >= lengths[:, None]
    assert (weights[pad[:, None, :].expand_as(weights)] == 0).all()
    assert (weights[~pad[:, None, :].expand_as(weights)] > 0).all()
    # appending more padding changes nothing
    longer = torch.cat([src, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    logits2, weights2 = model(longer, tgt)
    torch.testing.assert_close(logits2, logits, **TOL)
    torch.testing.assert_close(weights2[..., : src.shape[1]], weights, **TOL)


@pytest.mark.parametrize("cls", MODELS)
def test_batch_rows_are_independent(cls, gen):
    """Each row's output equals the output for that row alone, without padding."""
    model = make(cls, gen)
    src, lengths = sources(gen)
    tgt = torch.randint(1, 11, (4, 5), generator=gen)
    logits, _ = model(src, tgt)
    for b, n in enumerate(lengths.tolist()):
        alone, _ = model(src[b : b + 1, :n], tgt[b : b + 1])
        torch.testing.assert_close(alone[0], logits[b], **TOL)


@pytest.mark.parametrize("cls", MODELS)
def test_greedy_matches_step_by_step_loop(cls, gen):
    model = make(cls, gen)
    src, _ = sources(gen)
    tokens, weights = model.greedy(src, bos=1, eos=2, max_len=7)
    for b in range(src.shape[0]):  # reference: one sentence, one explicit step at a time
        memory, state = model.encode(src[b : b + 1])
        prev, want = torch.tensor([1]), []
        for _ in range(tokens.shape[1]):
            logits, state, _ = model.step(prev, state, memory)
            prev = logits.argmax(-1) if not want or want[-1] != 2 else torch.tensor([2])
            want.append(int(prev))
        assert tokens[b].tolist() == want
    # teacher forcing on the greedy output reproduces its own argmax
    tgt_in = torch.cat([torch.ones(src.shape[0], 1, dtype=torch.long), tokens[:, :-1]], dim=1)
    logits, tf_weights = model(src, tgt_in)
    for b in range(src.shape[0]):
        row = tokens[b].tolist()
        n = row.index(2) + 1 if 2 in row else len(row)
        assert logits[b, :n].argmax(-1).tolist() == row[:n]
        if weights is not None:
            torch.testing.assert_close(weights[b, :n], tf_weights[b, :n], **TOL)


def test_loss_matches_cross_entropy_and_gradients_flow(gen):
    model = make(RNNSearch, gen)
    src, _ = sources(gen)
    tgt_in = torch.randint(1, 11, (4, 5), generator=gen)
    tgt_out = torch.randint(1, 11, (4, 5), generator=gen)
    tgt_out[1, 3:] = 0
    loss = model.loss(src, tgt_in, tgt_out)
    logits, _ = model(src, tgt_in)
    keep = tgt_out != 0
    want = -logits.log_softmax(-1).gather(-1, tgt_out[..., None])[..., 0][keep].mean()
    torch.testing.assert_close(loss, want, **TOL)
    loss.backward()
    assert model.attention.v.grad.abs().sum() > 0
    assert model.encoder.backward_rnn.weight_ih_l0.grad.abs().sum() > 0


def test_memory_is_annotations_or_summary_from_torch_gru(gen):
    """RNNsearch's memory is every annotation; RNNencdec's is [h_fwd last; h_bwd first] (torch's h_n)."""
    src = torch.tensor([[3, 4, 5, 6, 7], [5, 4, 3, 0, 0]])
    lengths = torch.tensor([5, 3])
    for cls in MODELS:
        model = make(cls, gen)
        x = model.src_embed(src)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h_n = torch_bigru(model.encoder)(packed)
        annotations, _ = pad_packed_sequence(out, batch_first=True, total_length=5)
        memory, _ = model.encode(src)
        if cls is RNNSearch:
            torch.testing.assert_close(memory.values, annotations, **TOL)
            torch.testing.assert_close(memory.keys, annotations @ model.attention.key_proj.weight.T, **TOL)
            assert memory.mask.tolist() == (src != 0).tolist()
        else:
            torch.testing.assert_close(memory.values[:, 0], torch.cat([h_n[0], h_n[1]], -1), **TOL)
            assert memory.values.shape == (2, 1, 12) and memory.mask.all() and memory.keys is None


def test_search_context_matches_additive_attention_module(gen):
    """The context with keys projected once per sentence equals AdditiveAttention.attend (eqs. nmt-score..context)."""
    model = make(RNNSearch, gen)
    src, _ = sources(gen)
    memory, state = model.encode(src)
    state = state + torch.randn(state.shape, dtype=DT, generator=gen)  # a state other than s_0
    got, weights = model.context(state, memory)
    want, want_weights = model.attention.attend(state, memory.values, memory.mask)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(weights, want_weights, **TOL)


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda m: m(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.long)), TypeError, "src"),
        (lambda m: m(torch.ones(2, 3, dtype=torch.long), torch.ones(2, dtype=torch.long)), ValueError, "tgt_in"),
        (lambda m: m(torch.ones(2, 3, dtype=torch.long), torch.ones(3, 2, dtype=torch.long)), ValueError, "tgt_in"),
        (lambda m: m(torch.tensor([[3, 0, 4]]), torch.ones(1, 2, dtype=torch.long)), ValueError, "src"),
        (lambda m: m(torch.tensor([[0, 0]]), torch.ones(1, 2, dtype=torch.long)), ValueError, "src"),
        (lambda m: m.greedy(torch.ones(1, 2, dtype=torch.long), 1, 2, 0), ValueError, "max_len"),
        (lambda m: m.loss(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long),
                          torch.ones(1, 3, dtype=torch.long)), ValueError, "tgt_out"),
    ],
)
@pytest.mark.parametrize("cls", MODELS)
def test_bad_inputs(cls, call, exc, name, gen):
    model = make(cls, gen)
    with pytest.raises(exc, match=name):
        call(model)


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(src_vocab=0, tgt_vocab=5), ValueError, "src_vocab"),
        (dict(src_vocab=5, tgt_vocab=5.0), TypeError, "tgt_vocab"),
        (dict(src_vocab=5, tgt_vocab=5, hidden_size=-1), ValueError, "hidden_size"),
        (dict(src_vocab=5, tgt_vocab=5, pad_idx="0"), TypeError, "pad_idx"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        RNNSearch(**kwargs)


def test_bidirectional_gru_bad_inputs(gen):
    rnn = BidirectionalGRU(3, 2)
    with pytest.raises(ValueError, match="input"):
        rnn(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="input"):
        rnn(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="lengths"):
        rnn(torch.zeros(2, 3, 3), torch.tensor([1, 4]))
    with pytest.raises(TypeError, match="lengths"):
        rnn(torch.zeros(2, 3, 3), torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="x"):
        reverse_padded([1, 2], torch.tensor([1]))


def test_scores_by_length_matches_direct_computation():
    from papers30.metrics import corpus_bleu, exact_match
    from papers30.seq2seq import scores_by_length

    ref = [[3, 4, 5, 6], [3, 4], [5, 6, 7, 8, 9], [4, 4, 4, 4, 4]]
    hyp = [[3, 4, 5, 6], [3, 5], [5, 6, 7, 8, 9], [4, 4, 4, 4, 3]]
    got = scores_by_length(hyp, ref, [2, 2, 5, 5], [(1, 2), (3, 5)])
    assert got["count"] == [2.0, 2.0]
    assert got["exact"] == [0.5, 0.5]
    assert got["bleu"] == [corpus_bleu(hyp[:2], ref[:2]), corpus_bleu(hyp[2:], ref[2:])]
    assert got["exact"][0] == exact_match(hyp[:2], ref[:2])
    with pytest.raises(ValueError, match="lengths"):
        scores_by_length(hyp, ref, [1, 2], [(1, 2)])
    with pytest.raises(ValueError, match="buckets"):
        scores_by_length(hyp, ref, [2, 2, 5, 5], [(7, 9)])
