"""Seeded random "molecules" with a target that needs several hops of message passing (chapter 12).

:func:`random_molecules` draws small graphs that look like molecules: typed
atoms (node types), typed bonds (edge types), a random tree in which no
atom has more than ``max_degree`` bonds, plus a few ring-closing bonds.
:func:`pairs_within_hops` labels each graph with a count that a message
passing network can only compute after enough steps: the number of pairs
(atom of type ``source``, atom of type ``target``) at most ``hops`` bonds
apart, optionally along paths that use only some bond types (``bonds``), so
that the label depends on the bond types as well as on the bonds.
:func:`molecule_task` puts the two together.

Shapes follow :mod:`papers30.graphs`: ``B`` graphs, ``N`` nodes (padded),
``F`` node types, ``E`` bond types.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from papers30 import _checks
from papers30.graphs import Graphs


def random_molecules(
    count: int,
    generator: torch.Generator,
    *,
    min_nodes: int = 6,
    max_nodes: int = 12,
    node_types: int = 3,
    bond_types: int = 3,
    ring_bonds: int = 1,
    max_degree: int = 4,
    marked: bool = False,
) -> Graphs:
    """``count`` random molecule-like graphs, padded to ``max_nodes`` nodes.

    Each graph has ``n`` nodes, ``n`` uniform in ``[min_nodes, max_nodes]``.
    Node ``i >= 1`` bonds to a uniformly chosen earlier node that still has
    fewer than ``max_degree`` bonds (a random tree); then up to
    ``ring_bonds`` extra bonds join random non-bonded pairs with free
    valence, closing rings. Node and bond types are uniform; with
    ``marked``, exactly one node per graph (at a random position) has type 0
    and the others are uniform over types ``1 .. F-1``.

    Returns :class:`papers30.graphs.Graphs` with one-hot node types
    ``nodes (B, N, F)``, one-hot bond types ``edges (B, N, N, E)`` (zero at
    non-bonds), a symmetric ``adjacency`` and the node ``mask``.
    """
    _checks.positive_int("count", count)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    for name, value in [("min_nodes", min_nodes), ("max_nodes", max_nodes), ("node_types", node_types),
                        ("bond_types", bond_types), ("max_degree", max_degree)]:
        _checks.positive_int(name, value)
    if max_nodes < min_nodes:
        raise ValueError(f"max_nodes must be >= min_nodes, got {max_nodes} < {min_nodes}")
    if max_degree < 2 and max_nodes > 2:
        raise ValueError(f"max_degree must be >= 2 to build trees of {max_nodes} nodes, got {max_degree}")
    if not isinstance(marked, bool):
        raise TypeError(f"marked must be a bool, got {type(marked).__name__}")
    if marked and node_types < 2:
        raise ValueError(f"node_types must be >= 2 with marked=True, got {node_types}")
    if isinstance(ring_bonds, bool) or not isinstance(ring_bonds, int) or ring_bonds < 0:
        raise ValueError(f"ring_bonds must be an int >= 0, got {ring_bonds!r}")

    def randint(high: int) -> int:
        return int(torch.randint(high, (1,), generator=generator))

    B, N = count, max_nodes
    if marked:
        types = 1 + torch.randint(node_types - 1, (B, N), generator=generator)
    else:
        types = torch.randint(node_types, (B, N), generator=generator)
    bonds = torch.randint(bond_types, (B, N, N), generator=generator)
    bonds = torch.triu(bonds, 1) + torch.triu(bonds, 1).transpose(1, 2)  # symmetric bond types
    adjacency = torch.zeros(B, N, N, dtype=torch.bool)
    mask = torch.zeros(B, N, dtype=torch.bool)
    for b in range(B):
        n = min_nodes + randint(max_nodes - min_nodes + 1)
        mask[b, :n] = True
        if marked:
            types[b, randint(n)] = 0
        degree = [0] * n
        for i in range(1, n):
            free = [j for j in range(i) if degree[j] < max_degree]
            j = free[randint(len(free))]
            adjacency[b, i, j] = adjacency[b, j, i] = True
            degree[i] += 1
            degree[j] += 1
        for _ in range(ring_bonds):
            pairs = [(i, j) for i in range(n) for j in range(i + 1, n)
                     if not adjacency[b, i, j] and degree[i] < max_degree and degree[j] < max_degree]
            if pairs:
                i, j = pairs[randint(len(pairs))]
                adjacency[b, i, j] = adjacency[b, j, i] = True
                degree[i] += 1
                degree[j] += 1
    nodes = torch.nn.functional.one_hot(types, node_types).float() * mask[..., None]
    edges = torch.nn.functional.one_hot(bonds, bond_types).float() * adjacency[..., None]
    return Graphs(nodes, edges, adjacency, mask)


def hop_distances(adjacency: torch.Tensor) -> torch.Tensor:
    """Shortest-path lengths in bonds, ``(B, N, N)`` float (``inf`` where unreachable, 0 on the diagonal).

    ``adjacency (B, N, N)`` bool. Breadth-first search for all sources at
    once: the nodes first reached after ``k`` matrix products are at distance ``k``.
    """
    _checks.tensor("adjacency", adjacency, ndim=3, kind="bool")
    B, N, _ = adjacency.shape
    eye = torch.eye(N, dtype=torch.bool, device=adjacency.device).expand(B, N, N)
    dist = torch.full((B, N, N), float("inf"), device=adjacency.device)
    dist[eye] = 0.0
    reached, step_matrix = eye.clone(), adjacency.float()
    for k in range(1, N):
        new = ((reached.float() @ step_matrix) > 0) & ~reached
        if not bool(new.any()):
            break
        dist[new] = float(k)
        reached |= new
    return dist


def pairs_within_hops(
    graphs: Graphs, hops: int, source: int = 0, target: int = 1, bonds: Sequence[int] | None = None
) -> torch.Tensor:
    """Per graph, the number of ordered pairs ``(u, v)``, ``u`` of type ``source`` and ``v`` of type ``target``,
    with ``1 <= d(u, v) <= hops`` bonds. Returns ``(B,)`` float.

    Node types are read from the one-hot ``graphs.nodes``, bond types from
    the one-hot ``graphs.edges``. ``bonds``: the bond types a path may use
    (``None``: all of them); ``d`` is then the shortest-path length in the
    graph of those bonds only. With ``source != target`` each unordered pair
    is counted once.
    """
    if not isinstance(graphs, Graphs):
        raise TypeError(f"graphs must be a Graphs batch, got {type(graphs).__name__}")
    _checks.positive_int("hops", hops)
    F, E = graphs.nodes.shape[-1], graphs.edges.shape[-1]
    for name, value in [("source", source), ("target", target)]:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < F:
            raise ValueError(f"{name} must be a node type in 0..{F - 1}, got {value!r}")
    adjacency = graphs.adjacency
    if bonds is not None:
        if isinstance(bonds, (str, bytes)) or not isinstance(bonds, Sequence) or not bonds or any(
                isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < E for b in bonds):
            raise ValueError(f"bonds must be a non-empty sequence of bond types in 0..{E - 1}, got {bonds!r}")
        adjacency = adjacency & (graphs.edges[..., list(bonds)].sum(-1) > 0)
    dist = hop_distances(adjacency)
    near = (dist >= 1) & (dist <= hops)
    is_src = (graphs.nodes[..., source] > 0) & graphs.mask
    is_tgt = (graphs.nodes[..., target] > 0) & graphs.mask
    return (near & is_src[:, :, None] & is_tgt[:, None, :]).sum(dim=(1, 2)).float()


def molecule_task(
    count: int, hops: int, generator: torch.Generator, *, bonds: Sequence[int] | None = None, **kwargs
) -> tuple[Graphs, torch.Tensor]:
    """``(graphs, y)``: marked molecules and, per graph, the number of type-1 atoms within ``hops`` bonds of
    the marked atom, along paths of the bond types ``bonds`` only (``None``: any bond).

    :func:`random_molecules` with ``marked=True`` (other ``kwargs`` passed
    on), labelled by :func:`pairs_within_hops` with ``source=0, target=1``;
    ``y (B,)`` float.
    """
    graphs = random_molecules(count, generator, marked=True, **kwargs)
    return graphs, pairs_within_hops(graphs, hops, source=0, target=1, bonds=bonds)
