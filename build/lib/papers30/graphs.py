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

For comparison the module also holds a *plain* message ``M = W h_w`` that
ignores the bond (:class:`PlainMessage`, ``MPNN(message="plain")``) and the
non-message-passing baseline the paper compares with: a count fingerprint
in the style of Morgan/ECFP (:func:`atom_environments`,
:func:`count_fingerprint`), to be fed to an MLP. :class:`Standardized` and
:func:`fit_regression` train any of these regressors the same way.

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
from papers30.runtime import generator
from papers30.sets import Set2Set
from papers30.training import History, fit

MESSAGES = ("edge", "plain")


class _GraphFields(NamedTuple):
    nodes: torch.Tensor
    edges: torch.Tensor
    adjacency: torch.Tensor
    mask: torch.Tensor


class Graphs(_GraphFields):
    """A padded batch of graphs; unpack it into a model: ``model(*graphs)``.

    Fields: ``nodes (B, N, F)`` float, ``edges (B, N, N, E)`` float,
    ``adjacency (B, N, N)`` bool (symmetric for undirected graphs, False on
    the diagonal and at padding nodes), ``mask (B, N)`` bool.
    """

    __slots__ = ()

    def __new__(cls, nodes: torch.Tensor, edges: torch.Tensor, adjacency: torch.Tensor, mask: torch.Tensor) -> "Graphs":
        for name, value in (("nodes", nodes), ("edges", edges), ("adjacency", adjacency), ("mask", mask)):
            _checks.tensor(name, value)
        return super().__new__(cls, nodes, edges, adjacency, mask)

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


class PlainMessage(nn.Module):
    """The plain message ``M = W h_w``: one learned matrix ``W (D, D)`` for every bond, whatever its type.

    A drop-in replacement for :class:`EdgeNetwork` that ignores the edge
    features: ``forward(edges (..., E)) -> W`` broadcast to ``(..., D, D)``.
    """

    def __init__(self, edge_features: int, width: int) -> None:
        super().__init__()
        _checks.positive_int("edge_features", edge_features)
        _checks.positive_int("width", width)
        self.edge_features, self.width = edge_features, width
        self.weight = nn.Parameter(torch.randn(width, width) / width)  # the spread of EdgeNetwork's start

    def forward(self, edges: torch.Tensor) -> torch.Tensor:
        """``W`` broadcast to ``(..., D, D)`` for edge features ``edges (..., E)`` (their values are ignored)."""
        _checks.tensor("edges", edges, kind="float")
        if edges.dim() == 0:
            raise ValueError("edges must have at least 1 dimension, got a scalar")
        _checks.size_matches("edges", edges.shape[-1], self.edge_features, "feature size")
        return self.weight.expand(*edges.shape[:-1], self.width, self.width)


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
        message: ``"edge"`` (the edge network ``A(e_vw) h_w``) or
            ``"plain"`` (``W h_w``, the same matrix for every bond).

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
        message: str = "edge",
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
        _checks.one_of("message", message, MESSAGES)
        self.node_features, self.edge_features = node_features, edge_features
        self.width, self.steps, self.message = width, steps, message
        self.embed = nn.Linear(node_features, width)
        if message == "edge":
            self.edge_net: nn.Module = EdgeNetwork(edge_features, width, edge_hidden)
        else:
            self.edge_net = PlainMessage(edge_features, width)
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


# --------------------------------------------------------------- the fingerprint baseline

_PRIME = 2_147_483_647  # 2^31 - 1: every product below stays under 2^62, so int64 never overflows


def _mix(x: torch.Tensor, salt: int) -> torch.Tensor:
    """A quadratic hash of non-negative int64 values below ``2^62`` to ``[0, P)`` (``P = 2^31 - 1``)."""
    x = x % _PRIME
    square = (x * x) % _PRIME
    return ((square * 48_271) % _PRIME + (x * 16_807) % _PRIME + salt * 69_621 + 1) % _PRIME


