"""papers30.data.images: the committed image set, its loader and the augmentation.

The loader is checked against the raw ``.npz`` read with NumPy alone, and the
augmentation against a per-image reference written with explicit slicing.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.data import images
from papers30.data.images import FULL_SETS, IMAGE_SETS, augment, cache_path, class_names, load_images

ASSET = resources.files("papers30.data") / "assets" / "fashion_mnist.npz"
# sha256 of the committed file, and of its arrays' bytes (x_test, x_train, y_test, y_train).
FILE_SHA256 = "4a5c718784d6d584ca1290399cf279ff31526b5a17197920443c3767ac51ab95"
CONTENT_SHA256 = "795822248b143bc91625591b849db3bf455e5382280c94cacf0556cd7cab3671"
SIZES = {"train": 10_000, "test": 2_000}


@pytest.fixture(scope="module")
def raw():
    with resources.as_file(ASSET) as path, np.load(path) as data:
        return {k: data[k] for k in data.files}


# ---------------------------------------------------------------- the committed file


def test_committed_file_checksum():
    with resources.as_file(ASSET) as path:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        size = path.stat().st_size
    assert digest == FILE_SHA256
    assert size <= 6 * 2**20


def test_committed_arrays_checksum(raw):
    assert sorted(raw) == ["x_test", "x_train", "y_test", "y_train"]
    digest = hashlib.sha256(b"".join(raw[k].tobytes() for k in sorted(raw))).hexdigest()
    assert digest == CONTENT_SHA256


def test_splits_are_disjoint(raw):
    train = {img.tobytes() for img in raw["x_train"]}
    test = {img.tobytes() for img in raw["x_test"]}
    assert len(train) == SIZES["train"] and len(test) == SIZES["test"]  # no duplicates inside
    assert not train & test


# ---------------------------------------------------------------- load_images


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_images_matches_raw_arrays(split, raw):
    x, y = load_images("fashion_mnist", split)
    n = SIZES[split]
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    np.testing.assert_allclose(x[:, 0].numpy(), raw[f"x_{split}"] / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(y.numpy(), raw[f"y_{split}"])
    assert x.min().item() == 0.0 and x.max().item() == 1.0


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_images_is_class_balanced(split):
    _, y = load_images(split=split)
    counts = torch.bincount(y, minlength=10)
    assert counts.tolist() == [SIZES[split] // 10] * 10
    assert len(class_names()) == 10 == len(IMAGE_SETS["fashion_mnist"])
    assert class_names("fashion_mnist")[9] == "ankle boot"


def test_load_images_is_shuffled_and_deterministic():
    x1, y1 = load_images()
    x2, y2 = load_images()
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len(set(y1[:50].tolist())) > 5  # not sorted by class


def test_load_images_returns_fresh_tensors():
    x1, _ = load_images(split="test")
    x1.zero_()
    x2, _ = load_images(split="test")
    assert x2.sum().item() > 0


def test_load_images_on_device():
    x, y = load_images(split="test", device="cpu")
    assert x.device.type == "cpu" and y.device.type == "cpu"


@pytest.mark.parametrize(
    "kwargs,exc,word",
    [
        (dict(name=3), TypeError, "name"),
        (dict(name="imagenet"), ValueError, "name"),
        (dict(split=0), TypeError, "split"),
        (dict(split="val"), ValueError, "split"),
        (dict(device=0), TypeError, "device"),
        (dict(device="not-a-device"), ValueError, "device"),
    ],
)
def test_load_images_bad_inputs(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        load_images(**kwargs)


def test_class_names_bad_name():
    with pytest.raises(ValueError, match="name"):
        class_names("cifar100")


# ---------------------------------------------------------------- the CIFAR-10 subset

CIFAR_ASSET = resources.files("papers30.data") / "assets" / "cifar10.npz.xz"
CIFAR_FILE_SHA256 = "cec9bdb39bf8b299e9339e2881b5e498c1bcd558174df07eb51e536f4bb84de4"
CIFAR_CONTENT_SHA256 = "290c003986b6c2cf8360969fdfd9f4e26023bf93f9a900a7d318e215f8b1ea85"
CIFAR_SIZES = {"train": 5_000, "test": 1_000}


@pytest.fixture(scope="module")
def cifar_raw():
    """The arrays read with the standard library and NumPy alone, not through the loader."""
    import io
    import lzma

    data = np.load(io.BytesIO(lzma.decompress(CIFAR_ASSET.read_bytes())))
    return {k: data[k] for k in data.files}


def test_cifar10_committed_file(cifar_raw):
    digest = hashlib.sha256(CIFAR_ASSET.read_bytes()).hexdigest()
    assert digest == CIFAR_FILE_SHA256
    assert len(CIFAR_ASSET.read_bytes()) <= 15 * 2**20
    assert sorted(cifar_raw) == ["x_test", "x_train", "y_test", "y_train"]
    content = hashlib.sha256(b"".join(cifar_raw[k].tobytes() for k in sorted(cifar_raw))).hexdigest()
    assert content == CIFAR_CONTENT_SHA256


def test_committed_data_fits_the_budget():
    assets = resources.files("papers30.data") / "assets"
    total = sum(len(f.read_bytes()) for f in assets.iterdir() if f.is_file())
    assert total < 20 * 10**6  # the repository's budget for committed data


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_cifar10_matches_raw_arrays(split, cifar_raw):
    x, y = load_images("cifar10", split)
    n = CIFAR_SIZES[split]
    assert x.shape == (n, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), cifar_raw[f"x_{split}"] / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(y.numpy(), cifar_raw[f"y_{split}"])
    assert torch.bincount(y, minlength=10).tolist() == [n // 10] * 10
    assert class_names("cifar10")[0] == "airplane" and class_names("cifar10")[9] == "truck"


def test_cifar10_splits_are_disjoint_and_natural(cifar_raw):
    train = {img.tobytes() for img in cifar_raw["x_train"]}
    test = {img.tobytes() for img in cifar_raw["x_test"]}
    assert len(train) == CIFAR_SIZES["train"] and len(test) == CIFAR_SIZES["test"]
    assert not train & test
    # CIFAR-10's published per-channel means (0.4914, 0.4822, 0.4465 over its 50,000 training
    # images): a subset of 5,000 lies within 0.01 of them; with red and blue swapped it would not.
    means = cifar_raw["x_train"].reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(means, [0.4914, 0.4822, 0.4465], atol=0.01)


# ---------------------------------------------------------------- the cached full CIFAR-10


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder in place of ~/.cache/papers30, with the loader's memory cleared."""
    monkeypatch.setenv("PAPERS30_CACHE", str(tmp_path))
    images._read.cache_clear()
    yield tmp_path
    images._read.cache_clear()


