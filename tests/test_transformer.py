"""papers30.transformer against torch's layers, closed forms and brute force."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from papers30.data.synthetic import pad_batch
from papers30.transformer import (
    DecoderLayer,
    EncoderLayer,
    Transformer,
    cross_entropy,
    greedy_decode,
    sinusoidal_positions,
    warmup_inverse_sqrt,
)

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def randn(*shape, g):
    return torch.randn(*shape, dtype=DT, generator=g)


def right_padding(B, L, g):
    """True at padding; row 0 is full, every row keeps position 0."""
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L
    return torch.arange(L)[None, :] >= lengths[:, None]


def randomise_norms(module, g):
    """LayerNorms start at (1, 0); random affine parameters make a wrong copy visible."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.1 * randn(*m.weight.shape, g=g))
                m.bias.copy_(0.1 * randn(*m.bias.shape, g=g))


# ---------------------------------------------------------------- positions


@pytest.mark.parametrize("length,d_model", [(1, 2), (7, 4), (50, 16), (128, 64)])
def test_sinusoidal_positions_match_double_loop_of_paper_formula(length, d_model):
    want = torch.zeros(length, d_model, dtype=DT)
    for p in range(length):
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            want[p, 2 * i] = math.sin(angle)
            want[p, 2 * i + 1] = math.cos(angle)
    got = sinusoidal_positions(length, d_model)
    assert got.shape == (length, d_model) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 17])
def test_sinusoidal_offset_is_a_fixed_block_rotation_closed_form(k):
    """PE[p + k] = M_k PE[p] with M_k = blockdiag([[cos kw_i, sin kw_i], [-sin kw_i, cos kw_i]]) for every p."""
    L, D = 64, 16
    pe = sinusoidal_positions(L + k, D).double()
    M = torch.zeros(D, D, dtype=DT)
    for i in range(D // 2):
        w = 10000 ** (-2 * i / D)
        c, s = math.cos(k * w), math.sin(k * w)
        M[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=DT)
    torch.testing.assert_close(pe[:L] @ M.T, pe[k : L + k], rtol=0, atol=1e-5)
    assert not torch.allclose(pe[:L], pe[k : L + k], atol=1e-3)  # the offset does change the codes


@pytest.mark.parametrize(
    "args,exc,name",
    [
        ((0, 4), ValueError, "length"),
        ((4.0, 4), TypeError, "length"),
        ((4, 5), ValueError, "d_model"),
        ((4, 0), ValueError, "d_model"),
    ],
)
def test_sinusoidal_positions_rejects_bad_sizes(args, exc, name):
    with pytest.raises(exc, match=name):
        sinusoidal_positions(*args)


# ---------------------------------------------------------------- layers vs torch


LAYER_SHAPES = [  # B, S, T, D, H, F
    (1, 1, 1, 4, 1, 8),
    (2, 5, 4, 8, 2, 16),
    (3, 7, 6, 12, 3, 10),
]


def encoder_pair(D, H, Fd, copy_to_torch, g):
    """Ours (eval) and torch's post-norm encoder layer with the same weights.

    torch runs in train mode with dropout 0.0: in eval mode it may take its
    fused "fast path", which returns zeros (not the computed values) in padded
    rows; train mode with dropout 0.0 is deterministic and computes every row.
    """
    ours = EncoderLayer(D, H, Fd, dropout=0.0).to(DT).eval()
    randomise_norms(ours, g)
    theirs = nn.TransformerEncoderLayer(D, H, Fd, dropout=0.0, batch_first=True, norm_first=False)
    return ours, copy_to_torch(ours, theirs.to(DT).train())


@pytest.mark.parametrize("B,S,T,D,H,Fd", LAYER_SHAPES)
@pytest.mark.parametrize("with_padding", [False, True])
def test_encoder_layer_matches_torch_transformer_encoder_layer(B, S, T, D, H, Fd, with_padding, gen, copy_to_torch):
    ours, theirs = encoder_pair(D, H, Fd, copy_to_torch, gen)
    x = randn(B, S, D, g=gen)
    pad = right_padding(B, S, gen) if with_padding else None
    got = ours(x, src_key_padding_mask=pad)
    assert got.shape == (B, S, D)
    torch.testing.assert_close(got, theirs(x, src_key_padding_mask=pad), **TOL)


def test_encoder_layer_input_gradient_matches_torch_autograd(gen, copy_to_torch):
    ours, theirs = encoder_pair(8, 2, 16, copy_to_torch, gen)
    x0, up = randn(2, 5, 8, g=gen), randn(2, 5, 8, g=gen)
    pad = right_padding(2, 5, gen)
    grads = []
    for mod in (ours, theirs):
        x = x0.clone().requires_grad_()
        (mod(x, src_key_padding_mask=pad) * up).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], **TOL)


