"""HiCache (Feng et al., arXiv 2508.16984): TaylorSeer with a scaled Hermite basis in place of monomials.

The differences are TaylorSeer's (backward, in step indices, as the reference measures); the forecast
is ``F(0) + sum_k F(k) * Hs_k(delta) / k!`` with ``Hs_k(x) = sigma**k * H_k(sigma * x)`` and ``H_k`` the
physicists' Hermite polynomials (H0 = 1, H1 = 2x, H(k+1) = 2x H(k) - 2k H(k-1)). With sigma = 0.5 the
slope is halved and the curvature term shrinks and turns negative near the anchor: a damped Taylor
series. The coefficients are host-side floats (float64), computed once per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from .common import Coords, Output, apply_terms, check_units
from .taylor import Taylor


def scaled_hermite(k: int, x: float, sigma: float) -> float:
    """sigma**k * H_k(sigma * x) with physicists' Hermite H_k."""
    y = sigma * x
    h_prev, h = 1.0, 2.0 * y
    if k == 0:
        return 1.0
    for n in range(1, k):
        h_prev, h = h, 2.0 * y * h - 2.0 * n * h_prev
    return sigma**k * h


@dataclass
class HiCache:
    sigma: float = 0.5     # basis scale (paper: 0.5 on FLUX.1-dev, its best of 0.4/0.5/0.7/1.0; 0.3 on schnell)
    units: str = "step"    # delta in step indices, as the reference (sigma is tuned for that unit)

    name: ClassVar[str] = "hicache"
    _taylor: Taylor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()
        self._taylor = Taylor(differences="backward", units=self.units)

    def validate(self) -> None:
        if not 0.0 < self.sigma <= 1.0:
            raise ValueError(f"HiCache.sigma must be in (0, 1], got {self.sigma}")
        check_units("HiCache", self.units)

    def held(self, order: int) -> tuple[int, int]:
        return self._taylor.held(order)

    def update(self, history: dict, prev: Output | None, fresh: Output, coords, order: int) -> None:
        self._taylor.update(history, prev, fresh, coords, order)

    def terms(self, history: dict, coords: Coords, order: int) -> list[tuple[float, Output]]:
        """The forecast's terms [(w_k, F_k)], w_k the scaled Hermite polynomial's (``apply_terms``)."""
        factors = history.get("factors", [])[:order]
        delta = coords.get(self.units) - history["nodes"][0] if factors else 0.0
        return [(scaled_hermite(k, delta, self.sigma) / math.factorial(k), f) for k, f in enumerate(factors, start=1)]

    def predict(self, history: dict, anchor: Output, coords: Coords, order: int) -> Output:
        return apply_terms(anchor, self.terms(history, coords, order))
