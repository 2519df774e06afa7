"""Message passing neural networks on batches of small graphs (chapter 12).

Chapter 12 (Gilmer et al., *Neural Message Passing for Quantum Chemistry*)
writes a graph network as three learned functions run on a graph with node
features ``x_v`` and edge features ``e_vw``:

* a **message** function: node ``v`` receives
  ``m_v = sum_{w in N(v)} M(h_v, h_w, e_vw)``, eq. (mpnn-msg); here ``M`` is
  the paper's *edge network*, ``M = A(e_vw) h_w`` with a matrix ``A(e_vw)``
  computed from the edge feature by an MLP (:class:`EdgeNetwork`,
  :func:`message_passing`);
* an **update** function: ``h_v <- GRU(m_v, h_v)``, eq. (mpnn-upd), with the
  GRU cell of :mod:`papers30.recurrent`, its weights shared over the ``T``
  steps;
* a **readout**: set2set over the final node states, eq. (mpnn-read)
  (:data:`papers30.sets.Set2Set`, chapter 8's process block), so the graph's
  output does not depend on how its nodes are numbered.

A batch of graphs of different sizes is padded to ``N`` nodes and held in
:class:`Graphs`: node features ``(B, N, F)``, edge features ``(B, N, N, E)``,
a boolean adjacency ``(B, N, N)`` and a node mask ``(B, N)`` (True at real
nodes). Padding nodes send no messages, receive none and are not read out.

Shapes: ``B`` graphs, ``N`` nodes (padded), ``F`` node features, ``E`` edge
features, ``D`` node state width, ``T`` message-passing steps, ``P`` set2set
steps.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from papers30 import _checks
from papers30.recurrent import GRUCell
from papers30.sets import Set2Set


class Graphs(NamedTuple):
    """A padded batch of graphs; unpack it into a model: ``model(*graphs)``.

    Fields: ``nodes (B, N, F)`` float, ``edges (B, N, N, E)`` float,
    ``adjacency (B, N, N)`` bool (symmetric for undirected graphs, False on
    the diagonal and at padding nodes), ``mask (B, N)`` bool.
    """

    nodes: torch.Tensor
    edges: torch.Tensor
    adjacency: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> Graphs:
        """The same batch on ``device``."""
        return Graphs(*(t.to(device) for t in self))

    def select(self, index: torch.Tensor | slice) -> Graphs:
        """The graphs at ``index`` (a slice or a 1-D index tensor) of the batch."""
        return Graphs(*(t[index] for t in self))

    def permute(self, perm: torch.Tensor) -> Graphs:
        """Relabel the nodes: new node ``i`` of graph ``b`` is old node ``perm[b, i]``.

        ``perm (B, N)`` long, one permutation of ``0 .. N-1`` per graph.
        """
        _checks.tensor("perm", perm, ndim=2, kind="int")
        if tuple(perm.shape) != tuple(self.mask.shape):
            raise ValueError(f"perm must have shape {tuple(self.mask.shape)}, got {tuple(perm.shape)}")
        b = torch.arange(perm.shape[0], device=perm.device)[:, None]
        rows, cols = perm[:, :, None], perm[:, None, :]
        bb = b[:, :, None]
        return Graphs(self.nodes[b, perm], self.edges[bb, rows, cols], self.adjacency[bb, rows, cols], self.mask[b, perm])


def check_graphs(
    nodes: object, edges: object, adjacency: object, mask: object | None, node_features: int, edge_features: int
) -> None:
    """Validate a padded batch (see :class:`Graphs`) against the model's feature sizes."""
    _checks.tensor("nodes", nodes, ndim=3, kind="float")
    _checks.size_matches("nodes", nodes.shape[-1], node_features, "feature size")
    B, N, _ = nodes.shape
    if N == 0:
        raise ValueError("nodes must hold at least one node per graph, got N = 0")
    _checks.tensor("edges", edges, ndim=4, kind="float")
    if tuple(edges.shape[:3]) != (B, N, N):
        raise ValueError(f"edges must have shape {(B, N, N, edge_features)}, got {tuple(edges.shape)}")
    _checks.size_matches("edges", edges.shape[-1], edge_features, "feature size")
    _checks.tensor("adjacency", adjacency, ndim=3, kind="bool")
    if tuple(adjacency.shape) != (B, N, N):
        raise ValueError(f"adjacency must have shape {(B, N, N)}, got {tuple(adjacency.shape)}")
    if mask is not None:
        _checks.tensor("mask", mask, ndim=2, kind="bool")
        if tuple(mask.shape) != (B, N):
            raise ValueError(f"mask must have shape {(B, N)}, got {tuple(mask.shape)}")
        if not bool(mask.any(dim=1).all()):
            raise ValueError("mask must keep at least one node of every graph")


