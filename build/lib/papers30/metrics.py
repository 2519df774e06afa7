"""Metrics: corpus BLEU, exact match, alignment and sequential depth (chapters 13 and 14), mean IoU (chapter 11).

:func:`corpus_bleu` follows Papineni et al. (2002): clipped n-gram precisions
for n = 1..4 pooled over the corpus, their geometric mean, and a brevity
penalty ``exp(1 - r / c)`` when the candidate corpus length ``c`` is shorter
than the reference length ``r``. Tokens are any hashable items (ids or words);
one reference per candidate. Returned on the 0-100 scale papers report.

:func:`critical_path` measures what the Transformer paper's Table 1 calls the
minimum number of sequential operations: the longest chain of dependent
operations in the autograd graph of a result.

:func:`mean_iou` is the Pascal VOC segmentation score: per class, the
intersection over union of predicted and true pixels pooled over the whole
test set, averaged over the classes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Sequence

import torch

from papers30 import _checks


def _ngrams(tokens: Sequence[Hashable], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(
    candidates: Sequence[Sequence[Hashable]], references: Sequence[Sequence[Hashable]], max_n: int = 4
) -> float:
    """Corpus BLEU in [0, 100] of ``candidates`` against one reference each."""
    if len(candidates) != len(references):
        raise ValueError(f"references has {len(references)} entries, expected {len(candidates)} (one per candidate)")
    _checks.positive_int("max_n", max_n)
    matches, totals = [0] * max_n, [0] * max_n
    cand_len = ref_len = 0
    for cand, ref in zip(candidates, references):
        cand_len += len(cand)
        ref_len += len(ref)
        for n in range(1, max_n + 1):
            c, r = _ngrams(cand, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(k, r[g]) for g, k in c.items())
            totals[n - 1] += max(len(cand) - n + 1, 0)
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / cand_len)
    return 100.0 * brevity * math.exp(log_precision)


def strip_after(tokens: torch.Tensor, eos: int) -> list[list[int]]:
    """Rows of ``tokens (B, L)`` as lists, cut before the first ``eos``."""
    _checks.tensor("tokens", tokens, ndim=2, kind="int")
    if isinstance(eos, bool) or not isinstance(eos, int):
        raise TypeError(f"eos must be an int, got {type(eos).__name__}")
    out = []
    for row in tokens.tolist():
        out.append(row[: row.index(eos)] if eos in row else row)
    return out


def exact_match(candidates: Sequence[Sequence[Hashable]], references: Sequence[Sequence[Hashable]]) -> float:
    """Fraction of candidates identical to their reference."""
    if len(candidates) != len(references):
        raise ValueError(f"references has {len(references)} entries, expected {len(candidates)} (one per candidate)")
    if not candidates:
        raise ValueError("candidates must not be empty")
    return sum(list(c) == list(r) for c, r in zip(candidates, references)) / len(candidates)


def alignment_accuracy(weights: torch.Tensor, alignments: Sequence[Sequence[int]]) -> torch.Tensor:
    """Per head, how often the most-attended source position is the aligned one.

    Args:
        weights: attention ``(B, H, T, S)`` from target positions to source positions.
        alignments: per example, the source index that target position ``t``
            translates, for the first ``len(alignments[b])`` target positions
            (later positions, such as ``EOS`` and padding, are not scored).

    Returns:
        ``(H,)`` accuracies in [0, 1].
    """
    _checks.tensor("weights", weights, ndim=4, kind="float")
    if len(alignments) != weights.shape[0]:
        raise ValueError(f"alignments has {len(alignments)} entries, expected the batch size {weights.shape[0]}")
    best = weights.argmax(dim=-1)  # (B, H, T)
    hits = torch.zeros(weights.shape[1])
    total = 0
    for b, align in enumerate(alignments):
        if len(align) > weights.shape[2]:
            raise ValueError(f"alignments[{b}] has {len(align)} positions, more than T = {weights.shape[2]}")
        target = torch.tensor(align, dtype=torch.long, device=weights.device)
        hits += (best[b, :, : len(align)] == target).sum(dim=-1).cpu().float()
        total += len(align)
    if total == 0:
        raise ValueError("alignments must contain at least one aligned position")
    return hits / total


# Autograd nodes that only re-index or re-view memory (no arithmetic, no copy),
# and the leaves that accumulate gradients: they do not lengthen a chain of work.
VIEW_NODES = frozenset({
    "View", "UnsafeView", "Reshape", "ReshapeAlias", "Alias", "AsStrided", "T", "Transpose", "Permute",
    "Expand", "Squeeze", "Unsqueeze", "Select", "Slice", "Split", "SplitWithSizes", "Unbind", "AccumulateGrad",
})


def _node_kind(fn: object) -> str:
    return re.sub(r"Backward\d*$", "", type(fn).__name__)


def critical_path(output: torch.Tensor) -> int:
    """The longest chain of dependent operations that produced ``output``.

    Walks the autograd graph behind ``output`` (which must require grad) and
    counts, along its longest path, every node that computes something:
    view-like nodes and leaves (:data:`VIEW_NODES`) count zero. This is the
    minimum number of sequential operations of the forward pass on a machine
    with unlimited parallelism; the backward pass retraces the same chain.
    """
    _checks.tensor("output", output)
    if output.grad_fn is None:
        raise ValueError("output must come from operations on tensors that require grad (it has no grad_fn)")
    depth: dict[object, int] = {}
    stack: list[tuple[object, bool]] = [(output.grad_fn, False)]
    while stack:  # iterative post-order walk: graphs of long recurrences are deep
        fn, expanded = stack.pop()
        if fn in depth:
            continue
        children = [nxt for nxt, _ in fn.next_functions if nxt is not None]
        if not expanded:
            stack.append((fn, True))
            stack.extend((c, False) for c in children if c not in depth)
            continue
        own = 0 if _node_kind(fn) in VIEW_NODES else 1
        depth[fn] = own + max((depth[c] for c in children), default=0)
    return depth[output.grad_fn]


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean intersection over union of two label maps, in percent (Pascal VOC's score).

    ``pred`` and ``target`` are integer labels of the same shape (e.g.
    ``(B, H, W)``) in ``0 .. num_classes - 1``. For each class ``c`` the
    pixels of the whole set are pooled: ``IoU_c = |pred = c and target = c| /
    |pred = c or target = c|``; the result is the mean over the classes whose
    union is not empty, times 100.
    """
    _checks.tensor("pred", pred, kind="int")
    _checks.tensor("target", target, kind="int")
    if pred.shape != target.shape:
        raise ValueError(f"pred must have the shape of target {tuple(target.shape)}, got {tuple(pred.shape)}")
    _checks.positive_int("num_classes", num_classes)
    for name, t in (("pred", pred), ("target", target)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"{name} must hold labels in 0..{num_classes - 1}")
    ious = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        union = (p | t).sum().item()
        if union:
            ious.append((p & t).sum().item() / union)
    if not ious:
        raise ValueError("pred and target must hold at least one pixel")
    return 100.0 * sum(ious) / len(ious)
