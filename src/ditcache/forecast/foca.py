"""FoCa (Zheng et al., arXiv 2508.16211): forecast, then calibrate, treating features as an ODE.

The paper's equations could not be retrieved; we follow cache-dit 1.5.3's ``FoCaState`` (the one public
implementation, so our FoCa and the cache-dit peer can be compared like for like), with one option:

- history: the last two full-step outputs (F_full, F_full_prev) and the last two values the site took
  (F_k, F_km1: full or forecast, so a forecast feeds the next one's local slope);
- forecast ``e`` steps after the last full step, with D_f = F_full - F_full_prev (the anchor slope) and
  D_c = F_k - F_km1 (the local slope): ``P = F_full + (e / 2)(D_f + D_c)`` for e <= horizon, and beyond
  it ``(h / e)(F_full + 1.5 (D_f + D_c)) + (1 - h / e) F_full``, damped towards the anchor (h = 3);
- ``slope="cachedit"`` takes D_f as is (cache-dit: with full steps g > 1 apart the anchor slope is g
  times a per-step slope); ``slope="per_step"`` divides it by the gap g, so both slopes are per step.

Steps are counted in step indices. Before two full steps exist it reuses the last output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .common import Coords, Output, combine, lift

SLOPES = ("cachedit", "per_step")


@dataclass
class FoCa:
    slope: str = "per_step"   # "per_step" (D_f / g) or "cachedit" (cache-dit 1.5.3 exactly); see module doc
    horizon: int = 3          # beyond this many steps the forecast is damped towards the anchor (cache-dit: 3)

    name: ClassVar[str] = "foca"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.slope not in SLOPES:
            raise ValueError(f"FoCa.slope must be one of {SLOPES}, got {self.slope!r}")
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(f"FoCa.horizon must be an int >= 1, got {self.horizon!r}")

    def update(self, history: dict, prev: Output | None, fresh: Output, coords, order: int) -> None:
        now = coords[0].step
        history["full_prev"], history["step_full_prev"] = prev, history.get("step_full")
        history["full"], history["step_full"] = fresh, now
        history["km1"], history["k"] = history.get("k"), fresh

    def predict(self, history: dict, anchor: Output, coords: Coords, order: int) -> Output:
        if order == 0 or history.get("km1") is None or history.get("full_prev") is None:
            return anchor
        e = coords.step - history["step_full"]
        g = history["step_full"] - history["step_full_prev"] if self.slope == "per_step" else 1
        slope = combine(
            combine(history["full"], history["full_prev"], lambda a, b: (lift(a) - lift(b)) / g),
            combine(history["k"], history["km1"], lambda a, b: lift(a) - lift(b)),
            lambda f, c: f + c)                                                     # D_f + D_c
        if e <= self.horizon:
            return combine(anchor, slope, lambda a, s: a + (0.5 * e * s).to(a.dtype))
        h = self.horizon / e  # (h)(F + 1.5 S) + (1 - h) F = F + 1.5 h S
        return combine(anchor, slope, lambda a, s: a + (1.5 * h * s).to(a.dtype))

    def commit(self, history: dict, out: Output, coord) -> None:
        """The value the site took this step becomes the newest point of the local slope."""
        history["km1"], history["k"] = history.get("k"), out
