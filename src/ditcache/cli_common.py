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


def train_config(args):
    """The trainer config of ``ditcache train METHOD`` from its flags (each config checks its values, before any
    model is loaded); --iters unset: each config's own default (L2P's 200 is the reference's; the others' 400)."""
    from .learn.hyca import HyCaTrainConfig
    from .learn.l2c import L2CTrainConfig
    from .learn.l2p import L2PTrainConfig
    from .learn.tokencache import TokenCacheTrainConfig

    given = {k: v for k, v in (("steps", args.steps), ("iters", args.iters), ("seed", args.seed)) if v is not None}
    if args.method == "l2c":
        return L2CTrainConfig(**given, **({"lam": args.lam} if args.lam is not None else {}))
    if args.method == "l2p":
        return L2PTrainConfig(**given)
    if args.method == "tokencache":
        extra = {k: v for k, v in (("ratio", args.ratio), ("architecture", args.architecture)) if v is not None}
        return TokenCacheTrainConfig(**given, **extra)
    extra = {k: v for k, v in (("interval", args.interval), ("clusters", args.clusters)) if v is not None}
    return HyCaTrainConfig(steps=args.steps, seed=args.seed, **extra)
