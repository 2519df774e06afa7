"""papers30.data.sort_of_clevr: answers against a plain loop and hand-made scenes; rendering."""

from __future__ import annotations

import pytest
import torch

import itertools

from papers30.data.sort_of_clevr import (ANSWERS, COLOURS, QUESTION_TYPES, RGB, Scenes, _answers,
                                         accuracy_by_type, answer, encode_questions, majority_shape,
                                         random_scenes, render, sort_of_clevr, state_description)


def hand_scene():
    """Three squares and three circles; red (colour 0) at the top left."""
    colours = torch.tensor([[0, 1, 2, 3, 4, 5]])
    shapes = torch.tensor([[0, 1, 0, 1, 1, 0]])  # red square, green circle, blue square ...
    positions = torch.tensor([[[0.2, 0.2], [0.45, 0.2], [0.8, 0.8], [0.2, 0.7], [0.6, 0.3], [0.5, 0.9]]])
    return Scenes(colours, shapes, positions)


# question about red: shape, left, top, closest (green circle), furthest (blue square), count squares = 3
@pytest.mark.parametrize(
    "qtype,expected",
    [(0, "square"), (1, "yes"), (2, "yes"), (3, "circle"), (4, "square"), (5, "3")],
)
def test_answers_match_hand_computed_scene(qtype, expected):
    scenes = hand_scene()
    got = _answers(scenes, torch.tensor([0]), torch.tensor([0]), torch.tensor([qtype]))
    assert ANSWERS[int(got)] == expected
    plain = answer([0, 1, 2, 3, 4, 5], [0, 1, 0, 1, 1, 0], scenes.positions[0].tolist(), 0, qtype)
    assert ANSWERS[plain] == expected


@pytest.mark.parametrize("n_scenes", [1, 7])
def test_dataset_answers_match_plain_loop(n_scenes, gen):
    data = sort_of_clevr(n_scenes, gen)
    assert len(data) == 36 * n_scenes
    for m in range(len(data)):
        s = int(data.scene[m])
        want = answer(data.scenes.colours[s].tolist(), data.scenes.shapes[s].tolist(),
                      data.scenes.positions[s].tolist(), int(data.colour[m]), int(data.qtype[m]))
        assert int(data.answers[m]) == want
    assert set(data.qtype.tolist()) == set(range(6))
    assert data.relational.sum().item() == len(data) // 2


def test_scenes_are_valid_and_seeded(gen):
    s = random_scenes(50, gen)
    assert s.colours.shape == s.shapes.shape == (50, 6) and s.positions.shape == (50, 6, 2)
    assert (s.colours.sort(dim=1).values == torch.arange(6)).all()
    gap = (s.positions[:, :, None] - s.positions[:, None]).abs().amax(-1)
    gap = gap + torch.eye(6) * 10
    assert gap.min() > 2 * 0.1  # no two objects overlap
    again = random_scenes(50, torch.Generator().manual_seed(1234))
    assert torch.equal(again.positions, s.positions)


def test_state_description_layout():
    st = state_description(hand_scene())
    assert st.shape == (1, 6, 10)
    assert st[0, 2, :6].tolist() == [0, 0, 1, 0, 0, 0]  # blue
    assert st[0, 2, 6:8].tolist() == [1, 0]  # square
    torch.testing.assert_close(st[0, 2, 8:], torch.tensor([0.6, 0.6]))  # (0.8, 0.8) centred: 2 p - 1
    torch.testing.assert_close(st[0, 0, 8:], torch.tensor([-0.6, -0.6]))  # red, top left


def test_state_description_orders_by_colour_or_keeps_the_random_order(gen):
    scenes = random_scenes(20, gen)
    ordered = state_description(scenes)
    raw = state_description(scenes, order="random")
    # reference: a plain loop that puts each object in the slot of its colour
    for s in range(20):
        for k in range(6):
            c = int(scenes.colours[s, k])
            assert raw[s, k, c] == 1 and torch.equal(ordered[s, c], raw[s, k])
            torch.testing.assert_close(raw[s, k, 8:], 2 * scenes.positions[s, k] - 1)
    assert torch.equal(ordered[:, :, :6], torch.eye(6).expand(20, 6, 6))
    with pytest.raises(ValueError, match="order"):
        state_description(scenes, order="shape")


def test_majority_shape_matches_a_plain_loop(gen):
    data = sort_of_clevr(5, gen)
    got = majority_shape(data)
    for m in range(len(data)):
        s = int(data.scene[m])
        others = [int(data.scenes.shapes[s, k]) for k in range(6)
                  if int(data.scenes.colours[s, k]) != int(data.colour[m])]
        squares = others.count(0)
        assert ANSWERS[int(got[m])] == ("square" if squares >= 3 else "circle")


