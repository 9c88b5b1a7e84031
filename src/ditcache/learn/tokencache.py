"""Training a TokenCache predictor (Lou et al., arXiv 2409.18523) on a model's own trajectories.

The predictor gives every (step, site, token) an importance w = sigmoid(logit) that depends only on
the step, the site and the token position, never on the input (the paper's g(l, t)). Architectures:

- "table": one free logit per (step, site, token);
- "factored": logit = a[step, site] + b[site, token] + c[step, token]: far fewer parameters, shares
  what it learns about a token position across steps and about a step across sites.

Training blends ``w * f(z_t) + (1 - w) * f(z_{t+1})`` at every branch (the cached value is the
previous step's output: teacher forcing one step back), with the loss ``relative MSE at the model
output + budget * (share - ratio)^2``, where ``share`` is the compute-weighted mean weight over every
site: each site counts by its FLOPs (measured once), each of its tokens by its FLOPs over its token
count. Sites that have no token-subset path (joint attention, whole blocks) get one weight per site,
and they pay for it in the same budget (unweighted, their weights drifted to 1: 93% of the Flux
single-stream decisions were FULL), so ``ratio`` bounds the compute of every site.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..adapters import find_sites
from ..artifact import Artifact, fingerprint
from .common import AllFull, fit_blend, record_trajectory

ARCHITECTURES = ("table", "factored")


@dataclass
class TokenCacheTrainConfig:
    steps: int = 50            # sampling steps the predictor is for
    ratio: float = 0.3         # target mean importance = share of tokens recomputed on cache steps
    budget: float = 10.0       # weight of (mean(w) - ratio)^2 in the loss
    architecture: str = "factored"  # see the module docstring; chosen by held-out loss (resolve note)
    iters: int = 400           # AdamW steps
    labels_per_batch: int = 10  # generations per recorded trajectory batch
    batches: int = 2           # recorded trajectory batches
    lr: float = 0.05           # AdamW learning rate of the logits
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "iters", "labels_per_batch", "batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TokenCacheTrainConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"TokenCacheTrainConfig.ratio must be in [0, 1], got {self.ratio}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"TokenCacheTrainConfig.architecture must be one of {ARCHITECTURES}, "
                             f"got {self.architecture!r}")
        if self.budget < 0 or self.lr <= 0:
            raise ValueError("TokenCacheTrainConfig.budget must be >= 0 and lr > 0")


class Predictor(torch.nn.Module):
    """(step) -> per-site importance logits: a list of (N_s, 1) per token-capable site, () otherwise."""

    def __init__(self, steps: int, tokens: list[int], architecture: str) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.tokens, self.architecture = tokens, architecture
        n, s = max(tokens), len(tokens)
        if architecture == "table":
            self.table = torch.nn.Parameter(torch.zeros(steps, s, n))
        else:
            self.step_site = torch.nn.Parameter(torch.zeros(steps, s))
            self.site_token = torch.nn.Parameter(torch.zeros(s, n))
            self.step_token = torch.nn.Parameter(torch.zeros(steps, n))

    def logits(self) -> torch.Tensor:
        """(T, S, N): every logit (padded to the widest site)."""
        if self.architecture == "table":
            return self.table
        return self.step_site[:, :, None] + self.site_token[None] + self.step_token[:, None, :]

    def weights(self, step: int) -> list[torch.Tensor]:
        w = torch.sigmoid(self.logits()[step])                               # (S, N)
        return [w[s, :n].unsqueeze(-1) if n > 1 else w[s, :1].mean() for s, n in enumerate(self.tokens)]


def train_tokencache(default_model, config: TokenCacheTrainConfig | None = None,
                     progress: bool = True) -> tuple[Artifact, list]:
    cfg = config or TokenCacheTrainConfig()
    if not 0.0 < cfg.ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {cfg.ratio}")
    labels = [i % 10 for i in range(cfg.labels_per_batch)]
    trajs = [record_trajectory(default_model, labels, cfg.steps, seed=cfg.seed + b) for b in range(cfg.batches)]
    sites = find_sites(default_model.transformer)
    tokens = _tokens_per_site(default_model, sites, trajs[0])
    pred = Predictor(cfg.steps, tokens, cfg.architecture)

    cost = _site_flops(default_model, trajs[0])                                  # (S,) FLOPs per site
    share_of = cost / cost.sum()

    def penalty(weights, i: int) -> torch.Tensor:
        share = sum(c * w.mean() for c, w in zip(share_of, weights))           # compute-weighted mean weight
        return cfg.budget * (share - cfg.ratio) ** 2

    pairs = [(i, i - 1) for i in range(1, cfg.steps)]
    losses = fit_blend(default_model, trajs, list(pred.parameters()), pairs, pred.weights, penalty, cfg.iters,
                       cfg.lr, cfg.seed, desc="train tokencache")
    art = Artifact("tokencache", {"logits": pred.logits().detach(), "tokens": torch.tensor(tokens), "cost": cost},
                   fingerprint(default_model.transformer), trajs[0].timesteps, trajs[0].sampler, asdict(cfg))
    return art, losses


def _site_flops(default_model, traj) -> torch.Tensor:
    """(S,) FLOPs of each site in one uncached forward of the trajectory's first step (torch's counter)."""
    from ..engine import apply

    run = apply(default_model.transformer, AllFull(), steps=1)
    try:
        with torch.no_grad():
            default_model.transformer(**traj.inputs[0], return_dict=False)
    finally:
        run.remove()
    return torch.tensor(run.stats.records[0].site_flops, dtype=torch.float64)


def _tokens_per_site(default_model, sites, traj) -> list[int]:
    """N of each token-capable site, measured by one hooked forward; 1 for the others."""
    sizes: dict[int, int] = {}

    def size_of(i: int):
        def hook(module, args, out) -> None:  # returns None: the output is left alone
            sizes.setdefault(i, out.shape[1] if isinstance(out, torch.Tensor) else 1)
        return hook

    handles = [s.module.register_forward_hook(size_of(s.index)) for s in sites]
    try:
        with torch.no_grad():
            default_model.transformer(**traj.inputs[0], return_dict=False)
    finally:
        for h in handles:
            h.remove()
    return [sizes[s.index] if s.partial else 1 for s in sites]
