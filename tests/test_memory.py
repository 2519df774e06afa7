"""papers30.memory (chapter 18) against torch's layer norm and scaled dot-product
attention with the same weights, the gate formulas written out directly, and
the slot symmetry the relational memory core should have; the training helper
against a hand-written Adam loop on the same batches."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from papers30.memory import (
    MemoryAttention,
    MemoryClassifier,
    RelationalMemory,
    RelationalRNN,
    accuracy,
    gated_update,
    train_nth_farthest,
)
from papers30.recurrent import LSTM


def make_core(D_in=5, N=3, D=8, H=2, seed=0, dtype=torch.float64) -> RelationalMemory:
    torch.manual_seed(seed)
    core = RelationalMemory(D_in, N, D, H).to(dtype)
    with torch.no_grad():  # non-trivial layer norms, so their parameters are tested too
        for norm in (core.norm1, core.norm2, core.attention.norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return core


def reference_attention(att, m: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """The slots' attention written with torch's own layer norm and scaled dot-product attention."""
    B, N, D = m.shape
    H = att.num_heads
    rows = torch.cat([m, row[:, None]], dim=1)
    qkv = nn.functional.layer_norm(rows @ att.qkv.weight.T + att.qkv.bias, (3 * D,), att.norm.weight, att.norm.bias)
    q, k, v = (t.reshape(B, N + 1, H, D // H).transpose(1, 2) for t in qkv.split(D, dim=-1))
    out = nn.functional.scaled_dot_product_attention(q[:, :, :N], k, v)  # (B, H, N, E)
    return out.transpose(1, 2).reshape(B, N, D)


def reference_step(core: RelationalMemory, x: torch.Tensor, m: torch.Tensor):
    """One RMC step composed by hand from torch's attention and the gate equations of the Sonnet code."""
    x_proj = x @ core.input_proj.weight.T + core.input_proj.bias  # the input row, (B, D)
    attended = reference_attention(core.attention, m, x_proj)
    norm = nn.functional.layer_norm
    n1 = norm(m + attended, (core.slot_size,), core.norm1.weight, core.norm1.bias)
    lin1, lin2 = core.mlp[0], core.mlp[2]
    hidden = torch.relu(n1 @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias
    candidate = norm(n1 + hidden, (core.slot_size,), core.norm2.weight, core.norm2.bias)
    D = core.slot_size
    W, b, U = core.gate_input.weight, core.gate_input.bias, core.gate_memory.weight
    z_i = (x_proj @ W[:D].T + b[:D])[:, None] + torch.tanh(m) @ U[:D].T  # gates read the projected input
    z_f = (x_proj @ W[D:].T + b[D:])[:, None] + torch.tanh(m) @ U[D:].T
    i = 1 / (1 + torch.exp(-(z_i + core.input_bias)))
    f = 1 / (1 + torch.exp(-(z_f + core.forget_bias)))
    return candidate, i, f, i * torch.tanh(candidate) + f * m


@pytest.mark.parametrize("B,D_in,N,D,H", [(1, 1, 1, 2, 1), (3, 5, 4, 8, 2), (2, 7, 6, 12, 3)])
def test_rmc_step_matches_torch_attention_reference(B, D_in, N, D, H):
    core = make_core(D_in, N, D, H)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, D_in, generator=g, dtype=torch.float64)
    m = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    cand_ref, i_ref, f_ref, next_ref = reference_step(core, x, m)
    torch.testing.assert_close(core.attend(x, m), cand_ref)
    i, f = core.gates(x, m)
    torch.testing.assert_close(i, i_ref)
    torch.testing.assert_close(f, f_ref)
    out, next_m = core(x, m)
    torch.testing.assert_close(next_m, next_ref)
    torch.testing.assert_close(out, next_ref.flatten(1))
    assert out.shape == (B, N * D) and next_m.shape == (B, N, D)


@pytest.mark.parametrize("B,N,D,H", [(1, 1, 2, 1), (3, 4, 8, 2), (2, 5, 12, 4)])
def test_memory_attention_matches_torch_and_keeps_its_weights(B, N, D, H, gen):
    torch.manual_seed(0)
    att = MemoryAttention(D, H).double()
    with torch.no_grad():
        att.norm.weight.uniform_(0.5, 1.5)
        att.norm.bias.uniform_(-0.5, 0.5)
    m = torch.randn(B, N, D, generator=gen, dtype=torch.float64)
    row = torch.randn(B, D, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(att(m, row), reference_attention(att, m, row))
    w = att.last_weights
    assert w.shape == (B, H, N, N + 1)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, N, dtype=torch.float64))


