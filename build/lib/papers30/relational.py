"""Relational reasoning over sets of objects (chapter 16).

Santoro et al. (2017), "A Simple Neural Network Module for Relational
Reasoning": a relation network (RN) applies one shared function ``g`` to every
ordered pair of objects, together with a question, sums the results and maps
the sum through a second function ``f``:

    RN(O, q) = f( sum_{i,j} g([o_i, o_j, q]) ).

* :class:`RelationNetwork`: the RN, vectorised over all ``N * N`` pairs, with
  an optional object mask (absent objects take part in no pair);
* :class:`FlatMLP`: the baseline that concatenates all objects and the
  question into one vector for an MLP (the paper's "CNN+MLP" head);
* :class:`ConvObjects`: a small CNN whose feature-map cells, tagged with their
  coordinates, are the objects of an RN or an MLP when the input is pixels;
* :class:`PixelReasoner`: ``head(ConvObjects(image), question)``;
* :func:`mlp`: the stack of linear layers and ReLUs all of them use;
* :func:`predict`: a model's answers to every question of a Sort-of-CLEVR set;
* :func:`train_sort_of_clevr`: chapter 16's experiment, one model and seed
  per call, returning a :class:`ReasonerRun`.

Shapes: ``B`` batch, ``N`` objects, ``D`` object width, ``Q`` question width,
``H`` hidden width, ``C`` output width (answer classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from papers30 import _checks
from papers30.data.sort_of_clevr import (ANSWERS, N_OBJECTS, QUESTION_DIM, QUESTION_TYPES, STATE_DIM,
                                         SortOfClevr, accuracy_by_type, majority_shape, sort_of_clevr)
from papers30.runtime import get_device, seed_everything
from papers30.training import History, fit


def mlp(sizes: Sequence[int], *, final_activation: bool = False, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of widths ``sizes[0] -> sizes[1] -> ...`` with ReLU between them.

    ``final_activation`` adds a ReLU after the last layer; ``dropout`` is
    applied before the last layer (as in the paper's ``f``).
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes must hold at least two widths, got {list(sizes)}")
    for k, s in enumerate(sizes):
        _checks.positive_int(f"sizes[{k}]", s)
    _checks.probability("dropout", dropout)
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = k == len(sizes) - 2
        if last and dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(a, b))
        if not last or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_inputs(
    objects: object,
    question: object,
    mask: object,
    object_dim: int,
    question_dim: int,
    n_objects: int | None = None,
) -> None:
    _checks.tensor("objects", objects, ndim=3, kind="float")
    _checks.size_matches("objects", objects.shape[-1], object_dim, "object width")
    if n_objects is not None:
        _checks.size_matches("objects", objects.shape[1], n_objects, "number of objects")
    B, N = objects.shape[:2]
    if question_dim:
        _checks.tensor("question", question, ndim=2, kind="float")
        _checks.size_matches("question", question.shape[0], B, "batch size")
        _checks.size_matches("question", question.shape[1], question_dim, "width")
    elif question is not None:
        raise ValueError("question must be None when question_dim is 0")
    if mask is not None:
        _checks.tensor("mask", mask, ndim=2, kind="bool")
        if tuple(mask.shape) != (B, N):
            raise ValueError(f"mask must have shape {(B, N)}, got {tuple(mask.shape)}")


class RelationNetwork(nn.Module):
    """RN(O, q) = f(sum over pairs (i, j) of g([o_i, o_j, q])), eq. (rn-def).

    ``g`` has ``g_layers`` linear layers of width ``hidden`` (ReLU after each),
    ``f`` has ``f_layers`` linear layers ending in ``out_features``. All
    ``N * N`` ordered pairs are used, including ``i == j``, as in the paper.
    ``question_dim=0`` gives an RN without a question.
    """

    def __init__(
        self,
        object_dim: int,
        question_dim: int,
        out_features: int,
        *,
        hidden: int = 256,
        g_layers: int = 4,
        f_layers: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _checks.positive_int("object_dim", object_dim)
        if isinstance(question_dim, bool) or not isinstance(question_dim, int):
            raise TypeError(f"question_dim must be an int, got {type(question_dim).__name__}")
        if question_dim < 0:
            raise ValueError(f"question_dim must be >= 0, got {question_dim}")
        for name, value in (("out_features", out_features), ("hidden", hidden),
                            ("g_layers", g_layers), ("f_layers", f_layers)):
            _checks.positive_int(name, value)
        self.object_dim, self.question_dim = object_dim, question_dim
        pair_dim = 2 * object_dim + question_dim
        self.g = mlp([pair_dim] + [hidden] * g_layers, final_activation=True)
        self.f = mlp([hidden] * f_layers + [out_features], dropout=dropout)

    def relations(
        self,
        objects: torch.Tensor,
        question: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """g of every ordered pair, (B, N, N, H); pairs with a masked object are zero.

        ``objects`` (B, N, D), ``question`` (B, Q) or None, ``mask`` (B, N)
        bool, True for a real object.
        """
        _check_inputs(objects, question, mask, self.object_dim, self.question_dim)
        D = self.object_dim
        first, rest = self.g[0], self.g[1:]
        # The first layer is linear in [o_i, o_j, q]: split its weight into three
        # blocks, apply each once, and broadcast the sum over all N * N pairs.
        w_i, w_j, w_q = first.weight.split([D, D, self.question_dim], dim=1)
        z = (objects @ w_i.T)[:, :, None, :] + (objects @ w_j.T)[:, None, :, :] + first.bias
        if self.question_dim:
            z = z + (question @ w_q.T)[:, None, None, :]
        g = rest(z)  # (B, N, N, H)
        if mask is not None:
            pair = mask[:, :, None] & mask[:, None, :]  # (B, N, N)
            g = g * pair[..., None].to(g.dtype)
        return g

    def forward(
        self,
        objects: torch.Tensor,
        question: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, C) from ``objects`` (B, N, D), ``question`` (B, Q), ``mask`` (B, N)."""
        return self.f(self.relations(objects, question, mask).sum(dim=(1, 2)))


