"""papers30.graphs against brute-force per-node loops, torch.nn.GRUCell with copied weights, relabelling,
exact (unhashed) atom environments and closed-form least squares."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.data.graphs import random_molecules
from papers30.graphs import (
    MPNN,
    EdgeNetwork,
    Graphs,
    PlainMessage,
    Standardized,
    atom_environments,
    count_fingerprint,
    fit_regression,
    message_passing,
)

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


def small_batch(B: int, N: int, gen: torch.Generator, min_nodes: int = 1) -> Graphs:
    g = random_molecules(B, gen, min_nodes=min(min_nodes, N), max_nodes=N, ring_bonds=1)
    return Graphs(g.nodes.double(), g.edges.double(), g.adjacency, g.mask)


def messages_reference(h, A_of_pair, adjacency):
    """Brute force: for every graph b and node v, add A(e_vw) h_w over the neighbours w of v, one at a time."""
    B, N, D = h.shape
    m = torch.zeros(B, N, D, dtype=h.dtype)
    for b in range(B):
        for v in range(N):
            for w in range(N):
                if adjacency[b, v, w]:
                    m[b, v] += A_of_pair(b, v, w) @ h[b, w]
    return m


# (B, N, D): one graph, one node (no edges), bigger batches.
SHAPES = [(1, 1, 2), (1, 2, 1), (2, 5, 3), (3, 8, 4)]


@pytest.mark.parametrize("B,N,D", SHAPES)
def test_message_passing_matches_brute_force_loop(B, N, D, gen):
    graphs = small_batch(B, N, gen)
    h = torch.randn(B, N, D, dtype=DT, generator=gen)
    edge_index = graphs.adjacency.nonzero().T
    A = torch.randn(edge_index.shape[1], D, D, dtype=DT, generator=gen)
    lookup = {tuple(edge_index[:, k].tolist()): A[k] for k in range(edge_index.shape[1])}
    got = message_passing(h, A, edge_index)
    want = messages_reference(h, lambda b, v, w: lookup[(b, v, w)], graphs.adjacency)
    assert got.shape == (B, N, D)
    torch.testing.assert_close(got, want, **TOL)


def test_edge_network_matches_its_mlp_by_hand(gen):
    net = EdgeNetwork(3, 4, hidden=5).double()
    e = torch.randn(7, 3, dtype=DT, generator=gen)
    W1, b1, W2, b2 = net.net[0].weight, net.net[0].bias, net.net[2].weight, net.net[2].bias
    for k in range(7):
        want = (W2 @ torch.relu(W1 @ e[k] + b1) + b2).view(4, 4)
        torch.testing.assert_close(net(e)[k], want, **TOL)


def gru_reference(model: MPNN, h: torch.Tensor, graphs: Graphs) -> torch.Tensor:
    """One step by hand: per-node edge-network messages, then torch.nn.GRUCell with copied weights."""
    cell = torch.nn.GRUCell(model.width, model.width).double()
    cell.load_state_dict(model.update.state_dict())
    m = messages_reference(h, lambda b, v, w: model.edge_net(graphs.edges[b, v, w]), graphs.adjacency)
    B, N, D = h.shape
    out = cell(m.reshape(B * N, D), h.reshape(B * N, D)).view(B, N, D)
    return out * graphs.mask[..., None]


@pytest.mark.parametrize("B,N,D", SHAPES)
def test_step_matches_torch_gru_cell(B, N, D, gen):
    torch.manual_seed(0)
    model = MPNN(3, 3, D, steps=1).double()
    graphs = small_batch(B, N, gen)
    h = torch.randn(B, N, D, dtype=DT, generator=gen) * graphs.mask[..., None]
    edge_index = graphs.adjacency.nonzero().T
    A = model.edge_net(graphs.edges[edge_index[0], edge_index[1], edge_index[2]])
    with torch.no_grad():
        got = model.step(h, A, edge_index, graphs.mask)
        want = gru_reference(model, h, graphs)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_node_states_match_repeated_reference_steps(steps, gen):
    torch.manual_seed(1)
    model = MPNN(3, 3, 4, steps=steps).double()
    graphs = small_batch(3, 7, gen)
    with torch.no_grad():
        h = model.embed(graphs.nodes) * graphs.mask[..., None]
        for _ in range(steps):
            h = gru_reference(model, h, graphs)
        torch.testing.assert_close(model.node_states(*graphs), h, **TOL)


def random_relabelling(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(mask.shape, generator=gen).argsort(dim=1)


@given(seed=st.integers(0, 10_000), steps=st.integers(0, 3))
def test_output_invariant_under_node_relabelling(seed, steps):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MPNN(3, 3, 5, steps=steps, readout_steps=2).double()
    graphs = small_batch(4, 9, gen)
    perm = random_relabelling(graphs.mask, gen)
    moved = graphs.permute(perm)
    with torch.no_grad():
        y, y_perm = model(*graphs), model(*moved)
        h, h_perm = model.node_states(*graphs), model.node_states(*moved)
    torch.testing.assert_close(y_perm, y, rtol=0, atol=1e-12)
    # node states are equivariant: relabelled graph's node i is the old node perm[i]
    torch.testing.assert_close(h_perm, h.gather(1, perm[..., None].expand_as(h)), rtol=0, atol=1e-12)


def test_permute_relabels_adjacency_consistently(gen):
    graphs = small_batch(2, 6, gen)
    perm = random_relabelling(graphs.mask, gen)
    moved = graphs.permute(perm)
    for b in range(2):
        for i in range(6):
            for j in range(6):
                assert moved.adjacency[b, i, j] == graphs.adjacency[b, perm[b, i], perm[b, j]]
                assert torch.equal(moved.edges[b, i, j], graphs.edges[b, perm[b, i], perm[b, j]])


def test_padding_nodes_have_no_effect(gen):
    torch.manual_seed(2)
    model = MPNN(3, 3, 4, steps=2).double()
    graphs = small_batch(3, 6, gen, min_nodes=6)  # all nodes real
    pad = 4
    nodes = torch.cat([graphs.nodes, torch.randn(3, pad, 3, dtype=DT, generator=gen)], dim=1)
    edges = torch.randn(3, 6 + pad, 6 + pad, 3, dtype=DT, generator=gen)
    edges[:, :6, :6] = graphs.edges
    adjacency = torch.rand(3, 6 + pad, 6 + pad, generator=gen) < 0.5  # garbage bonds at padding
    adjacency[:, :6, :6] = graphs.adjacency
    mask = torch.cat([graphs.mask, torch.zeros(3, pad, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        want = model(*graphs)
        got = model(nodes, edges, adjacency, mask)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_mpnn_output_shape_and_gradient(gen):
    model = MPNN(3, 3, 4, steps=2, out_features=2)
    g = random_molecules(3, gen)
    out = model(*g)
    assert out.shape == (3, 2)
    out.sum().backward()
    assert model.edge_net.net[0].weight.grad.abs().sum() > 0
    assert model.update.weight_ih.grad.abs().sum() > 0


@pytest.mark.parametrize("B,N,D", SHAPES)
def test_plain_message_step_matches_one_matrix_for_every_bond(B, N, D, gen):
    torch.manual_seed(3)
    model = MPNN(3, 3, D, steps=1, message="plain").double()
    graphs = small_batch(B, N, gen)
    h = torch.randn(B, N, D, dtype=DT, generator=gen) * graphs.mask[..., None]
    edge_index = graphs.adjacency.nonzero().T
    A = model.edge_net(graphs.edges[edge_index[0], edge_index[1], edge_index[2]])
    W = model.edge_net.weight
    cell = torch.nn.GRUCell(D, D).double()
    cell.load_state_dict(model.update.state_dict())
    m = messages_reference(h, lambda b, v, w: W, graphs.adjacency)  # M = W h_w, whatever the bond
    want = cell(m.reshape(B * N, D), h.reshape(B * N, D)).view(B, N, D) * graphs.mask[..., None]
    with torch.no_grad():
        torch.testing.assert_close(model.step(h, A, edge_index, graphs.mask), want, **TOL)


def test_plain_message_ignores_bond_types_and_edge_network_does_not(gen):
    torch.manual_seed(4)
    graphs = small_batch(4, 8, gen, min_nodes=4)
    rolled = Graphs(graphs.nodes, graphs.edges.roll(1, dims=-1), graphs.adjacency, graphs.mask)  # new bond types
    plain, edge = MPNN(3, 3, 5, steps=2, message="plain").double(), MPNN(3, 3, 5, steps=2).double()
    with torch.no_grad():
        torch.testing.assert_close(plain(*rolled), plain(*graphs), rtol=0, atol=0)
        assert (edge(*rolled) - edge(*graphs)).abs().max() > 1e-6
    assert isinstance(plain.edge_net, PlainMessage) and isinstance(edge.edge_net, EdgeNetwork)


def exact_environments(graphs: Graphs, radius: int) -> list[list[list[object]]]:
    """Reference: per graph, atom and radius, the environment as nested tuples (no hashing)."""
    out = []
    for b in range(len(graphs.mask)):
        n = int(graphs.mask[b].sum())
        atoms = graphs.nodes[b, :n].argmax(-1).tolist()
        bonds = graphs.edges[b, :n, :n].argmax(-1).tolist()
        links = [[w for w in range(n) if graphs.adjacency[b, v, w]] for v in range(n)]
        env = list(atoms)
        per_atom = [[e] for e in env]
        for _ in range(radius):
            env = [(env[v], tuple(sorted((bonds[v][w], env[w]) for w in links[v]))) for v in range(n)]
            for v in range(n):
                per_atom[v].append(env[v])
        out.append(per_atom)
    return out


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_atom_environments_match_exact_environments(radius, gen):
    graphs = random_molecules(12, gen, min_nodes=1, max_nodes=9, ring_bonds=2, marked=True)
    ids = atom_environments(graphs, radius)
    assert ids.shape == (12, 9, radius + 1) and ids.dtype == torch.int64
    assert bool((ids[~graphs.mask] == -1).all()) and bool((ids[graphs.mask] >= 0).all())
    exact = exact_environments(graphs, radius)
    hashed, keys = {}, {}
    for b, atoms in enumerate(exact):
        for v, envs in enumerate(atoms):
            for r, env in enumerate(envs):
                key = (r, env)
                hashed.setdefault(key, set()).add(int(ids[b, v, r]))
                keys.setdefault((r, int(ids[b, v, r])), set()).add(env)
    assert all(len(v) == 1 for v in hashed.values())  # same environment, same identifier
    assert all(len(v) == 1 for v in keys.values())  # one identifier, one environment


def test_count_fingerprint_is_a_histogram_of_the_identifiers(gen):
    graphs = random_molecules(6, gen, min_nodes=2, max_nodes=8, ring_bonds=1)
    ids = atom_environments(graphs, 2)
    fp = count_fingerprint(graphs, 2, size=37)
    for b in range(6):
        want = torch.zeros(37)
        for i in ids[b][ids[b] >= 0].tolist():
            want[i % 37] += 1
        torch.testing.assert_close(fp[b], want, rtol=0, atol=0)
    torch.testing.assert_close(fp.sum(1), 3.0 * graphs.mask.sum(1).float())


def test_radius_zero_fingerprint_is_the_bag_of_atoms(gen):
    graphs = random_molecules(20, gen, min_nodes=2, max_nodes=8)
    fp = count_fingerprint(graphs, 0, size=1024)
    bins = atom_environments(graphs, 0)[..., 0] % 1024
    atom_bins = [int(bins[graphs.nodes[..., t] > 0][0]) for t in range(3)]  # one bin per atom type
    assert len(set(atom_bins)) == 3
    torch.testing.assert_close(fp[:, atom_bins], graphs.nodes.sum(1), rtol=0, atol=0)
    assert fp.sum() == graphs.mask.sum()


@given(seed=st.integers(0, 10_000), radius=st.integers(0, 3))
def test_count_fingerprint_invariant_under_node_relabelling(seed, radius):
    gen = torch.Generator().manual_seed(seed)
    graphs = random_molecules(3, gen, min_nodes=1, max_nodes=8, ring_bonds=2)
    perm = random_relabelling(graphs.mask, gen)
    torch.testing.assert_close(count_fingerprint(graphs.permute(perm), radius), count_fingerprint(graphs, radius),
                               rtol=0, atol=0)


def test_standardized_rescales_its_network(gen):
    y = torch.tensor([1.0, 2.0, 4.0, 9.0])
    net = torch.nn.Linear(3, 1)
    model = Standardized(net, y)
    x = torch.randn(5, 3, generator=gen)
    torch.testing.assert_close(model(x), net(x)[:, 0] * y.std() + y.mean())


def test_fit_regression_reaches_least_squares_and_repeats_with_the_seed(gen):
    x = torch.randn(200, 4, generator=gen, dtype=DT)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=DT) + 0.1 * torch.randn(200, generator=gen, dtype=DT)
    design = torch.cat([x, torch.ones(200, 1, dtype=DT)], 1)
    best = ((design @ torch.linalg.lstsq(design, y).solution - y) ** 2).mean()  # closed-form optimum
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = Standardized(torch.nn.Linear(4, 1).double(), y)
        history = fit_regression(model, x, y, steps=400, batch=50, lr=0.05, seed=7)
        runs.append(history.losses)
        with torch.no_grad():
            assert ((model(x) - y) ** 2).mean() < 1.05 * best
    assert runs[0] == runs[1]


def test_fit_regression_trains_an_mpnn_and_stops_early(gen):
    graphs = random_molecules(40, gen, marked=True)
    y = graphs.nodes[..., 1].sum(1)  # type-1 atoms: no messages needed
    torch.manual_seed(5)
    model = Standardized(MPNN(3, 3, 8, steps=1), y)
    history = fit_regression(model, graphs, y, steps=60, batch=16, lr=1e-2, seed=0)
    assert len(history.losses) == 60 and history.losses[-1] < history.losses[0]
    short = fit_regression(Standardized(MPNN(3, 3, 8, steps=1), y), graphs, y, steps=60, batch=16, lr=1e-2, seed=0,
                           stop_after=5)
    assert len(short.losses) == 5


def _graphs():
    return random_molecules(2, torch.Generator().manual_seed(0), min_nodes=2, max_nodes=5)


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: MPNN(0, 3, 4, 1), ValueError, "node_features"),
        (lambda: MPNN(3, 3, 4, -1), ValueError, "steps"),
        (lambda: MPNN(3, 3, 4, 1.5), TypeError, "steps"),
        (lambda: MPNN(3, 3, 4, 1, readout_steps=0), ValueError, "readout_steps"),
        (lambda: EdgeNetwork(3, 0), ValueError, "width"),
        (lambda: MPNN(3, 3, 4, 1)(_graphs().nodes.long(), *_graphs()[1:]), TypeError, "nodes"),
        (lambda: MPNN(4, 3, 4, 1)(*_graphs()), ValueError, "nodes"),
        (lambda: MPNN(3, 2, 4, 1)(*_graphs()), ValueError, "edges"),
        (lambda: MPNN(3, 3, 4, 1)(*_graphs()[:2], _graphs().adjacency.float(), _graphs().mask), TypeError,
         "adjacency"),
        (lambda: MPNN(3, 3, 4, 1)(*_graphs()[:3], torch.zeros(2, 5, dtype=torch.bool)), ValueError, "mask"),
        (lambda: MPNN(3, 3, 4, 1)(*_graphs()[:3], _graphs().mask[:, :3]), ValueError, "mask"),
        (lambda: message_passing(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3), torch.zeros(2, 1).long()),
         ValueError, "edge_index"),
        (lambda: message_passing(torch.zeros(1, 2, 3), torch.zeros(2, 3, 3), torch.zeros(3, 1).long()),
         ValueError, "A"),
        (lambda: message_passing(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3), torch.zeros(3, 1)), TypeError,
         "edge_index"),
        (lambda: _graphs().permute(torch.zeros(2, 3).long()), ValueError, "perm"),
        (lambda: MPNN(3, 3, 4, 1, message="pair"), ValueError, "message"),
        (lambda: PlainMessage(3, 4)(torch.zeros(2, 2)), ValueError, "edges"),
        (lambda: atom_environments(_graphs(), -1), ValueError, "radius"),
        (lambda: atom_environments(_graphs().nodes, 1), TypeError, "graphs"),
        (lambda: count_fingerprint(_graphs(), 1, size=0), ValueError, "size"),
        (lambda: Standardized(torch.nn.Linear(2, 1), torch.ones(4)), ValueError, "y"),
        (lambda: Standardized("net", torch.arange(4.0)), TypeError, "net"),
        (lambda: fit_regression(torch.nn.Linear(2, 1), torch.zeros(4, 2), torch.arange(4.0), steps=1, batch=2,
                                lr=0.1, seed=0), TypeError, "model"),
        (lambda: fit_regression(Standardized(torch.nn.Linear(2, 1), torch.arange(4.0)), torch.zeros(4, 2),
                                torch.arange(3.0), steps=1, batch=2, lr=0.1, seed=0), ValueError, "y"),
        (lambda: fit_regression(Standardized(torch.nn.Linear(2, 1), torch.arange(4.0)), torch.zeros(4, 2),
                                torch.arange(4.0), steps=1, batch=2, lr=0.0, seed=0), ValueError, "lr"),
    ],
)
def test_mpnn_rejects_bad_inputs(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
