"""HyCa's solver pool and its per-channel forecaster (Zheng et al., arXiv 2510.04188).

The paper's pool is Runge-Kutta, Adams-Bashforth, the Taylor formula, BDF and Adams-Moulton; its appendix
with their formulas was not retrieved, so each is written here in a cache-only form (no slope can be
evaluated between full steps: slopes come from the full-step history). Every solver forecasts from
TaylorSeer's backward differences in step units kept up to order 2: d0 = the last full output, d1 =
the slope over the last full-step gap g, d2 = the change of slope per step. So the last two slopes are
v_n = d1 and v_(n-1) = d1 - g d2, and a solver is two coefficients (c1, c2) with the forecast
``d0 + c1 d1 + c2 d2``, delta steps after the last full step:

- reuse: (0, 0), the order-0 cache;
- euler: (delta, 0), the Taylor formula of order 1;
- taylor2: (delta, delta^2 / 2), the Taylor formula of order 2 (TaylorSeer);
- ab2: F + delta (3/2 v_n - 1/2 v_(n-1)) = (delta, delta g / 2), Adams-Bashforth 2;
- rk2: F + delta (v_n + v_(n-1)) / 2 = (delta, -delta g / 2), Heun's two-stage average with the stage
  slope it cannot evaluate ahead taken from the history;
- am2: the trapezoidal rule F + delta (v_n + p) / 2 with its implicit end slope p predicted by AB2 (one
  predict-evaluate-correct pass, p = d1 + g d2 / 2) = (delta, delta g / 4), Adams-Moulton 2;
- bdf2: variable-step BDF2 through the last two full outputs (F_(n-1) = d0 - g d1), step ratio w = delta / g,
  ``F = ((1+w)^2 F_n - w^2 F_(n-1) + (1+w) delta p) / (1 + 2w)`` with the same predicted slope p
  = (delta, delta g (g + delta) / (2 (g + 2 delta))).

Every solver but reuse is exact on a straight line (d2 = 0). Two more forms stay loadable, for
calibrations made before the pool followed the paper: damped (delta / 2, 0) and hermite (delta / 2,
(delta^2 - 2) / 8; HiCache's basis at sigma 0.5). A calibration records the names of the pool it chose from.

``ChannelMix`` gives each site's channels the solver of their cluster: per channel weights w1, w2 (D,)
built once per step from the site's labels, so a forecast is ``d0 + w1 * d1 + w2 * d2`` (no gathers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .common import Coords, Output, apply_terms
from .taylor import Taylor

SOLVERS: dict[str, object] = {
    "reuse": lambda d, g: (0.0, 0.0),
    "euler": lambda d, g: (d, 0.0),
    "taylor2": lambda d, g: (d, d * d / 2),
    "ab2": lambda d, g: (d, d * g / 2),
    "rk2": lambda d, g: (d, -d * g / 2),
    "am2": lambda d, g: (d, d * g / 4),
    "bdf2": lambda d, g: (d, d * g * (g + d) / (2 * (g + 2 * d))),
    "damped": lambda d, g: (d / 2, 0.0),               # before the paper's pool (loadable, not calibrated)
    "hermite": lambda d, g: (d / 2, (d * d - 2) / 8),  # before the paper's pool (loadable, not calibrated)
}
POOL: tuple[str, ...] = ("reuse", "euler", "taylor2", "ab2", "rk2", "am2", "bdf2")  # what calibration chooses from


def coefficients(delta: float, gap: float, pool: tuple[str, ...] = POOL) -> torch.Tensor:
    """(len(pool), 2): (c1, c2) of every solver for a forecast ``delta`` steps ahead, full steps ``gap`` apart."""
    return torch.tensor([SOLVERS[name](delta, gap) for name in pool], dtype=torch.float64)


@dataclass
class ChannelMix:
    """Per site and channel, the solver of the channel's cluster. ``solvers[site]``: (D,) indices into
    ``pool`` (the names of the solvers the calibration chose from)."""

    solvers: dict[int, torch.Tensor] = field(default_factory=dict)
    pool: tuple[str, ...] = POOL

    name: ClassVar[str] = "hyca"

    def __post_init__(self) -> None:
        self._taylor = Taylor(differences="backward", units="step")
        unknown = [n for n in self.pool if n not in SOLVERS]
        if unknown:
            raise ValueError(f"HyCa calibration names unknown solvers {unknown}; known: {sorted(SOLVERS)}")

    def validate(self) -> None:
        pass

    def held(self, order: int) -> tuple[int, int]:
        return 0, min(order, 2)

    def new_history(self, key: tuple[int, int]) -> dict:
        return {"site": key[1]}

    def update(self, history: dict, prev: Output | None, fresh: Output, coords, order: int) -> None:
        self._taylor.update(history, prev, fresh, coords, min(order, 2))

    def terms(self, history: dict, coords: Coords, order: int) -> list[tuple[torch.Tensor, Output]]:
        """The forecast's terms [(w_k, F_k)], w_k (D,) the weight of order k of each channel's solver
        (``apply_terms``)."""
        factors = history.get("factors", [])[:2]
        if not factors:
            return []
        nodes = history["nodes"]
        delta = coords.step - nodes[0]
        gap = nodes[0] - nodes[1] if len(nodes) > 1 else 1.0
        per_solver = coefficients(delta, gap, self.pool)                       # (P, 2)
        idx = self.solvers[history["site"]]                                    # (D,)
        return [(per_solver[:, k][idx], f) for k, f in enumerate(factors)]

    def predict(self, history: dict, anchor: Output, coords: Coords, order: int) -> Output:
        return apply_terms(anchor, self.terms(history, coords, order))
