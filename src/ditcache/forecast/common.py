"""Shared helpers of the forecasters: per-stream arithmetic on output tuples, and the step coordinate."""

from __future__ import annotations

from dataclasses import dataclass

import torch

Output = tuple[torch.Tensor | None, ...]
UNITS = ("timestep", "step")


@dataclass(frozen=True)
class Coords:
    """Where the current step sits, in both coordinates a forecaster may measure in."""

    timestep: float        # the timestep value the model was called with (non-uniform schedules stay exact)
    step: int              # the step index in the generation (the reference codes' unit)

    def get(self, units: str) -> float:
        return self.timestep if units == "timestep" else float(self.step)


def combine(a: Output, b: Output, fn) -> Output:
    """fn applied per stream (None streams stay None)."""
    return tuple(None if x is None else fn(x, y) for x, y in zip(a, b))


def add_scaled(a: torch.Tensor, b: torch.Tensor, w: float, into: bool = False) -> torch.Tensor:
    """a + w b in a's dtype: one fused pass when the dtypes agree (a forecast term added to its base;
    the multiply-then-add form allocated and wrote the (B, N, D) product first), else through float32 b.
    ``into``: a is a tensor the caller made for this sum (not a cached one), so the pass writes into it."""
    if a.dtype != b.dtype:
        return a + (w * b).to(a.dtype)
    return a.add_(b, alpha=w) if into else torch.add(a, b, alpha=w)


def add_channel_scaled(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, into: bool = False) -> torch.Tensor:
    """a + w * b with a weight per channel, w (D,) against a and b (..., D), in a's dtype: one fused pass
    (addcmul) when the dtypes agree, where the multiply-then-add form made two and allocated the product;
    ``into`` as in ``add_scaled``."""
    if a.dtype != b.dtype:
        return a + (w.to(b.device, lift(b).dtype) * lift(b)).to(a.dtype)
    w = w.to(a.device, a.dtype)
    return a.addcmul_(w, b) if into else torch.addcmul(a, w, b)


def apply_terms(anchor: Output, terms: list) -> Output:
    """The forecast of a forecaster that adds weighted factors to its anchor: anchor + sum_k w_k F_k per
    stream, ``terms`` = [(w_k, F_k)] with w_k a float or a (D,) tensor (a weight per channel). No terms: the
    anchor itself. The first term makes a new tensor, the rest add into it."""
    out = anchor
    for i, (w, f) in enumerate(terms):
        add = add_channel_scaled if isinstance(w, torch.Tensor) else add_scaled
        out = combine(out, f, lambda a, b, w=w, add=add, into=i > 0: add(a, b, w, into))
    return out


def lift(t: torch.Tensor) -> torch.Tensor:
    """Differences are kept in float32 when the model runs in half precision: third and fourth
    differences of fp16 features divided by DiT's integer timestep gaps underflow."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def check_units(owner: str, units: str) -> None:
    if units not in UNITS:
        raise ValueError(f"{owner}.units must be one of {UNITS}, got {units!r}")