class FlatMLP(nn.Module):
    """Baseline: an MLP on the concatenation ``[o_1, ..., o_N, q]``, (B, N * D + Q) -> (B, C).

    It sees the same information as :class:`RelationNetwork` but has no
    built-in notion of objects or pairs: every relation must be learned for
    every pair of input slots separately. Masked objects are zeroed.
    """

    def __init__(
        self,
        n_objects: int,
        object_dim: int,
        question_dim: int,
        out_features: int,
        *,
        hidden: int = 256,
        layers: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("n_objects", n_objects), ("object_dim", object_dim),
                            ("out_features", out_features), ("hidden", hidden),
                            ("layers", layers)):
            _checks.positive_int(name, value)
        if isinstance(question_dim, bool) or not isinstance(question_dim, int) or question_dim < 0:
            raise ValueError(f"question_dim must be an int >= 0, got {question_dim!r}")
        self.n_objects, self.object_dim, self.question_dim = n_objects, object_dim, question_dim
        width = n_objects * object_dim + question_dim
        self.net = mlp([width] + [hidden] * layers + [out_features], dropout=dropout)

    def forward(
        self,
        objects: torch.Tensor,
        question: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, C) from ``objects`` (B, N, D), ``question`` (B, Q), ``mask`` (B, N)."""
        _check_inputs(objects, question, mask, self.object_dim, self.question_dim, self.n_objects)
        if mask is not None:
            objects = objects * mask[..., None].to(objects.dtype)
        x = objects.flatten(1)
        if self.question_dim:
            x = torch.cat([x, question], dim=1)
        return self.net(x)


class ConvObjects(nn.Module):
    """A CNN that turns an image (B, 3, P, P) into objects (B, N, K + 2).

    ``layers`` convolutions of ``channels`` filters, kernel 3, stride 2 (with
    ReLU and batch norm, as in the paper) shrink the image to a ``k x k``
    feature map; each of its ``N = k * k`` cells is an object, its ``K``
    features tagged with the cell's ``(x, y)`` centre in ``[0, 1]``.
    """

    def __init__(self, in_channels: int = 3, channels: int = 24, layers: int = 4) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("channels", channels), ("layers", layers)):
            _checks.positive_int(name, value)
        blocks: list[nn.Module] = []
        for k in range(layers):
            blocks += [nn.Conv2d(in_channels if k == 0 else channels, channels, 3, stride=2, padding=1),
                       nn.ReLU(), nn.BatchNorm2d(channels)]
        self.net = nn.Sequential(*blocks)
        self.in_channels, self.out_features = in_channels, channels + 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Objects (B, k * k, K + 2) from ``images`` (B, in_channels, P, P)."""
        _checks.tensor("images", images, ndim=4, kind="float")
        _checks.size_matches("images", images.shape[1], self.in_channels, "channels")
        fmap = self.net(images)  # (B, K, k, k)
        B, K, h, w = fmap.shape
        ys, xs = torch.meshgrid(
            (torch.arange(h, device=fmap.device, dtype=fmap.dtype) + 0.5) / h,
            (torch.arange(w, device=fmap.device, dtype=fmap.dtype) + 0.5) / w,
            indexing="ij",
        )
        coords = torch.stack([xs, ys]).expand(B, 2, h, w)
        return torch.cat([fmap, coords], dim=1).flatten(2).transpose(1, 2)


