"""Training a Learning-to-Cache router (Ma et al., arXiv 2406.01733) on a model's own trajectories.

theta[step, site] is a logit per sampling step and branch; beta = sigmoid(theta) blends the fresh
branch output with the one cached at the step's last full step. The router is fitted by teacher
forcing on trajectories the uncached model samples itself (no dataset needed), with the loss
``relative MSE + lam * mean(beta)``, AdamW, logits clamped to [-5, 5].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..adapters import find_sites
from ..artifact import Artifact, fingerprint
from .common import fit_blend, record_trajectory


@dataclass
class L2CTrainConfig:
    steps: int = 50            # sampling steps the router is for (the artifact only loads for this count)
    interval: int = 2          # full step every `interval` steps; L2C alternates full and cache steps (2)
    iters: int = 400           # AdamW steps (measured: the loss flattens by ~300 on the shipped defaults)
    labels_per_batch: int = 10  # generations per recorded trajectory batch (one per class)
    batches: int = 2           # recorded trajectory batches (different seeds)
    lam: float = 0.5           # weight of mean(beta): trades the share of branches computed against the
    #                            share of the cache's error removed (our loss is relative, so L2C's 1e-6,
    #                            tuned to DiT-XL's absolute MSE, does not carry over). Measured on the dit
    #                            default: lam 0.05 left 95% of cache-step branches above beta 0.5 (no
    #                            speedup at any useful threshold); lam 0.5 spreads them: 90% above 0.1,
    #                            75% above 0.5, 62% above 0.7, 14% above 0.9
    lr: float = 0.05           # AdamW learning rate for the logits (L2C uses 1e-3 over 50k steps; we take 400)
    seed: int = 0              # trajectories' noise and the order of training pairs

    def __post_init__(self) -> None:
        for name in ("steps", "interval", "iters", "labels_per_batch", "batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"L2CTrainConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.interval > self.steps:
            raise ValueError(f"L2CTrainConfig.interval ({self.interval}) exceeds steps ({self.steps}): no cache step")
        if self.lam < 0 or self.lr <= 0:
            raise ValueError("L2CTrainConfig.lam must be >= 0 and lr > 0")


def cache_pairs(steps: int, interval: int) -> list[tuple[int, int]]:
    """(cache step i, its last full step j) for a schedule with a full step every ``interval`` steps."""
    return [(i, i - i % interval) for i in range(steps) if i % interval]


def train_l2c(default_model, config: L2CTrainConfig | None = None, progress: bool = True) -> tuple[Artifact, list]:
    cfg = config or L2CTrainConfig()
    if cfg.interval < 2:
        raise ValueError("L2C needs interval >= 2 (interval 1 has no cache steps)")
    labels = [i % 10 for i in range(cfg.labels_per_batch)]
    trajs = [record_trajectory(default_model, labels, cfg.steps, seed=cfg.seed + b) for b in range(cfg.batches)]
    n_sites = len(find_sites(default_model.transformer))
    theta = torch.zeros(cfg.steps, n_sites, requires_grad=True)  # start at beta = 0.5: no prior preference

    def weights_for(i: int) -> list[torch.Tensor]:
        return list(torch.sigmoid(theta[i]))

    def penalty(weights, i: int) -> torch.Tensor:
        return cfg.lam * torch.stack(weights).mean()

    losses = fit_blend(default_model, trajs, [theta], cache_pairs(cfg.steps, cfg.interval), weights_for, penalty,
                       cfg.iters, cfg.lr, cfg.seed, desc="train l2c")
    art = Artifact("l2c", {"theta": theta.detach()}, fingerprint(default_model.transformer), trajs[0].timesteps,
                   trajs[0].sampler, asdict(cfg))
    return art, losses
