"""Checks a run makes on its method's settings: the predicted cache memory against the budget (after
the first step, before anything beyond it is cached) and a schedule that would cache nothing."""

from __future__ import annotations

import dataclasses
import warnings

from ..plan import Site
from ..store import Store


def predict_bytes(method, sites: list[Site], store: Store, branches: int, grid, num_steps: int) -> dict[str, int]:
    """The generation's peak cache bytes per site and in total, from what the first step stored."""
    from ..memory import from_store

    return from_store(method, sites, store, max(branches, 1), grid, num_steps)


def check_memory(method, predicted: dict[str, int], max_cache_bytes: int | float | None) -> None:
    """Refuse (MemoryError) a predicted peak over ``max_cache_bytes``, naming the largest sites."""
    total = predicted["total"]
    if max_cache_bytes is None or total <= max_cache_bytes:
        return
    top = sorted(((v, k) for k, v in predicted.items() if k not in ("total", "shared")), reverse=True)
    raise MemoryError(
        f"ditcache: {type(method).__name__} would hold {total / 2**20:.1f} MiB of cache for this model, "
        f"batch and resolution, over max_cache_bytes ({max_cache_bytes / 2**20:.1f} MiB); largest sites: "
        + ", ".join(f"{k} {v / 2**20:.1f} MiB" for v, k in top[:3])
        + ". Ways down: a lower forecast order (each order adds one output-sized tensor per site), FORA (one "
        "output per site), FreqCa (one feature for the whole model), fewer sites (ditcache.register_block "
        "with fewer branches), or a smaller batch. ditcache.estimate_memory predicts it without running.")


REFERENCE_STEPS = 50   # the step count the references tune their schedules at (DiT's DDIM-50, FLUX's 50)
FEW = 0.25             # a schedule caching this share or less of the run "caches close to nothing"


def _cached(method, num_steps: int) -> int:
    return num_steps - len(method.full_steps(num_steps))


def suggest(method, num_steps: int):
    """The setting of ``method`` with a smaller ``warmup`` and/or ``interval`` whose cached share at
    ``num_steps`` comes closest to the method's own share at the references' step count (ties: the least
    change), or None when no such field or no setting caches anything."""
    fields = {f.name: getattr(method, f.name) for f in dataclasses.fields(method)} \
        if dataclasses.is_dataclass(method) else {}
    knobs = {k: v for k, v in fields.items() if k in ("warmup", "interval") and isinstance(v, int)}
    if not knobs:
        return None
    target = _cached(method, REFERENCE_STEPS) / REFERENCE_STEPS
    best, best_key = None, None
    for warmup in range(knobs.get("warmup", 0), -1, -1) if "warmup" in knobs else [None]:
        for interval in range(knobs.get("interval", 1), 0, -1) if "interval" in knobs else [None]:
            change = {k: v for k, v in (("warmup", warmup), ("interval", interval)) if v is not None}
            try:
                candidate = dataclasses.replace(method, **change)
            except (ValueError, TypeError):
                continue  # below the method's own minimum
            cached = _cached(candidate, num_steps)
            if cached == 0:
                continue
            moved = sum(abs(knobs[k] - v) for k, v in change.items())
            key = (abs(cached / num_steps - target), moved)
            if best_key is None or key < best_key:
                best, best_key = candidate, key
    return best


def check_schedule(method, num_steps: int | None, warned: set[int]) -> None:
    """Say once per step count (``warned`` holds those said), before the generation's first step, when the
    method's schedule caches nothing or close to nothing (a quarter of the steps or less) at this step count,
    as a warm-up and interval tuned for 50 steps do on a 4-8 step model, and name the setting that would
    cache. A schedule that caches little at every step count (FORA(interval=1) means it) is not warned."""
    t, full_steps = num_steps, getattr(method, "full_steps", None)
    if t is None or full_steps is None or t in warned or method.name == "none":
        return
    warned.add(t)
    cached, usual = _cached(method, t), _cached(method, REFERENCE_STEPS) / REFERENCE_STEPS
    if cached > FEW * t or usual <= FEW:
        return
    from ..methods import describe

    what = "nothing will be cached" if cached == 0 else f"only {cached} of {t} steps will be cached"
    better = suggest(method, t)
    hint = (f" {describe(better)} would cache {_cached(better, t)} of {t} (the share closest to "
            f"{usual:.0%}, what {describe(method)} caches at {REFERENCE_STEPS} steps)."
            if better is not None else "")
    # stacklevel 5: this, Run._new_generation, Clock.new_generation, Run.set_schedule, its caller
    warnings.warn(f"{describe(method)} computes {t - cached} of {t} steps at this step count (its interval "
                  f"or warm-up spans most of the run): {what}.{hint} Valid settings: "
                  f"{getattr(method, 'ranges', '')}", stacklevel=5)
