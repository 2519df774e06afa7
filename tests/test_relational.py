"""papers30.relational against brute force: a double loop over object pairs (float64)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.data.sort_of_clevr import sort_of_clevr
from papers30.relational import (ConvObjects, FlatMLP, PixelReasoner, RelationNetwork, mlp, predict,
                                 train_sort_of_clevr)

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def make_rn(D=3, Q=2, C=4, seed=0, **kw):
    torch.manual_seed(seed)
    return RelationNetwork(D, Q, C, hidden=8, g_layers=2, f_layers=2, **kw).double()


def brute_force_rn(rn, objects, question, mask=None):
    """eq. (rn-def) with two explicit loops over the pairs of each example."""
    out = []
    for b in range(objects.shape[0]):
        total = torch.zeros(rn.g[-2].out_features, dtype=DT)
        n = objects.shape[1]
        for i in range(n):
            for j in range(n):
                if mask is not None and not (mask[b, i] and mask[b, j]):
                    continue
                parts = [objects[b, i], objects[b, j]]
                if question is not None:
                    parts.append(question[b])
                total = total + rn.g(torch.cat(parts))
        out.append(rn.f(total))
    return torch.stack(out)


@pytest.mark.parametrize("B,N,D,Q", [(1, 1, 1, 1), (2, 3, 3, 2), (1, 5, 4, 0), (3, 2, 2, 5)])
def test_rn_matches_brute_force_double_loop(B, N, D, Q, gen):
    rn = make_rn(D, Q)
    objects = torch.randn(B, N, D, dtype=DT, generator=gen)
    question = torch.randn(B, Q, dtype=DT, generator=gen) if Q else None
    got = rn(objects, question)
    assert got.shape == (B, 4)
    torch.testing.assert_close(got, brute_force_rn(rn, objects, question), **TOL)


def test_rn_relations_match_g_of_each_pair(gen):
    rn = make_rn()
    objects = torch.randn(2, 4, 3, dtype=DT, generator=gen)
    question = torch.randn(2, 2, dtype=DT, generator=gen)
    rel = rn.relations(objects, question)
    assert rel.shape == (2, 4, 4, 8)
    want = rn.g(torch.cat([objects[1, 2], objects[1, 0], question[1]]))
    torch.testing.assert_close(rel[1, 2, 0], want, **TOL)


def test_rn_masked_objects_match_brute_force_and_have_no_effect(gen):
    rn = make_rn()
    objects = torch.randn(2, 5, 3, dtype=DT, generator=gen)
    question = torch.randn(2, 2, dtype=DT, generator=gen)
    mask = torch.tensor([[True, False, True, True, False], [True, True, True, True, True]])
    got = rn(objects, question, mask)
    torch.testing.assert_close(got, brute_force_rn(rn, objects, question, mask), **TOL)
    # change the masked objects: nothing changes; drop them: nothing changes
    noisy = objects.clone()
    noisy[0, 1] += 100.0
    noisy[0, 4] -= 7.0
    torch.testing.assert_close(rn(noisy, question, mask), got, **TOL)
    kept = objects[0, [0, 2, 3]][None]
    torch.testing.assert_close(rn(kept, question[:1])[0], got[0], **TOL)
    # and a masked object does change the answer when it is unmasked
    assert not torch.allclose(rn(objects, question)[0], got[0])


@given(st.integers(1, 6), st.integers(0, 10_000))
def test_rn_exactly_invariant_under_object_permutation(n, seed):
    g = torch.Generator().manual_seed(seed)
    rn = make_rn()
    objects = torch.randn(2, n, 3, dtype=DT, generator=g)
    question = torch.randn(2, 2, dtype=DT, generator=g)
    perm = torch.randperm(n, generator=g)
    torch.testing.assert_close(rn(objects[:, perm], question), rn(objects, question),
                               rtol=1e-12, atol=1e-12)


def test_flat_mlp_matches_manual_concatenation_and_is_order_sensitive(gen):
    torch.manual_seed(0)
    net = FlatMLP(3, 2, 4, 5, hidden=6, layers=2).double()
    objects = torch.randn(2, 3, 2, dtype=DT, generator=gen)
    question = torch.randn(2, 4, dtype=DT, generator=gen)
    x = torch.cat([objects[:, 0], objects[:, 1], objects[:, 2], question], dim=1)
    torch.testing.assert_close(net(objects, question), net.net(x), **TOL)
    assert not torch.allclose(net(objects[:, [2, 0, 1]], question), net(objects, question))
    mask = torch.tensor([[True, False, True], [True, True, True]])
    zeroed = objects.clone()
    zeroed[0, 1] = 0.0
    torch.testing.assert_close(net(objects, question, mask), net(zeroed, question), **TOL)


def test_mlp_layers_and_widths():
    net = mlp([3, 5, 2], dropout=0.5)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear"]
    assert net[0].in_features == 3 and net[-1].out_features == 2
    assert type(mlp([3, 5], final_activation=True)[-1]).__name__ == "ReLU"


@pytest.mark.parametrize("P,layers,k", [(32, 4, 2), (24, 2, 6), (8, 1, 4)])
def test_conv_objects_shape_and_coordinates(P, layers, k, gen):
    enc = ConvObjects(channels=5, layers=layers)
    objs = enc(torch.rand(2, 3, P, P, generator=gen))
    assert objs.shape == (2, k * k, 7)
    centres = (torch.arange(k) + 0.5) / k
    torch.testing.assert_close(objs[0, :, 5], centres.repeat(k))  # x varies fastest
    torch.testing.assert_close(objs[0, :, 6], centres.repeat_interleave(k))
    model = PixelReasoner(enc, RelationNetwork(7, 11, 10, hidden=8, g_layers=1, f_layers=1))
    assert model(torch.rand(2, 3, P, P, generator=gen), torch.rand(2, 11, generator=gen)).shape == (2, 10)


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda rn: rn([[1.0]], None), TypeError, "objects"),
        (lambda rn: rn(torch.zeros(2, 3, dtype=DT), torch.zeros(2, 2, dtype=DT)), ValueError, "objects"),
        (lambda rn: rn(torch.zeros(2, 3, 4, dtype=DT), torch.zeros(2, 2, dtype=DT)), ValueError, "objects"),
        (lambda rn: rn(torch.zeros(2, 3, 3, dtype=torch.long), torch.zeros(2, 2)), TypeError, "objects"),
        (lambda rn: rn(torch.zeros(2, 3, 3, dtype=DT), None), TypeError, "question"),
        (lambda rn: rn(torch.zeros(2, 3, 3, dtype=DT), torch.zeros(3, 2, dtype=DT)), ValueError, "question"),
        (lambda rn: rn(torch.zeros(2, 3, 3, dtype=DT), torch.zeros(2, 2, dtype=DT),
                       torch.ones(2, 3)), TypeError, "mask"),
        (lambda rn: rn(torch.zeros(2, 3, 3, dtype=DT), torch.zeros(2, 2, dtype=DT),
                       torch.ones(2, 4, dtype=torch.bool)), ValueError, "mask"),
    ],
)
def test_rn_bad_inputs_name_the_argument(call, exc, name):
    with pytest.raises(exc, match=name):
        call(make_rn())


@pytest.mark.parametrize(
    "make,exc,name",
    [
        (lambda: RelationNetwork(0, 2, 3), ValueError, "object_dim"),
        (lambda: RelationNetwork(2, -1, 3), ValueError, "question_dim"),
        (lambda: RelationNetwork(2, 2.0, 3), TypeError, "question_dim"),
        (lambda: RelationNetwork(2, 2, 3, hidden=0), ValueError, "hidden"),
        (lambda: FlatMLP(0, 2, 2, 3), ValueError, "n_objects"),
        (lambda: FlatMLP(2, 2, 2, 3, layers=1.5), TypeError, "layers"),
        (lambda: mlp([3]), ValueError, "sizes"),
        (lambda: mlp([3, 2], dropout=1.5), ValueError, "dropout"),
        (lambda: ConvObjects(channels=0), ValueError, "channels"),
        (lambda: PixelReasoner(ConvObjects(), torch.nn.Linear(2, 2)), TypeError, "head"),
    ],
)
def test_constructor_bad_arguments_name_the_argument(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


def test_flat_mlp_rejects_wrong_number_of_objects():
    net = FlatMLP(3, 2, 0, 4)
    with pytest.raises(ValueError, match="objects"):
        net(torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="question"):
        net(torch.zeros(1, 3, 2), torch.zeros(1, 1))


def test_predict_matches_one_batch_argmax(gen):
    data = sort_of_clevr(3, gen)
    torch.manual_seed(0)
    rn = RelationNetwork(10, 11, 10, hidden=8, g_layers=2, f_layers=2)
    x, q, _ = data.batch(torch.arange(len(data)))
    want = rn(x, q).argmax(dim=1)
    assert torch.equal(predict(rn, data, chunk=7), want)
    with pytest.raises(TypeError, match="model"):
        predict(lambda x, q: x, data)
    with pytest.raises(ValueError, match="chunk"):
        predict(rn, data, chunk=0)


SMALL = dict(n_train=4, n_valid=2, n_test=2, steps=6, batch=8, hidden=8, mlp_hidden=8, every=3)


@pytest.mark.parametrize("arm", ["rn", "mlp"])
def test_train_sort_of_clevr_is_seeded_and_stop_after_is_a_prefix(arm):
    """Reference: the same call twice, and the full run's first steps."""
    full = train_sort_of_clevr(arm, **SMALL)
    again = train_sort_of_clevr(arm, **SMALL)
    assert full.losses == again.losses and len(full.losses) == 6
    assert train_sort_of_clevr(arm, **SMALL, stop_after=2).losses == full.losses[:2]
    assert full.history.eval_steps == [3, 6]
    assert set(full.test) >= {"closest", "furthest", "relational", "non-relational", "distance"}
    assert full.floor["distance"] == pytest.approx(
        (full.floor["closest"] + full.floor["furthest"]) / 2)
    assert isinstance(full.model, RelationNetwork if arm == "rn" else FlatMLP)


