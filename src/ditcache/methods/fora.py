"""FORA: fast-forward caching (Selvaraju et al., arXiv 2407.01425).

Full steps as the reference places them (``s == T-1 or s % N == 0`` with s counting down from T-1):
the first step, and every ``interval``-th step counted back from the last one, so the final step is
always computed. The steps between reuse each branch's last pre-gate output unchanged (the block still
applies the current step's gate and residual).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..plan import FULL, REUSE, Holds, Plan, Site, StepContext, countdown_full


@dataclass
class FORA:
    interval: int = 3  # N: one full step every N steps (the FORA README's example uses 3)
    warmup: int = 0    # extra leading full steps (FORA has none: 0 keeps the reference's schedule)

    name: ClassVar[str] = "fora"
    ranges: ClassVar[str] = "interval >= 1 (1 computes every step), warmup >= 0"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"FORA.interval must be an int >= 1, got {self.interval!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"FORA.warmup must be an int >= 0, got {self.warmup!r}")

    def full_steps(self, num_steps: int) -> list[int]:
        return [s for s in range(num_steps) if s < self.warmup or countdown_full(s, num_steps, self.interval)]

    def holds(self, site: Site) -> Holds:
        return Holds(output=True)

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        full = ctx.step < self.warmup or countdown_full(ctx.step, ctx.num_steps, self.interval)
        return [FULL if full else REUSE] * len(sites)