def test_majority_shape_floor_is_22_in_32_by_enumeration():
    """Reference: all 2^6 shape assignments and every (asked, nearest) pair, counted by hand."""
    right = total = 0
    for shapes in itertools.product((0, 1), repeat=6):
        for asked in range(6):
            others = [shapes[k] for k in range(6) if k != asked]
            majority = 0 if others.count(0) >= 3 else 1
            for target in (k for k in range(6) if k != asked):  # the closest (or furthest) object
                right += shapes[target] == majority
                total += 1
    assert right / total == 22 / 32


def test_accuracy_by_type_matches_a_plain_loop(gen):
    data = sort_of_clevr(4, gen)
    predicted = torch.randint(0, len(ANSWERS), (len(data),), generator=gen)
    predicted[::3] = data.answers[::3]
    got = accuracy_by_type(predicted, data)
    right = [int(p) == int(a) for p, a in zip(predicted, data.answers)]
    types = data.qtype.tolist()
    for t, name in enumerate(QUESTION_TYPES):
        mine = [r for r, q in zip(right, types) if q == t]
        assert got[name] == pytest.approx(sum(mine) / len(mine))
    rel = [r for r, q in zip(right, types) if q >= 3]
    dist = [r for r, q in zip(right, types) if q in (3, 4)]
    assert got["relational"] == pytest.approx(sum(rel) / len(rel))
    assert got["distance"] == pytest.approx(sum(dist) / len(dist))
    assert got["all"] == pytest.approx(sum(right) / len(right))
    assert accuracy_by_type(data.answers, data)["non-relational"] == 1.0
    with pytest.raises(ValueError, match="predicted"):
        accuracy_by_type(predicted[:-1], data)
    with pytest.raises(TypeError, match="data"):
        accuracy_by_type(predicted, data.scenes)
    with pytest.raises(TypeError, match="data"):
        majority_shape(data.scenes)


def test_render_draws_colours_and_shapes():
    img = render(hand_scene(), 40)
    assert img.shape == (1, 3, 40, 40)
    red = torch.tensor(RGB[0])
    # centre of the red square at (x, y) = (0.2, 0.2) -> row 8, column 8
    torch.testing.assert_close(img[0, :, 8, 8], red)
    # a square's corner pixel is coloured, a circle's is background (white)
    torch.testing.assert_close(img[0, :, 4, 4], red)  # pixel centre (0.1125, 0.1125)
    green_corner = img[0, :, 4, 14]  # green circle centred at (0.45, 0.2): column 18
    torch.testing.assert_close(green_corner, torch.ones(3))
    torch.testing.assert_close(img[0, :, 8, 18], torch.tensor(RGB[1]))
    # a pixel far from every object is white
    torch.testing.assert_close(img[0, :, 39, 0], torch.ones(3))


def test_encode_questions_layout():
    q = encode_questions(torch.tensor([2, 5]), torch.tensor([0, 4]))
    assert q.shape == (2, 11)
    assert q[0].tolist() == [0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0]
    assert q[1].tolist() == [0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0]
    assert len(COLOURS) == 6 and len(QUESTION_TYPES) == 6


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda g: random_scenes(0, g), ValueError, "n"),
        (lambda g: random_scenes(2, 3), TypeError, "generator"),
        (lambda g: random_scenes(2, g, size=0.3), ValueError, "size"),
        (lambda g: random_scenes(2, g, tries=0), ValueError, "tries"),
        (lambda g: sort_of_clevr(2, g, order="sorted"), ValueError, "order"),
        (lambda g: sort_of_clevr(2.0, g), TypeError, "n_scenes"),
        (lambda g: sort_of_clevr(2, g, image_size=0), ValueError, "image_size"),
        (lambda g: encode_questions(torch.tensor([0.0]), torch.tensor([1])), TypeError, "colour"),
        (lambda g: encode_questions(torch.tensor([6]), torch.tensor([1])), ValueError, "colour"),
        (lambda g: encode_questions(torch.tensor([1]), torch.tensor([1, 2])), ValueError, "qtype"),
        (lambda g: encode_questions(torch.tensor([1]), torch.tensor([6])), ValueError, "qtype"),
    ],
)
def test_bad_inputs_name_the_argument(call, exc, name, gen):
    with pytest.raises(exc, match=name):
        call(gen)


def test_batch_gathers_scene_inputs_for_questions(gen):
    data = sort_of_clevr(3, gen, image_size=16)
    idx = torch.tensor([0, 40, 107])
    x, q, a = data.batch(idx)
    assert x.shape == (3, 6, 10) and q.shape == (3, 11) and a.shape == (3,)
    torch.testing.assert_close(x[1], data.state[1])  # question 40 is about scene 1
    img, _, _ = data.batch(idx, pixels=True)
    torch.testing.assert_close(img[2], render(data.scenes, 16)[2])
    with pytest.raises(ValueError, match="pixels"):
        sort_of_clevr(1, gen).batch(idx[:1], pixels=True)
    with pytest.raises(TypeError, match="index"):
        data.batch(torch.tensor([0.0]))
