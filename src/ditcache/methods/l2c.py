"""Learning-to-Cache (Ma et al., arXiv 2406.01733, NeurIPS'24): a learned static layer router.

Full steps recur every ``interval`` steps (L2C alternates full and cache steps: 2). On a cache step,
a branch is computed iff its learned score beta = sigmoid(theta[step, site]) exceeds ``threshold``;
otherwise its output from the last full step is reused. The router is an artifact trained for one
model, sampler and step count (``ditcache train l2c``); applying it elsewhere is an error. Thresholds
are specific to a router (L2C's own range is 0.1 to 0.9; any value in [0, 1] is accepted): by default the
one recorded in the artifact, chosen by measurement (``benchmarks/learned_defaults.py threshold``: the
fastest threshold whose FD in classifier space is within 2% of uncached), else 0.1. The shipped routers record
0.9 (dit: 14% of cache-step branches computed) and 0.97 (flux: 2%, close to FORA at interval 2); dit256 none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..plan import FULL, REUSE, Holds, Plan, Site, StepContext, periodic_full
from .artifacts import load_artifact


@dataclass
class L2C:
    artifact: str = "dit"     # a router file, or the name of a shipped default ('dit' | 'flux')
    threshold: float | None = None  # compute a branch on a cache step iff beta > threshold; None: the
    #                           artifact's measured choice (0.1, L2C's DiT-256 value, if it records none)
    interval: int = 2         # full step every `interval` steps; the router was trained for one value

    name: ClassVar[str] = "l2c"
    ranges: ClassVar[str] = "a router for this model, sampler and step count; threshold 0..1; interval as trained"

    def __post_init__(self) -> None:
        self.validate()
        self._art = None

    def validate(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"L2C.threshold must be in [0, 1], got {self.threshold}")
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"L2C.interval must be an int >= 1, got {self.interval!r}")

    def bind(self, model, sites: list[Site]) -> None:
        art = load_artifact(self.artifact, "l2c")
        art.check_model(model)
        if art.tensors["theta"].shape[1] != len(sites):
            raise ValueError(f"router has {art.tensors['theta'].shape[1]} sites, the model {len(sites)}")
        if art.config.get("interval") != self.interval:
            raise ValueError(f"router was trained for interval {art.config.get('interval')}, not {self.interval}")
        self._art = art
        threshold = self.threshold if self.threshold is not None else art.config.get("threshold", 0.1)
        self._compute = torch.sigmoid(art.tensors["theta"]) > threshold        # (T, S) bool

    def full_steps(self, num_steps: int) -> list[int]:
        return [s for s in range(num_steps) if periodic_full(s, 0, self.interval)]

    def holds(self, site: Site) -> Holds:
        return Holds(output=True)

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        self._art.check_step(ctx.step, ctx.num_steps, ctx.timestep)
        if periodic_full(ctx.step, 0, self.interval):
            return [FULL] * len(sites)
        return [FULL if c else REUSE for c in self._compute[ctx.step].tolist()]
