"""Calibrating HyCa (Zheng et al., arXiv 2510.04188): channels clustered by their dynamics, one solver each.

Once per model, offline ("one-time choosing"): the uncached model samples a few generations; along
that trajectory every site's output is forecast at each step the planned schedule (full every
``interval`` steps after ``warmup``) would skip, by every solver of the paper's pool (``forecast/hyca.py``),
and the squared error of each channel summed: the whole skip window is scored, not only the next step.
Each site's channels are then clustered into ``clusters`` groups by the paper's temporal indicators
(``DESCRIPTORS``: mean |first| and |second| differences over the steps, energy, jerk ratio, curvature
ratio and spectral flatness; logs, standardised), and each cluster takes the solver with the least
summed error over its channels. The artifact records, per site and channel, the chosen solver (and the
cluster) and the names of the pool the indices refer to, with the usual fingerprint and sampler checks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..adapters import find_sites
from ..artifact import Artifact, fingerprint
from ..forecast.common import Coords
from ..forecast.hyca import POOL, coefficients
from ..forecast.taylor import Taylor
from ..plan import counter_full, kept_order
from ..tokens import kmeans
from .common import AllFull, record_trajectory

# The per-channel indicators the paper lists (its exact definitions were not retrieved; these are the plain
# ones): d1, d2, d3 = mean |first, second, third backward difference| over steps and rows, energy = mean F^2,
# and the spectral flatness (geometric over arithmetic mean of the power spectrum) of the first differences
# of the channel's mean over rows, step by step.
DESCRIPTORS = ("first_difference", "second_difference", "energy", "jerk_ratio", "curvature_ratio",
               "spectral_flatness")
EPS = 1e-12


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


def _rows(t: tuple) -> torch.Tensor:
    """Every stream's rows (all dimensions but the last) stacked: (R, D) float64."""
    return torch.cat([x.double().reshape(-1, x.shape[-1]) for x in t if x is not None])