def test_train_sort_of_clevr_arms_share_data_and_differ_in_model():
    rn, flat = train_sort_of_clevr("rn", **SMALL), train_sort_of_clevr("mlp", **SMALL)
    assert rn.floor == flat.floor  # the same test questions
    assert rn.losses != flat.losses
    with pytest.raises(ValueError, match="arm"):
        train_sort_of_clevr("cnn", **SMALL)
    with pytest.raises(ValueError, match="lr"):
        train_sort_of_clevr("rn", **{**SMALL, "lr": 0})


def test_train_sort_of_clevr_prior_is_the_most_common_answer_per_type():
    """Reference: the scene-blind guess recomputed from the regenerated data with a plain loop."""
    from collections import Counter

    from papers30.data.sort_of_clevr import QUESTION_TYPES
    from papers30.runtime import seed_everything

    run = train_sort_of_clevr("mlp", **SMALL)
    g = seed_everything(0)
    train, _, test = (sort_of_clevr(n, g) for n in (4, 2, 2))
    for t, name in enumerate(QUESTION_TYPES):
        counts = Counter(a for a, q in zip(train.answers.tolist(), train.qtype.tolist()) if q == t)
        top = max(counts.values())
        guesses = {a for a, c in counts.items() if c == top}
        mine = [a for a, q in zip(test.answers.tolist(), test.qtype.tolist()) if q == t]
        assert any(run.prior[name] == pytest.approx(sum(a == guess for a in mine) / len(mine))
                   for guess in guesses)
