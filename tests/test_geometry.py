"""papers30.data.geometry against scipy's Qhull, hand examples and brute force."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial import ConvexHull

from papers30.data.geometry import (
    area_coverage,
    convex_hull,
    hull_dataset,
    hull_scores,
    polygon_area,
    random_points,
    tour_length,
    tsp_brute_force,
)

DT = torch.float64


def scipy_hull(points: torch.Tensor) -> set[int]:
    return set(ConvexHull(points.numpy()).vertices.tolist())


@pytest.mark.parametrize("n", [3, 4, 5, 10, 50, 200])
def test_hull_matches_scipy_on_random_points(n, gen):
    for _ in range(5):
        pts = torch.rand(n, 2, generator=gen, dtype=DT)
        assert set(convex_hull(pts)) == scipy_hull(pts)


def test_hull_matches_scipy_on_degenerate_grid_with_collinear_and_interior_points():
    # a 4 x 4 integer grid: every edge holds collinear points, only the 4 corners are vertices
    pts = torch.tensor([[x, y] for x in range(4) for y in range(4)], dtype=DT)
    hull = convex_hull(pts)
    assert set(hull) == scipy_hull(pts) == {0, 3, 12, 15}


def test_hull_matches_scipy_with_duplicate_points_by_location():
    pts = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1], [1, 0], [0.5, 0.5], [0, 0]], dtype=DT)
    ours = {tuple(pts[i].tolist()) for i in convex_hull(pts)}
    theirs = {tuple(pts[i].tolist()) for i in scipy_hull(pts)}
    assert ours == theirs
    assert convex_hull(pts, start="lowest_index") == [0, 1, 2, 3]  # lowest index of each duplicate, counter-clockwise


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=3, max_size=20))
def test_hull_matches_scipy_on_integer_points_property(coords):
    pts = torch.tensor(coords, dtype=DT)
    unique = torch.unique(pts, dim=0)
    if polygon_area(unique[convex_hull(unique)]) == 0.0:
        return  # all collinear: Qhull refuses; covered by the collinear test below
    ours = {tuple(pts[i].tolist()) for i in convex_hull(pts)}
    theirs = {tuple(pts[i].tolist()) for i in scipy_hull(pts)}
    assert ours == theirs


def test_hull_order_is_counter_clockwise_from_the_start_by_hand():
    # square given clockwise starting top-right, plus an interior point at index 0
    pts = torch.tensor([[0.5, 0.5], [1, 1], [1, 0], [0, 0], [0, 1]], dtype=DT)
    assert convex_hull(pts) == [3, 2, 1, 4]  # from the leftmost-lowest corner (0, 0)
    assert convex_hull(pts, start="lowest_index") == [1, 4, 3, 2]


@pytest.mark.parametrize("n", [3, 7, 30])
def test_hull_is_counter_clockwise_and_starts_where_defined(n, gen):
    pts = torch.rand(n, 2, generator=gen, dtype=DT)
    hull = convex_hull(pts)
    assert hull[0] == min(hull, key=lambda i: tuple(pts[i].tolist()))
    by_index = convex_hull(pts, start="lowest_index")
    assert by_index[0] == min(hull)
    k = hull.index(by_index[0])
    assert by_index == hull[k:] + hull[:k]  # the same cycle, rotated
    assert polygon_area(pts[hull]) > 0
    torch.testing.assert_close(
        torch.tensor(polygon_area(pts[hull]), dtype=DT), torch.tensor(ConvexHull(pts.numpy()).volume, dtype=DT)
    )


def test_hull_of_collinear_and_tiny_inputs():
    line = torch.tensor([[2, 2], [0, 0], [1, 1], [3, 3]], dtype=DT)
    assert convex_hull(line) == [1, 3]
    assert convex_hull(torch.tensor([[1.0, 2.0]])) == [0]
    assert convex_hull(torch.tensor([[1.0, 2.0], [1.0, 2.0]])) == [0]


def test_polygon_area_matches_hand_shoelace_example():
    # triangle (0,0), (4,0), (0,3): area 6, positive counter-clockwise, negative clockwise
    tri = torch.tensor([[0, 0], [4, 0], [0, 3]], dtype=DT)
    assert polygon_area(tri) == 6.0
    assert polygon_area(tri.flip(0)) == -6.0
    # L-shaped hexagon: 2x2 square minus a 1x1 corner = 3
    ell = torch.tensor([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], dtype=DT)
    assert polygon_area(ell) == 3.0
    assert polygon_area(tri[:2]) == 0.0


def test_area_coverage_by_hand():
    pts = torch.tensor([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1]], dtype=DT)  # hull area 4
    assert area_coverage(pts, [0, 1, 2, 3]) == 1.0
    assert area_coverage(pts, [1, 2, 3, 0]) == 1.0  # a rotation of the cycle covers the same area
    assert area_coverage(pts, [0, 1, 2]) == 0.5  # one vertex skipped
    assert area_coverage(pts, [0, 1, 4, 3]) == 0.5  # cut through the centre: square minus two triangles
    assert area_coverage(pts, [3, 2, 1, 0]) == 0.0  # clockwise
    assert area_coverage(pts, [0, 1]) == 0.0


def test_hull_dataset_is_seeded_and_consistent():
    a, ha = hull_dataset(6, 4, torch.Generator().manual_seed(3))
    b, hb = hull_dataset(6, 4, torch.Generator().manual_seed(3))
    assert a.shape == (4, 6, 2) and torch.equal(a, b) and ha == hb
    assert all(h == convex_hull(p) for p, h in zip(a, ha))
    assert random_points(5, 2).shape == (2, 5, 2)


def test_hull_scores_by_hand():
    pts = torch.tensor([[[0, 0], [2, 0], [2, 2], [0, 2], [1, 1]]] * 2, dtype=DT)
    hulls = [[0, 1, 2, 3]] * 2
    exact, coverage = hull_scores(pts, [[0, 1, 2, 3], [0, 1, 2]], hulls)
    assert exact == 0.5 and coverage == 0.75
    with pytest.raises(ValueError, match="predicted"):
        hull_scores(pts, [[0, 1, 2]], hulls)


def test_convex_hull_rejects_unknown_start():
    with pytest.raises(ValueError, match="start"):
        convex_hull(torch.rand(4, 2), start="top")


def test_tsp_brute_force_matches_hand_checked_instance():
    # corners of a 2 x 1 rectangle, listed so that the order 0,1,2,3 crosses itself
    pts = torch.tensor([[0, 0], [2, 1], [2, 0], [0, 1]], dtype=DT)
    tour, length = tsp_brute_force(pts)
    assert tour == [0, 2, 1, 3]
    assert length == pytest.approx(6.0)
    assert tour_length(pts, [0, 1, 2, 3]) == pytest.approx(2 + 2 * math.sqrt(5))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_tsp_brute_force_is_no_longer_than_any_sampled_tour(n, gen):
    pts = torch.rand(n, 2, generator=gen, dtype=DT)
    tour, length = tsp_brute_force(pts)
    assert sorted(tour) == list(range(n)) and tour[0] == 0
    assert length == pytest.approx(tour_length(pts, tour))
    for _ in range(20):
        assert length <= tour_length(pts, torch.randperm(n, generator=gen).tolist()) + 1e-12


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "points,exc",
    [
        ([[0.0, 0.0]], TypeError),
        (torch.zeros(3, 2, dtype=torch.long), TypeError),
        (torch.zeros(3, 3), ValueError),
        (torch.zeros(0, 2), ValueError),
        (torch.tensor([[0.0, float("nan")]]), ValueError),
    ],
)
def test_convex_hull_rejects_bad_points(points, exc):
    with pytest.raises(exc, match="points"):
        convex_hull(points)


def test_polygon_area_rejects_bad_polygon():
    with pytest.raises(ValueError, match="polygon"):
        polygon_area(torch.zeros(4))


def test_area_coverage_rejects_bad_predictions_and_flat_hulls():
    pts = torch.tensor([[0, 0], [1, 0], [0, 1]], dtype=DT)
    with pytest.raises(ValueError, match="predicted"):
        area_coverage(pts, [0, 3])
    with pytest.raises(ValueError, match="degenerate"):
        area_coverage(torch.tensor([[0, 0], [1, 1], [2, 2]], dtype=DT), [0, 1, 2])


def test_tsp_rejects_bad_input():
    with pytest.raises(ValueError, match="points"):
        tsp_brute_force(torch.rand(9, 2))
    with pytest.raises(ValueError, match="tour"):
        tour_length(torch.rand(3, 2), [0, 1, 1])


@pytest.mark.parametrize("arg", ["n", "batch"])
def test_random_points_rejects_bad_sizes(arg):
    sizes = dict(n=3, batch=2) | {arg: 0}
    with pytest.raises(ValueError, match=arg):
        random_points(**sizes)