@pytest.mark.parametrize("B,S,T,D,H,Fd", LAYER_SHAPES)
@pytest.mark.parametrize("with_padding", [False, True])
def test_decoder_layer_matches_torch_transformer_decoder_layer_with_causal_mask(
    B, S, T, D, H, Fd, with_padding, gen, copy_to_torch
):
    """torch gets tgt_mask = generate_square_subsequent_mask(T) and tgt_is_causal=True.

    Same train-mode/dropout-0.0 arrangement as the encoder test, and the
    padding masks are given to torch as float masks, like its causal mask.
    """
    ours = DecoderLayer(D, H, Fd, dropout=0.0).to(DT).eval()
    randomise_norms(ours, gen)
    theirs = nn.TransformerDecoderLayer(D, H, Fd, dropout=0.0, batch_first=True, norm_first=False).to(DT).train()
    copy_to_torch(ours, theirs)
    tgt, memory = randn(B, T, D, g=gen), randn(B, S, D, g=gen)
    tgt_pad = right_padding(B, T, gen) if with_padding else None
    mem_pad = right_padding(B, S, gen) if with_padding else None

    def as_float(mask):
        return None if mask is None else torch.zeros(mask.shape, dtype=DT).masked_fill(mask, float("-inf"))

    want = theirs(
        tgt,
        memory,
        tgt_mask=nn.Transformer.generate_square_subsequent_mask(T, dtype=DT),
        tgt_key_padding_mask=as_float(tgt_pad),
        memory_key_padding_mask=as_float(mem_pad),
        tgt_is_causal=True,
    )
    got = ours(tgt, memory, tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=mem_pad)
    assert got.shape == (B, T, D)
    torch.testing.assert_close(got, want, **TOL)


def test_encoder_layer_feed_forward_is_relu_mlp_closed_form(gen):
    layer = EncoderLayer(4, 2, 6, dropout=0.0).to(DT).eval()
    x = randn(3, 4, g=gen)
    W1, b1, W2, b2 = layer.linear1.weight, layer.linear1.bias, layer.linear2.weight, layer.linear2.bias
    want = torch.clamp(x @ W1.T + b1, min=0) @ W2.T + b2
    torch.testing.assert_close(layer.feed_forward(x), want, **TOL)


# ---------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("N,V", [(1, 2), (7, 5), (20, 11)])
@pytest.mark.parametrize("ignore_index", [-100, 0, 3, 50])
def test_cross_entropy_matches_torch_with_ignore_index_and_label_smoothing(eps, N, V, ignore_index, gen):
    logits = randn(N, V, g=gen) * 2
    target = torch.randint(0, V, (N,), generator=gen)
    drop = torch.rand(N, generator=gen) < 0.3
    drop[0] = False  # keep one position
    target = target.masked_fill(drop, ignore_index)
    target[0] = (ignore_index + 1) % V if target[0] == ignore_index else target[0]
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    got = cross_entropy(x1, target, ignore_index=ignore_index, label_smoothing=eps)
    want = F.cross_entropy(x2, target, ignore_index=ignore_index, label_smoothing=eps)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got.backward()
    want.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)


def test_cross_entropy_closed_form_by_hand():
    """Logits (0, ln 3) give p = (1/4, 3/4); target 1, eps 0.5: 0.5*ln(4/3) + 0.5*(ln 4 + ln(4/3))/2."""
    logits = torch.tensor([[0.0, math.log(3.0)]], dtype=DT)
    got = cross_entropy(logits, torch.tensor([1]), label_smoothing=0.5).item()
    want = 0.5 * math.log(4 / 3) + 0.5 * (math.log(4) + math.log(4 / 3)) / 2
    assert got == pytest.approx(want, rel=1e-12)


def test_cross_entropy_rejects_out_of_range_target_that_is_not_ignored():
    """Like torch, a negative class id that is not ignore_index is an error, not class 0."""
    with pytest.raises((IndexError, RuntimeError)):
        cross_entropy(torch.zeros(2, 3), torch.tensor([1, -3]))
    with pytest.raises((IndexError, RuntimeError)):
        F.cross_entropy(torch.zeros(2, 3), torch.tensor([1, -3]))


