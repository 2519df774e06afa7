"""Attention: scaled dot-product and multi-head (chapter 13, reused by 6, 8, 14,
16, 18, 20, 22, 27 and 30).

Both functions mirror their PyTorch built-ins, name and argument order, so a
reader can compare them line by line:

* :func:`scaled_dot_product_attention` mirrors
  ``torch.nn.functional.scaled_dot_product_attention`` (a boolean
  ``attn_mask`` is ``True`` where attention is *allowed*);
* :class:`MultiheadAttention` mirrors ``torch.nn.MultiheadAttention`` with
  ``batch_first=True`` (``key_padding_mask`` is ``True`` at *padding*, and a
  boolean ``attn_mask`` is ``True`` where attention is *forbidden*, exactly as
  in torch).

Shapes: ``B`` batch, ``H`` heads, ``T`` query length, ``S`` key length,
``E`` query/key width, ``F`` value width, ``D`` model width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks


def _additive_mask(
    attn_mask: torch.Tensor | None, is_causal: bool, T: int, S: int, like: torch.Tensor
) -> torch.Tensor | None:
    """Turn a boolean (True = allowed) or float mask into an additive float mask."""
    bias = None
    if is_causal:
        allowed = torch.ones(T, S, dtype=torch.bool, device=like.device).tril()
        bias = torch.zeros(T, S, dtype=like.dtype, device=like.device).masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            extra = torch.zeros(attn_mask.shape, dtype=like.dtype, device=like.device)
            extra = extra.masked_fill(~attn_mask, float("-inf"))
        else:
            extra = attn_mask.to(like.dtype)
        bias = extra if bias is None else bias + extra
    return bias


def attention_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention probabilities ``softmax(q k^T * scale + mask)``.

    Args:
        query: ``(..., T, E)``.
        key: ``(..., S, E)``.
        attn_mask: boolean ``(..., T, S)`` (True = may attend) or float
            (added to the scores); broadcast against the scores.
        is_causal: forbid query ``t`` to see keys ``s > t``.
        scale: defaults to ``1 / sqrt(E)``.

    Returns:
        ``(..., T, S)``; each row sums to one. A row whose keys are all masked is
        NaN here (0/0); recent torch kernels return zeros for it instead, so
        callers should never mask every key of a query.
    """
    _checks.tensor("query", query, kind="float")
    _checks.tensor("key", key, kind="float")
    if query.dim() < 2 or key.dim() < 2:
        raise ValueError(
            f"query and key must have at least 2 dimensions, got {tuple(query.shape)} and {tuple(key.shape)}"
        )
    _checks.size_matches("key", key.shape[-1], query.shape[-1], "feature size E")
    if attn_mask is not None:
        _checks.tensor("attn_mask", attn_mask)
        if not (attn_mask.dtype == torch.bool or attn_mask.is_floating_point()):
            raise TypeError(f"attn_mask must be a bool or floating-point tensor, got {attn_mask.dtype}")
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask must be None when is_causal=True (as in torch)")
    T, S, E = query.shape[-2], key.shape[-2], query.shape[-1]
    scale = 1.0 / math.sqrt(E) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale  # eq. (sdpa)
    bias = _additive_mask(attn_mask, is_causal, T, S, scores)
    if bias is not None:
        scores = scores + bias
    return scores.softmax(dim=-1)


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(E) + mask) v``, as ``torch.nn.functional.scaled_dot_product_attention``.

    Args:
        query: ``(..., T, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, F)``.
        attn_mask, is_causal, scale: see :func:`attention_weights`.
        dropout_p: dropout on the attention probabilities (always applied,
            as in the functional built-in; pass 0.0 in evaluation).

    Returns:
        ``(..., T, F)``.
    """
    _checks.tensor("value", value, kind="float")
    if value.dim() < 2:
        raise ValueError(f"value must have at least 2 dimensions (..., S, F), got shape {tuple(value.shape)}")
    _checks.probability("dropout_p", dropout_p)
    weights = attention_weights(query, key, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    if value.shape[-2] != key.shape[-2]:
        raise ValueError(f"value has length {value.shape[-2]}, expected the key length {key.shape[-2]}")
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ value


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``H`` heads of width ``E = D / H`` (batch first).

    ``head_i = attention(q W_i^Q, k W_i^K, v W_i^V)`` and the heads are
    concatenated and projected by ``W^O``; the four projections are stored as
    ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj``.

    After each forward pass ``last_weights`` holds the attention
    probabilities ``(B, H, T, S)`` (detached), for attention maps. Returned and
    stored weights are taken before attention dropout (torch returns them
    after it); in evaluation mode, or with ``dropout=0``, the two agree.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        _checks.positive_int("embed_dim", embed_dim)
        _checks.positive_int("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = _checks.probability("dropout", dropout)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.last_weights: torch.Tensor | None = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape  # (B, L, D) -> (B, H, L, E)
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query (B, T, D)`` to ``key``/``value (B, S, D)``.

        Args:
            key_padding_mask: bool ``(B, S)``, True at padding keys.
            attn_mask: bool ``(T, S)`` or ``(B*H, T, S)``, True where
                attention is *forbidden* (torch's module convention), or float (added).
            is_causal: forbid attending to later positions (needs ``T == S``).

        Returns:
            ``(output (B, T, D), weights)`` where weights are ``(B, T, S)``
            averaged over heads, ``(B, H, T, S)`` if not averaged, or ``None``
            when ``need_weights`` is False.
        """
        for name, x in (("query", query), ("key", key), ("value", value)):
            _checks.tensor(name, x, ndim=3, kind="float")
            _checks.size_matches(name, x.shape[-1], self.embed_dim, "feature size")
        B, T, _ = query.shape
        S = key.shape[1]
        _checks.size_matches("key", key.shape[0], B, "batch size")
        _checks.size_matches("value", value.shape[0], B, "batch size")
        _checks.size_matches("value", value.shape[1], S, "length")
        bias = torch.zeros(B, 1, T, S, dtype=query.dtype, device=query.device)
        if key_padding_mask is not None:
            _checks.tensor("key_padding_mask", key_padding_mask, ndim=2, kind="bool")
            if tuple(key_padding_mask.shape) != (B, S):
                raise ValueError(f"key_padding_mask must have shape {(B, S)}, got {tuple(key_padding_mask.shape)}")
            bias = bias.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        if attn_mask is not None:
            _checks.tensor("attn_mask", attn_mask, ndim=(2, 3))
            allowed = ((T, S), (B * self.num_heads, T, S))
            if tuple(attn_mask.shape) not in allowed:
                got = tuple(attn_mask.shape)
                raise ValueError(f"attn_mask must have shape {allowed[0]} or {allowed[1]}, got {got}")
            if attn_mask.dtype == torch.bool:
                extra = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device)
                extra = extra.masked_fill(attn_mask, float("-inf"))
            elif attn_mask.is_floating_point():
                extra = attn_mask.to(query.dtype)
            else:
                raise TypeError(f"attn_mask must be a bool or floating-point tensor, got {attn_mask.dtype}")
            if extra.dim() == 3:
                extra = extra.view(B, self.num_heads, T, S)
            bias = bias + extra
        if is_causal:
            if T != S:
                raise ValueError(f"is_causal needs query and key of equal length, got {T} and {S}")
            causal = torch.ones(T, S, dtype=torch.bool, device=query.device).triu(1)
            bias = bias.masked_fill(causal, float("-inf"))
        q, k, v = self._split(self.q_proj(query)), self._split(self.k_proj(key)), self._split(self.v_proj(value))
        weights = attention_weights(q, k, attn_mask=bias)  # (B, H, T, S)
        self.last_weights = weights.detach()
        dropped = F.dropout(weights, p=self.dropout, training=self.training)
        heads = (dropped @ v).transpose(1, 2).reshape(B, T, self.embed_dim)  # concat heads
        out = self.out_proj(heads)
        if not need_weights:
            return out, None
        return out, weights.mean(dim=1) if average_attn_weights else weights