def test_cache_path_follows_the_environment(cache, monkeypatch):
    assert cache_path("cifar10_full") == cache / "cifar10_full.npz"
    monkeypatch.delenv("PAPERS30_CACHE")
    assert cache_path("cifar10_full") == Path.home() / ".cache" / "papers30" / "cifar10_full.npz"
    with pytest.raises(ValueError, match="name"):
        cache_path("cifar10")  # a committed set has no cache file


def test_missing_cache_names_the_command(cache):
    with pytest.raises(FileNotFoundError, match="make_cifar10.py --full"):
        load_images("cifar10_full")


def fake_full_set(folder, seed=0):
    """A small stand-in for the cached set, written as make_cifar10.py --full writes it."""
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
              "y_train": rng.integers(0, 10, 20).astype(np.uint8),
              "x_test": rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
              "y_test": rng.integers(0, 10, 6).astype(np.uint8)}
    np.savez(folder / "cifar10_full.npz", **arrays)
    return arrays, hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest()


def test_cached_set_is_checked_then_loaded(cache, monkeypatch):
    arrays, digest = fake_full_set(cache)
    with pytest.raises(ValueError, match="other data than the pinned"):
        load_images("cifar10_full")  # the pinned digest is the real set's, not the stand-in's
    monkeypatch.setitem(FULL_SETS, "cifar10_full", digest)
    images._read.cache_clear()
    for split, n in [("train", 20), ("test", 6)]:
        x, y = load_images("cifar10_full", split)
        assert x.shape == (n, 3, 32, 32) and y.shape == (n,) and y.dtype == torch.int64
        np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), arrays[f"x_{split}"] / 255.0, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(y.numpy(), arrays[f"y_{split}"])
    assert class_names("cifar10_full") == class_names("cifar10")


