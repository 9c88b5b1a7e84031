"""Predicting the bytes a method's cache will hold, from one full call's outputs.

Each method states what it keeps (``holds(site)`` -> ``plan.Holds``, and ``holds_shared()`` ->
``plan.SharedHolds`` for run-wide state) and each forecaster what its history keeps (``held(order)``); this
module only prices those parts: the last output, the forecaster's history (differences in float32 when
the model runs in half precision), a refreshed copy of the output where partial steps write back, kept
attention inputs and keys, staleness counts, a probe block's output with its k-means labels and
centroids, the final layer's input with its high-band differences.
``predict`` turns the shapes of one full call into the peak bytes of a generation, per site and total;
``ditcache.estimate_memory`` runs that call, and ``cached(..., max_cache_bytes=...)`` checks it after the
first call of a run, before anything is cached beyond it.
"""

from __future__ import annotations

import torch

from .plan import Holds, SharedHolds, Site, kept_order
from .store import tensors_in


def from_store(method, sites: list[Site], store, branches: int, grid, steps: int | None) -> dict[str, int]:
    """The prediction from a run's own store after its first full call."""
    outputs = {s.index: store.entries[(0, s.index)].out for s in sites if (0, s.index) in store.entries}
    data = {i: store.entries[(0, i)].data for i in outputs}
    inputs = {i: (d["input"], d.get("keys")) for i, d in data.items() if "input" in d}  # ToCa: kept keys too
    final = store.shared.get(("freqca", 0), {}).get("crf")
    probe = (store.shared.get(("probe", 0)), store.shared.get(("probe-text", 0)))
    return predict(method, sites, outputs, inputs, final, probe if probe[0] is not None else None, branches, grid,
                   steps)


def _bytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def _factor_bytes(t: torch.Tensor | None) -> int:
    """A difference of t: float32 when t is half precision (forecast.common.lift)."""
    if t is None:
        return 0
    return t.numel() * (4 if t.dtype in (torch.float16, torch.bfloat16) else t.element_size())


def _history(forecaster, outs: tuple, order: int) -> int:
    """Bytes of a forecaster's history beside the output it keeps (``order`` differences reached), as the
    forecaster states it (``held``: output-sized tensors in the output's dtype, and differences)."""
    if order == 0 or forecaster is None:
        return 0
    copies, differences = forecaster.held(order)
    return copies * sum(_bytes(t) for t in outs) + differences * sum(_factor_bytes(t) for t in outs)


def orders_reached(method, order: int, steps: int | None) -> int:
    """The most differences the method's schedule builds in ``steps`` steps: TaylorSeer's counter adds one
    per full step from its last warm-up step on, up to ``order`` (a short run may stop short of it)."""
    full_steps = getattr(method, "full_steps", None)
    if steps is None or full_steps is None or order == 0:
        return order
    warmup = getattr(method, "warmup", None) or getattr(method, "_warmup", 1)
    factors, best, seen = 0, 0, False
    for s in full_steps(steps):
        keep = kept_order(s, warmup, order)
        factors = min(keep, factors + 1) if seen and keep else 0
        best, seen = max(best, factors), True
    return best


def predict(method, sites: list[Site], outputs: dict[int, tuple], inputs: dict[int, tuple] | None = None,
            final: torch.Tensor | None = None, probe: tuple | None = None, branches: int = 1,
            grid: tuple[int, int, int] | None = None, steps: int | None = None) -> dict[str, int]:
    """Peak bytes per site name (and "shared", "total") for a generation whose full call produced
    ``outputs`` (site index -> output tensors as the store keeps them). ``inputs``: per attention site,
    its ((args, kwargs), raw keys or None) as a full call kept them (ToCa keeps both); ``final``: the
    final layer's input (FreqCa); ``probe``: ClusCa's probe block outputs (image, text). Split-CFG runs
    hold one copy per branch."""
    holds = getattr(method, "holds", lambda site: Holds())
    shared_holds = getattr(method, "holds_shared", SharedHolds)()
    forecaster = getattr(method, "forecast", None)
    per_site: dict[str, int] = {}
    shared = 0
    kept: dict[int, int] = {}  # kept attention inputs, by storage: layers share some (text, rotary tables)
    for site in sites:
        outs = outputs.get(site.index)
        per_site[site.name] = 0
        if not outs:  # the method keeps nothing for this site (NoCache, FreqCa)
            continue
        h = holds(site)
        held = sum(_bytes(t) for t in outs) if h.output else 0
        if h.history:
            held += _history(forecaster, outs, orders_reached(method, h.history, steps))
        if h.refreshed:
            held += _bytes(outs[0])
        if h.staleness:
            rows, tokens = outs[0].shape[:2]
            held += rows * tokens * outs[0].element_size()
        if h.inputs and inputs is not None and site.index in inputs:
            given, keys = inputs[site.index]
            kept.update((t.data_ptr(), _bytes(t)) for t in tensors_in((given, keys if h.keys else None)))
        per_site[site.name] = held * branches
    shared += sum(kept.values()) * branches
    scored = {s.layer for s in sites if outputs.get(s.index) and holds(s).scores}
    for site in sites:  # a scored layer's scores: one float32 per token of each stream its self-attention outputs
        if site.layer in scored and site.kind == "attn" and outputs.get(site.index):
            shared += sum(t.shape[0] * t.shape[1] * 4 for t in outputs[site.index] if t.dim() == 3) * branches
    if shared_holds.final is not None and final is not None:
        order = orders_reached(method, shared_holds.final, steps)
        shared += (_bytes(final) + order * _factor_bytes(final)) * branches
    if shared_holds.probe_clusters and probe is not None:
        for stream, x in zip(("image", "text"), probe):
            if x is None:
                continue
            b, n, d = x.shape
            k = shared_holds.probe_clusters if stream == "image" else min(shared_holds.probe_clusters, n)
            whole_clip = grid is not None and grid[0] * grid[1] * grid[2] == n
            frames = grid[0] if shared_holds.frame_wise and stream == "image" and whole_clip else 1
            shared += (_bytes(x) + b * n * 8 + b * frames * k * d * 4) * branches  # probe, labels, centroids
    return {**per_site, "shared": shared, "total": sum(per_site.values()) + shared}