def atom_environments(graphs: Graphs, radius: int) -> torch.Tensor:
    """Hashed identifiers of every atom's environment up to ``radius`` bonds, as in Morgan/ECFP fingerprints.

    Returns ``(B, N, radius + 1)`` int64, ``-1`` at padding nodes. Column
    ``r`` identifies the radius-``r`` environment of the atom: column 0 its
    type; column ``r`` its column ``r - 1`` together with the multiset of
    ``(bond type, column r - 1 of the neighbour)`` over its bonds (the
    Weisfeiler-Lehman refinement). Two atoms with the same environment get
    the same identifier; different environments collide with probability
    about ``2^-31``. Atom and bond types are read as the argmax of the one-hot
    ``graphs.nodes`` and ``graphs.edges``.
    """
    if not isinstance(graphs, Graphs):
        raise TypeError(f"graphs must be a papers30.graphs.Graphs, got {type(graphs).__name__}")
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius must be an int >= 0, got {radius!r}")
    atoms = graphs.nodes.argmax(-1).long()  # (B, N)
    bonds = graphs.edges.argmax(-1).long()  # (B, N, N)
    E = graphs.edges.shape[-1]
    real = graphs.mask[:, :, None] & graphs.mask[:, None, :]
    links = (graphs.adjacency & real).long()  # (B, N, N): bonds between real atoms
    h = _mix(atoms, 0)
    ids = [h]
    for r in range(1, radius + 1):
        # a hash of each (bond type, neighbour identifier); summing them hashes the multiset
        neighbours = _mix(h[:, None, :] * E + bonds, r)  # (B, v, w)
        h = _mix(h * 65_537 + (neighbours * links).sum(-1), r)
        ids.append(h)
    return torch.stack(ids, dim=-1).masked_fill(~graphs.mask[..., None], -1)


def count_fingerprint(graphs: Graphs, radius: int, size: int = 1024) -> torch.Tensor:
    """A count fingerprint ``(B, size)`` float: how often each environment up to ``radius`` bonds occurs.

    Every real atom adds one count, at radius ``0 .. radius``, to the bin
    ``identifier mod size`` of its environment (:func:`atom_environments`),
    as the folded count version of an ECFP fingerprint of diameter
    ``2 * radius`` does. Radius 0 is the *bag of atoms*: counts of atom types.
    """
    _checks.positive_int("size", size)
    ids = atom_environments(graphs, radius)
    B = ids.shape[0]
    real = ids >= 0
    bins = (ids % size).masked_fill(~real, 0).reshape(B, -1)
    counts = torch.zeros(B, size, dtype=graphs.nodes.dtype, device=ids.device)
    return counts.scatter_add_(1, bins, real.reshape(B, -1).to(counts.dtype))


# ------------------------------------------------------------------- training regressors


class Standardized(nn.Module):
    """A regressor that is trained on the standardised target and answers in the target's units.

    ``forward(*inputs) = net(*inputs)[..., 0] * std + mean``, with ``mean``
    and ``std`` of the training targets ``y (B,)``; ``net`` has one output.
    """

    def __init__(self, net: nn.Module, y: torch.Tensor) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        _checks.tensor("y", y, ndim=1, kind="float")
        if y.numel() < 2 or not float(y.std()) > 0:
            raise ValueError("y must hold at least two different targets to standardise them")
        self.net = net
        self.register_buffer("mean", y.mean().detach().clone())
        self.register_buffer("std", y.std().detach().clone())

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Predictions ``(B,)`` in the target's units."""
        for i, x in enumerate(inputs):
            _checks.tensor(f"inputs[{i}]", x)
        if inputs and (inputs[0].dim() == 0 or not inputs[0].is_floating_point()):
            raise ValueError("inputs[0] must be a floating-point tensor with a batch dimension")
        return self.net(*inputs)[..., 0] * self.std + self.mean


def _rows(inputs: Graphs | torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(inputs.select(index)) if isinstance(inputs, Graphs) else (inputs[index],)


@_checks.typed
def fit_regression(
    model: Standardized,
    inputs: Graphs | torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    clip: float = 1.0,
    stop_after: int | None = None,
) -> History:
    """Train ``model`` on the mean squared error of the standardised target; return the :class:`History`.

    ``inputs``: a :class:`Graphs` batch (the model is called as
    ``model(*graphs)``) or a tensor ``(B, F)`` (``model(x)``); ``y (B,)``.
    Adam with learning rate ``lr`` decaying to zero on a cosine over
    ``steps`` steps, gradient norm clipped at ``clip``; each step draws
    ``batch`` random training examples from a generator seeded with ``seed``
    (:func:`papers30.runtime.generator`), so two models trained with the same
    seed and data see the same batches in the same order. The recorded loss
    is in units of the target's variance.
    """
    if not isinstance(model, Standardized):
        raise TypeError(f"model must be a papers30.graphs.Standardized, got {type(model).__name__}")
    if not isinstance(inputs, (Graphs, torch.Tensor)):
        raise TypeError(f"inputs must be a Graphs batch or a tensor, got {type(inputs).__name__}")
    _checks.tensor("y", y, ndim=1, kind="float")
    n = len(inputs.mask) if isinstance(inputs, Graphs) else len(inputs)
    _checks.size_matches("y", len(y), n, "length")
    _checks.positive_int("batch", batch)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    draw = generator(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def loss_fn(step: int) -> torch.Tensor:
        index = torch.randint(n, (batch,), generator=draw).to(y.device)
        return (((model(*_rows(inputs, index)) - y[index]) / model.std) ** 2).mean()

    return fit(model, opt, loss_fn, steps, scheduler=schedule, clip=clip, stop_after=stop_after)
