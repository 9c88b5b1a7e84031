"""SpeCa: speculative feature caching (Liu et al., arXiv 2509.11628, ACM MM'25).

Draft, verify, fall back. Every step after a full one is a draft (every site forecast, TaylorSeer-style);
from the ``min_drafts``-th draft on, one site (the model's last, as the reference checks its last
block) is also computed for real and the draft's relative L1 error there, sum|draft - real| / sum|real|,
is measured. When that error exceeds the threshold ``tau(p) = max(threshold * decay**p, floor)`` (p the
progress), or after ``max_drafts`` drafts, the next step is computed in full. The verified site returns
its real output (it was computed anyway). The check costs one site's compute and one host sync, both
in the counted FLOPs and wall-clock.

As the reference: a rejected draft is kept and the *next* step is full (no rollback); decisions are per
batch (the error is a mean over the batch and both CFG halves; split-CFG branches average theirs).
Differences, on purpose: the error is a ratio of sums rather than the reference's mean of elementwise
ratios (|y| + 1e-10 in its denominator makes it follow near-zero entries, and its thresholds range from
0.01 on DiT to 7 on FLUX); every warm-up step is full (the reference drafts right after its first full
step even inside the warm-up). Thresholds are specific to the metric and model: the defaults were
chosen by measurement on the shipped defaults (BENCHMARKS.md, frontier section).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..forecast import Taylor, check_forecaster
from ..plan import Action, Plan, Site, StepContext, check_order


@dataclass
class SpeCa:
    order: int = 2            # draft forecast order (the reference's FLUX setting)
    warmup: int = 3           # leading full steps (first_enhance, the reference's FLUX and DiT setting)
    min_drafts: int = 2       # drafts after a full step before checking starts (reference: 2)
    max_drafts: int = 8       # a full step after this many drafts at the latest (reference FLUX: 8, DiT: 5)
    threshold: float = 0.15   # tau0: error above which the next step is full (measured; see module doc)
    decay: float = 0.5        # tau(p) = max(tau0 * decay**p, floor): stricter late (reference shape)
    floor: float = 0.05       # lowest tau
    forecast: object = field(default_factory=Taylor)  # the draft forecaster (HiCache(), FoCa() plug in)

    name: ClassVar[str] = "speca"
    ranges: ClassVar[str] = ("order 0..4, warmup >= 1 (caches when < steps), 1 <= min_drafts <= max_drafts, "
                             "threshold > 0, decay (0, 1], floor >= 0")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_order("SpeCa", self.order)
        check_forecaster("SpeCa", self.forecast)
        for name in ("warmup", "min_drafts", "max_drafts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SpeCa.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.min_drafts > self.max_drafts:
            raise ValueError(f"SpeCa.min_drafts ({self.min_drafts}) exceeds max_drafts ({self.max_drafts})")
        if self.threshold <= 0 or self.floor < 0 or not 0 < self.decay <= 1:
            raise ValueError("SpeCa.threshold must be > 0, floor >= 0 and decay in (0, 1]")

    def tau(self, progress: float) -> float:
        return max(self.threshold * self.decay**progress, self.floor)

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        state = store.shared.setdefault("speca", {"drafts": 0, "full": False, "check": False})
        if ctx.branch == 0:  # one decision per step, from the error the last step measured
            errors = [v for k, v in store.shared.items() if isinstance(k, tuple) and k[0] == "verify"]
            for k in [k for k in store.shared if isinstance(k, tuple) and k[0] == "verify"]:
                del store.shared[k]
            error = sum(errors) / len(errors) if errors else None
            drafts = state["drafts"]
            full = (ctx.step < self.warmup or drafts >= self.max_drafts
                    or (error is not None and error > self.tau(ctx.progress)))
            state.update(full=full, drafts=0 if full else drafts + 1, check=not full and drafts >= self.min_drafts)
            state.setdefault("errors", []).append(error)
        if state["full"]:
            keep = 0 if ctx.step < self.warmup - 1 else self.order  # TaylorSeer's derivative guard
            return [Plan(Action.FULL, order=keep)] * len(sites)
        draft = Plan(Action.FORECAST, order=self.order)
        if not state["check"]:
            return [draft] * len(sites)
        return [draft] * (len(sites) - 1) + [Plan(Action.FORECAST, order=self.order, verify=True)]
