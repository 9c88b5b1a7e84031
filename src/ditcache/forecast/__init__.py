"""Forecasters: how a site's output on a step it does not compute is predicted from the steps it did.

A forecaster is a small config dataclass with two functions over a per-site ``history`` dict it owns:

- ``update(history, prev, fresh, coords, order)``: a FULL step computed ``fresh``; ``prev`` is the
  site's previous full output (None at the first one) and ``coords`` the coordinates of the two steps;
  extend the history up to ``order`` (order 0: keep nothing beyond the output itself).
- ``predict(history, anchor, coords, order) -> Output``: the forecast at the current step, built on
  ``anchor`` (the last full output, or its token-refreshed copy on partial steps).
- ``held(order) -> (outputs, differences)``: what the history keeps beside the last output, in
  output-sized tensors (in the output's dtype, and in float32 for half-precision differences), so
  ``memory.predict`` prices it without knowing the forecaster.

and optionally ``commit(history, out, coord)`` (see FoCa), called once with the output a step returned,
``new_history(key)``, the first history of a site (see HyCa's per-site channel solvers), and
``terms(history, coords, order) -> [(w, F)]``: the forecast is its anchor plus sum w F (w a float or a (D,)
weight per channel; ``common.apply_terms``), so it can be read at a few rows, and built on an anchor edited
after the fact, without forecasting every row twice (the token methods' partial steps: ``engine.execute``).
Outputs are tuples of (B, N, D) tensors (joint attention returns two streams; a stream may be None).
Every method that forecasts takes one (``ClusCa(forecast=HiCache())``); each lives in its own file.
"""

from __future__ import annotations

from .foca import FoCa
from .hicache import HiCache
from .taylor import Taylor

# name -> a forecaster with its defaults (settings text: "clusca:forecast=hicache")
FORECASTERS: dict[str, object] = {
    "taylor": Taylor, "newton": lambda: Taylor(differences="newton"), "hicache": HiCache, "foca": FoCa,
}


def check_forecaster(owner: str, forecast) -> None:
    """A method's ``forecast`` must be a forecaster instance (not its class, not a name)."""
    if isinstance(forecast, type) or not (callable(getattr(forecast, "update", None))
                                          and callable(getattr(forecast, "predict", None))):
        raise TypeError(f"{owner}.forecast must be a forecaster instance such as Taylor() or HiCache(); "
                        f"got {forecast!r} (known: {sorted(FORECASTERS)})")
    forecast.validate()


def forecaster(name: str):
    """A forecaster with its defaults, by registry name."""
    try:
        return FORECASTERS[name]()
    except KeyError:
        raise KeyError(f"unknown forecaster {name!r}; known: {sorted(FORECASTERS)}") from None


__all__ = ["FORECASTERS", "FoCa", "HiCache", "Taylor", "check_forecaster", "forecaster"]
