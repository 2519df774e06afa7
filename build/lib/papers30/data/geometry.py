"""Planar geometry for the pointer-network tasks (chapter 6): points, hulls, areas, tours.

* :func:`random_points`: seeded point sets, uniform in the unit square as in
  Vinyals et al. (2015);
* :func:`convex_hull`: the exact convex hull by Andrew's monotone chain, in a
  canonical order (defined below), the target sequence of the hull task;
* :func:`polygon_area` (shoelace formula) and :func:`area_coverage`, the
  paper's second hull metric;
* :func:`hull_dataset`: point sets with their hulls;
* :func:`tour_length` and :func:`tsp_brute_force`: the exact travelling
  salesman optimum for small ``n``, by trying every tour.

Canonical hull order: the hull's vertices only (points in the interior of a
hull edge are not vertices), each distinct location once (of duplicate points
the lowest index is used), listed counter-clockwise starting at the leftmost
vertex (lowest ``x``, then lowest ``y``), or, with ``start="lowest_index"``,
at the vertex with the lowest index, as in the paper. With either order every
point set has exactly one correct output sequence, so "exact-sequence
accuracy" is well defined.

Shapes: ``B`` batch, ``n`` points, each ``(x, y)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from papers30 import _checks

STARTS = ("leftmost", "lowest_index")


def _as_points(name: str, points: object) -> list[tuple[float, float]]:
    _checks.tensor(name, points, ndim=2, kind="float")
    if points.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {tuple(points.shape)}")
    if points.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one point, got shape {tuple(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} must be finite")
    return [(float(x), float(y)) for x, y in points.detach().cpu().double().tolist()]


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """z-component of (a - o) x (b - o): > 0 for a left (counter-clockwise) turn o -> a -> b."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def random_points(n: int, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(batch, n, 2)`` points drawn uniformly from the unit square (float32)."""
    _checks.positive_int("n", n)
    _checks.positive_int("batch", batch)
    return torch.rand(batch, n, 2, generator=generator)


def convex_hull(points: torch.Tensor, start: str = "leftmost") -> list[int]:
    """Indices of the convex hull's vertices of ``points (n, 2)``, in canonical order.

    Andrew's monotone chain: sort the points by ``(x, y)``, then build the
    lower and the upper chain, popping the last point while it does not make a
    strict left turn (so collinear points are dropped). ``O(n log n)``.
    The order is counter-clockwise from the leftmost vertex, or from the
    lowest-index vertex with ``start="lowest_index"`` (see the module
    docstring); one or two distinct points give a hull of one or two, sorted
    by index.
    """
    _checks.one_of("start", start, STARTS)
    pts = _as_points("points", points)
    first: dict[tuple[float, float], int] = {}
    for i, p in enumerate(pts):
        first.setdefault(p, i)  # duplicates: keep the lowest index
    order = sorted(first)  # by x, then y
    if len(order) <= 2:
        return sorted(first.values())

    def chain(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = chain(order), chain(order[::-1])
    ring = [first[p] for p in lower[:-1] + upper[:-1]]  # counter-clockwise
    if len(ring) < 3:  # all collinear: the two extreme points
        return sorted(set(ring))
    if start == "leftmost":
        return ring  # the lower chain starts at the smallest (x, y)
    k = ring.index(min(ring))
    return ring[k:] + ring[:k]


def polygon_area(polygon: torch.Tensor) -> float:
    """Signed area of the polygon with vertices ``polygon (k, 2)`` in order (shoelace formula).

    Positive for counter-clockwise vertices, negative for clockwise; zero for
    fewer than three vertices.
    """
    pts = _as_points("polygon", polygon)
    if len(pts) < 3:
        return 0.0
    twice = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))
    return 0.5 * twice


def area_coverage(points: torch.Tensor, predicted: Sequence[int]) -> float:
    """Area of the predicted polygon over the area of the true hull, in ``[0, 1]``.

    ``predicted`` lists point indices in the order the model emitted them.
    The polygon's signed area is used (a clockwise or degenerate prediction
    covers nothing), clipped at zero; a prediction made only of true hull
    vertices in the right order scores 1, one that skips a vertex or cuts a
    corner through an interior point scores less.
    """
    _as_points("points", points)
    n = points.shape[0]
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n for i in predicted):
        raise ValueError(f"predicted must hold point indices in [0, {n}), got {list(predicted)}")
    hull_area = polygon_area(points[convex_hull(points)]) if n >= 3 else 0.0
    if hull_area <= 0.0:
        raise ValueError("points have a degenerate hull (zero area); area coverage is undefined")
    if len(predicted) < 3:
        return 0.0
    return max(0.0, polygon_area(points[list(predicted)])) / hull_area


def hull_dataset(
    n: int, size: int, generator: torch.Generator | None = None, start: str = "leftmost"
) -> tuple[torch.Tensor, list[list[int]]]:
    """``size`` random point sets of ``n`` points and their canonical hulls: ``((size, n, 2), hulls)``."""
    _checks.positive_int("n", n)
    _checks.positive_int("size", size)
    points = random_points(n, size, generator)
    return points, [convex_hull(p, start) for p in points]


def hull_scores(
    points: torch.Tensor, predicted: Sequence[Sequence[int]], hulls: Sequence[Sequence[int]]
) -> tuple[float, float]:
    """The paper's two hull metrics over a data set: ``(exact-sequence accuracy, mean area coverage)``.

    ``points (B, n, 2)``; ``predicted`` and ``hulls`` hold ``B`` index
    sequences each. A prediction is exact when it equals the canonical hull
    sequence; its coverage is :func:`area_coverage`.
    """
    _checks.tensor("points", points, ndim=3, kind="float")
    if not len(predicted) == len(hulls) == points.shape[0]:
        raise ValueError(
            f"predicted and hulls must hold one sequence per point set ({points.shape[0]}), "
            f"got {len(predicted)} and {len(hulls)}"
        )
    exact = sum(list(p) == list(h) for p, h in zip(predicted, hulls)) / len(hulls)
    coverage = sum(area_coverage(x, list(p)) for x, p in zip(points, predicted)) / len(hulls)
    return exact, coverage


def tour_length(points: torch.Tensor, tour: Sequence[int]) -> float:
    """Length of the closed tour visiting ``points (n, 2)`` in the order ``tour`` (back to the start)."""
    pts = _as_points("points", points)
    if sorted(tour) != list(range(len(pts))):
        raise ValueError(f"tour must be a permutation of range({len(pts)}), got {list(tour)}")
    seq = [pts[i] for i in tour]
    return sum(math.dist(a, b) for a, b in zip(seq, seq[1:] + seq[:1]))


def tsp_brute_force(points: torch.Tensor) -> tuple[list[int], float]:
    """The shortest closed tour of ``points (n, 2)`` by trying all ``(n-1)!`` tours; ``n <= 8``.

    Returns ``(tour, length)`` with the tour starting at point 0; of a tour
    and its reverse, the one whose second point has the lower index.
    """
    pts = _as_points("points", points)
    n = len(pts)
    if n > 8:
        raise ValueError(f"points must hold at most 8 points for brute force, got {n}")
    best, best_len = list(range(n)), math.inf
    for rest in itertools.permutations(range(1, n)):
        if n > 2 and rest[0] > rest[-1]:
            continue  # the reverse of a tour already tried
        tour = [0, *rest]
        length = tour_length(points, tour)
        if length < best_len - 1e-12:
            best, best_len = tour, length
    return best, best_len
