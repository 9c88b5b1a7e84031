"""ClusCa: cluster-driven feature caching (Zheng et al., arXiv 2509.10312, ACM MM'25).

TaylorSeer's schedule and forecasts, plus a spatial refresh. After each full step the image tokens are
clustered once (batched k-means, L1 distance, warm-started from the previous centroids) on the
hidden state after the probe block (the last block that has an image MLP: DiT's last block, Flux's
last double-stream block); the labels serve every layer. On the steps between, each image MLP computes
one random token per cluster (redrawn per site and step) on top of its Taylor forecast, and every
token moves towards its cluster's fresh value by ``gamma``. Attention, text and whole-block sites are
forecast only.

Choices that differ from the reference code, on purpose:
- propagation shapes only the output of the step; the stored Taylor factors are left untouched, so
  the next full step's finite differences see real outputs only (the reference mutates factor 0 in
  place, which biases the next derivative);
- an empty cluster keeps its centroid in k-means and lends its token slot to a random token;
- text tokens are never clustered with image tokens nor propagated (Flux text MLPs are forecast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .. import tokens as T
from ..forecast import Taylor, check_forecaster
from ..plan import Action, Plan, Site, StepContext, check_order, counter_full


@dataclass
class ClusCa:
    interval: int = 5        # N: one full step every N steps (authors' FLUX setting)
    order: int = 1           # Taylor order of the forecast base (authors' FLUX setting)
    warmup: int = 3          # first_enhance: leading full steps (authors' FLUX setting); >= 1
    clusters: int = 16       # K: clusters, so K tokens recomputed per image MLP per step (DiT and FLUX)
    gamma: float = 0.005     # propagation ratio towards the cluster's fresh value (authors' FLUX value)
    max_iters: int = 100     # k-means iterations at most (authors' DiT/FLUX value)
    tol: float = 1e-4        # k-means stops when centroids move less than this (relative)
    seed: int = 0            # random representatives and the first k-means initialisation
    forecast: object = field(default_factory=Taylor)  # the forecaster under the refresh (HiCache: "Hi-ClusCa")

    name: ClassVar[str] = "clusca"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("interval", "clusters", "max_iters"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"ClusCa.{name} must be an int >= 1, got {getattr(self, name)!r}")
        check_order("ClusCa", self.order)
        check_forecaster("ClusCa", self.forecast)
        if not isinstance(self.warmup, int) or self.warmup < 1:
            raise ValueError(f"ClusCa.warmup must be an int >= 1 (step 0 has nothing to forecast from), "
                             f"got {self.warmup!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"ClusCa.gamma must be in [0, 1], got {self.gamma}")

    def probe_layer(self, sites: list[Site]) -> int:
        layers = [s.layer for s in sites if s.kind == "mlp" and s.stream == "image" and s.partial]
        if not layers:
            raise ValueError("ClusCa needs a model with image MLP branches")
        return max(layers)

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        state = store.shared.setdefault(("clusca", ctx.branch), {"centroids": None, "labels": None})
        if counter_full(ctx.step, self.warmup, self.interval):
            state["labels"] = None  # recluster on the next partial step, from this step's probe
            keep = 0 if ctx.step < self.warmup - 1 else self.order  # TaylorSeer's derivative guard
            return [Plan(Action.FULL, order=keep)] * len(sites)
        gen = state.setdefault("generator", torch.Generator().manual_seed(self.seed))
        if state["labels"] is None:
            x = store.shared[("probe", ctx.branch)].float()                    # (B, N, D)
            init = state["centroids"]
            if init is not None and init.shape[0] != x.shape[0]:
                init = None
            state["labels"], state["centroids"], state["iters"] = T.kmeans(
                x, self.clusters, init, self.max_iters, self.tol, generator=gen)
        labels = state["labels"]                                                # (B, N)
        forecast = Plan(Action.FORECAST, order=self.order)
        plans = []
        for site in sites:
            if site.kind == "mlp" and site.stream == "image" and site.partial:
                idx = T.one_per_cluster(labels, self.clusters, gen)            # (B, K)
                plans.append(Plan(Action.PARTIAL, tokens=idx, order=self.order, write_back=False,
                                  propagate=(labels, self.clusters, self.gamma)))
            else:
                plans.append(forecast)
        return plans
