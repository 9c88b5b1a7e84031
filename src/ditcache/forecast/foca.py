"""FoCa (Zheng et al., arXiv 2508.16211): forecast, then calibrate, treating features as an ODE.

The paper integrates the feature-ODE dF/dt = g(F, t) from cached values with a BDF2 predictor and a Heun
(trapezoidal) corrector. Its equations and code could not be retrieved, so the default follows the one
reproduction that writes them out (a Wan port citing the paper's Eq. 7; shared/frontier-methods.md, FoCa):
with F_c, F_p the last two full-step outputs, g the gap between them and r = e / g for a forecast e steps
after F_c (D = F_c - F_p; the unknown slope h g(n+1) is taken as r D):

- forecast (BDF2): ``P = (4/3) F_c - (1/3) F_p + (2/3) r D``;
- calibrate (Heun): ``H = F_c + (r D + (P - F_c)) / 2``;
- output ``0.75 H + 0.25 P``, which is ``F_c + D (19 r + 5) / 24``: exact for a straight line at r = 1 (one
  full-step gap ahead), ahead of it nearer the anchor (5 D / 24 at r -> 0: BDF2's coefficients assume the
  step equals the gap).

``slope="cachedit"`` is cache-dit 1.5.3's ``FoCaState`` exactly (the one public implementation, kept so our
FoCa and the cache-dit peer compare like for like): history F_full, F_full_prev and the last two values the
site took (F_k, F_km1: full or forecast, so a forecast feeds the next one's local slope); with D_f =
F_full - F_full_prev and D_c = F_k - F_km1, ``P = F_full + (e / 2)(D_f + D_c)`` for e <= horizon, beyond
it ``(h / e)(F_full + 1.5 (D_f + D_c)) + (1 - h / e) F_full`` (h = 3). ``slope="per_step"`` is that form
with D_f divided by g (cache-dit's D_f is g times a per-step slope when full steps are g > 1 apart).

Steps are counted in step indices. Before two full steps exist every form reuses the last output.

Measured on the shipped defaults (TaylorSeer's schedule, order 1, warm-up 3; 20 images, 50 steps; PSNR to
uncached, no intervals), dit / flux: at N 4 bdf2 36.3 / 41.4 dB, per_step 40.1 / 45.0, cachedit 29.6 / 31.8;
at N 6 bdf2 30.9 / 35.1, per_step 31.9 / 33.2, cachedit 20.6 / 23.1. The paper's form is the default as the
method's definition; per_step is kept for being ahead at N 4 on both models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .common import Coords, Output, combine, lift

SLOPES = ("bdf2", "cachedit", "per_step")
HEUN_WEIGHT = 0.75  # the reproduction's blend of the Heun-calibrated value with the BDF2 forecast


@dataclass
class FoCa:
    slope: str = "bdf2"       # "bdf2" (BDF2 forecast, Heun calibration: the paper's form), "cachedit"
    #                           (cache-dit 1.5.3 exactly) or "per_step" (cache-dit's with D_f / g); module doc
    horizon: int = 3          # cachedit / per_step: beyond this many steps the forecast is damped towards the
    #                           anchor (cache-dit: 3)

    name: ClassVar[str] = "foca"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.slope not in SLOPES:
            raise ValueError(f"FoCa.slope must be one of {SLOPES}, got {self.slope!r}")
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(f"FoCa.horizon must be an int >= 1, got {self.horizon!r}")

    def held(self, order: int) -> tuple[int, int]:
        """(outputs, differences) the history keeps beside the last output: the previous full output
        (bdf2), or that and the last two values taken (cache-dit's forms)."""
        if order == 0:
            return 0, 0
        return (1 if self.slope == "bdf2" else 3), 0

    def update(self, history: dict, prev: Output | None, fresh: Output, coords, order: int) -> None:
        now = coords[0].step
        history["full_prev"], history["step_full_prev"] = prev, history.get("step_full")
        history["full"], history["step_full"] = fresh, now
        if self.slope != "bdf2":
            history["km1"], history["k"] = history.get("k"), fresh

    def predict(self, history: dict, anchor: Output, coords: Coords, order: int) -> Output:
        if order == 0 or history.get("full_prev") is None:
            return anchor
        e = coords.step - history["step_full"]
        gap = history["step_full"] - history["step_full_prev"]
        if self.slope == "bdf2":
            r = e / gap
            p = 1 / 3 + 2 / 3 * r                       # P = F_c + p D
            w = HEUN_WEIGHT * (r + p) / 2 + (1 - HEUN_WEIGHT) * p   # H = F_c + (r + p) D / 2
            return combine(anchor, combine(history["full"], history["full_prev"], lambda a, b: lift(a) - lift(b)),
                           lambda a, d: a + (w * d).to(a.dtype))
        if history.get("km1") is None:
            return anchor
        g = gap if self.slope == "per_step" else 1
        slope = combine(
            combine(history["full"], history["full_prev"], lambda a, b: (lift(a) - lift(b)) / g),
            combine(history["k"], history["km1"], lambda a, b: lift(a) - lift(b)),
            lambda f, c: f + c)                                                     # D_f + D_c
        if e <= self.horizon:
            return combine(anchor, slope, lambda a, s: a + (0.5 * e * s).to(a.dtype))
        h = self.horizon / e  # (h)(F + 1.5 S) + (1 - h) F = F + 1.5 h S
        return combine(anchor, slope, lambda a, s: a + (1.5 * h * s).to(a.dtype))

    def commit(self, history: dict, out: Output, coord) -> None:
        """cache-dit's forms: the value the site took this step becomes the newest point of the local slope.
        The BDF2 form forecasts from full-step outputs only."""
        if self.slope != "bdf2":
            history["km1"], history["k"] = history.get("k"), out
