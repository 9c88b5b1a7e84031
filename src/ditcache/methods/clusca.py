"""ClusCa: cluster-driven feature caching (Zheng et al., arXiv 2509.10312, ACM MM'25).

TaylorSeer's schedule and forecasts, plus a spatial refresh. After each full step the tokens are
clustered once (batched k-means, warm-started from the previous centroids) on the hidden state after
the probe block (the last block with an image MLP: DiT's last block, Flux's last double-stream block),
image and text tokens separately; the labels serve every layer. On the steps between, each image MLP
computes one random token per cluster (redrawn per site and step) on top of its forecast, and every
token's anchor moves towards its cluster's fresh value by ``gamma``; each text MLP (Flux, SD3)
computes one token per text cluster and scatters it, without propagation (the reference's FLUX code).
Attention and whole-block sites are forecast only.

Refreshed tokens and propagated values persist across consecutive ClusCa steps (``refresh="persist"``,
as the reference's in-place edit of its order-0 factor does), kept beside the forecaster's history so
the next full step's differences see real outputs only (the reference's edit biases them); with
``refresh="step"`` they are dropped after their own step. Both are measured on the 64-token defaults by
`benchmarks/seed_choices.py` (BENCHMARKS.md, seed choices): on flux (N 5, K 8, 32 seeds) PSNR 38.56 vs
38.59 dB and equal FD, indistinguishable, so the reference's "persist" is the default.

Video: with ``frame_wise`` the image tokens of each frame are clustered on their own (the reference's
T-wise mode): ``clusters`` per frame, and labels and token indices offset by frame into the flat token
sequence (the reference forgets that offset and reshapes as if the batch were 1). On Latte, whose
spatial blocks already see one frame per row, only spatial blocks are clustered and refreshed.

Other choices that differ from the reference code, on purpose: propagation acts on the order-0 anchor,
so it does not scale the forecast's higher-order terms; a fresh token's anchor is set so that this step
returns its fresh output exactly; an empty cluster keeps its centroid in k-means and lends its token
slot to a token not already chosen; k-means uses L2 distances through matrix products and at most 10
warm-started iterations by default (``distance="l1", max_iters=100`` is the reference's; the quality
difference on the defaults is in BENCHMARKS.md, seed choices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch

from .. import tokens as T
from ..forecast import Taylor, check_forecaster
from ..plan import (
    Action,
    Holds,
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

REFRESH = ("persist", "step")
SHARDINGS = ("global", "shard")


@dataclass
class ClusCa:
    interval: int = 5        # N: one full step every N steps (authors' FLUX setting)
    order: int = 1           # Taylor order of the forecast base (authors' FLUX setting)
    warmup: int | float = 3  # first_enhance: leading full steps (authors' FLUX setting); >= 1, or a float in
    #                          (0, 1): that share of the run (plan.leading)
    clusters: int = 16       # K: clusters, so K tokens recomputed per image MLP per step (DiT and FLUX)
    gamma: float = 0.005     # propagation ratio towards the cluster's fresh value (authors' FLUX value)
    refresh: str = "persist"  # "persist": refreshed tokens last until the next full step (the reference);
    #                          "step": only for their own step. See the module doc for the measurement
    distance: str = "l2"     # k-means distance: "l2" through matrix products (the reference's "l1", cdist p=1,
    #                          has no BLAS path: 12% of a 256-token generation went to it; seed_choices.py)
    max_iters: int = 10      # k-means iterations at most: warm-started from the last centroids they settle in a
    #                          few (the authors' HunyuanVideo cap; their DiT/FLUX value is 100)
    tol: float = 1e-4        # k-means stops when centroids move less than this (relative)
    seed: int = 0            # random representatives and the first k-means initialisation
    frame_wise: bool = False  # video: k-means within each frame, `clusters` per frame (the reference's T-wise)
    forecast: object = field(default_factory=Taylor)  # the forecaster under the refresh (HiCache: "Hi-ClusCa")
    sharding: str = "global"  # under context parallelism: "global" clusters the whole sequence (probe tokens gathered:
    #                          the single-process clusters and draws) and sums each cluster's fresh rows over the ranks;
    #                          "shard": each rank clusters its own tokens into clusters // ranks (README, measured)

    name: ClassVar[str] = "clusca"
    ranges: ClassVar[str] = ("interval >= 1, order 0..4, warmup >= 1 or a run share in (0, 1) (caches when < steps), "
                             "1 <= clusters <= "
                             "image tokens, gamma 0..1")

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def preset(cls, model: str, **overrides) -> ClusCa:
        """The authors' settings for 'dit', 'flux' or 'hunyuanvideo', with optional overrides."""
        try:
            return replace(PRESETS[model], **overrides)
        except KeyError:
            raise KeyError(f"no ClusCa preset {model!r}; known: {sorted(PRESETS)}") from None

    def validate(self) -> None:
        for name in ("interval", "clusters", "max_iters"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"ClusCa.{name} must be an int >= 1, got {getattr(self, name)!r}")
        check_order("ClusCa", self.order)
        check_forecaster("ClusCa", self.forecast)
        check_warmup("ClusCa", self.warmup)
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"ClusCa.gamma must be in [0, 1], got {self.gamma}")
        if self.refresh not in REFRESH:
            raise ValueError(f"ClusCa.refresh must be one of {REFRESH}, got {self.refresh!r}")
        if self.distance not in T.DISTANCES:
            raise ValueError(f"ClusCa.distance must be one of {T.DISTANCES}, got {self.distance!r}")
        if self.sharding not in SHARDINGS:
            raise ValueError(f"ClusCa.sharding must be one of {SHARDINGS}, got {self.sharding!r}")

    def probe_layer(self, sites: list[Site]) -> int:
        layers = [s.layer for s in sites if _refreshed(s) and s.stream == "image"]
        if not layers:
            raise ValueError("ClusCa needs a model with image MLP branches")
        return max(layers)

    def full_steps(self, num_steps: int) -> list[int]:
        return counter_steps(num_steps, self.warmup, self.interval)

    def holds(self, site: Site) -> Holds:
        return Holds(output=True, history=self.order, refreshed=_refreshed(site) and self.refresh == "persist")

    def holds_shared(self) -> SharedHolds:
        return SharedHolds(probe_clusters=self.clusters, frame_wise=self.frame_wise)

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        state = store.shared.setdefault(("clusca", ctx.branch), {})
        w = leading(self.warmup, ctx.num_steps)
        if counter_full(ctx.step, w, self.interval):
            state["labels"] = None  # recluster on the next partial step, from this step's probe
            return [Plan(Action.FULL, order=kept_order(ctx.step, w, self.order))] * len(sites)
        gen = state.setdefault("generator", torch.Generator().manual_seed(self.seed))
        if state.get("labels") is None:
            state["labels"] = {stream: self._cluster(state, stream, store.shared.get((probe, ctx.branch)), gen,
                                                     ctx.grid if stream == "image" else None, ctx.shards)
                               for stream, probe in (("image", "probe"), ("text", "probe-text"))}
        whole = ctx.shards.active and self.sharding == "global"  # labels and draws over the whole sequence
        forecast = Plan(Action.FORECAST, order=self.order)
        persist = self.refresh == "persist"
        todo = [i for i, s in enumerate(sites) if _refreshed(s) and state["labels"].get(s.stream) is not None]
        picks = dict(zip(todo, self._picks(state, [sites[i] for i in todo], gen)))  # position -> (B, k)
        plans = []
        for i, site in enumerate(sites):
            if i not in picks:
                plans.append(forecast)
                continue
            labels, k, idx = state["labels"][site.stream], state[("k", site.stream)], picks[i]
            valid = None
            if whole:  # this rank's rows of the whole sequence's draw; its clusters' means summed over ranks
                n = state[("n", site.stream)]
                labels = ctx.shards.shard_of(labels, n)                         # (B, n)
                idx, valid = ctx.shards.localize(idx, n)                        # (B, m), (B, m)
            propagate = (labels, k, self.gamma) if site.stream == "image" else None
            plans.append(Plan(Action.PARTIAL, tokens=idx, order=self.order, write_back=persist,
                              propagate=propagate, valid=valid))
        return plans

    def _picks(self, state: dict, todo: list[Site], gen) -> list[torch.Tensor]:
        """(B, k) tokens for each site of ``todo``, a random one of each cluster (``tokens.one_per_cluster``),
        all sites of a stream in one call: the random numbers are drawn at once, in site order, and are the
        ones a draw per site would take (the generator fills them one after another), while the choice's
        dozen small operations run once per stream and step instead of once per site."""
        sizes = [state["labels"][s.stream].numel() for s in todo]
        noise = torch.rand(sum(sizes), generator=gen).split(sizes)                # per site (B * N,)
        picks: list = [None] * len(todo)
        for stream in dict.fromkeys(s.stream for s in todo):
            labels = state["labels"][stream]                                    # (B, N)
            mine = [i for i, s in enumerate(todo) if s.stream == stream]
            stacked = torch.cat([noise[i] for i in mine]).view(-1, labels.shape[1]).to(labels.device)  # (S * B, N)
            idx = T.one_per_cluster(labels.repeat(len(mine), 1), state[("k", stream)], noise=stacked)
            for i, part in zip(mine, idx.split(labels.shape[0])):
                picks[i] = part
        return picks

    def _cluster(self, state: dict, stream: str, x: torch.Tensor | None, gen, grid, shards) -> torch.Tensor | None:
        """(B, N) labels of one stream's tokens, warm-started from its last centroids; None if absent.
        Frame-wise: each frame's tokens are clustered apart and frame f's labels are offset by f * K.
        Context parallelism: "global" clusters every rank's tokens (gathered; labels of the whole sequence),
        "shard" this rank's own into clusters // ranks (labels of its shard)."""
        if x is None:
            return None
        state[("n", stream)] = x.shape[1]                                       # this rank's tokens
        whole = self.sharding == "global"
        x = (shards.all_gather(x, 1) if whole else x).float()                   # (B, N, D)
        b, n, d = x.shape
        frames = grid[0] if self.frame_wise and grid is not None and math.prod(grid) == n else 1
        x = x.reshape(b * frames, n // frames, d)                              # (B * F, S, D)
        # image tokens: K as asked (k-means refuses K > N); text (Flux's 4 class tokens): at most one per token
        k = self.clusters if whole else max(1, self.clusters // shards.size)
        k = k if stream == "image" else min(k, x.shape[1])
        state[("k", stream)] = k * frames
        init = state.get(("centroids", stream))
        if init is not None and init.shape[:2] != (x.shape[0], k):
            init = None
        labels, state[("centroids", stream)], state[("iters", stream)] = T.kmeans(
            x, k, init, self.max_iters, self.tol, generator=gen, distance=self.distance)
        offset = (torch.arange(frames, device=labels.device) * k).repeat(b)[:, None]  # (B * F, 1)
        return (labels + offset).reshape(b, n)


def _refreshed(site: Site) -> bool:
    """ClusCa refreshes MLP sites with a token path whose rows are the frames of the image (not Latte's
    temporal blocks, whose rows are positions)."""
    return site.kind == "mlp" and site.partial is not None and site.role == "spatial"


PRESETS: dict[str, ClusCa] = {
    # DiT-XL/2 DDIM-50 (the authors' DiT code: interval 4, order 4, K 16, first_enhance 2; its propagation
    # ratio defaults to 0: the paper's value is not in the code).
    "dit": ClusCa(interval=4, order=4, warmup=2, clusters=16, gamma=0.0),
    # FLUX.1-dev (the authors' sample.py): the class defaults.
    "flux": ClusCa(),
    # HunyuanVideo (the authors' sample.sh): K 32, gamma 0.01, N 5, order 1, first_enhance 1, k-means
    # capped at 10 iterations, T-wise off as in their script (frame_wise=True turns it on).
    "hunyuanvideo": ClusCa(interval=5, order=1, warmup=1, clusters=32, gamma=0.01, max_iters=10),
}