@pytest.mark.parametrize(
    "inp,tgt,kw,exc,name",
    [
        (torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long), {}, ValueError, "input"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long), {}, TypeError, "input"),
        ([[0.0, 1.0]], torch.zeros(1, dtype=torch.long), {}, TypeError, "input"),
        (torch.zeros(2, 3), torch.zeros(2), {}, TypeError, "target"),
        (torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long), {}, ValueError, "target"),
        (torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), {}, ValueError, "target"),
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), {"label_smoothing": 1.5}, ValueError, "label_smoothing"),
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), {"label_smoothing": "0.1"}, TypeError, "label_smoothing"),
    ],
)
def test_cross_entropy_rejects_bad_inputs(inp, tgt, kw, exc, name):
    with pytest.raises(exc, match=name):
        cross_entropy(inp, tgt, **kw)


# ---------------------------------------------------------------- schedule


@pytest.mark.parametrize("d_model,warmup", [(1, 1), (64, 10), (512, 4000)])
def test_warmup_inverse_sqrt_closed_form(d_model, warmup):
    """Linear ramp to the peak d^-0.5 warmup^-0.5 at step == warmup, then d^-0.5 step^-0.5."""
    steps = sorted({1, 2, max(1, warmup // 2), warmup, warmup + 1, 2 * warmup, 10 * warmup})
    for s in steps:
        want = d_model**-0.5 * (s / warmup**1.5 if s <= warmup else s**-0.5)
        assert warmup_inverse_sqrt(s, d_model, warmup) == pytest.approx(want, rel=1e-12)
    lrs = [warmup_inverse_sqrt(s, d_model, warmup) for s in range(1, 3 * warmup + 2)]
    peak = max(range(len(lrs)), key=lrs.__getitem__) + 1
    assert peak == warmup
    assert lrs[warmup - 1] == pytest.approx(d_model**-0.5 * warmup**-0.5, rel=1e-12)
    slope = [lr / s for s, lr in enumerate(lrs[:warmup], start=1)]  # constant while warming up
    assert max(slope) == pytest.approx(min(slope), rel=1e-12)
    decay = [lr * math.sqrt(s) for s, lr in enumerate(lrs, start=1)][warmup - 1 :]  # constant after
    assert max(decay) == pytest.approx(min(decay), rel=1e-12)


@pytest.mark.parametrize(
    "args,exc,name",
    [
        ((0, 64, 10), ValueError, "step"),
        ((1.0, 64, 10), TypeError, "step"),
        ((1, 0, 10), ValueError, "d_model"),
        ((1, 64.0, 10), TypeError, "d_model"),
        ((1, 64, 0), ValueError, "warmup"),
        ((1, 64, 1.5), TypeError, "warmup"),
    ],
)
def test_warmup_inverse_sqrt_rejects_bad_sizes(args, exc, name):
    with pytest.raises(exc, match=name):
        warmup_inverse_sqrt(*args)


# ---------------------------------------------------------------- the model

SRC_V, TGT_V = 11, 9


def small_model(dtype=DT, max_len=32, **kw):
    torch.manual_seed(0)
    model = Transformer(
        SRC_V, TGT_V, d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=32,
        max_len=max_len, **kw,
    )
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def model():
    return small_model()


def tokens(B, L, V, g, low=3):
    return torch.randint(low, V, (B, L), generator=g)


@pytest.mark.parametrize("B,S,T", [(1, 1, 1), (3, 5, 4), (2, 1, 6), (1, 8, 2)])
def test_transformer_output_shape_and_finite_by_construction(B, S, T, model, gen):
    logits = model(tokens(B, S, SRC_V, gen), tokens(B, T, TGT_V, gen))
    assert logits.shape == (B, T, TGT_V)
    assert torch.isfinite(logits).all()
    attn = model.cross_attention()
    assert len(attn) == 2
    for w in attn:
        assert w.shape == (B, 2, T, S)
        torch.testing.assert_close(w.sum(-1), torch.ones(B, 2, T, dtype=DT), **TOL)


@given(cut=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_transformer_decoder_is_causal_brute_force_token_change(cut, seed, model):
    """Changing target tokens at positions >= cut leaves the logits before cut unchanged."""
    g = torch.Generator().manual_seed(seed)
    src, tgt = tokens(2, 5, SRC_V, g), tokens(2, 6, TGT_V, g)
    changed = tgt.clone()
    changed[:, cut:] = (tgt[:, cut:] - 3 + 1) % (TGT_V - 3) + 3  # a different real token
    changed[1, -1] = 0  # and a padding token
    a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :cut], b[:, :cut], **TOL)
    assert not torch.allclose(a[:, cut], b[:, cut])  # position cut sees its own (changed) token


@pytest.mark.parametrize("extra", [1, 4])
def test_transformer_padding_src_does_not_change_logits(extra, gen):
    """Appending PAD to the source changes nothing (float32, 1e-5); pad keys get zero attention."""
    model = small_model(torch.float32)
    src, tgt = tokens(3, 5, SRC_V, gen), tokens(3, 4, TGT_V, gen)
    padded = torch.cat([src, torch.zeros(3, extra, dtype=torch.long)], dim=1)
    ref = model(src, tgt)
    got = model(padded, tgt)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    for w in model.cross_attention():
        assert (w[..., 5:] == 0).all()


def test_transformer_padding_one_sequence_matches_it_alone(gen):
    """A short sequence padded inside a batch gives the logits it gets alone."""
    model = small_model()
    short, long_ = tokens(1, 3, SRC_V, gen), tokens(1, 6, SRC_V, gen)
    batch = torch.cat([torch.cat([short, torch.zeros(1, 3, dtype=torch.long)], 1), long_])
    tgt = tokens(2, 4, TGT_V, gen)
    torch.testing.assert_close(model(batch, tgt)[0], model(short, tgt[:1])[0], **TOL)


def test_transformer_logits_are_decoder_state_times_tied_target_embedding(model, gen):
    """Hook the last decoder layer: logits == hidden @ tgt_embed.weight.T, no separate output matrix."""
    seen = {}
    hook = model.decoder[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("h", o))
    try:
        logits = model(tokens(2, 5, SRC_V, gen), tokens(2, 4, TGT_V, gen))
    finally:
        hook.remove()
    torch.testing.assert_close(logits, seen["h"] @ model.tgt_embed.weight.T, **TOL)
    shapes = [tuple(p.shape) for n, p in model.named_parameters() if n != "tgt_embed.weight"]
    assert (TGT_V, 16) not in shapes and (16, TGT_V) not in shapes


def test_transformer_output_gradient_reaches_target_embedding_rows_never_input(gen):
    """Rows of tgt_embed for tokens absent from the decoder input still get gradient: the output uses them."""
    model = small_model()
    tgt = torch.full((2, 4), 3, dtype=torch.long)  # only token 3 as input
    F.cross_entropy(model(tokens(2, 5, SRC_V, gen), tgt).flatten(0, 1), torch.full((8,), 7)).backward()
    grad = model.tgt_embed.weight.grad
    assert grad[7].abs().sum() > 0 and grad[5].abs().sum() > 0


def test_transformer_embedding_scale_and_positions_closed_form(model, gen):
    """Encoder input = embed * sqrt(D) + PE (eval: no dropout), seen through a pre-hook on layer 0."""
    seen = {}
    hook = model.encoder[0].register_forward_pre_hook(
        lambda m, args, kwargs: seen.__setitem__("x", args[0]), with_kwargs=True
    )
    src = tokens(2, 5, SRC_V, gen)
    try:
        model.encode(src)
    finally:
        hook.remove()
    want = model.src_embed.weight[src] * 4.0 + sinusoidal_positions(5, 16).double()
    torch.testing.assert_close(seen["x"], want, **TOL)


@pytest.mark.parametrize("which", ["src", "tgt"])
def test_transformer_rejects_sequences_longer_than_max_len(which):
    model = small_model(max_len=8)
    ok, long_ = torch.full((1, 8), 3), torch.full((1, 9), 3)
    model(ok, ok)  # the limit itself is fine
    src, tgt = (long_, ok) if which == "src" else (ok, long_)
    with pytest.raises(ValueError, match="max_len"):
        model(src, tgt)


@pytest.mark.parametrize("which", ["src", "tgt"])
def test_transformer_rejects_float_tokens(which, model):
    good, bad = torch.full((1, 3), 3), torch.full((1, 3), 3.0)
    src, tgt = (bad, good) if which == "src" else (good, bad)
    with pytest.raises(TypeError, match=which):
        model(src, tgt)


@pytest.mark.parametrize("which", ["src", "tgt"])
def test_transformer_rejects_one_dimensional_tokens(which, model):
    good, bad = torch.full((1, 3), 3), torch.full((3,), 3)
    src, tgt = (bad, good) if which == "src" else (good, bad)
    with pytest.raises(ValueError, match=which):
        model(src, tgt)


def test_transformer_rejects_mismatched_batch(model):
    with pytest.raises(ValueError, match="tgt"):
        model(torch.full((2, 3), 3), torch.full((3, 3), 3))


@pytest.mark.parametrize(
    "kw,exc,name",
    [
        ({"src_vocab": 0}, ValueError, "src_vocab"),
        ({"tgt_vocab": 2.0}, TypeError, "tgt_vocab"),
        ({"max_len": 0}, ValueError, "max_len"),
    ],
)
def test_transformer_rejects_bad_sizes(kw, exc, name):
    args = dict(src_vocab=5, tgt_vocab=5, d_model=8, nhead=2) | kw
    with pytest.raises(exc, match=name):
        Transformer(**args)


# ---------------------------------------------------------------- greedy decoding


def brute_force_greedy(model, src_row, bos, eos, max_len):
    """Re-run the whole teacher-forced forward on the growing prefix; argmax of the last position."""
    prefix = [bos]
    for _ in range(max_len):
        nxt = int(model(src_row[None], torch.tensor([prefix]))[0, -1].argmax())
        prefix.append(nxt)
        if nxt == eos:
            break
    return prefix[1:]


@pytest.fixture(scope="module")
def copier():
    """A Transformer trained for 40 steps to copy its source (PAD 0, BOS 1, EOS 2, words 3-6).

    Half-trained on purpose: an untrained model with tied embeddings just
    repeats one token, which would make the greedy test vacuous; this one
    emits varied words and EOS at varied positions (and sometimes never).
    """
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = Transformer(
        7, 7, d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32, dropout=0.0
    ).to(DT)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        lengths = torch.randint(1, 6, (32,), generator=g).tolist()
        seqs = [torch.randint(3, 7, (n,), generator=g).tolist() for n in lengths]
        src = pad_batch(seqs)
        tgt_in, tgt_out = pad_batch([[1] + s for s in seqs]), pad_batch([s + [2] for s in seqs])
        loss = cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.train()


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_decode_matches_brute_force_prefix_reruns(seed, copier):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 7, (10, 5), generator=g)
    src = src.masked_fill(torch.arange(5)[None, :] >= torch.randint(1, 6, (10, 1), generator=g), 0)
    max_len = 7
    out = greedy_decode(copier, src, bos=1, eos=2, max_len=max_len)
    assert copier.training  # mode restored
    want = [brute_force_greedy(copier.eval(), row, 1, 2, max_len) for row in src]
    copier.train()
    assert out.dtype == torch.long and out.shape == (10, max(len(w) for w in want))
    assert out.shape[1] <= max_len
    for row, w in zip(out.tolist(), want):
        assert row[: len(w)] == w
        assert all(t == copier.pad_idx for t in row[len(w) :])  # padded after EOS
    ended = [w for w in want if w[-1] == 2]
    assert ended and min(len(w) for w in ended) < out.shape[1]  # some rows really were padded
    assert len({t for w in want for t in w}) >= 3  # varied tokens, not one repeated word


def test_greedy_decode_pads_after_eos_and_stops_early_when_all_done():
    """A model forced to say EOS first: one column, all EOS (closed form)."""
    torch.manual_seed(0)
    model = Transformer(6, 5, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16).to(DT)
    with torch.no_grad():
        model.decoder[-1].norm3.weight.zero_()
        model.decoder[-1].norm3.bias.copy_(model.tgt_embed.weight[2] * 100)  # logits argmax = EOS
    out = greedy_decode(model, torch.full((3, 4), 4), bos=1, eos=2, max_len=10)
    assert out.tolist() == [[2], [2], [2]]


def test_greedy_decode_rejects_bad_inputs(model):
    with pytest.raises(TypeError, match="src"):
        greedy_decode(model, torch.ones(1, 3), bos=1, eos=2, max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, torch.ones(1, 3, dtype=torch.long), bos=1, eos=2, max_len=0)


# ---------------------------------------------------------------- pre-norm layers and the decoder-only LM


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("B,S,D,H,Fd", [(1, 1, 4, 1, 8), (2, 6, 8, 2, 16)])
def test_causal_encoder_layer_matches_torch_with_square_subsequent_mask(norm_first, B, S, D, H, Fd, gen,
                                                                        copy_to_torch):
    ours = EncoderLayer(D, H, Fd, dropout=0.0, norm_first=norm_first).to(DT).eval()
    randomise_norms(ours, gen)
    theirs = nn.TransformerEncoderLayer(D, H, Fd, dropout=0.0, batch_first=True, norm_first=norm_first)
    copy_to_torch(ours, theirs.to(DT).train())
    x = randn(B, S, D, g=gen)
    causal = nn.Transformer.generate_square_subsequent_mask(S, dtype=DT)
    want = theirs(x, src_mask=causal, is_causal=True)
    torch.testing.assert_close(ours(x, is_causal=True), want, **TOL)
    torch.testing.assert_close(ours(x, src_mask=causal), want, **TOL)  # the same mask given explicitly


@pytest.mark.parametrize("norm_first", [False, True])
def test_pre_norm_encoder_layer_matches_torch_with_padding(norm_first, gen, copy_to_torch):
    ours = EncoderLayer(8, 2, 16, dropout=0.0, norm_first=norm_first).to(DT).eval()
    randomise_norms(ours, gen)
    theirs = copy_to_torch(ours, nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                                            norm_first=norm_first).to(DT).train())
    x, pad = randn(3, 5, 8, g=gen), right_padding(3, 5, gen)
    torch.testing.assert_close(ours(x, src_key_padding_mask=pad), theirs(x, src_key_padding_mask=pad), **TOL)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_lm_matches_torch_encoder_stack_with_causal_mask(norm_first, gen, copy_to_torch):
    """Reference: torch's TransformerEncoder (final norm when pre-norm) on our embeddings, times the tied weight."""
    from papers30.transformer import TransformerLM

    V, D, H, Fd, L, T = 11, 8, 2, 16, 3, 7
    ours = TransformerLM(V, D, H, L, Fd, dropout=0.0, norm_first=norm_first).to(DT).eval()
    randomise_norms(ours, gen)
    layer = nn.TransformerEncoderLayer(D, H, Fd, dropout=0.0, batch_first=True, norm_first=norm_first)
    theirs = nn.TransformerEncoder(layer, L, norm=nn.LayerNorm(D) if norm_first else None,
                                   enable_nested_tensor=False).to(DT).train()
    holder = nn.Module()  # the stack alone, named like torch's: layers.k.*, and norm.* when pre-norm
    holder.layers, holder.norm = ours.layers, ours.norm
    copy_to_torch(holder, theirs)
    tokens = torch.randint(0, V, (2, T), generator=gen)
    x = ours.embed(tokens) * math.sqrt(D) + sinusoidal_positions(T, D).to(DT)
    h = theirs(x, mask=nn.Transformer.generate_square_subsequent_mask(T, dtype=DT), is_causal=True)
    torch.testing.assert_close(ours.hidden(tokens), h, **TOL)
    torch.testing.assert_close(ours(tokens), h @ ours.embed.weight.T, **TOL)