class PixelReasoner(nn.Module):
    """``head(encoder(images), question)``: a CNN+RN or CNN+MLP model for pixel input."""

    def __init__(self, encoder: ConvObjects, head: nn.Module) -> None:
        super().__init__()
        if not isinstance(encoder, ConvObjects):
            raise TypeError(f"encoder must be a ConvObjects, got {type(encoder).__name__}")
        if not isinstance(head, (RelationNetwork, FlatMLP)):
            raise TypeError(f"head must be a RelationNetwork or FlatMLP, got {type(head).__name__}")
        self.encoder, self.head = encoder, head

    def forward(self, images: torch.Tensor, question: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, C) from ``images`` (B, 3, P, P) and ``question`` (B, Q)."""
        return self.head(self.encoder(images), question)


# --- chapter 16's experiment: Sort-of-CLEVR from state descriptions ----------------

ARMS = ("rn", "mlp")


def predict(model: nn.Module, data: SortOfClevr, *, chunk: int = 2048) -> torch.Tensor:
    """``model``'s answer (an index into ``ANSWERS``) to every question of ``data``, (M,), on the CPU.

    The questions go through the model in chunks of ``chunk`` with gradients
    off; the model runs on the device its parameters are on.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, SortOfClevr):
        raise TypeError(f"data must be a SortOfClevr, got {type(data).__name__}")
    _checks.positive_int("chunk", chunk)
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(data), chunk):
            x, q, _ = data.batch(torch.arange(start, min(start + chunk, len(data))))
            out.append(model(x.to(device), q.to(device)).argmax(dim=1).cpu())
    return torch.cat(out)


@dataclass
class ReasonerRun:
    """One trained model of chapter 16: its training history and its held-out accuracies.

    ``history.evals`` hold the validation accuracies by question type (see
    :func:`~papers30.data.sort_of_clevr.accuracy_by_type`) every ``every``
    steps; ``test`` the test accuracies at the end; ``floor`` the accuracies
    of :func:`~papers30.data.sort_of_clevr.majority_shape` on the same test
    questions, and ``prior`` those of the most common training answer of each
    question type (a guess that ignores the scene). ``losses`` (the training
    losses) is what a recorded run traces.
    """

    arm: str
    model: nn.Module
    history: History
    test: dict[str, float]
    floor: dict[str, float]
    prior: dict[str, float]

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def losses(self) -> list[float]:
        """Training loss at every step."""
        return self.history.losses


def train_sort_of_clevr(
    arm: str = "rn",
    *,
    seed: int = 0,
    n_train: int = 4000,
    n_valid: int = 200,
    n_test: int = 500,
    steps: int = 3000,
    batch: int = 64,
    lr: float = 1e-3,
    hidden: int = 64,
    mlp_hidden: int = 256,
    every: int = 500,
    stop_after: int | None = None,
) -> ReasonerRun:
    """Train a relation network (``arm="rn"``) or the MLP baseline (``"mlp"``) on Sort-of-CLEVR.

    The data are three sets of :func:`~papers30.data.sort_of_clevr.sort_of_clevr`
    state descriptions (``n_train``, ``n_valid`` and ``n_test`` scenes, every
    question about each, objects in colour order), drawn after
    :func:`~papers30.runtime.seed_everything` ``(seed)`` from its generator,
    which then draws the ``batch`` training questions of every step: the data
    and the batches depend on ``seed`` alone, so both arms of a seed see the
    same questions in the same order. The RN's ``g`` has three layers and its
    ``f`` two, all of width ``hidden``: four hidden layers in all. The MLP
    has four hidden layers of width ``mlp_hidden``. Both train with Adam at
    ``lr`` on the cross-entropy of the answer for ``steps`` steps
    (``stop_after`` ends the run early without changing anything else), are
    scored on the validation set every ``every`` steps, and on the test set at
    the end. Every argument is a plain value, so a recorded run can replay its
    first steps.
    """
    _checks.one_of("arm", arm, ARMS)
    for name, value in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test),
                        ("batch", batch), ("hidden", hidden), ("mlp_hidden", mlp_hidden)):
        _checks.positive_int(name, value)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    generator = seed_everything(seed)
    train, valid, test = (sort_of_clevr(n, generator) for n in (n_train, n_valid, n_test))
    device = get_device()
    if arm == "rn":
        model: nn.Module = RelationNetwork(STATE_DIM, QUESTION_DIM, len(ANSWERS), hidden=hidden,
                                           g_layers=3, f_layers=2)
    else:
        model = FlatMLP(N_OBJECTS, STATE_DIM, QUESTION_DIM, len(ANSWERS), hidden=mlp_hidden, layers=4)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def loss_fn(step: int) -> torch.Tensor:
        x, q, a = train.batch(torch.randint(len(train), (batch,), generator=generator))
        return nn.functional.cross_entropy(model(x.to(device), q.to(device)), a.to(device))

    history = fit(model, optimizer, loss_fn, steps, every=every, stop_after=stop_after,
                  evaluate=lambda: accuracy_by_type(predict(model, valid), valid))
    common = torch.stack([train.answers[train.qtype == t].mode().values for t in range(len(QUESTION_TYPES))])
    return ReasonerRun(arm=arm, model=model, history=history,
                       test=accuracy_by_type(predict(model, test), test),
                       floor=accuracy_by_type(majority_shape(test), test),
                       prior=accuracy_by_type(common[test.qtype], test))
