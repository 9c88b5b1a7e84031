"""FreqCa: frequency-aware caching of one cumulative residual feature (Liu et al., arXiv 2510.08669).

One cache for the whole model: at a full step the input of the model's final layer (the image tokens
after the last block: the Cumulative Residual Feature, CRF) is kept; on a cached step every block is
skipped (branches contribute nothing, whole blocks pass their input through) and a forecast of the CRF
replaces the final layer's input. The CRF is split by a 2-D DCT over the token grid: the low band
(radius <= ``cutoff`` of the largest) changes little but not smoothly, so it is reused; the high band
is smooth, so it is forecast with HiCache's scaled Hermite basis (sigma 0.71, order 2, step units) on its
finite differences. The split is linear, so the state is the CRF and the high-passed differences: three
tensors of one layer's size, O(1) in depth (``cache MiB`` in the bench shows it).

Choices: the DCT is separable over the grid's rows and columns (video grids split each frame's (H, W));
a full step computes the blocks without storing their outputs (``Plan.keep=False``). Needs a token grid
(the adapters' GRIDS) and the final layer's name (``ModelSpec.final``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..forecast import HiCache
from ..forecast.common import Coords
from ..plan import (
    SKIP,
    Action,
    Plan,
    SharedHolds,
    Site,
    StepContext,
    check_order,
    check_warmup,
    counter_full,
    counter_steps,
    kept_order,
    leading,
)


def dct_matrix(n: int) -> torch.Tensor:
    """(n, n) orthonormal DCT-II: row k is the k-th cosine basis vector."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c


def low_band(x: torch.Tensor, grid: tuple[int, int, int], cutoff: float) -> torch.Tensor:
    """The low DCT band of x (B, N, D), N = F * H * W tokens in row-major order, per frame: 2-D DCT over
    (H, W), coefficients (u, v) with sqrt(u^2 + v^2) <= cutoff * sqrt((H-1)^2 + (W-1)^2) kept, inverse DCT.
    Separable: O(N (H + W) D) time and (H^2 + W^2) memory, no (N, N) matrix."""
    f, h, w = grid
    ch, cw = dct_matrix(h).to(x.device), dct_matrix(w).to(x.device)
    u, v = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    keep = ((u**2 + v**2).double().sqrt() <= cutoff * math.hypot(h - 1, w - 1)).to(x.device)   # (H, W)
    grid_x = x.double().reshape(x.shape[0], f, h, w, x.shape[-1])              # (B, F, H, W, D)
    coef = torch.einsum("uh,bfhwd,vw->bfuvd", ch, grid_x, cw)                 # DCT over H and W
    coef = coef * keep[None, None, :, :, None]
    low = torch.einsum("uh,bfuvd,vw->bfhwd", ch, coef, cw)                    # inverse (orthonormal: transpose)
    return low.reshape(x.shape).to(x.dtype)


@dataclass
class FreqCa:
    interval: int = 6         # N: one full step every N steps (reference default; 9 is its aggressive setting)
    warmup: int | float = 3   # leading full steps (first_enhance, reference); or a float in (0, 1): that share
    #                           of the run (plan.leading)
    order: int = 2            # Hermite order of the high band's forecast (reference max_order)
    cutoff: float = 0.1       # low band: DCT radius <= cutoff * the largest radius (reference)
    sigma: float = 0.71       # Hermite scale of the high band (reference, hard-coded there)

    name: ClassVar[str] = "freqca"
    ranges: ClassVar[str] = ("interval >= 1, warmup >= 1 or a run share in (0, 1) (caches when < steps), "
                             "order 0..4, cutoff 0..1, sigma (0, 1]")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"FreqCa.interval must be an int >= 1, got {self.interval!r}")
        check_warmup("FreqCa", self.warmup)
        check_order("FreqCa", self.order)
        if not 0.0 <= self.cutoff <= 1.0:
            raise ValueError(f"FreqCa.cutoff must be in [0, 1], got {self.cutoff}")
        HiCache(sigma=self.sigma)  # checks sigma

    def full_steps(self, num_steps: int) -> list[int]:
        return counter_steps(num_steps, self.warmup, self.interval)

    def holds_shared(self) -> SharedHolds:
        return SharedHolds(final=self.order)  # the CRF and its high-band differences; nothing per site

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        full = counter_full(ctx.step, leading(self.warmup, ctx.num_steps), self.interval)
        store.shared[("freqca-full", ctx.branch)] = full
        return [Plan(Action.FULL, keep=False) if full else SKIP] * len(sites)

    def final(self, ctx: StepContext, store, x: torch.Tensor) -> torch.Tensor | None:
        """x: (B, N, D) the blocks' output on the image tokens. Full step: keep it; cached: forecast it."""
        state = store.shared.setdefault(("freqca", ctx.branch), {"history": {}})
        coords = Coords(ctx.timestep, ctx.step)
        hermite = HiCache(sigma=self.sigma)
        if store.shared[("freqca-full", ctx.branch)]:
            high = self._high(store, ctx, x)                                    # (B, N, D)
            prev = state.get("crf")
            prev_high = (self._high(store, ctx, prev),) if prev is not None else None
            hermite.update(state["history"], prev_high, (high,), (coords, state.get("coords")),
                           kept_order(ctx.step, leading(self.warmup, ctx.num_steps), self.order))
            state["crf"], state["coords"] = x, coords
            return None
        if "crf" not in state:
            raise RuntimeError("FreqCa: a cached step before any full step (check the warm-up)")
        return hermite.predict(state["history"], (state["crf"],), coords, self.order)[0].to(x.dtype)

    def _high(self, store, ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
        """x minus its low DCT band, over the token axis (rows of one frame each, as Latte's: per frame).
        Under context parallelism x is this rank's shard: the band is taken over the whole sequence (gathered)
        and this rank's rows of it returned, so the kept state stays in the shard's layout."""
        n = x.shape[1]
        x = ctx.shards.all_gather(x, 1)                                         # (B, N, D)
        grid = ctx.grid
        if grid is not None and math.prod(grid) != x.shape[1] and grid[1] * grid[2] == x.shape[1]:
            grid = (1, grid[1], grid[2])
        if grid is None or math.prod(grid) != x.shape[1]:
            raise ValueError(f"FreqCa needs the image-token grid of {x.shape[1]} tokens; the model's adapter "
                             f"gives {ctx.grid}")
        return ctx.shards.shard_of(x - low_band(x, grid, self.cutoff), n)
