"""Compression-based estimates of entropy and complexity, and a mixing system to apply them to.

Chapter 1 (Aaronson, *The First Law of Complexodynamics*) uses these pieces to
watch entropy rise while apparent complexity rises and falls; chapters 19 (the
coffee automaton), 23 (minimum description length) and 25 (Kolmogorov
complexity) reuse the estimators.

* :func:`to_bytes` and :func:`compressed_bits`: the length, in bits, of a state
  compressed by ``zlib``, ``bz2`` or ``lzma``; an upper bound, up to the
  compressor's fixed overhead, on the state's Kolmogorov complexity.
* :func:`block_average`, :func:`quantise` and :func:`coarse_grain`: the
  coarse-grained picture of a 1-D or 2-D state, whose compressed size is the
  chapter's proxy for apparent complexity.
* :func:`row_arrangement_bits`, :func:`block_arrangement_bits` and
  :func:`arrangement_entropy_bits`: code lengths from counting arrangements,
  the references the compressors are judged against.
* :func:`cream_on_top`, :func:`mix` and :func:`mixing_run`: a two-species
  mixing automaton on an ``(H, W)`` grid with closed walls, in which
  neighbouring cells swap at random; it conserves both species, its
  stationary distribution is uniform over arrangements, and its mean cream
  density diffuses with constant ``D = 1`` per time step (a lone cream cell's
  displacement has second moment ``2t - 1/2`` per axis after ``t`` steps).
* Chapter 19 adds the non-interacting model (:func:`random_walk`, ``D = 1/2``
  per time step), the paper's sliding-window coarse-graining
  (:func:`coarse_threshold`) and its adjusted version
  (:func:`adjusted_coarse_threshold`), and the helpers of the scaling study.

Shapes: ``B`` independent runs (batch), ``H`` grid height, ``W`` grid width,
``k`` coarse-graining block side, ``S`` snapshots.
"""

from __future__ import annotations

import bz2
import math
import lzma
import zlib
from collections.abc import Sequence

import torch

from papers30 import _checks

METHODS = ("zlib", "bz2", "lzma")


def to_bytes(x: torch.Tensor) -> bytes:
    """The bytes a compressor sees for state ``x`` (any shape, read in row-major order).

    A ``bool`` tensor is packed eight cells to a byte (so ``n`` random cells
    are ``n`` incompressible bits); an integer tensor with values in 0..255
    gives one byte per element (coarse-grained levels).
    """
    _checks.tensor("x", x)
    flat = x.detach().reshape(-1).cpu()
    if x.dtype == torch.bool:
        pad = (-flat.numel()) % 8
        bits = torch.cat([flat, flat.new_zeros(pad)]).view(-1, 8).to(torch.uint8)
        weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
        return (bits * weights).sum(dim=1, dtype=torch.uint8).numpy().tobytes()
    if x.is_floating_point() or x.is_complex():
        raise TypeError(f"x must be a bool or integer tensor, got {x.dtype}")
    if flat.numel() and (flat.min() < 0 or flat.max() > 255):
        raise ValueError("x must hold values in 0..255 to be written one byte per element")
    return flat.to(torch.uint8).numpy().tobytes()


