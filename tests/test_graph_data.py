"""papers30.data.graphs: generated molecules and their labels against scipy.sparse.csgraph and a per-pair BFS."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import shortest_path

from papers30.data.graphs import (
    hop_distances,
    molecule_task,
    pairs_within_hops,
    random_molecules,
)


def bfs_count(adj: np.ndarray, types: list[int], hops: int, source: int, target: int) -> int:
    """Independent label: one breadth-first search per source atom, with a queue; ``adj`` holds the usable bonds."""
    n, total = len(types), 0
    for u in range(n):
        if types[u] != source:
            continue
        depth = {u: 0}
        queue = deque([u])
        while queue:
            x = queue.popleft()
            for y in np.flatnonzero(adj[x]):
                if int(y) not in depth:
                    depth[int(y)] = depth[x] + 1
                    queue.append(int(y))
        total += sum(1 for v, d in depth.items() if 1 <= d <= hops and types[v] == target)
    return total


@pytest.mark.parametrize("max_nodes,ring_bonds", [(1, 0), (2, 0), (6, 0), (10, 2)])
def test_hop_distances_match_scipy_shortest_path(max_nodes, ring_bonds, gen):
    g = random_molecules(6, gen, min_nodes=1, max_nodes=max_nodes, ring_bonds=ring_bonds)
    got = hop_distances(g.adjacency)
    for b in range(6):
        want = shortest_path(g.adjacency[b].numpy().astype(float), unweighted=True, directed=False)
        np.testing.assert_array_equal(got[b].numpy(), want)


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("source,target", [(0, 1), (1, 1), (2, 0)])
def test_pairs_within_hops_match_bfs(hops, source, target, gen):
    g = random_molecules(8, gen, min_nodes=3, max_nodes=9, ring_bonds=2)
    got = pairs_within_hops(g, hops, source, target)
    for b in range(8):
        n = int(g.mask[b].sum())
        types = g.nodes[b, :n].argmax(-1).tolist()
        adj = g.adjacency[b, :n, :n].numpy()
        assert got[b].item() == bfs_count(adj, types, hops, source, target)


@pytest.mark.parametrize("bonds", [[0], [1, 2], [2, 0, 1]])
@pytest.mark.parametrize("hops", [1, 3])
def test_pairs_within_hops_along_some_bond_types_match_bfs(hops, bonds, gen):
    g = random_molecules(8, gen, min_nodes=3, max_nodes=10, ring_bonds=2)
    got = pairs_within_hops(g, hops, 0, 1, bonds=bonds)
    for b in range(8):
        n = int(g.mask[b].sum())
        types = g.nodes[b, :n].argmax(-1).tolist()
        kinds = g.edges[b, :n, :n].argmax(-1).numpy()
        usable = g.adjacency[b, :n, :n].numpy() & np.isin(kinds, bonds)  # bonds of the listed types only
        assert got[b].item() == bfs_count(usable, types, hops, 0, 1)


def test_molecule_task_with_bond_types_counts_a_subset(gen):
    graphs, y = molecule_task(300, 3, gen, bonds=[1, 2])
    everything = pairs_within_hops(graphs, 3)
    assert bool((y <= everything).all())
    assert (y < everything).float().mean() > 0.3  # the bond types change many labels
    again = pairs_within_hops(graphs, 3, bonds=[2, 1])
    assert torch.equal(y, again)


def test_labels_need_more_than_one_hop(gen):
    graphs, y2 = molecule_task(200, 2, gen)
    y1 = pairs_within_hops(graphs, 1)
    assert bool((y2 >= y1).all())
    assert (y2 > y1).float().mean() > 0.5  # most graphs have pairs exactly two bonds apart


def test_random_molecules_are_valid(gen):
    g = random_molecules(50, gen, min_nodes=4, max_nodes=11, ring_bonds=1, max_degree=4)
    n = g.mask.sum(1)
    assert int(n.min()) >= 4 and int(n.max()) <= 11
    assert torch.equal(g.adjacency, g.adjacency.transpose(1, 2))
    assert not bool(g.adjacency.diagonal(dim1=1, dim2=2).any())
    assert int(g.adjacency.sum(-1).max()) <= 4
    real = g.mask[:, :, None] & g.mask[:, None, :]
    assert not bool((g.adjacency & ~real).any())
    # connected: every real node is reachable from node 0
    assert bool(torch.isfinite(hop_distances(g.adjacency)[:, 0][g.mask]).all())
    # bonds per graph: a tree (n - 1) plus at most one ring bond
    bonds = g.adjacency.sum((1, 2)) // 2
    assert bool(((bonds >= n - 1) & (bonds <= n)).all())
    # one-hot features exactly at real nodes and bonds
    assert torch.equal(g.nodes.sum(-1), g.mask.float())
    assert torch.equal(g.edges.sum(-1), g.adjacency.float())
    assert torch.equal(g.edges, g.edges.transpose(1, 2))


def test_random_molecules_are_seeded():
    a = random_molecules(5, torch.Generator().manual_seed(3))
    b = random_molecules(5, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda g: random_molecules(0, g), ValueError, "count"),
        (lambda g: random_molecules(2, 3), TypeError, "generator"),
        (lambda g: random_molecules(2, g, min_nodes=5, max_nodes=4), ValueError, "max_nodes"),
        (lambda g: random_molecules(2, g, ring_bonds=-1), ValueError, "ring_bonds"),
        (lambda g: random_molecules(2, g, max_degree=1), ValueError, "max_degree"),
        (lambda g: pairs_within_hops(random_molecules(2, g), 0), ValueError, "hops"),
        (lambda g: pairs_within_hops(random_molecules(2, g), 1, source=3), ValueError, "source"),
        (lambda g: pairs_within_hops(random_molecules(2, g), 1, bonds=[3]), ValueError, "bonds"),
        (lambda g: pairs_within_hops(random_molecules(2, g), 1, bonds=[]), ValueError, "bonds"),
        (lambda g: molecule_task(2, 1, g, bonds="1"), ValueError, "bonds"),
        (lambda g: hop_distances(torch.zeros(1, 2, 2)), TypeError, "adjacency"),
    ],
)
def test_graph_data_rejects_bad_inputs(call, exc, name, gen):
    with pytest.raises(exc, match=name):
        call(gen)
