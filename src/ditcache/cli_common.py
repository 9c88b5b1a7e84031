"""What both command-line modules share: output paths, thread counts, count checks, the user's folder."""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def _threads(n: int | None) -> None:
    import torch

    torch.set_num_threads(n or min(2, os.cpu_count() or 1))


def user_dir() -> Path:
    """Where ditcache writes what it trains when no path is given: never inside the installed package."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ditcache"


def _positive(**values: int | None) -> None:
    """Refuse counts below 1 (before any work starts), naming the flag."""
    for name, v in values.items():
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def _out_file(path: str, suffixes: tuple[str, ...], overwrite: bool = True) -> Path:
    """Check an output file path before any work: a file (not a folder) with one of ``suffixes``, not an
    existing file unless ``overwrite``; its folder is created."""
    p = Path(path)
    if path.endswith(("/", os.sep)) or p.is_dir():
        raise ValueError(f"--out {path!r} is a directory; give a file path ending in {' or '.join(suffixes)}")
    if p.suffix.lower() not in suffixes:
        raise ValueError(f"--out {path!r}: expected a file ending in {' or '.join(suffixes)}")
    if p.exists() and not overwrite:
        raise ValueError(f"--out {path!r} exists; pass --overwrite to replace it, or name another path")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p