def test_memory_attention_weights_are_the_ones_applied(gen):
    """The stored weights, split into the slots' columns and the input row's, rebuild the output."""
    torch.manual_seed(1)
    att = MemoryAttention(4, 2).double()
    m = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    row = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    out = att(m, row)
    w = att.last_weights  # (B, H, N, N + 1)
    _, _, v = att.norm(att.qkv(torch.cat([m, row[:, None]], 1))).chunk(3, dim=-1)
    v = v.view(2, 4, 2, 2).transpose(1, 2)  # (B, H, N + 1, E)
    want = (w[..., :3] @ v[:, :, :3] + w[..., 3:] @ v[:, :, 3:]).transpose(1, 2).reshape(2, 3, 4)
    torch.testing.assert_close(out, want)  # slots' terms plus the input row's term, nothing else


def test_gated_update_matches_formula(gen):
    m, c = torch.randn(2, 2, 3, 4, generator=gen)
    i, f = torch.rand(2, 2, 3, 4, generator=gen)
    want = i * (torch.exp(c) - torch.exp(-c)) / (torch.exp(c) + torch.exp(-c)) + f * m
    torch.testing.assert_close(gated_update(m, c, i, f), want)
    # closed gates: memory kept exactly (f = 1, i = 0) or replaced by tanh(candidate)
    ones, zeros = torch.ones_like(m), torch.zeros_like(m)
    torch.testing.assert_close(gated_update(m, c, zeros, ones), m)
    torch.testing.assert_close(gated_update(m, c, ones, zeros), torch.tanh(c))


def test_initial_gates_follow_the_biases():
    core = make_core()
    with torch.no_grad():
        for p in (core.gate_input.weight, core.gate_input.bias, core.gate_memory.weight):
            p.zero_()
    x, m = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 3, 8, dtype=torch.float64)
    i, f = core.gates(x, m)
    assert core.gate_input.in_features == core.slot_size  # the gates read W_x x + b_x, as in Sonnet
    torch.testing.assert_close(i, torch.full_like(i, 0.5))  # sigmoid(input_bias = 0)
    torch.testing.assert_close(f, torch.sigmoid(torch.ones_like(f)))  # sigmoid(forget_bias = 1)


@given(st.permutations(list(range(5))), st.integers(0, 1000))
def test_rmc_step_is_slot_permutation_equivariant(perm, seed):
    core = make_core(D_in=3, N=5, D=4, H=2)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, generator=g, dtype=torch.float64)
    m = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    p = torch.tensor(perm)
    _, moved = core(x, m[:, p])
    _, unmoved = core(x, m)
    torch.testing.assert_close(moved, unmoved[:, p])  # permuting slots permutes the next memory


def test_initial_memory_is_padded_identity():
    core = RelationalMemory(2, 3, 5, 1)
    m = core.initial_memory(2)
    assert m.shape == (2, 3, 5)
    torch.testing.assert_close(m[1], torch.eye(3, 5))
    torch.testing.assert_close(RelationalMemory(2, 4, 2, 1).initial_memory(1)[0], torch.eye(4, 2))


@pytest.mark.parametrize("T", [1, 4])
def test_relational_rnn_matches_unrolled_cell(T, gen):
    rnn = RelationalRNN(3, 2, 4, 2).double()
    x = torch.randn(2, T, 3, generator=gen, dtype=torch.float64)
    outputs, final = rnn(x)
    m = rnn.cell.initial_memory(2, dtype=torch.float64)
    for t in range(T):
        out, m = rnn.cell(x[:, t], m)
        torch.testing.assert_close(outputs[:, t], out)
    torch.testing.assert_close(final, m)
    assert outputs.shape == (2, T, rnn.output_size) == (2, T, 8)