class SiteCalibration:
    """One site along the calibration trajectories: each pool solver's summed squared error per channel on
    the steps the schedule skips, and the sums the channel descriptors are made of."""

    def __init__(self, pool: tuple[str, ...] = POOL) -> None:
        self.pool = pool
        self.errors: torch.Tensor | None = None          # (P, D)
        self.sums: list = [0.0, 0.0, 0.0, 0.0]           # per channel: sum of mean F^2, |dF|, |d2F|, |d3F|
        self.counts = [0, 0, 0, 0]                       # steps each sum covers
        self.spectra: list[torch.Tensor] = []            # per trajectory: (D,) log spectral flatness
        self._taylor = Taylor(differences="backward", units="step")
        self.start()

    def start(self) -> None:
        """A new trajectory: no history, no recent outputs."""
        self.history: dict = {}
        self.last_full: tuple | None = None
        self.recent: list[torch.Tensor] = []             # the last four outputs' rows, newest last
        self.means: list[torch.Tensor] = []              # per step: (D,) mean over rows

    def observe(self, step: int, true: tuple, full: bool, order: int) -> None:
        """The real output at ``step``; ``full``: the planned schedule computes this step (its differences
        extended up to ``order``), else every solver's forecast is scored against it."""
        rows = _rows(true)                                                     # (R, D)
        self._moments(rows)
        if full:
            self._taylor.update(self.history, self.last_full, true, (Coords(float(step), step), None), order)
            self.last_full = true
            return
        factors = self.history.get("factors", [])
        nodes = self.history["nodes"]
        gap = nodes[0] - nodes[1] if len(nodes) > 1 else 1.0
        anchor = _rows(self.last_full)
        terms = [_rows(f) for f in factors]
        errs = []
        for c in coefficients(step - nodes[0], gap, self.pool).tolist():      # (c1, c2) per solver
            pred = anchor + sum(ci * t for ci, t in zip(c, terms))
            errs.append(((pred - rows) ** 2).sum(0))
        self.errors = (0.0 if self.errors is None else self.errors) + torch.stack(errs)   # (P, D)

    def finish(self) -> None:
        """A trajectory ends: its channels' spectral flatness joins the descriptors."""
        if len(self.means) > 2:
            diffs = torch.stack(self.means).diff(dim=0)                        # (T - 1, D)
            power = torch.fft.rfft(diffs, dim=0).abs() ** 2 + EPS              # (F, D)
            self.spectra.append(power.log().mean(0) - power.mean(0).log())     # log(geometric / arithmetic)

    def _moments(self, rows: torch.Tensor) -> None:
        self.means.append(rows.mean(0))
        self.recent = (self.recent + [rows])[-4:]
        self.sums[0] = self.sums[0] + (rows ** 2).mean(0)
        self.counts[0] += 1
        diffs = self.recent[::-1]                                              # newest first
        for k in range(1, len(diffs)):  # backward differences of order k at this step
            diffs = [a - b for a, b in zip(diffs[:-1], diffs[1:])]
            self.sums[k] = self.sums[k] + diffs[0].abs().mean(0)
            self.counts[k] += 1

    def descriptors(self) -> torch.Tensor:
        """(D, 6) the channels' indicators (``DESCRIPTORS``), log-scaled."""
        energy, d1, d2, d3 = (torch.as_tensor(s, dtype=torch.float64) / max(c, 1) + EPS
                              for s, c in zip(self.sums, self.counts))
        flatness = torch.stack(self.spectra).mean(0) if self.spectra else torch.zeros_like(d1)
        return torch.stack([d1.log(), d2.log(), energy.log(), (d3 / d2).log(), (d2 / d1).log(), flatness], -1)

    def assign(self, clusters: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(D,) solver per channel (indices into ``pool``) and (D,) cluster per channel: the channels clustered
        by their standardised descriptors, each cluster given the solver with the least summed error."""
        labels = _cluster_channels(self.descriptors(), clusters, seed)
        return _assign(self.errors, labels, clusters), labels


@torch.no_grad()
def train_hyca(default_model, config: HyCaTrainConfig | None = None) -> tuple[Artifact, dict]:
    from ..engine import apply

    cfg = config or HyCaTrainConfig()
    transformer = default_model.transformer
    sites = find_sites(transformer)
    labels_in = [i % 10 for i in range(cfg.labels_per_batch)]
    calibration = {s.index: SiteCalibration() for s in sites}
    for b in range(cfg.batches):
        traj = record_trajectory(default_model, labels_in, cfg.steps, seed=cfg.seed + b)
        run = apply(transformer, AllFull(), steps=cfg.steps)
        for cal in calibration.values():
            cal.start()
        try:
            for step in range(cfg.steps):
                transformer(**traj.inputs[step], return_dict=False)
                full = counter_full(step, cfg.warmup, cfg.interval)
                for site in sites:
                    calibration[site.index].observe(step, run.store.entries[(0, site.index)].out, full,
                                                    kept_order(step, cfg.warmup, 2))
        finally:
            run.remove()
        for cal in calibration.values():
            cal.finish()
    solvers, clusters = {}, {}
    for site in sites:
        solvers[site.index], clusters[site.index] = calibration[site.index].assign(cfg.clusters, cfg.seed)
    width = max(len(v) for v in solvers.values())
    pad = lambda d: torch.stack([torch.nn.functional.pad(d[s.index], (0, width - len(d[s.index])), value=-1)  # noqa: E731
                                 for s in sites])
    art = Artifact("hyca", {"solvers": pad(solvers), "clusters": pad(clusters)}, fingerprint(transformer),
                   traj.timesteps, traj.sampler, {**asdict(cfg), "pool": list(POOL)})
    chosen = torch.cat([solvers[s.index] for s in sites])
    summary = {name: float((chosen == i).double().mean()) for i, name in enumerate(POOL)}
    return art, summary


def _cluster_channels(descriptors: torch.Tensor, clusters: int, seed: int) -> torch.Tensor:
    """(D,) cluster of each channel by its standardised descriptors (D, K)."""
    feats = descriptors.double()
    feats = (feats - feats.mean(0)) / feats.std(0).clamp_min(EPS)
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
