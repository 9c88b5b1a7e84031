"""Fashion-MNIST from the idx files the system package installs; numpy only, no downloads."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

# Where `apt-get install -y dataset-fashion-mnist` puts the four idx files.
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")

# Label index -> name, in the order of the Fashion-MNIST paper (Xiao et al. 2017).
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# split -> idx file prefix
_PREFIX = {"train": "train", "test": "t10k"}


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    header = np.frombuffer(raw, dtype=">i4", count=1 + ndim)  # big-endian magic, then dims
    if int(header[0]) != magic:
        raise ValueError(f"{path}: idx magic {int(header[0])}, expected {magic}")
    shape = tuple(int(d) for d in header[1:])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + ndim)).reshape(shape)


def load_fashion_mnist(split: str, root: str | Path = DEFAULT_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """Return images uint8 (N, 28, 28) and labels int64 (N,); N is 60000 (train) or 10000 (test)."""
    if split not in _PREFIX:
        raise ValueError(f"unknown split {split!r}; valid splits: {sorted(_PREFIX)}")
    root = Path(root)
    images_path = root / f"{_PREFIX[split]}-images-idx3-ubyte.gz"
    labels_path = root / f"{_PREFIX[split]}-labels-idx1-ubyte.gz"
    missing = [str(p) for p in (images_path, labels_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found: {', '.join(missing)}. "
            f"Install them with `apt-get install -y dataset-fashion-mnist`, or pass "
            f"root=<folder holding {_PREFIX[split]}-images-idx3-ubyte.gz and "
            f"{_PREFIX[split]}-labels-idx1-ubyte.gz>."
        )
    images = _read_idx(images_path, magic=2051, ndim=3)  # (N, 28, 28) uint8
    labels = _read_idx(labels_path, magic=2049, ndim=1).astype(np.int64)  # (N,)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{root}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels

CLASSES = CLASS_NAMES  # short alias used by the CLI


def moving_clips(images, frames: int = 8, canvas: int = 36, item: int = 28,
                 generator: torch.Generator | None = None):
    """Moving Fashion-MNIST: each uint8 image (B, 28, 28) becomes a clip (B, 1, frames, canvas, canvas) in
    [-1, 1] of the item, resized to ``item`` pixels, translating in a straight line across a black canvas
    from a random start to a random end position (both fully inside), one position per frame."""
    import torch.nn.functional as F

    x = torch.as_tensor(images).float().div(127.5).sub(1.0).unsqueeze(1)     # (B, 1, 28, 28) in [-1, 1]
    if item != x.shape[-1]:
        x = F.interpolate(x, size=(item, item), mode="bilinear", align_corners=False, antialias=True)
    b, room = x.shape[0], canvas - item
    start = torch.randint(0, room + 1, (b, 2), generator=generator).float()  # (B, 2) top-left (row, col)
    end = torch.randint(0, room + 1, (b, 2), generator=generator).float()
    out = torch.full((b, 1, frames, canvas, canvas), -1.0)
    for f in range(frames):
        pos = (start + (end - start) * f / max(frames - 1, 1)).round().long()  # (B, 2)
        for i in range(b):
            r, c = int(pos[i, 0]), int(pos[i, 1])
            out[i, :, f, r:r + item, c:c + item] = x[i]
    return out
