"""HyCa: hybrid per-channel solvers (Zheng et al., arXiv 2510.04188, "Let Features Decide Their Own Solvers").

Full steps on TaylorSeer's schedule (``warmup`` leading steps, then every ``interval``); on the steps
between, every site is forecast, each of its channels by the solver its channel cluster was assigned
offline (``ditcache train hyca``: channels clustered by their temporal dynamics, each cluster's solver
chosen from a pool of reuse, explicit and damped extrapolations by its error over the planned skip
window; see ``learn/hyca.py`` and ``forecast/hyca.py``). The calibration is an artifact for one model,
sampler and step count, like the learned methods'; the schedule defaults to the one it was made for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..forecast.hyca import ChannelMix
from ..plan import (
    Action,
    Holds,
    Plan,
    Site,
    StepContext,
    check_interval,
    check_tail,
    counter_full,
    counter_steps,
    kept_order,
    tail_start,
)
from .artifacts import load_artifact


@dataclass
class HyCa:
    artifact: str = "dit"          # a calibration file, or the name of a shipped default ('dit', 'flux', ...)
    interval: int | float | None = None  # full step every N steps (a float: evenly at that fractional gap, as
    #                                TaylorSeer's); None: the N the calibration was made for
    warmup: int | None = None      # leading full steps; None: the calibration's
    tail: int | float = 0          # the run's last steps with no full step in them (an int, or a share of the
    #                                run); 0: the counter alone decides, as the calibration assumed

    name: ClassVar[str] = "hyca"
    ranges: ClassVar[str] = ("a calibration for this model, sampler and step count; interval >= 1 (an int, or a "
                             "float for an even fractional gap) or None; warmup >= 1 or None; "
                             "tail >= 0 or a run share in [0, 1)")

    def __post_init__(self) -> None:
        self.validate()
        self.forecast = ChannelMix()
        self._art = None

    def validate(self) -> None:
        if self.interval is not None:
            check_interval("HyCa", self.interval)
        v = self.warmup
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"HyCa.warmup must be an int >= 1 (or None: the calibration's), got {v!r}")
        check_tail("HyCa", self.tail)

    def bind(self, model, sites: list[Site]) -> None:
        art = load_artifact(self.artifact, "hyca")
        art.check_model(model)
        solvers = art.tensors["solvers"]                                     # (S, D) pool index per channel
        if solvers.shape[0] != len(sites):
            raise ValueError(f"calibration has {solvers.shape[0]} sites, the model {len(sites)}")
        self._art = art
        pool = tuple(art.config["pool"])  # the solver names the calibration chose from (indices refer to it)
        self.forecast = ChannelMix({s.index: row[row >= 0] for s, row in zip(sites, solvers)}, pool)

    def schedule(self) -> tuple[int | float, int]:
        """(interval, warmup): the fields, or where None the calibration's (read from the artifact when this
        instance is not bound yet, so ``full_steps`` answers before a run as every method's does)."""
        if self.interval is not None and self.warmup is not None:
            return self.interval, self.warmup
        config = (self._art if self._art is not None else load_artifact(self.artifact, "hyca")).config
        return self.interval or config["interval"], self.warmup or config["warmup"]

    def full_steps(self, num_steps: int) -> list[int]:
        interval, warmup = self.schedule()
        return counter_steps(num_steps, warmup, interval, self.tail)

    def holds(self, site: Site) -> Holds:
        return Holds(output=True, history=2)

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        self._art.check_step(ctx.step, ctx.num_steps, ctx.timestep)
        interval, warmup = self.schedule()
        if counter_full(ctx.step, warmup, interval, tail_start(self.tail, ctx.num_steps)):
            return [Plan(Action.FULL, order=kept_order(ctx.step, warmup, 2))] * len(sites)
        return [Plan(Action.FORECAST, order=2)] * len(sites)
