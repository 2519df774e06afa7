"""papers30.attention against torch's built-ins (float64, tolerance 1e-10)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from papers30.attention import MultiheadAttention, attention_weights, scaled_dot_product_attention

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def randn(*shape, g):
    return torch.randn(*shape, dtype=DT, generator=g)


# (leading dims, T, S, E, F): 2-, 3- and 4-D inputs, length 1, batch 1, T != S.
SDPA_SHAPES = [
    ((), 1, 1, 1, 1),
    ((), 3, 5, 4, 2),
    ((1,), 1, 1, 4, 4),
    ((2,), 3, 5, 4, 6),
    ((1, 1), 1, 7, 8, 2),
    ((2, 3), 4, 4, 8, 8),
    ((3, 2), 5, 2, 3, 7),
]


def qkv(lead, T, S, E, Fv, g):
    return randn(*lead, T, E, g=g), randn(*lead, S, E, g=g), randn(*lead, S, Fv, g=g)


# ---------------------------------------------------------------- scaled dot-product


@pytest.mark.parametrize("lead,T,S,E,Fv", SDPA_SHAPES)
def test_sdpa_matches_torch_without_mask(lead, T, S, E, Fv, gen):
    q, k, v = qkv(lead, T, S, E, Fv, gen)
    want = F.scaled_dot_product_attention(q, k, v)
    got = scaled_dot_product_attention(q, k, v)
    assert got.shape == (*lead, T, Fv)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("lead,T,S,E,Fv", [s for s in SDPA_SHAPES if len(s[0]) == 2])
def test_sdpa_matches_torch_with_padding_mask(lead, T, S, E, Fv, gen):
    """Boolean mask True = allowed, broadcast as (B, 1, 1, S); key 0 is never padding."""
    q, k, v = qkv(lead, T, S, E, Fv, gen)
    B = lead[0]
    lengths = torch.randint(1, S + 1, (B,), generator=gen)
    allowed = (torch.arange(S)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    got = scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("lead,T,S,E,Fv", SDPA_SHAPES)
def test_sdpa_matches_torch_with_general_bool_mask(lead, T, S, E, Fv, gen):
    q, k, v = qkv(lead, T, S, E, Fv, gen)
    allowed = torch.rand(T, S, generator=gen) < 0.5
    allowed[:, 0] = True  # no fully masked row (torch and we differ there, by design of the row)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    got = scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("lead,T,S,E,Fv", SDPA_SHAPES)
@pytest.mark.parametrize("full", [False, True])
def test_sdpa_matches_torch_with_float_additive_mask(lead, T, S, E, Fv, full, gen):
    q, k, v = qkv(lead, T, S, E, Fv, gen)
    mask = randn(*(lead if full else ()), T, S, g=gen)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    got = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("lead,T,S,E,Fv", SDPA_SHAPES)
def test_sdpa_matches_torch_is_causal(lead, T, S, E, Fv, gen):
    """Causal mask is top-left aligned (torch's convention), including T != S."""
    q, k, v = qkv(lead, T, S, E, Fv, gen)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("scale", [0.0, 0.1, 1.0, 3.5])
@pytest.mark.parametrize("lead,T,S,E,Fv", SDPA_SHAPES[1::2])
def test_sdpa_matches_torch_custom_scale(lead, T, S, E, Fv, scale, gen):
    q, k, v = qkv(lead, T, S, E, Fv, gen)
    want = F.scaled_dot_product_attention(q, k, v, scale=scale)
    got = scaled_dot_product_attention(q, k, v, scale=scale)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("lead,T,S,E,Fv", SDPA_SHAPES)
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_weights_match_torch_sdpa_applied_to_identity_values(lead, T, S, E, Fv, is_causal, gen):
    """torch's SDPA with value = I_S returns exactly the attention probabilities."""
    q, k, _ = qkv(lead, T, S, E, Fv, gen)
    eye = torch.eye(S, dtype=DT).expand(*lead, S, S)
    want = F.scaled_dot_product_attention(q, k, eye, is_causal=is_causal)
    torch.testing.assert_close(attention_weights(q, k, is_causal=is_causal), want, **TOL)


def test_attention_weights_match_brute_force_softmax_loop(gen):
    """exp(q_t . k_s / sqrt(E)) / sum_s' exp(q_t . k_s' / sqrt(E)), element by element."""
    q, k = randn(4, 3, g=gen), randn(5, 3, g=gen)
    w = attention_weights(q, k)
    for t in range(4):
        scores = [math.exp(sum(q[t, e].item() * k[s, e].item() for e in range(3)) / math.sqrt(3)) for s in range(5)]
        for s in range(5):
            assert w[t, s].item() == pytest.approx(scores[s] / sum(scores), rel=1e-12)


@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    T=st.integers(1, 6),
    S=st.integers(1, 6),
    E=st.integers(1, 5),
    is_causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_attention_weights_rows_sum_to_one_property(lead, T, S, E, is_causal, seed):
    """Closed form: every row is a probability distribution (non-negative, sums to 1)."""
    g = torch.Generator().manual_seed(seed)
    q, k = randn(*lead, T, E, g=g) * 3, randn(*lead, S, E, g=g) * 3
    w = attention_weights(q, k, is_causal=is_causal)
    assert w.shape == (*lead, T, S)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(*lead, T, dtype=DT), rtol=0, atol=1e-12)


