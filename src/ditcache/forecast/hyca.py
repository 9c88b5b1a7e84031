"""HyCa's solver pool and its per-channel forecaster (Zheng et al., arXiv 2510.04188).

Every solver in the pool forecasts from the same history, TaylorSeer's backward differences in step
units kept up to order 2 (d0 = the last full output, d1 the slope over the last full-step gap g, d2 the
change of slope), so a solver is two coefficients (c1, c2) and the forecast ``d0 + c1 d1 + c2 d2``. With
delta = steps since the last full step (the paper's appendix with its formulas was not retrieved; these
are the cache-only forms of the solvers it names):

- reuse: (0, 0), the order-0 cache;
- euler: (delta, 0), the explicit first-order step (Taylor order 1);
- taylor2: (delta, delta^2 / 2), Taylor order 2;
- ab2: (delta, delta g / 2), Adams-Bashforth 2 on the last two slopes d1 and d1 - g d2;
- damped: (delta / 2, 0), half the slope, for channels whose slope does not persist (stiff);
- hermite: (delta / 2, (delta^2 - 2) / 8), HiCache's scaled Hermite basis at sigma 0.5.

``ChannelMix`` gives each site's channels the solver of their cluster: per channel weights w1, w2 (D,)
built once per step from the site's labels, so a forecast is ``d0 + w1 * d1 + w2 * d2`` (no gathers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .common import Coords, Output, combine, lift
from .taylor import Taylor

POOL: dict[str, object] = {
    "reuse": lambda d, g: (0.0, 0.0),
    "euler": lambda d, g: (d, 0.0),
    "taylor2": lambda d, g: (d, d * d / 2),
    "ab2": lambda d, g: (d, d * g / 2),
    "damped": lambda d, g: (d / 2, 0.0),
    "hermite": lambda d, g: (d / 2, (d * d - 2) / 8),
}


def coefficients(delta: float, gap: float) -> torch.Tensor:
    """(len(POOL), 2): (c1, c2) of every solver for a forecast ``delta`` steps ahead, full steps ``gap`` apart."""
    return torch.tensor([fn(delta, gap) for fn in POOL.values()], dtype=torch.float64)


@dataclass
class ChannelMix:
    """Per site and channel, the solver of the channel's cluster. ``solvers[site]``: (D,) pool indices."""

    solvers: dict[int, torch.Tensor] = field(default_factory=dict)

    name: ClassVar[str] = "hyca"

    def __post_init__(self) -> None:
        self._taylor = Taylor(differences="backward", units="step")

    def validate(self) -> None:
        pass

    def new_history(self, key: tuple[int, int]) -> dict:
        return {"site": key[1]}

    def update(self, history: dict, prev: Output | None, fresh: Output, coords, order: int) -> None:
        self._taylor.update(history, prev, fresh, coords, min(order, 2))

    def predict(self, history: dict, anchor: Output, coords: Coords, order: int) -> Output:
        factors = history.get("factors", [])[:2]
        if not factors:
            return anchor
        nodes = history["nodes"]
        delta = coords.step - nodes[0]
        gap = nodes[0] - nodes[1] if len(nodes) > 1 else 1.0
        per_solver = coefficients(delta, gap)                                  # (P, 2)
        out = anchor
        for k, f in enumerate(factors):
            idx = self.solvers[history["site"]]                                # (D,)
            w = per_solver[:, k].to(torch.float32)[idx]                       # (D,) this order's weight per channel
            out = combine(out, f, lambda a, b, w=w: a + (w.to(b.device) * lift(b)).to(a.dtype))
        return out
