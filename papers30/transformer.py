"""The Transformer of Vaswani et al. (2017): positions, layers, model, training pieces.

Used by chapter 13; the layers, positions and the decoder-only
:class:`TransformerLM` serve chapters 22, 27 and 30.

The layers follow the paper's *post-norm* arrangement,
``x = LayerNorm(x + Sublayer(x))``; :class:`EncoderLayer` also offers the
*pre-norm* one, ``x = x + Sublayer(LayerNorm(x))``, of later language models
(``norm_first=True``, as in torch). They name their parts like
``torch.nn.TransformerEncoderLayer``/``TransformerDecoderLayer`` (``self_attn``,
``linear1``, ``linear2``, ``norm1`` ...) so the tests can copy weights between
the two and compare outputs.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``D`` model
width, ``V`` vocabulary size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.attention import MultiheadAttention


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """The paper's position table ``(length, d_model)``.

    ``PE[p, 2i] = sin(p / 10000^(2i/D))`` and ``PE[p, 2i+1] = cos(p / 10000^(2i/D))``.
    """
    _checks.positive_int("length", length)
    _checks.positive_int("d_model", d_model)
    if d_model % 2:
        raise ValueError(f"d_model must be even, got {d_model}")
    pos = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    inv_freq = torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (D/2,)
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * inv_freq)  # eq. (pe)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table.float()


class EncoderLayer(nn.Module):
    """Self-attention then a position-wise feed-forward net, each wrapped as
    ``LayerNorm(x + Dropout(sublayer(x)))`` (or, with ``norm_first``,
    ``x + Dropout(sublayer(LayerNorm(x)))``). Maps ``(B, S, D)`` to ``(B, S, D)``.

    ``forward(src, src_mask, src_key_padding_mask, is_causal)`` mirrors
    ``torch.nn.TransformerEncoderLayer``: ``src_mask`` is a bool ``(S, S)``
    mask, True where attention is forbidden, or a float one (added);
    ``is_causal`` lets position ``s`` see positions ``<= s`` only (a
    decoder-only language model's layer); given together with ``src_mask``
    it is only a hint, as in torch, and the mask is used.
    """

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1, norm_first: bool = False
    ) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("nhead", nhead), ("dim_feedforward", dim_feedforward)):
            _checks.positive_int(name, value)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = bool(norm_first)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``FFN(x) = max(0, x W1 + b1) W2 + b2``, applied at every position."""
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def _attend(self, x: torch.Tensor, mask, pad, is_causal: bool) -> torch.Tensor:
        attended, _ = self.self_attn(x, x, x, key_padding_mask=pad, need_weights=False, attn_mask=mask,
                                     is_causal=is_causal and mask is None)
        return self.dropout(attended)

    def forward(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        _checks.tensor("src", src, ndim=3, kind="float")
        _checks.size_matches("src", src.shape[-1], self.norm1.normalized_shape[0], "last dimension (d_model)")
        if self.norm_first:
            x = src + self._attend(self.norm1(src), src_mask, src_key_padding_mask, is_causal)
            return x + self.dropout(self.feed_forward(self.norm2(x)))
        x = self.norm1(src + self._attend(src, src_mask, src_key_padding_mask, is_causal))  # eq. (postnorm)
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention, attention over the encoder output, feed-forward.

    Maps ``tgt (B, T, D)`` and ``memory (B, S, D)`` to ``(B, T, D)``; position
    ``t`` sees target positions ``<= t`` only.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("nhead", nhead), ("dim_feedforward", dim_feedforward)):
            _checks.positive_int(name, value)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        tgt_key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        own, _ = self.self_attn(
            tgt, tgt, tgt, key_padding_mask=tgt_key_padding_mask, need_weights=False, is_causal=True
        )
        x = self.norm1(tgt + self.dropout(own))
        src, _ = self.multihead_attn(x, memory, memory, key_padding_mask=memory_key_padding_mask, need_weights=False)
        x = self.norm2(x + self.dropout(src))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm3(x + self.dropout(ff))


class Transformer(nn.Module):
    """Encoder-decoder Transformer for token sequences.

    Token ids ``pad_idx`` are padding. Embeddings are scaled by ``sqrt(D)`` and
    added to :func:`sinusoidal_positions`; the output projection shares its
    weight with the target embedding, as in the paper.
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d_model: int = 64,
        nhead: int = 4,
        num_encoder_layers: int = 2,
        num_decoder_layers: int = 2,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        pad_idx: int = 0,
        max_len: int = 256,
    ) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("dim_feedforward", dim_feedforward)):
            _checks.positive_int(name, value)
        for name, value in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab), ("max_len", max_len)):
            _checks.positive_int(name, value)
        self.d_model, self.pad_idx = d_model, pad_idx
        self.src_embed = nn.Embedding(src_vocab, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model)
        nn.init.normal_(self.src_embed.weight, std=d_model**-0.5)
        nn.init.normal_(self.tgt_embed.weight, std=d_model**-0.5)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_encoder_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_decoder_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def _embed(self, table: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.positions.shape[0]:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len {self.positions.shape[0]}")
        x = table(tokens) * math.sqrt(self.d_model) + self.positions[: tokens.shape[1]]
        return self.dropout(x)

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        """Source tokens ``(B, S)`` to the encoder output ("memory") ``(B, S, D)``."""
        _checks.tensor("src", src, ndim=2, kind="int")
        x = self._embed(self.src_embed, src)
        pad = src == self.pad_idx
        for layer in self.encoder:
            x = layer(x, src_key_padding_mask=pad)
        return x

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """Target prefix ``(B, T)`` and memory ``(B, S, D)`` to logits ``(B, T, V)``."""
        _checks.tensor("tgt", tgt, ndim=2, kind="int")
        x = self._embed(self.tgt_embed, tgt)
        for layer in self.decoder:
            x = layer(x, memory, tgt_key_padding_mask=tgt == self.pad_idx, memory_key_padding_mask=src == self.pad_idx)
        return x @ self.tgt_embed.weight.T  # tied output projection

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``(B, T, V)`` for source ``(B, S)`` and target input ``(B, T)``."""
        _checks.tensor("src", src, ndim=2, kind="int")
        _checks.tensor("tgt", tgt, ndim=2, kind="int")
        _checks.size_matches("tgt", tgt.shape[0], src.shape[0], "batch size")
        return self.decode(tgt, self.encode(src), src)

    def cross_attention(self) -> list[torch.Tensor]:
        """Per decoder layer, the encoder-decoder attention ``(B, H, T, S)`` of the last forward pass."""
        return [layer.multihead_attn.last_weights for layer in self.decoder]


class TransformerLM(nn.Module):
    """A decoder-only causal language model built from :class:`EncoderLayer` with ``is_causal``.

    Tokens ``(B, T)`` are embedded, scaled by ``sqrt(D)``, added to
    :func:`sinusoidal_positions`, and passed through ``num_layers`` causal
    self-attention layers; position ``t`` sees tokens ``<= t`` only. With
    ``norm_first`` (pre-norm, as in GPT-2) a final ``LayerNorm`` follows the
    last layer. The output projection shares its weight with the embedding.
    :meth:`hidden` returns the last layer's states ``(B, T, D)`` (for extra
    output heads), ``forward`` the next-token logits ``(B, T, V)``.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        norm_first: bool = False,
        max_len: int = 256,
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("num_layers", num_layers),
                            ("max_len", max_len), ("dim_feedforward", dim_feedforward)):
            _checks.positive_int(name, value)
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, nhead, dim_feedforward, dropout, norm_first) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model) if norm_first else None
        self.dropout = nn.Dropout(dropout)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The last layer's states ``(B, T, D)`` for ``tokens (B, T)``."""
        _checks.tensor("tokens", tokens, ndim=2, kind="int")
        if tokens.shape[1] > self.positions.shape[0]:
            raise ValueError(f"tokens has length {tokens.shape[1]}, more than max_len {self.positions.shape[0]}")
        x = self.dropout(self.embed(tokens) * math.sqrt(self.d_model) + self.positions[: tokens.shape[1]])
        for layer in self.layers:
            x = layer(x, is_causal=True)
        return x if self.norm is None else self.norm(x)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(B, T, V)``: the states times the (tied) embedding."""
        return self.hidden(tokens) @ self.embed.weight.T


@torch.no_grad()
@_checks.typed
def greedy_decode(model: Transformer, src: torch.Tensor, bos: int, eos: int, max_len: int) -> torch.Tensor:
    """Decode ``src (B, S)`` one token at a time, always taking the most likely token.

    Returns ``(B, L)`` with ``L <= max_len`` tokens after ``bos`` (not included);
    after a sequence emits ``eos``, it is padded with ``model.pad_idx``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a Transformer, got {type(model).__name__}")
    _checks.tensor("src", src, ndim=2, kind="int")
    _checks.positive_int("max_len", max_len)
    for name, value in (("bos", bos), ("eos", eos)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < model.tgt_embed.num_embeddings:
            raise ValueError(f"{name} must be a token id in 0..{model.tgt_embed.num_embeddings - 1}, got {value!r}")
    was_training = model.training
    model.eval()
    memory = model.encode(src)
    out = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        nxt = model.decode(out, memory, src)[:, -1].argmax(-1)
        nxt = nxt.masked_fill(done, model.pad_idx)
        out = torch.cat([out, nxt[:, None]], dim=1)
        done |= nxt == eos
        if done.all():
            break
    model.train(was_training)
    return out[:, 1:]


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean cross-entropy against the smoothed target ``(1 - eps) one_hot + eps / V``.

    Mirrors ``torch.nn.functional.cross_entropy`` (mean reduction) for
    ``input (N, V)`` logits and ``target (N,)`` class ids; positions equal
    to ``ignore_index`` do not count.
    """
    _checks.tensor("input", input, ndim=2, kind="float")
    _checks.tensor("target", target, ndim=1, kind="int")
    _checks.size_matches("target", target.shape[0], input.shape[0], "length")
    eps = _checks.probability("label_smoothing", label_smoothing, inclusive_one=True)
    logp = input.log_softmax(dim=-1)
    keep = target != ignore_index
    safe = target.masked_fill(~keep, 0)  # ignored ids (any value) gather a valid column, dropped below
    nll = -logp.gather(1, safe[:, None]).squeeze(1)
    uniform = -logp.mean(dim=-1)  # eq. (smooth): cross-entropy with the uniform distribution
    loss = (1 - eps) * nll + eps * uniform
    return loss[keep].sum() / keep.sum()


def warmup_inverse_sqrt(step: int, d_model: int, warmup: int) -> float:
    """The paper's learning rate ``D^-0.5 * min(step^-0.5, step * warmup^-1.5)`` (step >= 1)."""
    _checks.positive_int("step", step)
    _checks.positive_int("d_model", d_model)
    _checks.positive_int("warmup", warmup)
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
