"""FORA: fast-forward caching (Selvaraju et al., arXiv 2407.01425).

Every ``interval``-th step computes every branch; the steps between reuse each branch's last
pre-gate output unchanged (the block still applies the current step's gate and residual).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..plan import FULL, REUSE, Plan, Site, StepContext, periodic_full


@dataclass
class FORA:
    interval: int = 3  # N: one full step every N steps (the FORA README's example uses 3)
    warmup: int = 0    # extra leading full steps; with 0, steps 0, N, 2N, ... are full (FORA has no warm-up)

    name: ClassVar[str] = "fora"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"FORA.interval must be an int >= 1, got {self.interval!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"FORA.warmup must be an int >= 0, got {self.warmup!r}")

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        full = periodic_full(ctx.step, self.warmup, self.interval)
        return [FULL if full else REUSE] * len(sites)