@pytest.mark.skipif(not cache_path("cifar10_full").is_file(), reason="the full CIFAR-10 is not in the local cache")
def test_real_cached_set_contains_the_committed_sample(cifar_raw):
    """Only where make_cifar10.py --full has filled the cache (never in CI): the full set loads,
    is balanced, and every image of the committed sample is in its split."""
    images._read.cache_clear()
    for split, n in [("train", 50_000), ("test", 10_000)]:
        x, y = images._arrays("cifar10_full", split)
        assert x.shape == (n, 32, 32, 3) and np.bincount(y).tolist() == [n // 10] * 10
        full = {img.tobytes(): label for img, label in zip(x, y)}
        assert all(full.get(img.tobytes()) == label
                   for img, label in zip(cifar_raw[f"x_{split}"], cifar_raw[f"y_{split}"]))


# ---------------------------------------------------------------- augment


def reference_augment(images, dy, dx, mirror, padding):
    """Per-image crop of the zero-padded image at (dy, dx), then an optional flip."""
    B, C, H, W = images.shape
    padded = torch.zeros(B, C, H + 2 * padding, W + 2 * padding, dtype=images.dtype)
    padded[:, :, padding : padding + H, padding : padding + W] = images
    out = torch.empty_like(images)
    for i in range(B):
        crop = padded[i, :, dy[i] : dy[i] + H, dx[i] : dx[i] + W]
        out[i] = crop.flip(-1) if mirror[i] else crop
    return out


@pytest.mark.parametrize("shape", [(1, 1, 28, 28), (5, 3, 7, 9), (16, 1, 4, 4)])
@pytest.mark.parametrize("padding", [1, 2, 4])
def test_augment_matches_reference(shape, padding):
    images = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    got = augment(images, torch.Generator().manual_seed(7), padding=padding)
    # replay the generator's draws in augment's order: offsets, then flips
    g = torch.Generator().manual_seed(7)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, shape[0]), generator=g)
    mirror = torch.rand(shape[0], generator=g) < 0.5
    want = reference_augment(images, dy, dx, mirror, padding)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_augment_is_deterministic_given_the_generator():
    x, _ = load_images(split="test")
    a = augment(x[:64], torch.Generator().manual_seed(1))
    b = augment(x[:64], torch.Generator().manual_seed(1))
    c = augment(x[:64], torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_identity_settings_copy_input(gen):
    x = torch.rand(3, 2, 5, 5, generator=gen)
    y = augment(x, gen, padding=0, flip=False)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


def test_augment_flip_only_mirrors_about_half(gen):
    x = torch.rand(400, 1, 6, 6, generator=gen)
    y = augment(x, gen, padding=0, flip=True)
    flipped = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(x, y)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(x, y)])
    assert bool((flipped | kept).all())
    assert 150 < int(flipped.sum()) < 250


@given(
    padding=st.integers(0, 3),
    flip=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_augment_properties(padding, flip, seed):
    """Shape, dtype and range are kept; a crop never invents pixels; mass can only fall."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 2, 8, 8, generator=g)
    y = augment(x, g, padding=padding, flip=flip)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert bool((y.sum(dim=(1, 2, 3)) <= x.sum(dim=(1, 2, 3)) + 1e-5).all())
    values = set(x.flatten().tolist()) | {0.0}
    assert set(y.flatten().tolist()) <= values


@pytest.mark.parametrize(
    "args,kwargs,exc,word",
    [
        ((np.zeros((1, 1, 4, 4)),), {}, TypeError, "images"),
        ((torch.zeros(1, 4, 4),), {}, ValueError, "images"),
        ((torch.zeros(1, 1, 4, 4, dtype=torch.uint8),), {}, TypeError, "images"),
        ((torch.zeros(1, 1, 4, 4), 3), {}, TypeError, "generator"),
        ((torch.zeros(1, 1, 4, 4),), dict(padding=1.5), TypeError, "padding"),
        ((torch.zeros(1, 1, 4, 4),), dict(padding=-1), ValueError, "padding"),
        ((torch.zeros(1, 1, 4, 4),), dict(flip=1), TypeError, "flip"),
    ],
)
def test_augment_bad_inputs(args, kwargs, exc, word):
    with pytest.raises(exc, match=word):
        augment(*args, **kwargs)


def test_make_cifar10_full_keeps_only_the_pinned_set(cache, monkeypatch, tmp_path):
    """Reference: a stand-in set whose digest is, then is not, the pinned one; the tool writes the
    cache and checks it with the loader's own check, removing what does not match."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_cifar10", Path(__file__).resolve().parents[1] / "tools" / "data" / "make_cifar10.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = tmp_path / "package"  # stands for the unpacked npm package; read_all is replaced
    src.mkdir()
    arrays, digest = fake_full_set(src)
    parts = (arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])
    monkeypatch.setattr(tool, "read_all", lambda folder: parts)
    with pytest.raises(SystemExit, match="not the pinned set"):
        tool.main_full(src)  # the pinned digest is the real set's
    assert not cache_path("cifar10_full").exists()
    monkeypatch.setitem(FULL_SETS, "cifar10_full", digest)
    tool.main_full(src)
    assert cache_path("cifar10_full").is_file()
    images._read.cache_clear()
    x, y = load_images("cifar10_full", "test")
    np.testing.assert_array_equal(y.numpy(), arrays["y_test"])
