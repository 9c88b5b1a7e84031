"""TaylorSeer: forecast instead of reuse (Liu et al., arXiv 2503.06923, ICCV'25).

The schedule is the reference's: the first ``warmup`` steps (its ``first_enhance``) compute everything,
then a counter reset at each full step makes every ``interval``-th step full (``plan.counter_full``:
W = 2, N = 4 on 50 steps gives 0, 1, 5, 9, ..., 49). Full steps before the last warm-up step keep only
their output; from the last warm-up step on, each full step extends every site's finite differences
up to ``order`` (the reference's derivative guard). The steps between forecast each branch output with
a Taylor series in step indices, as the reference (``Taylor(units="timestep")`` measures in timesteps).

``tail`` (not in the reference) leaves the run's last steps to forecasts: the counter's full steps that fall in
them are dropped. A full step at the very end can be wasted: the shipped DDIM defaults end on timestep 0 with
diffusers' ``set_alpha_to_one=False``, so their last step maps its input to itself whatever the model predicts
(alpha_bar_prev = alpha_bar_t: the noise prediction cancels). On `dit256`, interval 6 with and without a
1-step tail (which drops step 49) gives the same PSNR and FD on 200 seeds at one full step fewer (BENCHMARKS.md,
"Where the full steps go"). Ending the full steps a few steps early also raised PSNR on the flow default
`flux256` at 8-9 full steps, but on `dit256` the gain did not carry to FD, and it was not measured at the
defaults' 10-14, so the default stays the reference's 0. A fractional ``interval`` spaces the full steps evenly
at that gap (``plan.counter_full``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..forecast import Taylor, check_forecaster
from ..plan import (
    Action,
    Holds,
    Plan,
    Site,
    StepContext,
    check_interval,
    check_order,
    check_tail,
    check_warmup,
    counter_full,
    counter_steps,
    kept_order,
    leading,
    tail_start,
)


@dataclass
class TaylorSeer:
    interval: int | float = 4  # N: one full step every N steps (the authors' DiT-XL/2 DDIM-50 setting is 4); a
    #                    float >= 1 spaces them evenly at that fractional gap (``plan.counter_full``)
    order: int = 2     # m: Taylor order of the forecast (DiT code recommends up to 4, FLUX uses 1; 2 is the
    #                    authors' FLUX.1-dev "N=4 O=2" point and was stable on our small models)
    warmup: int | float = 2  # first_enhance: leading full steps (authors' DiT value; FLUX uses 3); >= 1, or a
    #                    float in (0, 1): that share of the run (0.06 is 3 of 50 steps and 1 of 8)
    tail: int | float = 0  # the run's last steps with no full step in them, forecast from the last full step (an
    #                    int, or a share of the run as warmup); 0, the reference's: the counter alone decides
    forecast: object = field(default_factory=Taylor)  # the forecaster (ditcache.forecast): Taylor series by
    #                    default; HiCache(), FoCa() or any other plugs in here

    name: ClassVar[str] = "taylorseer"
    ranges: ClassVar[str] = ("interval >= 1 (an int, or a float for an even fractional gap), order 0..4, "
                             "warmup >= 1 or a run share in (0, 1), tail >= 0 or a run share in [0, 1)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_interval("TaylorSeer", self.interval)
        check_order("TaylorSeer", self.order)
        check_forecaster("TaylorSeer", self.forecast)
        check_warmup("TaylorSeer", self.warmup)
        check_tail("TaylorSeer", self.tail)

    def full_steps(self, num_steps: int) -> list[int]:
        return counter_steps(num_steps, self.warmup, self.interval, self.tail)

    def holds(self, site: Site) -> Holds:
        return Holds(output=True, history=self.order)

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        w = leading(self.warmup, ctx.num_steps)
        if counter_full(ctx.step, w, self.interval, tail_start(self.tail, ctx.num_steps)):
            return [Plan(Action.FULL, order=kept_order(ctx.step, w, self.order))] * len(sites)
        return [Plan(Action.FORECAST, order=self.order)] * len(sites)