# ------------------------------------------------- additive (content) attention
# Chapter 6 (Pointer Networks) and chapter 8 (Read-Process-Write) score memory
# slots with the additive attention of Bahdanau et al.:
# u_j = v^T tanh(W_1 e_j + W_2 d), eq. (ptr-score). Shapes: ``B`` batch (any
# leading dims), ``N`` memory slots, ``K`` key width, ``Q`` query width,
# ``A`` attention width.


def _check_additive(query: object, keys: object, mask: object) -> None:
    _checks.tensor("query", query, kind="float")
    _checks.tensor("keys", keys, kind="float")
    if keys.dim() < 2 or query.dim() != keys.dim() - 1:
        raise ValueError(
            f"keys must have one more dimension than query, (..., N, K) and (..., Q), "
            f"got {tuple(keys.shape)} and {tuple(query.shape)}"
        )
    if tuple(query.shape[:-1]) != tuple(keys.shape[:-2]):
        raise ValueError(f"query has leading dims {tuple(query.shape[:-1])}, expected {tuple(keys.shape[:-2])}")
    if mask is not None:
        _checks.tensor("mask", mask, kind="bool")
        if tuple(mask.shape) != tuple(keys.shape[:-1]):
            raise ValueError(f"mask must have shape {tuple(keys.shape[:-1])}, got {tuple(mask.shape)}")


