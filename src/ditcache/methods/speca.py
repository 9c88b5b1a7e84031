"""SpeCa: speculative feature caching (Liu et al., arXiv 2509.11628, ACM MM'25).

Draft, verify, fall back. Every step after a full one is a draft (every site forecast, TaylorSeer-style).
As the reference, a counter of the drafts since the last full step is compared before it is incremented,
so checking starts on draft ``min_drafts + 1``: on a checked draft the model's last block is also run for
real from its actual (draft-built) input, and the draft's relative L1 error there is measured. Where the
last block's branches are sites (DiT), the block's output hidden state is compared, as the reference's DiT
code does: sum|draft - real| / sum|real - x| (x the block's input); where the whole block is one site
(Flux's single-stream block), its pre-gate output, as the reference's FLUX code does: sum|draft - real| /
sum|real|. When that error exceeds the threshold
``tau(p) = max(threshold * decay**p, floor)`` (p the progress), or after ``max_drafts`` drafts, the next
step is computed in full. The check costs one block's compute and one host sync, both in the counted
FLOPs (as planning) and wall-clock.

As the reference: a rejected draft is kept and the *next* step is full (no rollback); decisions are per
batch (the error is a mean over the batch and both CFG halves; split-CFG branches average theirs).
Differences, on purpose: the checked block returns its real output (computed anyway; the reference
discards it); the error is a ratio of sums rather than the reference's mean of elementwise ratios (|y| +
1e-10 in its denominator makes it follow near-zero entries, and its thresholds range from 0.01 on DiT to
7 on FLUX); every warm-up step is full (the reference drafts right after its first full step even inside
the warm-up). The block's error is taken relative to what the block adds to its input (the reference
divides by the whole hidden state, which makes its DiT thresholds 70x smaller than its FLUX ones), so one
threshold scale serves both checks; thresholds still depend on the metric and model (see ``threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..forecast import Taylor, check_forecaster
from ..plan import Action, Holds, Plan, Site, StepContext, check_order, check_warmup, kept_order, leading


@dataclass
class SpeCa:
    order: int = 2            # draft forecast order (the reference's FLUX setting)
    warmup: int | float = 3   # leading full steps (first_enhance, the reference's FLUX and DiT setting); or a
    #                           float in (0, 1): that share of the run (plan.leading)
    min_drafts: int = 2       # drafts after a full step before checking starts (reference: 2)
    max_drafts: int = 8       # a full step after this many drafts at the latest (reference FLUX: 8, DiT: 5)
    threshold: float = 0.15   # tau0: error above which the next step is full. Measured on the shipped `dit`
    #                           default (20 images, 50 steps, this check): 11 full steps (0, 1, 2, 11, 19, 25,
    #                           30, 36, 40, 44, 48), PSNR 33.6 dB to uncached (TaylorSeer N 5, 11 full: 36.5)
    decay: float = 0.5        # tau(p) = max(tau0 * decay**p, floor): stricter late (reference shape)
    floor: float = 0.05       # lowest tau
    forecast: object = field(default_factory=Taylor)  # the draft forecaster (HiCache(), FoCa() plug in)

    name: ClassVar[str] = "speca"
    ranges: ClassVar[str] = ("order 0..4, warmup >= 1 or a run share in (0, 1) (caches when < steps), "
                             "1 <= min_drafts <= max_drafts, "
                             "threshold > 0, decay (0, 1], floor >= 0")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_order("SpeCa", self.order)
        check_forecaster("SpeCa", self.forecast)
        check_warmup("SpeCa", self.warmup)
        for name in ("min_drafts", "max_drafts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SpeCa.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.min_drafts > self.max_drafts:
            raise ValueError(f"SpeCa.min_drafts ({self.min_drafts}) exceeds max_drafts ({self.max_drafts})")
        if self.threshold <= 0 or self.floor < 0 or not 0 < self.decay <= 1:
            raise ValueError("SpeCa.threshold must be > 0, floor >= 0 and decay in (0, 1]")

    def tau(self, progress: float) -> float:
        return max(self.threshold * self.decay**progress, self.floor)

    def holds(self, site: Site) -> Holds:
        return Holds(output=True, history=self.order)

    def verified_site(self, sites: list[Site]) -> Site:
        """The site whose block a checked draft runs for real: the model's last (its last block)."""
        return sites[-1]

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        state = store.shared.setdefault("speca", {"drafts": 0, "full": False, "check": False})
        if ctx.branch == 0:  # one decision per step, from the error the last step measured
            errors = [v for k, v in store.shared.items() if isinstance(k, tuple) and k[0] == "verify"]
            for k in [k for k in store.shared if isinstance(k, tuple) and k[0] == "verify"]:
                del store.shared[k]
            error = sum(errors) / len(errors) if errors else None
            drafts = state["drafts"]
            full = (ctx.step < leading(self.warmup, ctx.num_steps) or drafts >= self.max_drafts
                    or (error is not None and error > self.tau(ctx.progress)))
            state.update(full=full, drafts=0 if full else drafts + 1, check=not full and drafts >= self.min_drafts)
            state.setdefault("errors", []).append(error)
        if state["full"]:
            return [Plan(Action.FULL, order=kept_order(ctx.step, leading(self.warmup, ctx.num_steps), self.order))
                    ] * len(sites)
        draft = Plan(Action.FORECAST, order=self.order)
        if not state["check"]:
            return [draft] * len(sites)
        checked = self.verified_site(sites).index
        return [Plan(Action.FORECAST, order=self.order, verify=True) if s.index == checked else draft for s in sites]
