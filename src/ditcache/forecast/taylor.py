"""Taylor forecasting (TaylorSeer, Liu et al., arXiv 2503.06923): the default forecaster.

At each full step the site's finite differences are extended, ``F(i+1) = (F(i)_now - F(i)_before) / d``,
and a forecast is ``F(0) + sum_i F(i) * delta**i / i!``. Two ways to take the differences:

- ``backward`` (TaylorSeer's): ``d`` is the gap between the last two full steps for every order. Exact
  for straight lines; for higher orders only on uniform grids and even there the Taylor sum is not
  the interpolating polynomial (t^2 sampled at 0, 1, 2 forecasts 8 at 3, not 9).
- ``newton``: divided differences over the last ``order + 1`` full steps and the Newton form of their
  interpolating polynomial, exact for polynomials up to ``order`` on any grid.

Coordinates are step indices by default, as the references measure (TaylorSeer, ToCa, ClusCa count
steps), or timestep values (``units="timestep"``: the followed scheduler's timestep for the step, else the
model's timestep argument), which respects uneven schedules. A full step at the same coordinate as the
last one (Heun's and KDPM2's repeated timesteps, in timestep units) only moves the anchor: the factors are
kept, since a difference over a zero gap has no meaning and dropping them would turn forecasts into reuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from .common import Coords, Output, apply_terms, check_units, combine, lift

DIFFERENCES = ("backward", "newton")


@dataclass
class Taylor:
    differences: str = "backward"  # "backward" (TaylorSeer's) or "newton" (exact on any grid); see module doc
    units: str = "step"            # "step" (step indices, the references' unit) or "timestep" (timestep values)

    name: ClassVar[str] = "taylor"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.differences not in DIFFERENCES:
            raise ValueError(f"Taylor.differences must be one of {DIFFERENCES}, got {self.differences!r}")
        check_units("Taylor", self.units)

    def held(self, order: int) -> tuple[int, int]:
        """(outputs, differences) the history keeps beside the last output: ``order`` differences."""
        return 0, order

    def update(self, history: dict, prev: Output | None, fresh: Output, coords: tuple[Coords, Coords | None],
               order: int) -> None:
        """history["factors"]: [F1, ..., Fk] (k <= order); history["nodes"]: coordinates of the full
        steps they span, newest first."""
        now, before = coords
        x = now.get(self.units)
        old = history.get("factors", [])
        nodes = history.get("nodes", [])
        if prev is not None and nodes and x == nodes[0]:
            return  # a repeated coordinate (Heun): the new output is the anchor; the factors stand
        factors: list[Output] = []
        if prev is not None and order > 0 and nodes and x != nodes[0]:
            lower_new, lower_old = fresh, prev
            for i in range(min(len(old) + 1, order)):
                d = x - (nodes[0] if self.differences == "backward" else nodes[i])
                new = combine(lower_new, lower_old, lambda a, b, d=d: (lift(a) - lift(b)) / d)
                factors.append(new)
                if i < len(old):
                    lower_new, lower_old = new, old[i]
                else:
                    break
        history["factors"] = factors
        history["nodes"] = ([x] + nodes)[: order + 1] if factors else [x]

    def terms(self, history: dict, coords: Coords, order: int) -> list[tuple[float, Output]]:
        """The forecast's terms [(w_i, F_i)]: it is the anchor plus sum_i w_i F_i (``apply_terms``)."""
        factors = history.get("factors", [])[:order]
        x, nodes = coords.get(self.units), history.get("nodes")
        terms = []
        for i, f in enumerate(factors, start=1):
            if self.differences == "backward":
                w = (x - nodes[0]) ** i / math.factorial(i)
            else:
                w = math.prod(x - nodes[j] for j in range(i))
            terms.append((w, f))
        return terms

    def predict(self, history: dict, anchor: Output, coords: Coords, order: int) -> Output:
        return apply_terms(anchor, self.terms(history, coords, order))