def additive_scores(
    query: torch.Tensor,
    keys: torch.Tensor,
    weight_query: torch.Tensor,
    weight_key: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Additive attention scores ``u_j = v^T tanh(W_1 e_j + W_2 d)``, eq. (ptr-score).

    Args:
        query: the query ``d``, ``(..., Q)`` (e.g. a decoder state ``(B, H)``).
        keys: the memory ``e_1 .. e_N``, ``(..., N, K)``.
        weight_query: ``W_2``, ``(A, Q)``.
        weight_key: ``W_1``, ``(A, K)``.
        v: ``(A,)``.
        mask: bool ``(..., N)``, True where a slot may be chosen; the scores of
            the other slots are ``-inf`` (zero probability after a softmax).

    Returns:
        Scores ``(..., N)``; ``scores.softmax(-1)`` is the attention (or
        pointer) distribution over the ``N`` slots.
    """
    _check_additive(query, keys, mask)
    _checks.tensor("weight_query", weight_query, ndim=2, kind="float")
    _checks.tensor("weight_key", weight_key, ndim=2, kind="float")
    _checks.tensor("v", v, ndim=1, kind="float")
    _checks.size_matches("weight_query", weight_query.shape[1], query.shape[-1], "input width")
    _checks.size_matches("weight_key", weight_key.shape[1], keys.shape[-1], "input width")
    _checks.size_matches("weight_key", weight_key.shape[0], weight_query.shape[0], "attention width")
    _checks.size_matches("v", v.shape[0], weight_query.shape[0], "attention width")
    hidden = torch.tanh(keys @ weight_key.T + (query @ weight_query.T).unsqueeze(-2))  # (..., N, A)
    scores = hidden @ v  # (..., N)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores


class AdditiveAttention(nn.Module):
    """Additive (content-based) attention scores over a memory, eq. (ptr-score).

    Holds ``W_1`` as ``key_proj`` (``K -> A``), ``W_2`` as ``query_proj``
    (``Q -> A``), both without bias, and ``v`` as ``v (A,)``.
    ``forward(query (..., Q), keys (..., N, K), mask (..., N) | None) -> scores (..., N)``;
    :meth:`attend` also returns the attention-weighted read of the memory.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        _checks.positive_int("query_size", query_size)
        _checks.positive_int("key_size", key_size)
        _checks.positive_int("attention_size", attention_size)
        self.query_size, self.key_size, self.attention_size = query_size, key_size, attention_size
        self.query_proj = nn.Linear(query_size, attention_size, bias=False)
        self.key_proj = nn.Linear(key_size, attention_size, bias=False)
        bound = 1.0 / math.sqrt(attention_size)
        self.v = nn.Parameter(torch.empty(attention_size).uniform_(-bound, bound))

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``(..., N)`` (``-inf`` where ``mask`` is False)."""
        _check_additive(query, keys, mask)
        _checks.size_matches("query", query.shape[-1], self.query_size, "feature size")
        _checks.size_matches("keys", keys.shape[-1], self.key_size, "feature size")
        return additive_scores(query, keys, self.query_proj.weight, self.key_proj.weight, self.v, mask)

    def attend(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(read (..., K), weights (..., N))``: the softmax of the scores and ``sum_j a_j e_j``."""
        weights = self(query, keys, mask).softmax(dim=-1)
        return (weights.unsqueeze(-2) @ keys).squeeze(-2), weights
