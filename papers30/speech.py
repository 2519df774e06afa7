"""End-to-end speech recognition with CTC: the loss, decoding, error rates and a Deep Speech 2 acoustic model (21).

Implements, for chapter 21, the pieces of Amodei et al. (2016), *Deep Speech
2: End-to-End Speech Recognition in English and Mandarin*, at small scale:
the connectionist temporal classification loss of Graves et al. (2006)
written out as a batched log-space forward recursion (:func:`ctc_loss`, a
mirror of ``torch.nn.functional.ctc_loss``), greedy and prefix-beam
decoding, edit distance and character error rate, sequence-wise batch
normalisation of recurrent layers (DS2 section 3.2) and the SortaGrad
curriculum (section 3.3).

Shapes: ``T`` frames (time), ``B`` batch, ``C`` output classes (characters
plus the blank), ``S`` longest target, ``F`` frequency bins, ``H`` hidden
width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks

_REDUCTIONS = ("none", "mean", "sum")
_NEG = -1e30  # stands for log 0: finite, so that gradients through impossible paths stay 0 instead of nan


def _lengths(name: str, x: object, batch: int) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        _checks.tensor(name, x, ndim=1, kind="int")
        out = x.long().cpu()
    elif isinstance(x, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        out = torch.tensor(x, dtype=torch.long)
    else:
        raise TypeError(f"{name} must be a 1-D integer tensor or a tuple of ints, got {type(x).__name__}")
    _checks.size_matches(name, out.shape[0], batch, "length")
    if (out < 0).any():
        raise ValueError(f"{name} must be non-negative, got {out.tolist()}")
    return out


def _logsumexp3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    m = torch.maximum(torch.maximum(a, b), c)
    return m + torch.log(torch.exp(a - m) + torch.exp(b - m) + torch.exp(c - m))


def ctc_loss(log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: torch.Tensor | Sequence[int],
             target_lengths: torch.Tensor | Sequence[int], blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False) -> torch.Tensor:
    """Connectionist temporal classification loss, as ``torch.nn.functional.ctc_loss``.

    ``log_probs`` ``(T, B, C)`` (or ``(T, C)`` unbatched) holds log-softmax
    outputs; ``targets`` is ``(B, S)`` padded or 1-D, the targets of the
    batch concatenated; ``input_lengths`` and ``target_lengths`` ``(B,)``.
    The loss of one utterance is ``-log p(y | x)``, the sum over every
    frame-level path that collapses to ``y`` (merge repeats, drop blanks).
    It runs the forward (alpha) recursion over the extended label sequence
    ``blank, y_1, blank, ..., y_S, blank`` in log space, all utterances and
    label positions at once, one step per frame; utterances that have
    ended keep their last alphas. The gradient is autograd's through this
    recursion. An impossible alignment (too few frames) gives ``inf``, or 0
    with zero gradient when ``zero_infinity``. ``reduction``: ``"none"``
    ``(B,)``, ``"sum"``, or ``"mean"`` (each loss divided by its target
    length, then averaged over the batch).
    """
    _checks.tensor("log_probs", log_probs, ndim=(2, 3), kind="float")
    _checks.tensor("targets", targets, ndim=(1, 2), kind="int")
    if isinstance(blank, bool) or not isinstance(blank, int):
        raise TypeError(f"blank must be an int, got {type(blank).__name__}")
    _checks.one_of("reduction", reduction, _REDUCTIONS)
    if not isinstance(zero_infinity, bool):
        raise TypeError(f"zero_infinity must be a bool, got {type(zero_infinity).__name__}")
    unbatched = log_probs.dim() == 2
    if unbatched:  # (T, C) with targets (S,) and scalar lengths: a batch of one
        log_probs, targets = log_probs[:, None], targets[None] if targets.dim() == 1 else targets
        input_lengths, target_lengths = (
            x[None] if isinstance(x, torch.Tensor) and x.dim() == 0 else
            (x,) if isinstance(x, int) and not isinstance(x, bool) else x for x in (input_lengths, target_lengths))
    n_frames, batch, n_classes = log_probs.shape
    if not 0 <= blank < n_classes:
        raise ValueError(f"blank must be in [0, {n_classes}), got {blank}")
    in_len = _lengths("input_lengths", input_lengths, batch)
    tgt_len = _lengths("target_lengths", target_lengths, batch)
    if (in_len > n_frames).any():
        raise ValueError(f"input_lengths must be at most T = {n_frames}, got {in_len.tolist()}")
    if targets.dim() == 1:
        if targets.shape[0] != int(tgt_len.sum()):
            raise ValueError(f"targets (1-D) must hold sum(target_lengths) = {int(tgt_len.sum())} labels, "
                             f"got {targets.shape[0]}")
        s_max = int(tgt_len.max()) if batch else 0
        padded = torch.zeros(batch, s_max, dtype=torch.long)
        starts = torch.cumsum(tgt_len, 0) - tgt_len
        for b in range(batch):  # only rearranges the labels; the recursion below is batched
            padded[b, :tgt_len[b]] = targets[starts[b]:starts[b] + tgt_len[b]].cpu()
        targets = padded
    elif (tgt_len > targets.shape[1]).any():
        raise ValueError(f"target_lengths must be at most targets.shape[1] = {targets.shape[1]}, got {tgt_len.tolist()}")
    s_max = int(tgt_len.max()) if batch else 0
    targets = targets[:, :s_max].long().to(log_probs.device)
    valid = torch.arange(s_max, device=targets.device) < tgt_len.to(targets.device)[:, None]
    if ((targets < 0) | (targets >= n_classes) | (targets == blank))[valid].any():
        raise ValueError(f"targets must hold class ids in [0, {n_classes}) other than blank = {blank}")
    targets = torch.where(valid, targets, torch.full_like(targets, blank))

    device = log_probs.device
    width = 2 * s_max + 1
    ext = torch.full((batch, width), blank, dtype=torch.long, device=device)
    ext[:, 1::2] = targets
    # a skip from s - 2 to s is allowed when s is a label that differs from the label two back
    skip = torch.zeros(batch, width, dtype=torch.bool, device=device)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    emit = log_probs.gather(2, ext[None].expand(n_frames, batch, width))  # (T, B, 2S + 1)
    # log 0 (-1e30) where a skip from s - 2 is not allowed; adding it to the shifted alphas removes that path
    skip_add = torch.where(skip, 0.0, _NEG).to(log_probs.dtype)
    alpha = emit[0].clone()
    alpha[:, 2:] = _NEG  # a path starts in the first blank or the first label
    alphas = [alpha]
    for emit_t in emit.unbind(0)[1:]:
        shifted = F.pad(alpha, (2, 0), value=_NEG)  # shifted[:, s + 2] = alpha[:, s]
        alpha = torch.logsumexp(torch.stack([alpha, shifted[:, 1:-1], shifted[:, :-2] + skip_add]), 0) + emit_t
        alphas.append(alpha)
    # each utterance's alphas at its own last frame
    in_len_d = in_len.to(device)
    alpha = torch.stack(alphas).gather(0, (in_len_d - 1).clamp(min=0)[None, :, None].expand(1, batch, width))[0]
    tl = tgt_len.to(device)
    last = alpha.gather(1, (2 * tl)[:, None])[:, 0]
    before = torch.where(tl > 0, alpha.gather(1, (2 * tl - 1).clamp(min=0)[:, None])[:, 0], _NEG)
    m = torch.maximum(last, before)
    log_p = m + torch.log(torch.exp(last - m) + torch.exp(before - m))
    impossible = (log_p < _NEG / 2) | (in_len_d == 0)
    loss = torch.where(impossible, torch.zeros_like(log_p) if zero_infinity else torch.full_like(log_p, math.inf),
                       -log_p)
    if reduction == "none":
        return loss[0] if unbatched else loss
    if reduction == "sum":
        return loss.sum()
    return (loss / tl.clamp(min=1).to(loss.dtype)).mean()


def _collapse(path: Sequence[int], blank: int) -> list[int]:
    out, prev = [], None
    for p in path:
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return out


def greedy_decode(log_probs: torch.Tensor, input_lengths: torch.Tensor | Sequence[int], blank: int = 0) -> list[list[int]]:
    """Best path decoding: the most likely class at each frame, repeats merged, blanks dropped.

    ``log_probs`` ``(T, B, C)``; returns one label list per utterance.
    """
    _checks.tensor("log_probs", log_probs, ndim=3, kind="float")
    lengths = _lengths("input_lengths", input_lengths, log_probs.shape[1])
    if isinstance(blank, bool) or not isinstance(blank, int):
        raise TypeError(f"blank must be an int, got {type(blank).__name__}")
    best = log_probs.argmax(2).T.tolist()
    return [_collapse(row[:n], blank) for row, n in zip(best, lengths.tolist())]


def prefix_beam_search(log_probs: torch.Tensor, beam_width: int = 8, blank: int = 0) -> tuple[list[int], float]:
    """Prefix beam search over one utterance's ``log_probs`` ``(T, C)``.

    Keeps the ``beam_width`` label prefixes of highest probability, each with
    two log-probabilities: of the paths that collapse to it and end in a
    blank, and of those that end in its last label (so that a repeated label
    needs a blank between, and a repeated frame does not). Returns the best
    labelling and its log-probability, summed over its paths (exact when
    the beam never drops a prefix).
    """
    _checks.tensor("log_probs", log_probs, ndim=2, kind="float")
    _checks.positive_int("beam_width", beam_width)
    if isinstance(blank, bool) or not isinstance(blank, int):
        raise TypeError(f"blank must be an int, got {type(blank).__name__}")
    lp = log_probs.detach().double().cpu().tolist()
    n_classes = log_probs.shape[1]

    def add(a: float, b: float) -> float:
        if a == -math.inf:
            return b
        if b == -math.inf:
            return a
        m = max(a, b)
        return m + math.log(math.exp(a - m) + math.exp(b - m))

    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix: (ends in blank, ends in label)
    for frame in lp:
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pl) in beams.items():
            total = add(pb, pl)
            for c in range(n_classes):
                p = frame[c]
                if c == blank:
                    e = nxt.setdefault(prefix, [-math.inf, -math.inf])
                    e[0] = add(e[0], total + p)
                    continue
                longer = prefix + (c,)
                e = nxt.setdefault(longer, [-math.inf, -math.inf])
                if prefix and prefix[-1] == c:
                    e[1] = add(e[1], pb + p)  # a repeat needs a blank in between
                    same = nxt.setdefault(prefix, [-math.inf, -math.inf])
                    same[1] = add(same[1], pl + p)  # the same label held: the prefix does not grow
                else:
                    e[1] = add(e[1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: add(*kv[1]), reverse=True)[:beam_width]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    prefix, (pb, pl) = max(beams.items(), key=lambda kv: add(*kv[1]))
    return list(prefix), add(pb, pl)


def edit_distance(hypothesis: Sequence[int], reference: Sequence[int]) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions turning ``hypothesis`` into ``reference``."""
    for name, seq in (("hypothesis", hypothesis), ("reference", reference)):
        if not isinstance(seq, (list, tuple, str)):
            raise TypeError(f"{name} must be a list, tuple or str, got {type(seq).__name__}")
    row = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, 1):
        prev, row[0] = row[0], i
        for j, r in enumerate(reference, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (h != r))
    return row[-1]


