"""Clustering and partition agreement, against SciPy's hierarchy and brute-force pair counting."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from papers30.clustering import adjusted_rand_index, agglomerative, shuffled_distances


def random_distance(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return torch.cdist(x, x)


def same_partition(a, b) -> bool:
    pairs_a = {(i, j) for i in range(len(a)) for j in range(len(a)) if a[i] == a[j]}
    pairs_b = {(i, j) for i in range(len(b)) for j in range(len(b)) if b[i] == b[j]}
    return pairs_a == pairs_b


@pytest.mark.parametrize("method", ["average", "single", "complete"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_agglomerative_matches_scipy_hierarchy(method, seed, k):
    d = random_distance(12, seed)
    ours = agglomerative(d, k, method).tolist()
    ref = fcluster(linkage(squareform(d.numpy(), checks=False), method=method), k, criterion="maxclust")
    assert same_partition(ours, ref.tolist())
    assert sorted(set(ours)) == list(range(k))


def test_agglomerative_numbers_clusters_by_first_member():
    d = torch.tensor([[0.0, 9, 1], [9, 0, 9], [1, 9, 0]])
    assert agglomerative(d, 2).tolist() == [0, 1, 0]


def brute_force_ari(a: list[int], b: list[int]) -> float:
    """(index - E[index]) / (max - E[index]), the expectation over every permutation of ``b``."""
    n = len(a)

    def index(x, y):
        return sum(1 for i, j in itertools.combinations(range(n), 2) if x[i] == x[j] and y[i] == y[j])

    def together(x):
        return sum(1 for i, j in itertools.combinations(range(n), 2) if x[i] == x[j])

    expected = np.mean([index(a, [b[p] for p in perm]) for perm in itertools.permutations(range(n))])
    top = (together(a) + together(b)) / 2
    return (index(a, b) - expected) / (top - expected)


@pytest.mark.parametrize("seed", range(6))
def test_adjusted_rand_index_matches_brute_force_expectation(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, size=7).tolist()
    b = rng.integers(0, 3, size=7).tolist()
    if len(set(a)) == 1 or len(set(b)) == 1:
        b = [0, 1, 2, 0, 1, 2, 0]
    got = adjusted_rand_index(torch.tensor(a), torch.tensor(b))
    assert got == pytest.approx(brute_force_ari(a, b), abs=1e-12)


def test_adjusted_rand_index_is_one_for_the_same_partition_under_renaming():
    a = torch.tensor([0, 0, 1, 1, 2, 2])
    assert adjusted_rand_index(a, torch.tensor([5, 5, 3, 3, 4, 4])) == pytest.approx(1.0)
    assert adjusted_rand_index(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)) == 1.0


def test_shuffled_distances_keeps_the_multiset_and_symmetry():
    d = random_distance(9, 0)
    s = shuffled_distances(d, torch.Generator().manual_seed(1))
    i, j = torch.triu_indices(9, 9, offset=1)
    assert torch.equal(torch.sort(s[i, j]).values, torch.sort(d[i, j]).values)
    assert torch.equal(s, s.T) and torch.all(s.diagonal() == 0)
    assert not torch.equal(s, d)


def test_clustering_functions_reject_bad_input():
    d = random_distance(5, 0)
    with pytest.raises(ValueError, match="distance"):
        agglomerative(d[:, :4], 2)
    with pytest.raises(ValueError, match="symmetric"):
        agglomerative(d + torch.triu(torch.ones(5, 5, dtype=d.dtype), 1), 2)
    with pytest.raises(ValueError, match="k"):
        agglomerative(d, 6)
    with pytest.raises(ValueError, match="linkage"):
        agglomerative(d, 2, "ward")
    with pytest.raises(TypeError, match="distance"):
        agglomerative(d.long(), 2)
    with pytest.raises(ValueError, match="truth"):
        adjusted_rand_index(torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
    with pytest.raises(TypeError, match="labels"):
        adjusted_rand_index(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="generator"):
        shuffled_distances(d, "seed")
    assert math.isfinite(adjusted_rand_index(torch.tensor([0, 1, 0]), torch.tensor([1, 1, 0])))
