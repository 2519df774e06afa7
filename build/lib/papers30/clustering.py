"""Clustering from a distance matrix, and agreement between two clusterings.

Chapter 25 (Kolmogorov complexity) clusters objects by their normalized
compression distance and scores the result against the known grouping.

* :func:`agglomerative`: bottom-up clustering with average (UPGMA), single or
  complete linkage, cut at ``k`` clusters.
* :func:`adjusted_rand_index`: agreement of two labelings, 1 for identical
  partitions and 0 in expectation for a random one (Hubert and Arabie, 1985).
* :func:`shuffled_distances`: the same distances given to random pairs, the
  null control for a clustering.

Shapes: ``N`` objects; a distance matrix is ``(N, N)``, symmetric, with a zero
diagonal; labels are ``(N,)`` integers.
"""

from __future__ import annotations

import math

import torch

from papers30 import _checks

LINKAGES = ("average", "single", "complete")


def _check_distance(distance: object) -> torch.Tensor:
    _checks.tensor("distance", distance, ndim=2, kind="float")
    n = distance.shape[0]
    if distance.shape != (n, n) or n < 2:
        raise ValueError(f"distance must be a square (N, N) matrix with N >= 2, got shape {tuple(distance.shape)}")
    if not torch.isfinite(distance).all():
        raise ValueError("distance must be finite")
    if not torch.allclose(distance, distance.T):
        raise ValueError("distance must be symmetric")
    return distance


def agglomerative(distance: torch.Tensor, k: int, linkage: str = "average") -> torch.Tensor:
    """Merge the two closest clusters until ``k`` remain; return labels ``(N,)`` in ``0..k-1``.

    The distance between clusters is the mean (``"average"``), smallest
    (``"single"``) or largest (``"complete"``) distance between their members.
    Ties merge the pair that comes first in row-major order. Labels are
    numbered by each cluster's first member.
    """
    d = _check_distance(distance).detach().to(torch.float64).cpu()
    n = d.shape[0]
    _checks.positive_int("k", k)
    if k > n:
        raise ValueError(f"k must be at most the number of objects {n}, got {k}")
    _checks.one_of("linkage", linkage, LINKAGES)
    clusters = [[i] for i in range(n)]
    while len(clusters) > k:
        best, pair = math.inf, (0, 1)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                block = d[clusters[a]][:, clusters[b]]
                link = {"average": block.mean, "single": block.min, "complete": block.max}[linkage]().item()
                if link < best:
                    best, pair = link, (a, b)
        a, b = pair
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
    labels = torch.empty(n, dtype=torch.long)
    for c, members in enumerate(sorted(clusters)):
        labels[members] = c
    return labels


def adjusted_rand_index(labels: torch.Tensor, truth: torch.Tensor) -> float:
    """Adjusted Rand index of two labelings ``(N,)``, eq. (kc-ari).

    Counts the pairs of objects put together by both labelings, and rescales
    so that identical partitions score 1 and the expectation under random
    relabeling with the same cluster sizes is 0.
    """
    _checks.tensor("labels", labels, ndim=1, kind="int")
    _checks.tensor("truth", truth, ndim=1, kind="int")
    _checks.size_matches("truth", truth.shape[0], labels.shape[0], "length")
    n = labels.shape[0]
    if n < 2:
        raise ValueError("labels must hold at least 2 objects")
    _, a = torch.unique(labels, return_inverse=True)
    _, b = torch.unique(truth, return_inverse=True)
    table = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    table.index_put_((a, b), torch.ones(n, dtype=torch.float64), accumulate=True)

    def pairs(x: torch.Tensor) -> float:
        return float((x * (x - 1) / 2).sum())

    index = pairs(table)
    rows, cols = pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2)
    top = (rows + cols) / 2
    if top == expected:  # both labelings trivial (one cluster, or all singletons)
        return 1.0 if index == top else 0.0
    return (index - expected) / (top - expected)


def shuffled_distances(distance: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The same multiset of pairwise distances, assigned to random pairs; ``(N, N)``, symmetric.

    Clustering this matrix is the null control: whatever it recovers of a
    grouping comes from chance, not from the distances.
    """
    d = _check_distance(distance)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    n = d.shape[0]
    i, j = torch.triu_indices(n, n, offset=1)
    values = d[i, j]
    perm = torch.randperm(values.numel(), generator=generator)
    out = torch.zeros_like(d)
    out[i, j] = values[perm]
    return out + out.T