def character_error_rate(hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> float:
    """Total edit distance over total reference length (can exceed 1 when hypotheses insert)."""
    for name, seqs in (("hypotheses", hypotheses), ("references", references)):
        if not isinstance(seqs, (list, tuple)):
            raise TypeError(f"{name} must be a list of label sequences, got {type(seqs).__name__}")
    _checks.size_matches("hypotheses", len(hypotheses), len(references), "length")
    _checks.nonempty("references", references)
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("references must hold at least one label")
    return sum(edit_distance(h, r) for h, r in zip(hypotheses, references)) / total


class SequenceBatchNorm(nn.Module):
    """Sequence-wise batch normalisation (DS2 section 3.2): statistics per feature over batch *and* time.

    ``forward(x, mask)`` with ``x`` ``(B, T, H)`` and ``mask`` ``(B, T)``
    (true on real frames): padded frames do not enter the statistics. In
    training mode it normalises with the batch statistics and updates running
    averages (momentum 0.1), which evaluation mode uses.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        _checks.positive_int("num_features", num_features)
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _checks.tensor("x", x, ndim=3, kind="float")
        _checks.tensor("mask", mask, ndim=2, kind="bool")
        _checks.size_matches("x", x.shape[-1], self.weight.shape[0], "feature size")
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask must have shape {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        if self.training:
            w = mask[..., None].to(x.dtype)
            n = w.sum().clamp(min=1)
            mean = (x * w).sum((0, 1)) / n
            var = (((x - mean) ** 2) * w).sum((0, 1)) / n
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * n / (n - 1).clamp(min=1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class RecurrentLayer(nn.Module):
    """One recurrent layer, DS2 style: ``h_t = f(BN(W x_t) + U h_{t-1})``.

    The input-to-hidden term ``W x_t`` of every frame is computed at once and
    batch-normalised sequence-wise (:class:`SequenceBatchNorm`); the
    hidden-to-hidden term is not normalised (DS2 section 3.2). ``cell`` is
    ``"rnn"`` (``f`` the clipped ReLU ``min(max(., 0), 20)`` of DS2) or
    ``"gru"`` (``W x_t`` holds the three gates' inputs). Without batch norm
    ``W x_t`` gets a bias instead. ``forward(x, mask)``: ``(B, T, D)`` to
    ``(B, T, H)``.
    """

    def __init__(self, input_size: int, hidden_size: int, cell: str = "gru", batch_norm: bool = True) -> None:
        super().__init__()
        _checks.positive_int("input_size", input_size)
        _checks.positive_int("hidden_size", hidden_size)
        _checks.one_of("cell", cell, ("rnn", "gru"))
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be a bool, got {type(batch_norm).__name__}")
        gates = 3 if cell == "gru" else 1
        self.cell, self.hidden_size = cell, hidden_size
        self.input = nn.Linear(input_size, gates * hidden_size, bias=not batch_norm)
        self.norm = SequenceBatchNorm(gates * hidden_size) if batch_norm else None
        self.recurrent = nn.Linear(hidden_size, gates * hidden_size, bias=cell == "gru")

    def forward(self, x: torch.Tensor, mask: torch.Tensor, fused: bool = True) -> torch.Tensor:
        _checks.tensor("x", x, ndim=3, kind="float")
        _checks.tensor("mask", mask, ndim=2, kind="bool")
        if not isinstance(fused, bool):
            raise TypeError(f"fused must be a bool, got {type(fused).__name__}")
        wx = self.input(x)
        if self.norm is not None:
            wx = self.norm(wx, mask)
        if fused and self.cell == "gru":
            return self._fused_gru(wx)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        out = []
        for t in range(x.shape[1]):
            uh = self.recurrent(h)
            if self.cell == "rnn":
                h = torch.clamp(wx[:, t] + uh, 0.0, 20.0)
            else:
                xr, xz, xn = wx[:, t].chunk(3, 1)
                hr, hz, hn = uh.chunk(3, 1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            out.append(h)
        return torch.stack(out, 1)

    def _fused_gru(self, wx: torch.Tensor) -> torch.Tensor:
        """The loop above for ``cell="gru"``, run by torch's fused GRU kernel (an identity input matrix
        passes ``wx`` through unchanged); tests check the two agree."""
        eye = torch.eye(wx.shape[-1], dtype=wx.dtype, device=wx.device)
        h0 = wx.new_zeros(1, wx.shape[0], self.hidden_size)
        weights = [eye, self.recurrent.weight, torch.zeros_like(self.recurrent.bias), self.recurrent.bias]
        out, _ = torch._VF.gru(wx, h0, weights, True, 1, 0.0, self.training, False, True)
        return out


class AcousticModel(nn.Module):
    """A small Deep Speech 2: a strided 1-D convolution over the spectrogram, then recurrent or convolutional layers.

    Front end: ``Conv1d(F, channels, kernel 5, stride 2)`` with batch norm and
    a clipped ReLU (it halves the frame rate, as DS2's strided convolutions
    do). Then ``layers`` of :class:`RecurrentLayer` (``kind="recurrent"``) or,
    for the convolution-only control (``kind="conv"``), ``layers``
    ``Conv1d(kernel 5)`` + batch norm + clipped ReLU layers of width
    ``hidden_size``; a linear layer to ``n_classes`` and a log-softmax.
    ``forward(features, lengths)``: ``(B, T, F)`` and ``(B,)`` to
    log-probabilities ``(T', B, C)`` and output lengths ``(B,)``,
    ``T' = ceil(T / 2)``.
    """

    def __init__(self, n_freq: int, n_classes: int, hidden_size: int = 48, layers: int = 2, channels: int = 32,
                 kind: str = "recurrent", cell: str = "gru", batch_norm: bool = True) -> None:
        super().__init__()
        for name, v in (("n_freq", n_freq), ("n_classes", n_classes), ("hidden_size", hidden_size),
                        ("layers", layers), ("channels", channels)):
            _checks.positive_int(name, v)
        _checks.one_of("kind", kind, ("recurrent", "conv"))
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be a bool, got {type(batch_norm).__name__}")
        self.kind = kind
        self.front = nn.Conv1d(n_freq, channels, 5, stride=2, padding=2, bias=not batch_norm)
        self.front_norm = SequenceBatchNorm(channels) if batch_norm else None
        if kind == "recurrent":
            self.layers = nn.ModuleList(
                RecurrentLayer(channels if i == 0 else hidden_size, hidden_size, cell, batch_norm) for i in range(layers))
        else:
            self.layers = nn.ModuleList(
                nn.Conv1d(channels if i == 0 else hidden_size, hidden_size, 5, padding=2) for i in range(layers))
            self.conv_norms = nn.ModuleList(SequenceBatchNorm(hidden_size) for _ in range(layers))
        self.out = nn.Linear(hidden_size, n_classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _checks.tensor("features", features, ndim=3, kind="float")
        _checks.tensor("lengths", lengths, ndim=1, kind="int")
        _checks.size_matches("lengths", lengths.shape[0], features.shape[0], "batch size")
        out_len = (lengths + 1) // 2
        x = self.front(features.transpose(1, 2)).transpose(1, 2)  # (B, T', channels)
        mask = torch.arange(x.shape[1], device=x.device) < out_len.to(x.device)[:, None]
        if self.front_norm is not None:
            x = self.front_norm(x, mask)
        x = torch.clamp(x, 0.0, 20.0)
        for i, layer in enumerate(self.layers):
            if self.kind == "recurrent":
                x = layer(x, mask)
            else:
                x = x * mask[..., None]  # padding stays zero, as the convolution's own padding
                x = torch.clamp(self.conv_norms[i](layer(x.transpose(1, 2)).transpose(1, 2), mask), 0.0, 20.0)
        return F.log_softmax(self.out(x), -1).transpose(0, 1), out_len


def sortagrad_batches(lengths: torch.Tensor, batch_size: int, epoch: int, sortagrad: bool,
                      generator: torch.Generator) -> list[torch.Tensor]:
    """Minibatches of utterance indices for one epoch.

    Utterances are grouped into batches of similar length (sorted, then cut);
    the batch order is random, except in epoch 0 with ``sortagrad``, where
    batches come in increasing order of their longest utterance (DS2 section
    3.3). Without ``sortagrad`` the batches are random sets of utterances.
    A last, smaller batch is dropped.
    """
    _checks.tensor("lengths", lengths, ndim=1, kind="int")
    _checks.positive_int("batch_size", batch_size)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
    if not isinstance(sortagrad, bool):
        raise TypeError(f"sortagrad must be a bool, got {type(sortagrad).__name__}")
    n = lengths.shape[0] // batch_size * batch_size
    if n == 0:
        raise ValueError(f"batch_size must be at most the number of utterances ({lengths.shape[0]}), got {batch_size}")
    if sortagrad and epoch == 0:
        # ties broken at random, then stable sort by length: batches from shortest to longest
        perm = torch.randperm(lengths.shape[0], generator=generator)
        order = perm[torch.argsort(lengths[perm], stable=True)][:n]
        return list(order.split(batch_size))
    order = torch.randperm(lengths.shape[0], generator=generator)[:n]
    return list(order.split(batch_size))


def uniform_alignment(input_lengths: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Frame targets ``(B, T)`` of a *flat start*: each utterance's ``L`` labels spread evenly over its frames.

    Frame ``t < n`` of an utterance of ``n`` frames gets label ``floor(t L / n)``
    of its transcript, the alignment a classic recogniser starts from when it
    has transcripts but no timing; frames past ``n`` get ``-100`` (ignored
    by ``cross_entropy``). ``T`` is ``max(input_lengths)``.
    """
    _checks.tensor("input_lengths", input_lengths, ndim=1, kind="int")
    _checks.tensor("targets", targets, ndim=2, kind="int")
    _checks.tensor("target_lengths", target_lengths, ndim=1, kind="int")
    _checks.size_matches("targets", targets.shape[0], input_lengths.shape[0], "batch size")
    _checks.size_matches("target_lengths", target_lengths.shape[0], input_lengths.shape[0], "batch size")
    if (target_lengths < 1).any() or (target_lengths > input_lengths).any():
        raise ValueError("target_lengths must be between 1 and input_lengths for every utterance")
    t = torch.arange(int(input_lengths.max()))
    position = (t[None] * target_lengths[:, None]) // input_lengths[:, None]  # (B, T)
    frames = targets.gather(1, position.clamp(max=targets.shape[1] - 1))
    return torch.where(t[None] < input_lengths[:, None], frames, torch.full_like(frames, -100))


def _check_data(model: object, features: object, lengths: object, labels: object, label_lengths: object) -> None:
    if not isinstance(model, AcousticModel):
        raise TypeError(f"model must be an AcousticModel, got {type(model).__name__}")
    _checks.tensor("features", features, ndim=3, kind="float")
    _checks.tensor("lengths", lengths, ndim=1, kind="int")
    _checks.tensor("labels", labels, ndim=2, kind="int")
    _checks.tensor("label_lengths", label_lengths, ndim=1, kind="int")
    for name, x in (("lengths", lengths), ("labels", labels), ("label_lengths", label_lengths)):
        _checks.size_matches(name, x.shape[0], features.shape[0], "batch size")


def evaluate(model: AcousticModel, features: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
             label_lengths: torch.Tensor) -> tuple[float, float]:
    """Held-out mean CTC loss per utterance (the package's :func:`ctc_loss`) and greedy-decoding CER."""
    _check_data(model, features, lengths, labels, label_lengths)
    was = model.training
    model.eval()
    with torch.no_grad():
        lp, out_len = model(features, lengths)
        loss = ctc_loss(lp, labels, out_len, label_lengths, reduction="sum").item() / features.shape[0]
        hyps = greedy_decode(lp, out_len)
    model.train(was)
    refs = [row[:n] for row, n in zip(labels.tolist(), label_lengths.tolist())]
    return loss, character_error_rate(hyps, refs)


def train_acoustic(model: AcousticModel, features: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                   label_lengths: torch.Tensor, *, steps: int, batch_size: int = 32, lr: float = 3e-3,
                   sortagrad: bool = True, clip: float = 5.0, loss: str = "ctc", generator: torch.Generator,
                   eval_data: tuple[torch.Tensor, ...] | None = None, eval_every: int = 0) -> dict[str, list[float]]:
    """Train ``model`` with the package's :func:`ctc_loss` (mean reduction) and Adam for ``steps`` minibatches.

    ``loss="flat"`` trains the control instead: frame-wise cross-entropy
    against the :func:`uniform_alignment` of each transcript (a flat start
    with no realignment); its outputs decode the same way, the blank never
    being a target.

    Batches come from :func:`sortagrad_batches`, epoch after epoch; each is
    trimmed to its longest utterance. Gradients are clipped to norm ``clip``.
    Returns ``{"loss": per-step training loss}`` and, with ``eval_data``
    ``(features, lengths, labels, label_lengths)`` and ``eval_every``, the
    held-out ``"eval_step"``, ``"eval_loss"`` and ``"eval_cer"`` (from
    :func:`evaluate`) every ``eval_every`` steps and at the end.
    """
    _check_data(model, features, lengths, labels, label_lengths)
    _checks.positive_int("steps", steps)
    _checks.one_of("loss", loss, ("ctc", "flat"))
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"eval_every must be a non-negative int, got {eval_every!r}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict[str, list[float]] = {"loss": [], "eval_step": [], "eval_loss": [], "eval_cer": []}
    epoch, step = 0, 0

    def record() -> None:
        if eval_data is not None:
            loss, cer = evaluate(model, *eval_data)
            history["eval_step"].append(step)
            history["eval_loss"].append(loss)
            history["eval_cer"].append(cer)

    model.train()
    while step < steps:
        for idx in sortagrad_batches(lengths, batch_size, epoch, sortagrad, generator):
            t, s = int(lengths[idx].max()), int(label_lengths[idx].max())
            lp, out_len = model(features[idx, :t], lengths[idx])
            if loss == "ctc":
                value = ctc_loss(lp, labels[idx, :s], out_len, label_lengths[idx])
            else:
                frames = uniform_alignment(out_len, labels[idx, :s], label_lengths[idx]).T  # (T', B)
                value = F.cross_entropy(lp.reshape(-1, lp.shape[-1]), frames.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            value.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            history["loss"].append(value.item())
            step += 1
            if eval_every and step % eval_every == 0 and step < steps:
                record()
            if step == steps:
                break
        epoch += 1
    record()
    return history