@pytest.mark.parametrize("T,S", [(1, 1), (4, 4), (3, 6), (6, 3)])
def test_causal_weights_are_exactly_zero_above_the_diagonal(T, S, gen):
    """Closed form: query t may only see keys s <= t."""
    w = attention_weights(randn(2, T, 4, g=gen), randn(2, S, 4, g=gen), is_causal=True)
    above = torch.ones(T, S, dtype=torch.bool).triu(1)
    assert (w[:, above] == 0).all()
    assert (w[:, ~above] > 0).all()


def test_sdpa_dropout_zeroes_or_rescales_each_weight_closed_form(gen):
    """With value = I, output = dropped weights: each is 0 or weight / (1 - p)."""
    q, k = randn(2, 8, 4, g=gen), randn(2, 8, 4, g=gen)
    eye = torch.eye(8, dtype=DT).expand(2, 8, 8)
    p = 0.5
    w = attention_weights(q, k)
    torch.manual_seed(0)
    out = scaled_dot_product_attention(q, k, eye, dropout_p=p)
    kept = out != 0
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(out[kept], w[kept] / (1 - p), **TOL)


@given(T=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_sdpa_self_attention_is_permutation_equivariant_brute_force_permutation(T, seed):
    """Without positions, permuting the tokens permutes the outputs: f(x[P]) = f(x)[P]."""
    g = torch.Generator().manual_seed(seed)
    x = randn(2, T, 4, g=g)
    perm = torch.randperm(T, generator=g)
    out = scaled_dot_product_attention(x, x, x)
    xp = x[:, perm]
    torch.testing.assert_close(scaled_dot_product_attention(xp, xp, xp), out[:, perm], **TOL)


def test_sdpa_rejects_non_tensor_query():
    with pytest.raises(TypeError, match="query"):
        scaled_dot_product_attention([[1.0]], torch.ones(1, 1), torch.ones(1, 1))


@pytest.mark.parametrize("name", ["query", "key", "value"])
def test_sdpa_rejects_integer_inputs_naming_the_argument(name):
    args = {n: torch.ones(2, 3, 4) for n in ("query", "key", "value")}
    args[name] = args[name].long()
    with pytest.raises(TypeError, match=name):
        scaled_dot_product_attention(**args)


def test_sdpa_rejects_one_dimensional_query():
    with pytest.raises(ValueError, match="query"):
        scaled_dot_product_attention(torch.ones(4), torch.ones(3, 4), torch.ones(3, 4))


def test_sdpa_rejects_key_with_other_feature_size():
    with pytest.raises(ValueError, match="key"):
        scaled_dot_product_attention(torch.ones(2, 3, 4), torch.ones(2, 3, 5), torch.ones(2, 3, 4))


def test_sdpa_rejects_value_of_other_length():
    with pytest.raises(ValueError, match="value"):
        scaled_dot_product_attention(torch.ones(2, 3, 4), torch.ones(2, 5, 4), torch.ones(2, 6, 4))


def test_sdpa_rejects_integer_mask():
    with pytest.raises(TypeError, match="attn_mask"):
        scaled_dot_product_attention(
            torch.ones(2, 3, 4), torch.ones(2, 3, 4), torch.ones(2, 3, 4), attn_mask=torch.ones(3, 3, dtype=torch.int64)
        )


def test_sdpa_rejects_mask_together_with_is_causal():
    x = torch.ones(2, 3, 4)
    with pytest.raises(ValueError, match="attn_mask"):
        scaled_dot_product_attention(x, x, x, attn_mask=torch.ones(3, 3, dtype=torch.bool), is_causal=True)


@pytest.mark.parametrize("p,exc", [(1.0, ValueError), (-0.1, ValueError), ("0.1", TypeError)])
def test_sdpa_rejects_bad_dropout_p(p, exc):
    x = torch.ones(2, 3, 4)
    with pytest.raises(exc, match="dropout_p"):
        scaled_dot_product_attention(x, x, x, dropout_p=p)


# ---------------------------------------------------------------- multi-head attention


def make_pair(D, H, copy_to_torch, bias=True, dropout=0.0, seed=0):
    """Ours (eval mode) and torch's MultiheadAttention with the same weights.

    torch's module runs in train mode with dropout 0.0: this keeps it on its
    reference ("slow") path, which its eval-mode fast path may leave, and
    dropout 0.0 makes train mode deterministic.
    """
    torch.manual_seed(seed)
    ours = MultiheadAttention(D, H, dropout=dropout, bias=bias).to(DT).eval()
    if bias:  # non-zero biases, so a wrong bias copy would show
        with torch.no_grad():
            for lin in (ours.q_proj, ours.k_proj, ours.v_proj, ours.out_proj):
                lin.bias.normal_()
    theirs = nn.MultiheadAttention(D, H, dropout=0.0, bias=bias, batch_first=True).to(DT).train()
    return ours, copy_to_torch(ours, theirs)


MHA_SHAPES = [  # B, T, S, D, H
    (1, 1, 1, 4, 1),
    (2, 5, 5, 8, 2),
    (3, 4, 6, 12, 3),
    (1, 6, 2, 8, 8),
]


@pytest.mark.parametrize("B,T,S,D,H", MHA_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_mha_self_attention_matches_torch_with_copied_weights(B, T, S, D, H, bias, gen, copy_to_torch):
    ours, theirs = make_pair(D, H, copy_to_torch, bias=bias)
    x = randn(B, T, D, g=gen)
    want, want_w = theirs(x, x, x)
    got, got_w = ours(x, x, x)
    assert got.shape == (B, T, D) and got_w.shape == (B, T, T)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(got_w, want_w, **TOL)


@pytest.mark.parametrize("B,T,S,D,H", MHA_SHAPES)
def test_mha_cross_attention_matches_torch_with_copied_weights(B, T, S, D, H, gen, copy_to_torch):
    ours, theirs = make_pair(D, H, copy_to_torch)
    q, k, v = randn(B, T, D, g=gen), randn(B, S, D, g=gen), randn(B, S, D, g=gen)
    want, want_w = theirs(q, k, v)
    got, got_w = ours(q, k, v)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(got_w, want_w, **TOL)


def padding(B, S, g):
    lengths = torch.randint(1, S + 1, (B,), generator=g)
    lengths[0] = S  # at least one unpadded row
    return torch.arange(S)[None, :] >= lengths[:, None]  # True at padding


@pytest.mark.parametrize("B,T,S,D,H", MHA_SHAPES)
def test_mha_matches_torch_with_key_padding_mask(B, T, S, D, H, gen, copy_to_torch):
    ours, theirs = make_pair(D, H, copy_to_torch)
    q, k = randn(B, T, D, g=gen), randn(B, S, D, g=gen)
    pad = padding(B, S, gen)
    want, want_w = theirs(q, k, k, key_padding_mask=pad)
    got, got_w = ours(q, k, k, key_padding_mask=pad)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(got_w, want_w, **TOL)
    assert (got_w.masked_select(pad[:, None, :].expand_as(got_w)) == 0).all()


@pytest.mark.parametrize("B,T,S,D,H", MHA_SHAPES)
@pytest.mark.parametrize("per_head", [False, True])
def test_mha_matches_torch_with_bool_attn_mask_true_is_forbidden(B, T, S, D, H, per_head, gen, copy_to_torch):
    """Shapes (T, S) and (B*H, T, S); key 0 stays allowed so no row is fully masked."""
    ours, theirs = make_pair(D, H, copy_to_torch)
    q, k = randn(B, T, D, g=gen), randn(B, S, D, g=gen)
    shape = (B * H, T, S) if per_head else (T, S)
    forbidden = torch.rand(shape, generator=gen) < 0.5
    forbidden[..., 0] = False
    want, want_w = theirs(q, k, k, attn_mask=forbidden, average_attn_weights=False)
    got, got_w = ours(q, k, k, attn_mask=forbidden, average_attn_weights=False)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(got_w, want_w, **TOL)
    full = forbidden.view(B, H, T, S) if per_head else forbidden.expand(B, H, T, S)
    assert (got_w[full] == 0).all()


@pytest.mark.parametrize("B,T,S,D,H", MHA_SHAPES)
@pytest.mark.parametrize("per_head", [False, True])
def test_mha_matches_torch_with_float_attn_mask(B, T, S, D, H, per_head, gen, copy_to_torch):
    ours, theirs = make_pair(D, H, copy_to_torch)
    q, k = randn(B, T, D, g=gen), randn(B, S, D, g=gen)
    mask = randn(*((B * H, T, S) if per_head else (T, S)), g=gen)
    pad = padding(B, S, gen)
    pad_float = torch.zeros(B, S, dtype=DT).masked_fill(pad, float("-inf"))  # torch wants one mask type
    want, want_w = theirs(q, k, k, attn_mask=mask, key_padding_mask=pad_float)
    got, got_w = ours(q, k, k, attn_mask=mask, key_padding_mask=pad)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(got_w, want_w, **TOL)


@pytest.mark.parametrize("B,T,D,H", [(1, 1, 4, 1), (2, 5, 8, 2), (3, 7, 12, 4)])
@pytest.mark.parametrize("with_padding", [False, True])
def test_mha_is_causal_matches_torch_given_the_causal_attn_mask(B, T, D, H, with_padding, gen, copy_to_torch):
    """torch's module needs the mask itself with is_causal=True; ours builds it."""
    ours, theirs = make_pair(D, H, copy_to_torch)
    x = randn(B, T, D, g=gen)
    pad = theirs_pad = None
    if with_padding:  # right padding; query 0 always sees key 0
        pad = padding(B, T, gen)
        theirs_pad = torch.zeros(B, T, dtype=DT).masked_fill(pad, float("-inf"))  # same type as causal
    causal = nn.Transformer.generate_square_subsequent_mask(T, dtype=DT)
    want, want_w = theirs(x, x, x, key_padding_mask=theirs_pad, attn_mask=causal, is_causal=True)
    got, got_w = ours(x, x, x, key_padding_mask=pad, is_causal=True)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(got_w, want_w, **TOL)
    assert (got_w[:, torch.ones(T, T, dtype=torch.bool).triu(1)] == 0).all()


@pytest.mark.parametrize("B,T,S,D,H", MHA_SHAPES)
@pytest.mark.parametrize("average", [True, False])
def test_mha_need_weights_average_or_per_head_matches_torch(B, T, S, D, H, average, gen, copy_to_torch):
    ours, theirs = make_pair(D, H, copy_to_torch)
    q, k = randn(B, T, D, g=gen), randn(B, S, D, g=gen)
    _, want_w = theirs(q, k, k, average_attn_weights=average)
    _, got_w = ours(q, k, k, average_attn_weights=average)
    assert got_w.shape == ((B, T, S) if average else (B, H, T, S))
    torch.testing.assert_close(got_w, want_w, **TOL)
    torch.testing.assert_close(ours.last_weights.mean(1) if average else ours.last_weights, got_w, **TOL)


def test_mha_need_weights_false_returns_none_like_torch(gen, copy_to_torch):
    ours, theirs = make_pair(8, 2, copy_to_torch)
    x = randn(2, 3, 8, g=gen)
    got, got_w = ours(x, x, x, need_weights=False)
    want, want_w = theirs(x, x, x, need_weights=False)
    assert got_w is None and want_w is None
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("B,T,S,D,H", MHA_SHAPES)
def test_mha_gradients_match_torch_autograd(B, T, S, D, H, gen, copy_to_torch):
    """Input and parameter gradients, by autograd through both modules."""
    ours, theirs = make_pair(D, H, copy_to_torch)
    q0, k0 = randn(B, T, D, g=gen), randn(B, S, D, g=gen)
    pad = padding(B, S, gen)
    upstream = randn(B, T, D, g=gen)
    grads = []
    for mod in (ours, theirs):
        q, k = q0.clone().requires_grad_(), k0.clone().requires_grad_()
        out, _ = mod(q, k, k, key_padding_mask=pad)
        (out * upstream).sum().backward()
        grads.append((q.grad, k.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], **TOL)
    torch.testing.assert_close(grads[0][1], grads[1][1], **TOL)
    in_grad = torch.cat([ours.q_proj.weight.grad, ours.k_proj.weight.grad, ours.v_proj.weight.grad])
    torch.testing.assert_close(in_grad, theirs.in_proj_weight.grad, **TOL)
    torch.testing.assert_close(ours.out_proj.weight.grad, theirs.out_proj.weight.grad, **TOL)


def test_mha_gradient_matches_numerical_gradient(gen):
    """torch.autograd.gradcheck: autograd against central finite differences."""
    torch.manual_seed(0)
    mha = MultiheadAttention(4, 2).to(DT).eval()
    q, k = randn(1, 2, 4, g=gen).requires_grad_(), randn(1, 3, 4, g=gen).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: mha(a, b, b)[0], (q, k))


@pytest.mark.parametrize("dropout", [0.0, 0.3, 0.9])
def test_mha_eval_mode_ignores_dropout_and_matches_torch(dropout, gen, copy_to_torch):
    ours, theirs = make_pair(8, 2, copy_to_torch, dropout=dropout)
    x = randn(2, 5, 8, g=gen)
    want, _ = theirs(x, x, x)
    got1, _ = ours(x, x, x)
    got2, _ = ours(x, x, x)
    torch.testing.assert_close(got1, want, **TOL)
    assert torch.equal(got1, got2)


def test_mha_train_mode_dropout_changes_output_against_eval_reference(gen):
    torch.manual_seed(0)
    mha = MultiheadAttention(8, 2, dropout=0.5).to(DT)
    x = randn(2, 5, 8, g=gen)
    ref, _ = mha.eval()(x, x, x)
    noisy, _ = mha.train()(x, x, x)
    assert not torch.allclose(noisy, ref)


@given(T=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_mha_self_attention_is_permutation_equivariant_brute_force_permutation(T, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mha = MultiheadAttention(8, 2).to(DT).eval()
    x = randn(2, T, 8, g=g)
    perm = torch.randperm(T, generator=g)
    out, w = mha(x, x, x)
    xp = x[:, perm]
    outp, wp = mha(xp, xp, xp)
    torch.testing.assert_close(outp, out[:, perm], **TOL)
    torch.testing.assert_close(wp, w[:, perm][:, :, perm], **TOL)


def test_mha_init_is_xavier_uniform_with_zero_bias_closed_form_bound():
    """Xavier-uniform bound sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 2D)."""
    D = 32
    mha = MultiheadAttention(D, 4)
    bound = math.sqrt(6 / (2 * D))
    for lin in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj):
        assert lin.weight.abs().max() <= bound
        assert lin.weight.abs().max() > 0.8 * bound
        assert (lin.bias == 0).all()
    assert mha.head_dim == D // 4


@pytest.mark.parametrize(
    "args,exc,name",
    [
        ((8.0, 2), TypeError, "embed_dim"),
        ((0, 2), ValueError, "embed_dim"),
        ((8, 0), ValueError, "num_heads"),
        ((8, True), TypeError, "num_heads"),
        ((9, 2), ValueError, "embed_dim"),
    ],
)
def test_mha_rejects_bad_sizes(args, exc, name):
    with pytest.raises(exc, match=name):
        MultiheadAttention(*args)


def test_mha_rejects_dropout_of_one():
    with pytest.raises(ValueError, match="dropout"):
        MultiheadAttention(8, 2, dropout=1.0)


@pytest.fixture
def mha():
    return MultiheadAttention(8, 2)


def test_mha_rejects_non_tensor_key(mha):
    with pytest.raises(TypeError, match="key"):
        mha(torch.ones(2, 3, 8), [[1.0]], torch.ones(2, 3, 8))


@pytest.mark.parametrize("name", ["query", "key", "value"])
def test_mha_rejects_two_dimensional_inputs(mha, name):
    args = {n: torch.ones(2, 3, 8) for n in ("query", "key", "value")}
    args[name] = torch.ones(3, 8)
    with pytest.raises(ValueError, match=name):
        mha(**args)


@pytest.mark.parametrize("name", ["query", "key", "value"])
def test_mha_rejects_wrong_feature_size(mha, name):
    args = {n: torch.ones(2, 3, 8) for n in ("query", "key", "value")}
    args[name] = torch.ones(2, 3, 6)
    with pytest.raises(ValueError, match=name):
        mha(**args)


@pytest.mark.parametrize("name", ["key", "value"])
def test_mha_rejects_mismatched_batch_size(mha, name):
    args = {n: torch.ones(2, 3, 8) for n in ("query", "key", "value")}
    args[name] = torch.ones(4, 3, 8)
    with pytest.raises(ValueError, match=name):
        mha(**args)


def test_mha_rejects_value_of_other_length(mha):
    with pytest.raises(ValueError, match="value"):
        mha(torch.ones(2, 3, 8), torch.ones(2, 4, 8), torch.ones(2, 5, 8))


def test_mha_rejects_integer_query(mha):
    with pytest.raises(TypeError, match="query"):
        mha(torch.ones(2, 3, 8, dtype=torch.long), torch.ones(2, 3, 8), torch.ones(2, 3, 8))


@pytest.mark.parametrize(
    "mask,exc",
    [
        (torch.zeros(2, 4, dtype=torch.int64), TypeError),  # int mask
        (torch.zeros(2, 4), TypeError),  # float mask
        (torch.zeros(2, 5, dtype=torch.bool), ValueError),  # wrong length
        (torch.zeros(3, 4, dtype=torch.bool), ValueError),  # wrong batch
        (torch.zeros(2, 1, 4, dtype=torch.bool), ValueError),  # wrong ndim
    ],
)
def test_mha_rejects_bad_key_padding_mask(mha, mask, exc):
    x, kv = torch.ones(2, 3, 8), torch.ones(2, 4, 8)
    with pytest.raises(exc, match="key_padding_mask"):
        mha(x, kv, kv, key_padding_mask=mask)


@pytest.mark.parametrize(
    "mask,exc",
    [
        (torch.zeros(3, 4, dtype=torch.int64), TypeError),  # int mask
        (torch.zeros(1, 2, 3, 4, dtype=torch.bool), ValueError),  # 4-D
        (torch.zeros(4, 4, dtype=torch.bool), ValueError),  # wrong T
        (torch.zeros(3, 5), ValueError),  # wrong S
        (torch.zeros(3, 3, 4, dtype=torch.bool), ValueError),  # wrong B*H
    ],
)
def test_mha_rejects_bad_attn_mask(mha, mask, exc):
    x, kv = torch.ones(2, 3, 8), torch.ones(2, 4, 8)
    with pytest.raises(exc, match="attn_mask"):
        mha(x, kv, kv, attn_mask=mask)


def test_mha_rejects_is_causal_with_unequal_lengths(mha):
    with pytest.raises(ValueError, match="is_causal"):
        mha(torch.ones(2, 3, 8), torch.ones(2, 4, 8), torch.ones(2, 4, 8), is_causal=True)


# ------------------------------------------------- additive attention (chapter 6)

from papers30.attention import AdditiveAttention, additive_scores  # noqa: E402


def additive_loop(query, keys, wq, wk, v, mask=None):
    """Brute force: u_j = sum_a v_a tanh(sum_k Wk[a,k] e_j[k] + sum_q Wq[a,q] d[q]), one j at a time."""
    B, N, K = keys.shape
    out = torch.empty(B, N, dtype=keys.dtype)
    for b in range(B):
        for j in range(N):
            total = 0.0
            for a in range(v.shape[0]):
                pre = sum(wk[a, k] * keys[b, j, k] for k in range(K)) + sum(
                    wq[a, q] * query[b, q] for q in range(query.shape[1])
                )
                total += v[a] * math.tanh(float(pre))
            out[b, j] = total if mask is None or mask[b, j] else float("-inf")
    return out


@pytest.mark.parametrize("B,N,Q,K,A", [(1, 1, 1, 1, 1), (2, 3, 4, 2, 5), (3, 5, 2, 3, 4)])
def test_additive_scores_match_brute_force_loop(B, N, Q, K, A, gen):
    q, e = randn(B, Q, g=gen), randn(B, N, K, g=gen)
    wq, wk, v = randn(A, Q, g=gen), randn(A, K, g=gen), randn(A, g=gen)
    torch.testing.assert_close(additive_scores(q, e, wq, wk, v), additive_loop(q, e, wq, wk, v), **TOL)


def test_additive_attention_module_matches_brute_force_loop_with_mask(gen):
    att = AdditiveAttention(4, 3, 5).double()
    q, e = randn(2, 4, g=gen), randn(2, 6, 3, g=gen)
    mask = torch.rand(2, 6, generator=gen) < 0.5
    mask[:, 0] = True
    want = additive_loop(q, e, att.query_proj.weight.detach(), att.key_proj.weight.detach(), att.v.detach(), mask)
    torch.testing.assert_close(att(q, e, mask).detach(), want, **TOL)


def test_additive_masked_positions_get_exactly_zero_probability(gen):
    att = AdditiveAttention(3, 3, 4).double()
    q, e = randn(4, 3, g=gen), randn(4, 7, 3, g=gen)
    mask = torch.rand(4, 7, generator=gen) < 0.5
    mask[:, 3] = True
    p = att(q, e, mask).softmax(-1)
    assert torch.all(p[~mask] == 0.0)
    torch.testing.assert_close(p.sum(-1), torch.ones(4, dtype=DT), **TOL)


def test_additive_attend_read_is_weighted_sum_brute_force(gen):
    att = AdditiveAttention(3, 2, 4).double()
    q, e = randn(2, 3, g=gen), randn(2, 5, 2, g=gen)
    read, w = att.attend(q, e)
    want = torch.stack([sum(w[b, j] * e[b, j] for j in range(5)) for b in range(2)])
    torch.testing.assert_close(read, want, **TOL)
    assert read.shape == (2, 2) and w.shape == (2, 5)


def test_additive_scores_accept_extra_leading_dims_like_a_loop_over_them(gen):
    q, e = randn(2, 3, 4, g=gen), randn(2, 3, 5, 2, g=gen)
    wq, wk, v = randn(6, 4, g=gen), randn(6, 2, g=gen), randn(6, g=gen)
    got = additive_scores(q, e, wq, wk, v)
    want = torch.stack([additive_scores(q[i], e[i], wq, wk, v) for i in range(2)])
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize(
    "kwargs,name,exc",
    [
        (dict(query=torch.ones(2, 3, dtype=torch.long)), "query", TypeError),
        (dict(keys=torch.ones(2, 3)), "keys", ValueError),  # keys not one dim more than query
        (dict(keys=torch.ones(2, 5, 4)), "key", ValueError),  # wrong key width
        (dict(query=torch.ones(3, 3)), "query", ValueError),  # batch mismatch
        (dict(mask=torch.ones(2, 5)), "mask", TypeError),  # float mask
        (dict(mask=torch.ones(2, 4, dtype=torch.bool)), "mask", ValueError),  # wrong N
    ],
)
def test_additive_attention_rejects_bad_input(kwargs, name, exc):
    att = AdditiveAttention(3, 2, 4)
    args = dict(query=torch.ones(2, 3), keys=torch.ones(2, 5, 2), mask=None) | kwargs
    with pytest.raises(exc, match=name):
        att(**args)


@pytest.mark.parametrize("arg", ["query_size", "key_size", "attention_size"])
def test_additive_attention_rejects_bad_sizes(arg):
    sizes = dict(query_size=2, key_size=2, attention_size=2) | {arg: 0}
    with pytest.raises(ValueError, match=arg):
        AdditiveAttention(**sizes)