def test_relational_rnn_gradients_reach_first_input(gen):
    rnn = RelationalRNN(3, 2, 4, 2).double()
    x = torch.randn(1, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    rnn(x)[0][:, -1].sum().backward()
    assert x.grad[0, 0].abs().sum() > 0


@pytest.mark.parametrize("kind", ["rmc", "lstm"])
def test_memory_classifier_reads_last_step(kind, gen):
    core = RelationalRNN(3, 2, 4, 2) if kind == "rmc" else LSTM(3, 6, batch_first=True)
    size = 8 if kind == "rmc" else 6
    model = MemoryClassifier(core, size, 5, head_size=7)
    x = torch.randn(4, 3, 3, generator=gen)
    logits = model(x)
    assert logits.shape == (4, 5)
    torch.testing.assert_close(logits, model.head(core(x)[0][:, -1]))


def test_accuracy_counts_argmax_hits_and_restores_mode():
    class Fixed(nn.Module):
        def forward(self, x):
            return x

    model = Fixed().train()
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    targets = torch.tensor([1, 0, 1, 2])
    assert accuracy(model, logits, targets) == pytest.approx(2 / 4)
    assert model.training  # mode restored


def test_train_nth_farthest_matches_a_hand_written_loop():
    """Same seed, same batches, same Adam: the helper's losses equal an explicit loop's."""
    from papers30.data.synthetic import nth_farthest
    from papers30.runtime import generator

    def model():
        torch.manual_seed(0)
        return MemoryClassifier(LSTM(2 + 3 * 4, 6, batch_first=True), 6, 4)

    test = nth_farthest(50, 4, 2, generator=torch.Generator().manual_seed(9), ranks=[0])
    a = model()
    history = train_nth_farthest(a, 5, 1e-2, 3, batch_size=8, ranks=[0], held_out=test, every=2)
    b = model()
    opt = torch.optim.Adam(b.parameters(), lr=1e-2)
    g = generator(3)
    losses = []
    for _ in range(5):
        xb, yb = nth_farthest(8, 4, 2, generator=g, ranks=[0])
        loss = nn.functional.cross_entropy(b(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert history.losses == pytest.approx(losses)
    assert history.eval_steps == [2, 4, 5]
    with torch.no_grad():
        want = (b(test[0]).argmax(-1) == test[1]).float().mean().item()
    assert history.evals[-1]["acc"] == pytest.approx(want)
    short = train_nth_farthest(model(), 5, 1e-2, 3, batch_size=8, ranks=[0], stop_after=2)
    assert short.losses == pytest.approx(losses[:2])


def test_rejects_bad_arguments():
    core = RelationalMemory(3, 2, 4, 2)
    m = core.initial_memory(2)
    cases = [
        (lambda: RelationalMemory(3, 2, 5, 2), ValueError, "slot_size"),
        (lambda: RelationalMemory(0, 2, 4, 2), ValueError, "input_size"),
        (lambda: RelationalMemory(3, 2.0, 4, 2), TypeError, "num_slots"),
        (lambda: core(torch.zeros(2, 4), m), ValueError, "input"),
        (lambda: core(torch.zeros(2, 3, dtype=torch.long), m), TypeError, "input"),
        (lambda: core(torch.zeros(2, 3), m[:, :1]), ValueError, "memory"),
        (lambda: core(torch.zeros(3, 3), m), ValueError, "memory"),
        (lambda: core(torch.zeros(2, 3), m.numpy()), TypeError, "memory"),
        (lambda: gated_update(m, m, m[:1], m), ValueError, "input_gate"),
        (lambda: RelationalRNN(3, 2, 4, 2)(torch.zeros(2, 0, 3)), ValueError, "input"),
        (lambda: RelationalRNN(3, 2, 4, 2)(torch.zeros(2, 3)), ValueError, "input"),
        (lambda: MemoryClassifier("lstm", 4, 2), TypeError, "core"),
        (lambda: MemoryClassifier(LSTM(3, 4, batch_first=True), 4, 0), ValueError, "num_classes"),
        (lambda: core.initial_memory(0), ValueError, "batch_size"),
        (lambda: MemoryAttention(6, 4), ValueError, "slot_size"),
        (lambda: MemoryAttention(4, 0), ValueError, "num_heads"),
        (lambda: train_nth_farthest(core, 1, 0.0, 0), ValueError, "lr"),
        (lambda: train_nth_farthest("rmc", 1, 1e-3, 0), TypeError, "model"),
        (lambda: train_nth_farthest(core, 1, 1e-3, 0, batch_size=0), ValueError, "batch_size"),
        (lambda: accuracy(nn.Identity(), torch.zeros(3, 2), torch.zeros(3)), TypeError, "targets"),
        (lambda: accuracy(nn.Identity(), torch.zeros(3, 2), torch.zeros(2, dtype=torch.long)), ValueError,
         "targets"),
        (lambda: MemoryAttention(4, 2)(torch.zeros(2, 3, 5), torch.zeros(2, 4)), ValueError, "memory"),
        (lambda: MemoryAttention(4, 2)(torch.zeros(2, 3, 4), torch.zeros(3, 4)), ValueError, "row"),
        (lambda: MemoryAttention(4, 2)(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long)), TypeError, "row"),
    ]
    for call, exc, name in cases:
        with pytest.raises(exc, match=name):
            call()
