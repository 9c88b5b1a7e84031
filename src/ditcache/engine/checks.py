"""Checks a run makes on its method's settings: the predicted cache memory against the budget (after
the first step, before anything beyond it is cached) and a schedule that would cache nothing."""

from __future__ import annotations

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


def check_schedule(method, num_steps: int | None, warned: set[int]) -> None:
    """Say once per step count (``warned`` holds those said) when the method's schedule caches nothing at
    this step count (an interval or warm-up as long as the run) instead of silently computing every step."""
    t, full_steps = num_steps, getattr(method, "full_steps", None)
    if t is None or full_steps is None or t in warned or method.name == "none":
        return
    warned.add(t)
    if len(full_steps(t)) == t and len(full_steps(1000)) < 1000:  # (FORA(interval=1) means it: no warning)
        from ..methods import describe

        # stacklevel 5: this, Run._new_generation, Clock.new_generation, Run.set_schedule, its caller
        warnings.warn(f"{describe(method)} computes all {t} steps at this step count (its interval or "
                      f"warm-up spans the whole run): nothing will be cached. Valid settings: "
                      f"{getattr(method, 'ranges', '')}", stacklevel=5)