def compressed_bits(x: torch.Tensor | bytes, method: str = "zlib") -> int:
    """Length in bits of ``x`` compressed at the strongest setting of ``method``.

    ``x`` is bytes or a tensor converted by :func:`to_bytes`. ``method`` is
    ``"zlib"`` (DEFLATE, as in gzip, with its 6-byte wrapper), ``"bz2"``
    (Burrows-Wheeler) or ``"lzma"`` (a raw LZMA2 stream, no container).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(x, (bytes, bytearray)):
        data = bytes(x)
    elif isinstance(x, torch.Tensor):
        data = to_bytes(x)
    else:
        raise TypeError(f"x must be bytes or a torch.Tensor, got {type(x).__name__}")
    if method == "zlib":
        out = zlib.compress(data, 9)
    elif method == "bz2":
        out = bz2.compress(data, 9)
    else:
        # a dictionary as large as the input (4 KiB at least) sees every match;
        # a larger one only costs time to allocate
        size = max(4096, 1 << max(len(data) - 1, 1).bit_length())
        filters = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": size}]
        out = lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
    return 8 * len(out)


def block_average(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of ``x`` over non-overlapping blocks of ``k`` cells (1-D) or ``k x k`` cells (2-D).

    ``x`` has shape ``(W,)`` or ``(H, W)`` with ``k`` dividing every side;
    the result, in ``x``'s floating dtype (float32 for bool or integer input),
    has shape ``(W // k,)`` or ``(H // k, W // k)``.
    """
    _checks.tensor("x", x, ndim=(1, 2))
    _checks.positive_int("k", k)
    for side in x.shape:
        if side % k:
            raise ValueError(f"k must divide every side of x, got k={k} for shape {tuple(x.shape)}")
    y = x if x.is_floating_point() else x.float()
    if x.dim() == 1:
        return y.reshape(-1, k).mean(dim=1)
    h, w = x.shape
    return y.reshape(h // k, k, w // k, k).mean(dim=(1, 3))  # block (i, j) = rows i*k.., cols j*k..


def quantise(p: torch.Tensor, levels: int) -> torch.Tensor:
    """Levels ``0 .. levels - 1`` of values ``p`` in ``[0, 1]``, in equal-width bins.

    Level ``j`` holds ``j / levels <= p < (j + 1) / levels``; ``p = 1`` falls
    in the top level. Returns an int64 tensor of ``p``'s shape.
    """
    _checks.tensor("p", p, kind="float")
    _checks.positive_int("levels", levels)
    if p.numel() and (p.min() < 0 or p.max() > 1):
        raise ValueError("p must lie in [0, 1]")
    return (p * levels).floor().long().clamp_(max=levels - 1)


def coarse_grain(x: torch.Tensor, k: int, levels: int = 3) -> torch.Tensor:
    """The coarse-grained state: :func:`block_average` over ``k``-blocks, then :func:`quantise`.

    ``x`` is a ``(W,)`` or ``(H, W)`` state of 0/1 cells (bool or numbers in
    ``[0, 1]``); returns int64 levels of shape ``(W // k,)`` or
    ``(H // k, W // k)``.
    """
    return quantise(block_average(x, k), levels)


def cream_on_top(
    height: int, width: int, batch: int = 1, device: torch.device | str | None = None
) -> torch.Tensor:
    """The unmixed cup: ``batch`` grids of shape ``(H, W)``, cream (True) in the top half.

    Returns a bool tensor of shape ``(B, H, W)``; ``height`` must be even.
    """
    _checks.positive_int("height", height)
    _checks.positive_int("width", width)
    _checks.positive_int("batch", batch)
    if height % 2:
        raise ValueError(f"height must be even, got {height}")
    state = torch.zeros(batch, height, width, dtype=torch.bool, device=device)
    state[:, : height // 2] = True
    return state


def _swap_pairs(
    state: torch.Tensor, axis: int, offset: int, generator: torch.Generator | None
) -> torch.Tensor:
    """One sweep: pair cells ``(offset + 2i, offset + 2i + 1)`` along ``axis`` (1 rows, 2 columns)
    of a ``(B, H, W)`` state and swap each pair with probability 1/2."""
    m = (state.shape[axis] - offset) // 2
    out = state.clone()
    if m == 0:
        return out
    block = out.narrow(axis, offset, 2 * m)
    first = block[:, 0::2] if axis == 1 else block[:, :, 0::2]  # views into out
    second = block[:, 1::2] if axis == 1 else block[:, :, 1::2]
    flip = torch.rand(first.shape, generator=generator, device=state.device) < 0.5
    differ = (first ^ second) & flip  # a swap changes only pairs that differ
    first ^= differ
    second ^= differ
    return out


@_checks.typed
def mix(state: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Run the mixing automaton for ``steps`` time steps; return the new ``(B, H, W)`` state.

    One time step is four sweeps: cells paired with their vertical neighbour
    (pairs starting at even rows, then at odd rows), then with their
    horizontal neighbour (even, then odd columns). In each sweep every pair
    swaps its two cells with probability 1/2, independently. Walls are
    closed: no pair wraps around. ``generator`` must live on ``state``'s device.

    The mean cream density diffuses with ``D = 1`` per step: a lone cream cell
    moves in a sweep with probability 1/2, and because the pairings alternate
    (brick-wall), a move carries it into a pair that continues in the same
    direction, while staying put turns it around. Its displacement along
    either axis after ``t`` steps has second moment ``2t - 1/2``, not the
    ``t`` that independent moves would give.
    """
    _checks.tensor("state", state, ndim=3, kind="bool")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    if generator is not None and generator.device.type != state.device.type:
        raise ValueError(
            f"generator must be on state's device {state.device}, got {generator.device}"
        )
    for _ in range(steps):
        for axis, offset in ((1, 0), (1, 1), (2, 0), (2, 1)):
            state = _swap_pairs(state, axis, offset, generator)
    return state


@_checks.typed
def mixing_run(
    state: torch.Tensor, times: Sequence[int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Snapshots of the mixing automaton at the non-decreasing ``times`` (in steps).

    ``state`` ``(B, H, W)`` is the state at time 0; returns a bool tensor of
    shape ``(S, B, H, W)`` with ``S = len(times)``.
    """
    _checks.tensor("state", state, ndim=3, kind="bool")
    times = list(times)
    if not times:
        raise ValueError("times must not be empty")
    if any(isinstance(t, bool) or not isinstance(t, int) for t in times):
        raise TypeError("times must hold ints")
    if times[0] < 0 or any(b < a for a, b in zip(times, times[1:])):
        raise ValueError(f"times must be non-negative and non-decreasing, got {times[:5]}...")
    snapshots, now = [], 0
    for t in times:
        state = mix(state, t - now, generator)
        now = t
        snapshots.append(state)
    return torch.stack(snapshots)


def state_bits(
    states: torch.Tensor, method: str = "zlib", k: int | None = None, levels: int = 3
) -> torch.Tensor:
    """Compressed size in bits of every state in a stack of shape ``(..., H, W)``.

    With ``k=None`` each fine-grained state is compressed bit-packed (the
    entropy proxy); with a block side ``k`` each is first coarse-grained to
    ``levels`` levels (the apparent-complexity proxy). Returns a float64
    tensor of the leading shape ``(...)``, e.g. ``(S, B)`` for a run's snapshots.
    """
    _checks.tensor("states", states, kind="bool")
    if states.dim() < 2:
        raise ValueError(
            f"states must have at least 2 dimensions (..., H, W), got shape {tuple(states.shape)}"
        )
    if k is not None:
        _checks.positive_int("k", k)
    flat = states.reshape(-1, *states.shape[-2:])
    sizes = [
        compressed_bits(s if k is None else coarse_grain(s, k, levels).to(torch.uint8), method)
        for s in flat
    ]
    return torch.tensor(sizes, dtype=torch.float64).reshape(states.shape[:-2])


def arrangement_entropy_bits(n: int, m: int) -> float:
    """``log2 C(n, m)``: bits needed to say which ``m`` of ``n`` cells hold cream.

    This is the entropy of the automaton's stationary (uniform) distribution
    over arrangements, the bound a compressor of the fully mixed state cannot
    beat on average. Computed with ``lgamma``, so it is exact to float precision.
    """
    _checks.positive_int("n", n)
    if isinstance(m, bool) or not isinstance(m, int):
        raise TypeError(f"m must be an int, got {type(m).__name__}")
    if not 0 <= m <= n:
        raise ValueError(f"m must be in 0..n={n}, got {m}")
    return (math.lgamma(n + 1) - math.lgamma(m + 1) - math.lgamma(n - m + 1)) / math.log(2)


def level_flip_probability(cells: int, levels: int = 3, p: float = 0.5) -> float:
    """Probability that a block of ``cells`` independent Bernoulli(``p``) cells leaves ``p``'s level.

    A block's mean is ``c / cells`` with ``c ~ Binomial(cells, p)``; the
    result is the probability that :func:`quantise` puts that mean in a
    different level from ``p`` itself: the rate of coarse-graining noise in a
    fully mixed state.
    """
    _checks.positive_int("cells", cells)
    _checks.positive_int("levels", levels)
    p = _checks.probability("p", p, inclusive_one=True)
    home = min(math.floor(p * levels), levels - 1)
    stay = sum(
        math.comb(cells, c) * p**c * (1 - p) ** (cells - c)
        for c in range(cells + 1)
        if min(math.floor(c / cells * levels), levels - 1) == home
    )
    return max(0.0, 1.0 - stay)


def row_arrangement_bits(states: torch.Tensor) -> torch.Tensor:
    """``sum_y log2 C(W, c_y)`` for each state ``(..., H, W)``; ``c_y`` is the cream in row ``y``.

    The length of a two-part code whose model is the cream count of every row
    (that part, at most ``H log2(W + 1)`` bits, is left out): an estimate of
    the entropy that, unlike a general-purpose compressor, exploits a density
    that drifts slowly from row to row. Returns float64 of shape ``(...)``.
    """
    _checks.tensor("states", states, kind="bool")
    if states.dim() < 2:
        raise ValueError(
            f"states must have at least 2 dimensions (..., H, W), got shape {tuple(states.shape)}"
        )
    w = states.shape[-1]
    c = states.sum(dim=-1, dtype=torch.float64)  # (..., H)
    log_comb = math.lgamma(w + 1) - torch.lgamma(c + 1) - torch.lgamma(w - c + 1)
    return (log_comb / math.log(2)).sum(dim=-1).cpu()


def block_arrangement_bits(states: torch.Tensor, k: int) -> torch.Tensor:
    """``sum_b log2 C(k*k, c_b)`` for each state ``(..., H, W)``; ``c_b`` is the cream in ``k x k`` block ``b``.

    The noise part of the two-part code whose model is the cream count of
    every block (chapter 1, eq. ``coarse-set``): the bits that say which
    cells of each block hold the cream, once the counts are known. ``k`` must
    divide ``H`` and ``W``. Returns float64 of shape ``(...)``.
    """
    _checks.tensor("states", states, kind="bool")
    if states.dim() < 2:
        raise ValueError(
            f"states must have at least 2 dimensions (..., H, W), got shape {tuple(states.shape)}"
        )
    _checks.positive_int("k", k)
    h, w = states.shape[-2:]
    if h % k or w % k:
        raise ValueError(f"k must divide every side of states, got k={k} for (H, W) = ({h}, {w})")
    blocks = states.reshape(*states.shape[:-2], h // k, k, w // k, k)
    c = blocks.sum(dim=(-3, -1), dtype=torch.float64)  # (..., H/k, W/k)
    n = k * k
    log_comb = math.lgamma(n + 1) - torch.lgamma(c + 1) - torch.lgamma(n - c + 1)
    return (log_comb / math.log(2)).sum(dim=(-2, -1)).cpu()


# ---------------------------------------------------------------------------
# Chapter 19: the coffee automaton of Aaronson, Carroll and Ouellette (2014).
# The interacting model is :func:`mix` above; what follows adds the
# non-interacting model, the paper's sliding-window coarse-graining with
# thresholding, and the helpers of the scaling study.


def cream_particles(
    height: int, width: int, batch: int = 1, device: torch.device | str | None = None
) -> torch.Tensor:
    """Cream particles of the unmixed cup, one per cell of the top half, for the non-interacting model.

    Returns int64 positions ``(row, column)`` of shape ``(B, M, 2)`` with
    ``M = height // 2 * width`` particles, in row-major order; ``height`` must
    be even. :func:`occupancy` turns them back into the picture of
    :func:`cream_on_top`.
    """
    _checks.positive_int("height", height)
    _checks.positive_int("width", width)
    _checks.positive_int("batch", batch)
    if height % 2:
        raise ValueError(f"height must be even, got {height}")
    rows = torch.arange(height // 2, device=device).repeat_interleave(width)
    cols = torch.arange(width, device=device).repeat(height // 2)
    return torch.stack([rows, cols], dim=1).expand(batch, -1, -1).clone()


def _walk_move(
    rows: torch.Tensor, cols: torch.Tensor, directions: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every particle ``(rows, cols)`` (each ``(B, M)``) one cell in ``directions`` ``(B, M)``
    (0 up, 1 down, 2 left, 3 right); a move through a wall is rejected (the particle stays)."""
    # the row and column steps by comparisons (a table lookup is far slower on a busy CPU)
    dy = (directions == 1).to(rows.dtype) - (directions == 0).to(rows.dtype)
    dx = (directions == 3).to(cols.dtype) - (directions == 2).to(cols.dtype)
    new_r, new_c = rows + dy, cols + dx
    rows = torch.where((new_r >= 0) & (new_r < height), new_r, rows)
    cols = torch.where((new_c >= 0) & (new_c < width), new_c, cols)
    return rows, cols


def random_walk(
    positions: torch.Tensor,
    height: int,
    width: int,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The non-interacting model: every cream particle walks on its own for ``steps`` time steps.

    ``positions`` ``(B, M, 2)`` are int64 ``(row, column)`` cells of an
    ``(H, W)`` grid with closed walls; any number of particles may share a
    cell. One time step is two moves; in each, every particle picks one of its
    four neighbours uniformly at random and moves there unless a wall is in
    the way. A move changes the row by one with probability 1/2, so two
    moves give a displacement variance of one cell squared per axis per step:
    a diffusion constant ``D = 1/2``, half the ``D = 1`` of :func:`mix`.
    Returns the new ``(B, M, 2)`` positions.
    """
    _checks.tensor("positions", positions, ndim=3, kind="int")
    _checks.positive_int("height", height)
    _checks.positive_int("width", width)
    if positions.shape[-1] != 2:
        raise ValueError(f"positions must have shape (B, M, 2), got {tuple(positions.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    if positions.numel() and (
        positions.min() < 0 or (positions[..., 0].max() >= height) or (positions[..., 1].max() >= width)
    ):
        raise ValueError(f"positions must lie inside the {height} x {width} grid")
    rows, cols = positions[..., 0].to(torch.int32), positions[..., 1].to(torch.int32)
    for _ in range(2 * steps):
        directions = torch.randint(0, 4, rows.shape, generator=generator, device=rows.device)
        rows, cols = _walk_move(rows, cols, directions, height, width)
    return torch.stack([rows, cols], dim=-1).to(positions.dtype)


def occupancy(positions: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Number of particles in every cell: int64 ``(B, H, W)`` from positions ``(B, M, 2)``."""
    _checks.tensor("positions", positions, ndim=3, kind="int")
    _checks.positive_int("height", height)
    _checks.positive_int("width", width)
    b = positions.shape[0]
    flat = positions[..., 0] * width + positions[..., 1]  # (B, M)
    counts = torch.zeros(b, height * width, dtype=torch.int64, device=positions.device)
    counts.scatter_add_(1, flat.long(), torch.ones_like(flat, dtype=torch.int64))
    return counts.view(b, height, width)


@_checks.typed
def coffee_run(
    size: int,
    times: Sequence[int],
    model: str = "interacting",
    batch: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Snapshots of the ``size x size`` coffee automaton at the non-decreasing ``times`` (steps).

    ``model="interacting"``: cream and coffee cells swap with neighbours
    (:func:`mixing_run`), and the snapshots are bool ``(S, B, n, n)``.
    ``model="non-interacting"``: cream particles walk independently
    (:func:`random_walk`), and the snapshots are int64 particle counts
    ``(S, B, n, n)``. Both start from the cream-on-top cup; ``generator``
    must live on ``device``.
    """
    _checks.positive_int("size", size)
    _checks.one_of("model", model, ("interacting", "non-interacting"))
    times = list(times)
    if not times:
        raise ValueError("times must not be empty")
    if any(isinstance(t, bool) or not isinstance(t, int) for t in times):
        raise TypeError("times must hold ints")
    if times[0] < 0 or any(times[i + 1] < times[i] for i in range(len(times) - 1)):
        raise ValueError(f"times must be non-negative and non-decreasing, got {times[:5]}...")
    if model == "interacting":
        return mixing_run(cream_on_top(size, size, batch, device=device), times, generator)
    pos = cream_particles(size, size, batch, device=device)
    snapshots, now = [], 0
    for t in times:
        pos = random_walk(pos, size, size, t - now, generator)
        now = t
        snapshots.append(occupancy(pos, size, size))
    return torch.stack(snapshots)


def window_sums(x: torch.Tensor, g: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of ``x`` over the ``g x g`` window centred on every cell, clipped at the walls.

    ``x`` is bool or integer of shape ``(..., H, W)`` and ``g`` is odd.
    Returns int64 ``(sums, cells)``: the sums, shape ``(..., H, W)``, and the
    number of cells each clipped window covers, shape ``(H, W)``. Computed
    from a summed-area table, so the cost does not grow with ``g``.
    """
    _checks.tensor("x", x)
    if x.is_floating_point() or x.is_complex():
        raise TypeError(f"x must be a bool or integer tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    _checks.positive_int("g", g)
    if g % 2 == 0:
        raise ValueError(f"g must be odd, so that a window has a centre cell, got {g}")
    h, w = x.shape[-2:]
    r = g // 2
    table = torch.nn.functional.pad(x.long().cumsum(-2).cumsum(-1), (1, 0, 1, 0))  # (..., H+1, W+1)
    dev = x.device
    lo_y = (torch.arange(h, device=dev) - r).clamp(min=0)
    hi_y = (torch.arange(h, device=dev) + r + 1).clamp(max=h)
    lo_x = (torch.arange(w, device=dev) - r).clamp(min=0)
    hi_x = (torch.arange(w, device=dev) + r + 1).clamp(max=w)
    rows_hi, rows_lo = table[..., hi_y, :], table[..., lo_y, :]
    sums = rows_hi[..., hi_x] - rows_hi[..., lo_x] - rows_lo[..., hi_x] + rows_lo[..., lo_x]
    cells = (hi_y - lo_y)[:, None] * (hi_x - lo_x)[None, :]
    return sums, cells


def coarse_threshold(x: torch.Tensor, g: int, levels: int = 3) -> torch.Tensor:
    """The paper's coarse-grained picture: window means over ``g x g``, then ``levels`` levels.

    Cell ``(i, j)`` gets level ``min(floor(levels * s / c), levels - 1)``,
    with ``s`` and ``c`` from :func:`window_sums`: the :func:`quantise` of the
    window's mean, computed in integers so that a mean of exactly ``1/3``
    lands in level 1. A mean above 1 (several particles per cell in the
    non-interacting model) is put in the top level. ``x`` ``(..., H, W)``;
    returns int64 levels of the same shape.
    """
    _checks.positive_int("levels", levels)
    sums, cells = window_sums(x, g)
    return torch.div(levels * sums, cells, rounding_mode="floor").clamp_(max=levels - 1)


def row_majority_adjust(levels: torch.Tensor) -> torch.Tensor:
    """The paper's adjustment: each cell within one level of its row's most common level takes that level.

    ``levels`` is an integer picture ``(..., H, W)`` (as from
    :func:`coarse_threshold`). For every row the majority level is the most
    common one (the lowest of tied ones); a cell whose level differs from it
    by at most one is set to it, and any other cell keeps its level. Returns
    int64 levels of the same shape.
    """
    _checks.tensor("levels", levels, kind="int")
    if levels.dim() < 2:
        raise ValueError(f"levels must have at least 2 dimensions (..., H, W), got shape {tuple(levels.shape)}")
    if levels.numel() and levels.min() < 0:
        raise ValueError("levels must be non-negative")
    lv = levels.long()
    width = int(lv.max().item()) + 1 if lv.numel() else 1
    counts = torch.nn.functional.one_hot(lv, width).sum(dim=-2)  # (..., H, levels): per row
    majority = counts.argmax(dim=-1, keepdim=True)  # (..., H, 1); ties go to the lowest level
    return torch.where((lv - majority).abs() <= 1, majority, lv)


def adjusted_coarse_threshold(x: torch.Tensor, g: int, levels: int = 7) -> torch.Tensor:
    """The paper's adjusted coarse-graining: :func:`coarse_threshold` into ``levels`` (7), then
    :func:`row_majority_adjust`.

    The adjustment removes the level flicker of cells that sit near a level
    edge, which a row-wise smooth expected picture would otherwise turn into
    apparent complexity. ``x`` ``(..., H, W)``; returns int64 levels of the same shape.
    """
    return row_majority_adjust(coarse_threshold(x, g, levels))


def coffee_bits(
    states: torch.Tensor,
    g: int | None = None,
    levels: int = 3,
    method: str = "zlib",
    adjusted: bool = False,
) -> torch.Tensor:
    """Entropy (``g=None``) or apparent-complexity (``g`` given) estimate of each state, in bits.

    ``states`` ``(..., H, W)`` are snapshots of either model (bool cells or
    int particle counts). With ``g=None`` each state is compressed as it is
    (:func:`to_bytes`: bit-packed if bool, a byte per cell if integer); with
    an odd ``g`` its :func:`coarse_threshold` picture is compressed, one byte
    per cell, or with ``adjusted=True`` its :func:`adjusted_coarse_threshold`
    picture. Returns float64 of the leading shape ``(...)``.
    """
    _checks.tensor("states", states)
    if states.dim() < 2:
        raise ValueError(
            f"states must have at least 2 dimensions (..., H, W), got shape {tuple(states.shape)}"
        )
    _checks.one_of("method", method, METHODS)
    flat = states.reshape(-1, *states.shape[-2:])
    if adjusted and g is None:
        raise ValueError("adjusted=True needs a grain g")
    if g is not None:
        picture = adjusted_coarse_threshold if adjusted else coarse_threshold
        flat = picture(flat, g, levels).to(torch.uint8)
    sizes = [compressed_bits(s, method) for s in flat]
    return torch.tensor(sizes, dtype=torch.float64).reshape(states.shape[:-2])


def differing_pairs(states: torch.Tensor) -> torch.Tensor:
    """Number of neighbouring cell pairs (vertical and horizontal) that differ, for each state.

    ``states`` ``(..., H, W)`` of any dtype; returns int64 of shape ``(...)``.
    In the paper's interacting automaton one time step swaps one such pair;
    in :func:`mix` each of them swaps with probability 1/2 per step, so this
    count, halved, is the expected number of the paper's steps in one of ours.
    """
    _checks.tensor("states", states)
    if states.dim() < 2:
        raise ValueError(
            f"states must have at least 2 dimensions (..., H, W), got shape {tuple(states.shape)}"
        )
    vertical = (states[..., 1:, :] != states[..., :-1, :]).sum(dim=(-2, -1))
    horizontal = (states[..., :, 1:] != states[..., :, :-1]).sum(dim=(-2, -1))
    return (vertical + horizontal).long()


def mode_amplitude(states: torch.Tensor) -> torch.Tensor:
    """Amplitude of the slowest vertical mode of the mean cream profile of each state.

    With ``u_y`` the mean of row ``y`` of a state ``(..., H, W)`` and
    ``ubar`` its mean over rows, returns float64
    ``(2 / H) * sum_y (u_y - ubar) * cos(pi * (y + 1/2) / H)``, shape ``(...)``.
    That cosine is the slowest mode of diffusion between closed walls, so
    the expected amplitude decays as ``exp(-D * (pi / H)**2 * t)``; the
    unmixed cup starts near ``2 / pi``.
    """
    _checks.tensor("states", states)
    if states.dim() < 2:
        raise ValueError(
            f"states must have at least 2 dimensions (..., H, W), got shape {tuple(states.shape)}"
        )
    h = states.shape[-2]
    u = states.to(torch.float64).mean(dim=-1)  # (..., H)
    y = torch.arange(h, dtype=torch.float64, device=states.device)
    basis = torch.cos(math.pi * (y + 0.5) / h)
    return (2.0 / h * ((u - u.mean(dim=-1, keepdim=True)) * basis).sum(dim=-1)).cpu()


def _line_fit(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Slope and intercept of the least-squares line through the points ``(x, y)`` (float64, ``(N,)``)."""
    dx = x - x.mean()
    slope = (dx * (y - y.mean())).sum() / (dx * dx).sum()
    return float(slope), float(y.mean() - slope * x.mean())


def decay_rate(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares rate ``r`` of ``values ~ c * exp(-r * t)``: minus the slope of ``log(values)`` on ``times``.

    Needs at least two distinct times and positive values.
    """
    ts = torch.as_tensor(list(times), dtype=torch.float64)
    vs = torch.as_tensor(list(values), dtype=torch.float64)
    _checks.size_matches("values", vs.numel(), ts.numel(), "length")
    if ts.numel() < 2 or torch.unique(ts).numel() < 2:
        raise ValueError("times must hold at least two distinct values")
    if (vs <= 0).any():
        raise ValueError("values must be positive to take their logarithm")
    return -_line_fit(ts, vs.log())[0]


def log_times(end: int, count: int) -> list[int]:
    """Time 0 and about ``count`` integer times spaced evenly in ``log t`` from 1 to ``end``.

    Equal ratios between snapshots give every grid size the same relative
    resolution of the time of the complexity peak. Duplicates after rounding
    are dropped, so the list may be shorter than ``count + 1``; it is sorted.
    """
    _checks.positive_int("end", end)
    _checks.positive_int("count", count)
    if count == 1:
        return [0, end]
    ratio = end ** (1.0 / (count - 1))
    return sorted({0, end} | {round(ratio**i) for i in range(count)})


def peak(times: Sequence[float], values: torch.Tensor) -> tuple[float, float, int]:
    """Time, height and index of the maximum of a curve ``values`` ``(S,)`` sampled at ``times``.

    Ties go to the earliest sample.
    """
    _checks.tensor("values", values, ndim=1)
    if values.dtype == torch.bool or values.is_complex():
        raise TypeError(f"values must be a real-valued tensor, got {values.dtype}")
    times = list(times)
    _checks.size_matches("times", len(times), values.shape[0], "length")
    if not times:
        raise ValueError("values must not be empty")
    i = int(torch.argmax(values).item())  # first maximum
    return float(times[i]), float(values[i].item()), i


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of ``y = c * x**a`` on log-log axes; returns ``(a, c)``.

    Needs at least two distinct positive ``x`` and positive ``y``.
    """
    xs = torch.as_tensor(list(x), dtype=torch.float64)
    ys = torch.as_tensor(list(y), dtype=torch.float64)
    _checks.size_matches("y", ys.numel(), xs.numel(), "length")
    if xs.numel() < 2 or torch.unique(xs).numel() < 2:
        raise ValueError("x must hold at least two distinct values")
    if (xs <= 0).any():
        raise ValueError("x must be positive for a log-log fit")
    if (ys <= 0).any():
        raise ValueError("y must be positive for a log-log fit")
    a, log_c = _line_fit(xs.log(), ys.log())
    return a, math.exp(log_c)


# --- chapter 25: normalized compression distance -----------------------------------


def ncd(x: bytes, y: bytes, method: str = "zlib") -> float:
    """Normalized compression distance ``(C(xy) - min(C(x), C(y))) / max(C(x), C(y))``, eq. (kc-ncd).

    ``C`` is :func:`compressed_bits` with ``method``. Near 0 when one object
    tells the compressor almost everything about the other, near 1 (slightly
    above, for a real compressor) when they share nothing.
    """
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
        if not value:
            raise ValueError(f"{name} must not be empty")
    cx, cy = compressed_bits(bytes(x), method), compressed_bits(bytes(y), method)
    cxy = compressed_bits(bytes(x) + bytes(y), method)
    return (cxy - min(cx, cy)) / max(cx, cy)


def ncd_matrix(items: Sequence[bytes], method: str = "zlib") -> torch.Tensor:
    """Pairwise :func:`ncd` of ``N`` objects, ``(N, N)`` float64, symmetrised, zero diagonal.

    A real compressor gives ``C(xy)`` and ``C(yx)`` that differ by a few
    bits; entry ``(i, j)`` is the mean of ``ncd(x_i, x_j)`` and
    ``ncd(x_j, x_i)``, so the matrix is a symmetric dissimilarity.
    """
    if isinstance(items, (bytes, str)) or not isinstance(items, Sequence):
        raise TypeError(f"items must be a sequence of bytes, got {type(items).__name__}")
    if len(items) < 2:
        raise ValueError(f"items must hold at least 2 objects, got {len(items)}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    data = [_bytes_item(i, x) for i, x in enumerate(items)]
    single = [compressed_bits(x, method) for x in data]  # C(x_i), computed once
    n = len(data)
    d = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i + 1, n):
            low, high = min(single[i], single[j]), max(single[i], single[j])
            both = compressed_bits(data[i] + data[j], method) + compressed_bits(data[j] + data[i], method)
            d[i, j] = d[j, i] = (both / 2 - low) / high
    return d


def size_distance(items: Sequence[bytes], method: str = "zlib") -> torch.Tensor:
    """``|C(x) - C(y)| / max(C(x), C(y))`` for every pair, ``(N, N)``: a distance that sees only sizes.

    The control for :func:`ncd_matrix`: it uses each object's own compressed
    size and nothing the two share.
    """
    if isinstance(items, (bytes, str)) or not isinstance(items, Sequence) or len(items) < 2:
        raise ValueError("items must be a sequence of at least 2 bytes objects")
    c = torch.tensor([float(compressed_bits(bytes(_bytes_item(i, x)), method)) for i, x in enumerate(items)],
                     dtype=torch.float64)
    return (c[:, None] - c[None, :]).abs() / torch.maximum(c[:, None], c[None, :])


def _bytes_item(i: int, x: object) -> bytes:
    if not isinstance(x, (bytes, bytearray)) or not x:
        raise TypeError(f"items[{i}] must be non-empty bytes, got {type(x).__name__}")
    return bytes(x)
