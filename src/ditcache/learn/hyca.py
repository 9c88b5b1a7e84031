"""Calibrating HyCa (Zheng et al., arXiv 2510.04188): channels clustered by their dynamics, one solver each.

Once per model, offline ("one-time choosing"): the uncached model samples a few generations; along
that trajectory every site's output is forecast at each step the planned schedule (full every
``interval`` steps after ``warmup``) would skip, by every solver of the pool (``forecast/hyca.py``), and
the squared error of each channel summed: the whole skip window is scored, not only the next step.
Each site's channels are then clustered into ``clusters`` groups by their temporal indicators (log
mean |F|, |dF|, |d2F|, |d3F| over the steps, standardised: scale, slope, curvature, jerk), and each
cluster takes the solver with the least summed error over its channels. The artifact records, per site
and channel, the chosen solver (and the cluster), with the usual fingerprint and sampler checks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..adapters import find_sites
from ..artifact import Artifact, fingerprint
from ..forecast.common import Coords
from ..forecast.hyca import POOL, coefficients
from ..forecast.taylor import Taylor
from ..plan import counter_full
from ..tokens import kmeans
from .common import AllFull, record_trajectory


@dataclass
class HyCaTrainConfig:
    steps: int = 50            # sampling steps the calibration is for
    interval: int = 5          # N the calibration plans for (the paper uses 4-7 on FLUX)
    warmup: int = 3            # leading full steps (TaylorSeer's first_enhance on FLUX)
    clusters: int = 2          # C: channel clusters per site (the paper's figures show 2)
    labels_per_batch: int = 10  # generations in the calibration batch (one per class)
    batches: int = 1           # calibration batches (the paper: one prompt suffices)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "interval", "warmup", "clusters", "labels_per_batch", "batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"HyCaTrainConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")


def _channel_sum(t: tuple) -> torch.Tensor:
    """Sum over every dimension but the last, over all streams: (D,) float64."""
    return sum(x.double().reshape(-1, x.shape[-1]).sum(0) for x in t if x is not None)


@torch.no_grad()
def train_hyca(default_model, config: HyCaTrainConfig | None = None) -> tuple[Artifact, dict]:
    from ..engine import apply

    cfg = config or HyCaTrainConfig()
    transformer = default_model.transformer
    sites = find_sites(transformer)
    labels_in = [i % 10 for i in range(cfg.labels_per_batch)]
    errors: dict[int, torch.Tensor] = {}            # site -> (P, D) summed squared error of each solver
    moments: dict[int, list[torch.Tensor]] = {}     # site -> [sum |F|, |dF|, |d2F|, |d3F|] per channel
    taylor = Taylor(differences="backward", units="step")
    for b in range(cfg.batches):
        traj = record_trajectory(default_model, labels_in, cfg.steps, seed=cfg.seed + b)
        run = apply(transformer, AllFull(), steps=cfg.steps)
        history: dict[int, dict] = {s.index: {} for s in sites}
        last_full: dict[int, tuple] = {}
        recent: dict[int, list[tuple]] = {s.index: [] for s in sites}
        try:
            for step in range(cfg.steps):
                transformer(**traj.inputs[step], return_dict=False)
                coords = Coords(traj.timesteps[step], step)
                for site in sites:
                    true = run.store.entries[(0, site.index)].out
                    _moments(moments, site.index, recent[site.index], true)
                    h = history[site.index]
                    if counter_full(step, cfg.warmup, cfg.interval):
                        order = 0 if step < cfg.warmup - 1 else 2
                        taylor.update(h, last_full.get(site.index), true, (coords, None), order)
                        last_full[site.index] = true
                        continue
                    _score(errors, site.index, h, last_full[site.index], true, step)
        finally:
            run.remove()
    solvers, clusters = {}, {}
    for site in sites:
        clusters[site.index] = _cluster_channels(moments[site.index], cfg.clusters, cfg.seed)
        solvers[site.index] = _assign(errors[site.index], clusters[site.index], cfg.clusters)
    width = max(len(v) for v in solvers.values())
    pad = lambda d: torch.stack([torch.nn.functional.pad(d[s.index], (0, width - len(d[s.index])), value=-1)  # noqa: E731
                                 for s in sites])
    art = Artifact("hyca", {"solvers": pad(solvers), "clusters": pad(clusters)}, fingerprint(transformer),
                   traj.timesteps, traj.sampler, {**asdict(cfg), "pool": list(POOL)})
    chosen = torch.cat([solvers[s.index] for s in sites])
    summary = {name: float((chosen == i).double().mean()) for i, name in enumerate(POOL)}
    return art, summary


def _moments(moments: dict, site: int, recent: list, true: tuple) -> None:
    """Accumulate per-channel sums of |F| and of its first three finite differences over steps."""
    recent.append(true)
    del recent[:-4]
    acc = moments.setdefault(site, [0.0, 0.0, 0.0, 0.0])
    diffs = [true]
    seq = recent[::-1]                                                        # newest first
    for order in range(1, len(seq)):  # backward differences of increasing order at this step
        prev = [tuple(a - b for a, b in zip(x, y) if a is not None) for x, y in zip(seq[:-1], seq[1:])]
        diffs.append(prev[0])
        seq = prev
    for k, d in enumerate(diffs):
        acc[k] = acc[k] + _channel_sum(tuple(x.abs() for x in d if x is not None))


def _score(errors: dict, site: int, history: dict, anchor: tuple, true: tuple, step: int) -> None:
    """Add every solver's squared error per channel at a skipped step."""
    factors = history.get("factors", [])
    nodes = history["nodes"]
    delta, gap = step - nodes[0], (nodes[0] - nodes[1] if len(nodes) > 1 else 1.0)
    coef = coefficients(delta, gap)                                          # (P, 2)
    rows = []
    for c1, c2 in coef.tolist():
        pred = anchor
        for c, f in zip((c1, c2), factors):
            pred = tuple(None if a is None else a + c * b for a, b in zip(pred, f))
        rows.append(_channel_sum(tuple(None if p is None else (p - t) ** 2 for p, t in zip(pred, true))))
    errors[site] = errors.get(site, 0.0) + torch.stack(rows)                  # (P, D)


def _cluster_channels(sums: list, clusters: int, seed: int) -> torch.Tensor:
    """(D,) cluster of each channel by its standardised log indicators (scale, slope, curvature, jerk)."""
    feats = torch.stack([torch.log(torch.as_tensor(s, dtype=torch.float64) + 1e-12) for s in sums], -1)  # (D, 4)
    feats = (feats - feats.mean(0)) / feats.std(0).clamp_min(1e-12)
    k = min(clusters, feats.shape[0])
    labels, _, _ = kmeans(feats.float().unsqueeze(0), k, generator=torch.Generator().manual_seed(seed),
                          distance="l2")
    return labels[0]


def _assign(errors: torch.Tensor, labels: torch.Tensor, clusters: int) -> torch.Tensor:
    """(D,) solver per channel: each cluster's solver with the least summed error over its channels."""
    out = torch.zeros_like(labels)
    for c in range(clusters):
        members = labels == c
        if members.any():
            out[members] = int(errors[:, members].sum(1).argmin())
    return out