@pytest.mark.parametrize("cut", [0, 2, 5])
def test_transformer_lm_is_causal_brute_force_token_change(cut, gen):
    from papers30.transformer import TransformerLM

    lm = TransformerLM(9, 8, 2, 2, 16, dropout=0.0).to(DT).eval()
    tokens = torch.randint(0, 9, (2, 7), generator=gen)
    changed = tokens.clone()
    changed[:, cut + 1 :] = (changed[:, cut + 1 :] + 1) % 9  # change every token after position cut
    torch.testing.assert_close(lm(changed)[:, : cut + 1], lm(tokens)[:, : cut + 1], **TOL)
    assert not torch.allclose(lm(changed)[:, cut + 1 :], lm(tokens)[:, cut + 1 :])


def test_transformer_lm_rejects_bad_inputs():
    from papers30.transformer import TransformerLM

    lm = TransformerLM(5, 8, 2, 1, 8, max_len=4)
    with pytest.raises(TypeError, match="tokens"):
        lm(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="tokens"):
        lm(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        lm(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size"):
        TransformerLM(0)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize(
    "src,exc",
    [(torch.zeros(2, 3), ValueError), (torch.zeros(2, 3, 5), ValueError), (torch.zeros(2, 3, 4).long(), TypeError)],
)
def test_encoder_layer_rejects_bad_src_in_either_norm_order(norm_first, src, exc):
    """Pre-norm once called LayerNorm before any check, so a bad input raised torch's RuntimeError."""
    layer = EncoderLayer(4, 2, 6, dropout=0.0, norm_first=norm_first)
    with pytest.raises(exc, match="src"):
        layer(src)
