"""Sort-of-CLEVR, the synthetic relational question-answering task of chapter 16.

Santoro et al. (2017) built Sort-of-CLEVR to separate relational from
non-relational questions. Each scene holds ``N`` (six) objects on a plain
background, one of each colour, each a square or a circle. Every question
names one colour ``c`` and asks one of six things:

=========  ==============================================  ===============
type       question about the object of colour ``c``        answers
=========  ==============================================  ===============
shape      what shape is it?                               square, circle
left       is it in the left half of the image?            yes, no
top        is it in the top half of the image?             yes, no
closest    what shape is the object closest to it?         square, circle
furthest   what shape is the object furthest from it?      square, circle
count      how many objects have its shape (itself too)?   1 ... N
=========  ==============================================  ===============

The first three are *non-relational* (they need one object), the last three
*relational* (they need the object's relations to the others). Everything is
drawn from an explicit ``torch.Generator``, so a seed fixes the data set.

* :func:`random_scenes`: object colours, shapes and positions;
* :func:`state_description`: each object as a feature vector (the paper's
  "state description" input), in a canonical (colour) or the random order;
* :func:`render`: the scenes as small RGB images (the paper's pixel input);
* :func:`encode_questions`: the paper's question vector (colour one-hot,
  relational flag, question subtype);
* :func:`answer`: one question answered by a plain loop over the objects, the
  reference for the vectorised answers of :func:`sort_of_clevr`;
* :func:`sort_of_clevr`: a data set of scenes with every question about them;
* :func:`majority_shape`: the answers of a rule that counts shapes and
  measures no distance, the floor for "closest" and "furthest" questions.

Scene coordinates are in the unit square, ``x`` to the right and ``y`` *down*
(as in an image), so "top half" means ``y < 0.5``. Shapes: ``S`` scenes, ``N``
objects, ``M`` questions, ``Q`` question width, ``P`` image side in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from papers30 import _checks

COLOURS = ("red", "green", "blue", "orange", "grey", "yellow")
RGB = (
    (0.85, 0.10, 0.10),
    (0.10, 0.65, 0.20),
    (0.10, 0.25, 0.90),
    (1.00, 0.55, 0.00),
    (0.50, 0.50, 0.50),
    (0.95, 0.85, 0.00),
)
SHAPES = ("square", "circle")
QUESTION_TYPES = ("shape", "left", "top", "closest", "furthest", "count")
ANSWERS = ("yes", "no", "square", "circle", "1", "2", "3", "4", "5", "6")
N_OBJECTS = len(COLOURS)
STATE_DIM = N_OBJECTS + len(SHAPES) + 2
QUESTION_DIM = N_OBJECTS + 2 + 3
YES, NO, SQUARE = 0, 1, 2  # answer indices; circle = SQUARE + 1, count k = 3 + k


@dataclass
class Scenes:
    """``S`` scenes of ``N`` objects; the order of the objects within a scene is random.

    ``colours`` (S, N) int: each scene holds every colour index once;
    ``shapes`` (S, N) int: 0 square, 1 circle; ``positions`` (S, N, 2) float:
    centres ``(x, y)`` in the unit square, ``y`` pointing down.
    """

    colours: torch.Tensor
    shapes: torch.Tensor
    positions: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    def __len__(self) -> int:
        return self.colours.shape[0]


def random_scenes(
    n: int,
    generator: torch.Generator,
    *,
    size: float = 0.1,
    margin: float = 0.02,
    tries: int = 64,
) -> Scenes:
    """Draw ``n`` scenes of six objects that do not overlap.

    Objects have half-width ``size`` (a square's half side, a circle's radius)
    and keep ``margin`` of space between them and inside the border: centres
    are uniform in ``[size + margin, 1 - size - margin]``, placed one object
    at a time, each the first of ``tries`` uniform candidates that is more
    than ``2 * size + margin`` from every object already placed (a square
    distance, so even two squares never touch). A scene in which no candidate
    fits is drawn again. All scenes are placed at once, as tensors.
    """
    _checks.positive_int("n", n)
    _checks.positive_int("tries", tries)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not 0 < size < 0.15:
        raise ValueError(f"size must be in (0, 0.15) so six objects fit, got {size}")
    low, high = size + margin, 1 - size - margin
    gap = 2 * size + margin
    positions = torch.empty(n, N_OBJECTS, 2)
    todo = torch.arange(n)
    while todo.numel():
        S = todo.numel()
        placed = torch.empty(S, N_OBJECTS, 2)
        ok = torch.ones(S, dtype=torch.bool)
        for k in range(N_OBJECTS):
            cand = low + (high - low) * torch.rand(S, tries, 2, generator=generator)
            far = (cand[:, :, None] - placed[:, None, :k]).abs().amax(-1) > gap  # (S, tries, k)
            valid = far.all(-1)  # (S, tries)
            first = valid.float().argmax(dim=1)  # the first valid candidate (0 when none is)
            placed[:, k] = cand[torch.arange(S), first]
            ok &= valid.any(dim=1)
        positions[todo[ok]] = placed[ok]
        todo = todo[~ok]
    colours = torch.rand(n, N_OBJECTS, generator=generator).argsort(dim=1)
    shapes = torch.randint(0, len(SHAPES), (n, N_OBJECTS), generator=generator)
    return Scenes(colours, shapes, positions)


ORDERS = ("colour", "random")


@_checks.typed
def state_description(scenes: Scenes, *, order: str = "colour") -> torch.Tensor:
    """Objects as feature vectors: colour one-hot (6), shape one-hot (2), ``x``, ``y``; (S, N, 10).

    Coordinates are centred on the image, ``2 * position - 1`` in ``[-1, 1]``
    (``x < 0`` is the left half, ``y < 0`` the top half). ``order="colour"``
    lists each scene's objects in the order of :data:`COLOURS`, the same slot
    for the same colour in every scene (a canonical order, which an MLP on the
    concatenated objects needs); ``order="random"`` keeps the generator's
    random order.
    """
    _checks.one_of("order", order, ORDERS)
    colour = torch.nn.functional.one_hot(scenes.colours, N_OBJECTS).float()
    shape = torch.nn.functional.one_hot(scenes.shapes, len(SHAPES)).float()
    state = torch.cat([colour, shape, 2 * scenes.positions - 1], dim=-1)
    if order == "colour":
        slots = scenes.colours.argsort(dim=1)  # slots[s, c]: the object of colour c
        state = state.gather(1, slots[..., None].expand_as(state))
    return state


@_checks.typed
def render(scenes: Scenes, image_size: int = 32, *, size: float = 0.1) -> torch.Tensor:
    """Draw the scenes as RGB images on a white background: (S, 3, P, P) in ``[0, 1]``.

    A pixel belongs to an object when its centre lies inside it: for a square,
    ``max(|dx|, |dy|) <= size``; for a circle, ``dx^2 + dy^2 <= size^2``.
    """
    _checks.positive_int("image_size", image_size)
    grid = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size
    ys, xs = torch.meshgrid(grid, grid, indexing="ij")  # (P, P): row = y, column = x
    dx = xs[None, None] - scenes.positions[..., 0, None, None]  # (S, N, P, P)
    dy = ys[None, None] - scenes.positions[..., 1, None, None]
    square = torch.maximum(dx.abs(), dy.abs()) <= size
    circle = dx**2 + dy**2 <= size**2
    inside = torch.where(scenes.shapes[..., None, None] == 0, square, circle)
    rgb = torch.tensor(RGB)[scenes.colours]  # (S, N, 3)
    images = torch.ones(len(scenes), 3, image_size, image_size)
    for k in range(N_OBJECTS):
        mask = inside[:, k, None]  # (S, 1, P, P)
        images = torch.where(mask, rgb[:, k, :, None, None], images)
    return images


def encode_questions(colour: torch.Tensor, qtype: torch.Tensor) -> torch.Tensor:
    """The paper's question vector: colour one-hot (6), relational one-hot (2), subtype (3).

    ``colour`` and ``qtype`` are (M,) integer tensors (indices into
    :data:`COLOURS` and :data:`QUESTION_TYPES`); returns (M, 11).
    """
    _checks.tensor("colour", colour, ndim=1, kind="int")
    _checks.tensor("qtype", qtype, ndim=1, kind="int")
    _checks.size_matches("qtype", qtype.shape[0], colour.shape[0], "length")
    if colour.numel() and not (0 <= int(colour.min()) and int(colour.max()) < N_OBJECTS):
        raise ValueError(f"colour must hold indices in [0, {N_OBJECTS}), got {colour.tolist()}")
    if qtype.numel() and not (0 <= int(qtype.min()) and int(qtype.max()) < len(QUESTION_TYPES)):
        raise ValueError(f"qtype must hold indices in [0, 6), got {qtype.tolist()}")
    one_hot = torch.nn.functional.one_hot
    relational = one_hot(qtype // 3, 2)
    subtype = one_hot(qtype % 3, 3)
    return torch.cat([one_hot(colour, N_OBJECTS), relational, subtype], dim=-1).float()


def answer(
    colours: list[int],
    shapes: list[int],
    positions: list[tuple[float, float]],
    colour: int,
    qtype: int,
) -> int:
    """Answer one question about one scene with plain Python; return an index into :data:`ANSWERS`.

    The scene is given as lists over its objects; ``colour`` and ``qtype``
    index :data:`COLOURS` and :data:`QUESTION_TYPES`.
    """
    for name, value in (("colours", colours), ("shapes", shapes), ("positions", positions)):
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{name} must be a non-empty list over the scene's objects, got {value!r:.60}")
    _checks.size_matches("shapes", len(shapes), len(colours), "length (one per object)")
    _checks.size_matches("positions", len(positions), len(colours), "length (one per object)")
    if colour not in colours:
        raise ValueError(f"colour must be one of the scene's colours {colours}, got {colour!r}")
    if isinstance(qtype, bool) or not isinstance(qtype, int) or not 0 <= qtype < len(QUESTION_TYPES):
        raise ValueError(f"qtype must be an int in 0..{len(QUESTION_TYPES) - 1}, got {qtype!r}")
    me = colours.index(colour)
    x, y = positions[me]
    kind = QUESTION_TYPES[qtype]
    if kind == "shape":
        return SQUARE + shapes[me]
    if kind == "left":
        return YES if x < 0.5 else NO
    if kind == "top":
        return YES if y < 0.5 else NO
    if kind == "count":
        same = sum(1 for s in shapes if s == shapes[me])
        return ANSWERS.index(str(same))
    best, best_d = None, None
    for k, (u, v) in enumerate(positions):
        if k == me:
            continue
        d = ((u - x) ** 2 + (v - y) ** 2) ** 0.5
        if best is None or (d < best_d if kind == "closest" else d > best_d):
            best, best_d = k, d
    return SQUARE + shapes[best]


@dataclass
class SortOfClevr:
    """A Sort-of-CLEVR data set: scenes and every (colour, type) question about each.

    ``state`` (S, N, 10) and ``images`` (S, 3, P, P) or None describe the
    scenes; question ``m`` is about scene ``scene[m]``, encoded as
    ``questions[m]`` (Q = 11), of type ``qtype[m]``, with answer index
    ``answers[m]``.
    """

    scenes: Scenes
    state: torch.Tensor
    images: torch.Tensor | None
    scene: torch.Tensor
    colour: torch.Tensor
    qtype: torch.Tensor
    questions: torch.Tensor
    answers: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def relational(self) -> torch.Tensor:
        """(M,) bool: True for the three relational question types."""
        return self.qtype >= 3

    def __len__(self) -> int:
        return self.answers.shape[0]

    def batch(self, index: torch.Tensor, *, pixels: bool = False) -> tuple[torch.Tensor, ...]:
        """Questions ``index`` (K,) as model inputs: (scene input, questions, answers).

        The scene input is the state description (K, N, 10), or with
        ``pixels=True`` the images (K, 3, P, P).
        """
        _checks.tensor("index", index, ndim=1, kind="int")
        if pixels and self.images is None:
            raise ValueError("pixels=True needs a data set made with image_size")
        source = self.images if pixels else self.state
        return source[self.scene[index]], self.questions[index], self.answers[index]


def _answers(scenes: Scenes, scene: torch.Tensor, colour: torch.Tensor, qtype: torch.Tensor) -> torch.Tensor:
    """Vectorised answers to questions ``(scene, colour, qtype)``, (M,) each; returns (M,)."""
    cols, shapes, pos = scenes.colours[scene], scenes.shapes[scene], scenes.positions[scene]
    me = (cols == colour[:, None]).float().argmax(dim=1)  # (M,) the object asked about
    rows = torch.arange(scene.shape[0])
    my_pos, my_shape = pos[rows, me], shapes[rows, me]
    dist = (pos - my_pos[:, None]).norm(dim=-1)  # (M, N)
    dist[rows, me] = float("inf")
    closest = shapes[rows, dist.argmin(dim=1)]
    dist[rows, me] = -float("inf")
    furthest = shapes[rows, dist.argmax(dim=1)]
    count = (shapes == my_shape[:, None]).sum(dim=1)
    table = torch.stack(
        [
            SQUARE + my_shape,
            torch.where(my_pos[:, 0] < 0.5, YES, NO),
            torch.where(my_pos[:, 1] < 0.5, YES, NO),
            SQUARE + closest,
            SQUARE + furthest,
            3 + count,
        ],
        dim=1,
    )
    return table[rows, qtype]


def sort_of_clevr(
    n_scenes: int,
    generator: torch.Generator,
    *,
    image_size: int | None = None,
    order: str = "colour",
) -> SortOfClevr:
    """``n_scenes`` random scenes with all 36 questions each (6 colours x 6 types).

    The state description lists the objects in ``order`` (see
    :func:`state_description`). With ``image_size`` the scenes are also
    rendered (see :func:`render`); without it ``images`` is None.
    """
    _checks.positive_int("n_scenes", n_scenes)
    if image_size is not None:
        _checks.positive_int("image_size", image_size)
    _checks.one_of("order", order, ORDERS)
    scenes = random_scenes(n_scenes, generator)
    per = N_OBJECTS * len(QUESTION_TYPES)
    scene = torch.arange(n_scenes).repeat_interleave(per)
    colour = torch.arange(N_OBJECTS).repeat_interleave(len(QUESTION_TYPES)).repeat(n_scenes)
    qtype = torch.arange(len(QUESTION_TYPES)).repeat(N_OBJECTS * n_scenes)
    return SortOfClevr(
        scenes=scenes,
        state=state_description(scenes, order=order),
        images=None if image_size is None else render(scenes, image_size),
        scene=scene,
        colour=colour,
        qtype=qtype,
        questions=encode_questions(colour, qtype),
        answers=_answers(scenes, scene, colour, qtype),
    )


def majority_shape(data: SortOfClevr) -> torch.Tensor:
    """The answer "the shape most of the other five objects have" for every question; (M,).

    A rule that needs no distances: for a "closest" or "furthest" question it
    is right whenever the object asked for has the majority shape, which
    happens 22 times in 32 for shapes drawn at random (five others: 2/32 all
    alike, 10/32 four against one, 20/32 three against two, right with
    probability 1, 4/5 and 3/5). It is the floor a model reaches on those
    questions from counting shapes alone.
    """
    if not isinstance(data, SortOfClevr):
        raise TypeError(f"data must be a SortOfClevr, got {type(data).__name__}")
    shapes = data.scenes.shapes[data.scene]  # (M, N)
    asked = data.scenes.colours[data.scene] == data.colour[:, None]  # (M, N): the object asked about
    squares = ((shapes == 0) & ~asked).sum(dim=1)  # among the other five
    return SQUARE + (squares * 2 < N_OBJECTS - 1).long()


def accuracy_by_type(predicted: torch.Tensor, data: SortOfClevr) -> dict[str, float]:
    """The share of ``predicted`` answers (M,) that are right, by question type and by group.

    Keys: the six :data:`QUESTION_TYPES`; ``"relational"`` and
    ``"non-relational"`` (three types each); ``"distance"`` ("closest" and
    "furthest" together); ``"all"``. A group's accuracy is over all of its
    questions (every type has the same number of questions in a data set made
    by :func:`sort_of_clevr`).
    """
    if not isinstance(data, SortOfClevr):
        raise TypeError(f"data must be a SortOfClevr, got {type(data).__name__}")
    _checks.tensor("predicted", predicted, ndim=1, kind="int")
    _checks.size_matches("predicted", predicted.shape[0], len(data), "length")
    right = (predicted.to(data.answers.device) == data.answers).float()
    groups = {name: data.qtype == t for t, name in enumerate(QUESTION_TYPES)}
    groups["relational"] = data.relational
    groups["non-relational"] = ~data.relational
    groups["distance"] = (data.qtype == 3) | (data.qtype == 4)
    groups["all"] = torch.ones_like(data.relational)
    return {name: right[mask].mean().item() for name, mask in groups.items()}