def message_passing(h: torch.Tensor, A: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """The edge-network messages ``m_v = sum_{w in N(v)} A(e_vw) h_w``, eq. (mpnn-msg).

    ``h (B, N, D)`` node states; ``edge_index (3, M)`` long, one column
    ``(b, v, w)`` per directed edge ``w -> v`` of graph ``b`` (as returned by
    ``adjacency.nonzero().T``); ``A (M, D, D)`` the matrix of each edge.
    Returns ``m (B, N, D)``, zero at nodes that receive no edge.
    """
    _checks.tensor("h", h, ndim=3, kind="float")
    _checks.tensor("A", A, ndim=3, kind="float")
    _checks.tensor("edge_index", edge_index, ndim=2, kind="int")
    B, N, D = h.shape
    M = edge_index.shape[1]
    if edge_index.shape[0] != 3:
        raise ValueError(f"edge_index must have shape (3, M), got {tuple(edge_index.shape)}")
    if tuple(A.shape) != (M, D, D):
        raise ValueError(f"A must have shape {(M, D, D)}, got {tuple(A.shape)}")
    b, v, w = edge_index
    # A(e_vw) h_w for every edge, (M, D); a broadcast product and a sum is much faster
    # on a CPU than a batched matmul of M tiny matrices.
    sent = (A * h[b, w].unsqueeze(1)).sum(-1)
    m = h.new_zeros(B * N, D)
    m.index_put_((b * N + v,), sent, accumulate=True)  # sum over the senders w of each v
    return m.view(B, N, D)


class EdgeNetwork(nn.Module):
    """The edge network: an MLP maps an edge feature ``e (E,)`` to a matrix ``A(e) (D, D)``.

    ``A(e) = reshape(W_2 relu(W_1 e + b_1) + b_2, (D, D))``, eq. (mpnn-edge).
    ``forward(edges (..., E)) -> A (..., D, D)``, e.g. ``(M, E) -> (M, D, D)``
    for the ``M`` edges of a batch.

    Args:
        edge_features: ``E``; width: ``D``; hidden: the MLP's hidden width.
    """

    def __init__(self, edge_features: int, width: int, hidden: int = 32) -> None:
        super().__init__()
        _checks.positive_int("edge_features", edge_features)
        _checks.positive_int("width", width)
        _checks.positive_int("hidden", hidden)
        self.edge_features, self.width = edge_features, width
        self.net = nn.Sequential(nn.Linear(edge_features, hidden), nn.ReLU(), nn.Linear(hidden, width * width))
        # Start near A = 0 with a small spread, so T steps of messages do not blow up the states.
        nn.init.normal_(self.net[2].weight, std=1.0 / (width * hidden**0.5))
        nn.init.zeros_(self.net[2].bias)

    def forward(self, edges: torch.Tensor) -> torch.Tensor:
        """``A (..., D, D)`` for edge features ``edges (..., E)``."""
        _checks.tensor("edges", edges, kind="float")
        if edges.dim() == 0:
            raise ValueError("edges must have at least 1 dimension, got a scalar")
        _checks.size_matches("edges", edges.shape[-1], self.edge_features, "feature size")
        return self.net(edges).unflatten(-1, (self.width, self.width))


class MPNN(nn.Module):
    """A message passing neural network: edge-network messages, GRU update, set2set readout.

    * ``h_v^0 = W_in x_v`` (a linear embedding of the node features),
    * for ``t = 1 .. T``: ``m_v^t = sum_{w in N(v)} A(e_vw) h_w^{t-1}`` and
      ``h_v^t = GRU(m_v^t, h_v^{t-1})``, eqs. (mpnn-msg)-(mpnn-upd), the same
      weights at every step,
    * ``y = W_out set2set({h_v^T}) + b_out``, eq. (mpnn-read).

    Args:
        node_features: ``F``; edge_features: ``E``; width: ``D``.
        steps: ``T >= 0`` message-passing steps (``T = 0``: no messages, the
            readout sees each node's own features only).
        readout_steps: ``P >= 1`` set2set steps.
        out_features: outputs per graph.
        edge_hidden: hidden width of the edge network.

    ``forward(nodes (B, N, F), edges (B, N, N, E), adjacency (B, N, N),
    mask (B, N) | None) -> (B, out_features)``.
    """

    def __init__(
        self,
        node_features: int,
        edge_features: int,
        width: int,
        steps: int,
        readout_steps: int = 3,
        out_features: int = 1,
        edge_hidden: int = 32,
    ) -> None:
        super().__init__()
        _checks.positive_int("node_features", node_features)
        _checks.positive_int("width", width)
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise TypeError(f"steps must be an int, got {type(steps).__name__}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        _checks.positive_int("readout_steps", readout_steps)
        _checks.positive_int("out_features", out_features)
        self.node_features, self.edge_features = node_features, edge_features
        self.width, self.steps = width, steps
        self.embed = nn.Linear(node_features, width)
        self.edge_net = EdgeNetwork(edge_features, width, edge_hidden)
        self.update = GRUCell(width, width)
        self.readout = Set2Set(width, readout_steps)
        self.head = nn.Linear(2 * width, out_features)

    def step(self, h: torch.Tensor, A: torch.Tensor, edge_index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One message and update step, ``h^{t-1} (B, N, D) -> h^t (B, N, D)``; padding rows set to 0.

        ``A (M, D, D)`` and ``edge_index (3, M)`` as in :func:`message_passing`,
        ``mask (B, N)`` True at real nodes.
        """
        m = message_passing(h, A, edge_index)  # eq. (mpnn-msg)
        B, N, D = h.shape
        h = self.update(m.reshape(B * N, D), h.reshape(B * N, D)).view(B, N, D)  # eq. (mpnn-upd)
        return h * mask[..., None].to(h.dtype)

    def node_states(
        self, nodes: torch.Tensor, edges: torch.Tensor, adjacency: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The node states ``h^T (B, N, D)`` after ``T`` steps (zero at padding nodes)."""
        check_graphs(nodes, edges, adjacency, mask, self.node_features, self.edge_features)
        if mask is None:
            mask = torch.ones(nodes.shape[:2], dtype=torch.bool, device=nodes.device)
        h = self.embed(nodes) * mask[..., None].to(nodes.dtype)
        # Only bonds between real nodes carry messages; padding nodes neither send nor receive.
        edge_index = (adjacency & mask[:, :, None] & mask[:, None, :]).nonzero().T  # (3, M)
        A = self.edge_net(edges[edge_index[0], edge_index[1], edge_index[2]])  # (M, D, D), shared over t
        for _ in range(self.steps):
            h = self.step(h, A, edge_index, mask)
        return h

    def forward(
        self, nodes: torch.Tensor, edges: torch.Tensor, adjacency: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Graph outputs ``(B, out_features)``; see the class docstring."""
        h = self.node_states(nodes, edges, adjacency, mask)
        return self.head(self.readout(h, mask))  # eq. (mpnn-read)
