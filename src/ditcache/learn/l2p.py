"""Training L2P's linear predictor (Shen et al., "Beyond Fixed Formulas", arXiv 2604.26365, CVPR'26).

One lower-triangular matrix W (T x T) per model, sampler and step count: row i predicts the feature of
step i + 1 from those of steps 0..i, ``x_hat(i + 1) = sum_{j <= i} W[i, j] x(j)``, the same weights for
every token and channel. The feature is what the method caches: the input of the model's final layer
(``methods/l2p.py``). Training follows the reference's ``predictor/train.py``: W starts at the identity
(every step predicted by the one before: plain reuse), the mask keeps it lower-triangular, and Adam
(lr 0.01, 200 steps) minimises the mean squared error of every one-step prediction over uncached
trajectories (teacher forcing: the history is always real).

That loss is a quadratic form in W whose data enter only through the Gram matrix of the trajectory,
``G[j, k] = sum over samples, tokens and channels of x(j) x(k)``: ``loss = (trace(A G A^T) - 2 sum_i (A G)[i, i+1]
+ sum_i G[i+1, i+1]) / n`` with A the first T - 1 rows of W, n the number of predicted values. So the Gram
matrix (T x T, float64) is accumulated once from the recorded features and each Adam step costs O(T^3),
not a pass over the features: the same optimisation as the reference's, without holding the features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..artifact import Artifact, fingerprint


@dataclass
class L2PTrainConfig:
    steps: int = 50             # sampling steps the predictor is for (the artifact only loads for this count)
    iters: int = 200            # Adam steps (reference: 201 epochs, one step each, over its whole feature tensor)
    lr: float = 0.01            # Adam learning rate (reference)
    labels_per_batch: int = 10  # generations per recorded batch (one per class)
    batches: int = 2            # training batches (different seeds); the reference's feature set size is unknown
    valid_batches: int = 1      # held-out batches whose loss is reported (the reference's valid/features.pt)
    seed: int = 0               # seeds of the batches: seed, seed + 1, ...

    def __post_init__(self) -> None:
        for name in ("steps", "iters", "labels_per_batch", "batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"L2PTrainConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.valid_batches, int) or self.valid_batches < 0:
            raise ValueError(f"L2PTrainConfig.valid_batches must be an int >= 0, got {self.valid_batches!r}")
        if self.steps < 2:
            raise ValueError("L2PTrainConfig.steps must be >= 2 (one step predicts the next)")
        if self.lr <= 0:
            raise ValueError(f"L2PTrainConfig.lr must be > 0, got {self.lr}")


def causal_mask(steps: int) -> torch.Tensor:
    """(T, T) float64, 1 on and below the diagonal: row i may use steps 0..i."""
    return torch.ones(steps, steps, dtype=torch.float64).tril()


def gram(features: list[torch.Tensor]) -> torch.Tensor:
    """(T, T) float64 Gram matrix of one batch's per-step features (each any shape, all alike)."""
    x = torch.stack([f.reshape(-1) for f in features]).double()               # (T, F)
    return x @ x.T


def gram_loss(weight: torch.Tensor, g: torch.Tensor, n: int) -> torch.Tensor:
    """The reference's loss, mean of (sum_j W[i, j] x(j) - x(i + 1))^2 over rows i < T - 1 and every value,
    from the Gram matrix ``g`` of features with ``n`` values per step (samples x tokens x channels)."""
    a = (weight * causal_mask(weight.shape[0]).to(weight))[:-1]               # (T - 1, T)
    ag = a @ g                                                                # (T - 1, T)
    fit = (ag * a).sum() - 2 * ag.diagonal(offset=1).sum() + g.diagonal()[1:].sum()
    return fit / (n * (weight.shape[0] - 1))


def fit_weight(g: torch.Tensor, n: int, iters: int, lr: float) -> tuple[torch.Tensor, list[float]]:
    """Adam from the identity on ``gram_loss``: the reference's training. Returns (W (T, T) float32, losses)."""
    steps = g.shape[0]
    weight = torch.eye(steps, dtype=torch.float64).requires_grad_(True)
    opt = torch.optim.Adam([weight], lr=lr)
    losses = []
    for _ in range(iters):
        loss = gram_loss(weight, g, n)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        return (weight * causal_mask(steps)).float(), losses


class _Record:
    """Training only: every step computed in full (nothing kept), the final layer's input recorded per step."""

    name = "l2p-record"

    def __init__(self) -> None:
        self.features: list[torch.Tensor] = []

    def validate(self) -> None:
        pass

    def plan(self, ctx, sites, store):
        from ..plan import Action, Plan

        return [Plan(Action.FULL, keep=False)] * len(sites)

    def final(self, ctx, store, x: torch.Tensor):
        if ctx.branch == 0:
            self.features.append(x.detach().float().clone())                 # (B, N, D)
        return None


@torch.no_grad()
def record_features(default_model, labels: list[int], steps: int, seed: int) -> tuple[list[torch.Tensor], list[float],
                                                                                      str]:
    """One uncached generation: the final layer's input at every step, the model's timestep values, the sampler."""
    from ..sampling import make_scheduler

    recorder = _Record()
    _, run = default_model.generate(labels, steps=steps, seed=seed, method=recorder, return_run=True)
    timesteps = [r.timestep for r in run.stats.records if r.branch == 0]
    if len(recorder.features) != steps:
        raise RuntimeError(f"recorded {len(recorder.features)} features for {steps} steps")
    return recorder.features, timesteps, type(make_scheduler(default_model.transformer)).__name__


def train_l2p(default_model, config: L2PTrainConfig | None = None) -> tuple[Artifact, dict]:
    """Record ``batches`` (+ ``valid_batches``) uncached trajectories, fit W on the training ones. Returns the
    artifact and a summary: the training loss curve, and the held-out loss of W against plain reuse (W = I)."""
    cfg = config or L2PTrainConfig()
    labels = [i % 10 for i in range(cfg.labels_per_batch)]
    g_train, n_train, timesteps, sampler = 0.0, 0, None, ""
    held_out = []
    for b in range(cfg.batches + cfg.valid_batches):
        features, ts, sampler = record_features(default_model, labels, cfg.steps, cfg.seed + b)
        timesteps = timesteps or ts
        if b < cfg.batches:
            g_train, n_train = g_train + gram(features), n_train + features[0].numel()
        else:
            held_out.append((gram(features), features[0].numel()))
    weight, losses = fit_weight(g_train, n_train, cfg.iters, cfg.lr)
    summary = {"losses": losses}
    if held_out:
        g_valid, n_valid = sum(g for g, _ in held_out), sum(n for _, n in held_out)
        eye = torch.eye(cfg.steps, dtype=torch.float64)
        summary["valid_loss"] = float(gram_loss(weight.double(), g_valid, n_valid))
        summary["valid_loss_reuse"] = float(gram_loss(eye, g_valid, n_valid))   # W = I: each step reuses the last
    art = Artifact("l2p", {"weight": weight}, fingerprint(default_model.transformer), timesteps, sampler, asdict(cfg))
    return art, summary
