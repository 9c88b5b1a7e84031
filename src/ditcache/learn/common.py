"""What the learned methods' training shares: recorded trajectories and teacher-forced blend fitting.
The artifact format they write lives in ``ditcache.artifact``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AllFull", "Trajectory", "fit_blend", "record_trajectory"]


@dataclass
class Trajectory:
    """The uncached model's inputs and outputs at every step of one batch of generations."""

    inputs: list[dict]            # per step: the transformer's keyword arguments (CFG-doubled batch)
    outputs: list[torch.Tensor]   # per step: the transformer's output
    timesteps: list[float]        # the timestep value the model saw at each step
    sampler: str


@torch.no_grad()
def record_trajectory(default_model, labels, steps: int, seed: int, guidance_scale: float | None = None) -> Trajectory:
    """Sample once without caching and keep what the transformer saw and returned at each step. A source that
    records its own (``learn.pipeline.PipelineSource``: a pipeline's calls) serves its trajectory instead."""
    from ..adapters import timestep_value
    from ..sampling import make_scheduler, sample

    own = getattr(default_model, "record_trajectory", None)
    if callable(own):
        return own(labels, steps, seed)
    transformer = default_model.transformer
    if getattr(transformer, "_ditcache_run", None) is not None or "forward" in transformer.__dict__:
        raise RuntimeError("record_trajectory needs the plain model: remove ditcache (or other hooks) first")
    inputs, outputs = [], []
    orig = transformer.forward

    def spy(*args, **kwargs):
        out = orig(*args, **kwargs)
        inputs.append({k: v for k, v in kwargs.items() if k != "return_dict"})
        outputs.append(out[0] if isinstance(out, tuple) else out.sample)
        return out

    scheduler = make_scheduler(transformer)
    transformer.forward = spy
    try:
        scale = default_model.default_guidance_scale if guidance_scale is None else guidance_scale
        labels = torch.as_tensor(labels)
        cond, uncond = default_model.conditioning(labels)
        noise = default_model.initial_noise(labels.shape[0], seed)
        sample(transformer, noise, cond, uncond if scale != 1.0 else None, steps=steps, guidance_scale=scale,
               scheduler=scheduler)
    finally:
        del transformer.forward
    ts = [timestep_value(i["timestep"]) for i in inputs]
    return Trajectory(inputs, outputs, ts, type(scheduler).__name__)


class AllFull:
    """Training only: every site computed at every step and kept in the store (no differences)."""

    name = "all-full"

    def validate(self) -> None:
        pass

    def plan(self, ctx, sites, store):
        from ..plan import FULL

        return [FULL] * len(sites)


class _Blend:
    """Training-only method: FULL at the first call after set_schedule, BLEND with ``weights`` after."""

    name = "blend"

    def __init__(self) -> None:
        self.weights: list | None = None

    def validate(self) -> None:
        pass

    def plan(self, ctx, sites, store):
        from ..plan import FULL, Action, Plan

        if ctx.step == 0 or self.weights is None:
            return [FULL] * len(sites)
        return [Plan(Action.BLEND, weight=w) for w in self.weights]


def fit_blend(default_model, trajectories: list[Trajectory], params: list[torch.Tensor], pairs: list[tuple[int, int]],
              weights_for, penalty, iters: int, lr: float, seed: int, clamp: float = 5.0,
              desc: str = "training") -> list[float]:
    """Learn blend weights against the frozen model by teacher forcing (Learning-to-Cache, TokenCache).

    For a random trajectory and (cached step i, its source step j): a full forward at step j fills the
    cache; the student forward at step i mixes ``w * fresh + (1 - w) * cached`` per site with
    ``weights_for(i)``; the loss is the student's MSE to the uncached output at step i, divided by the
    MSE of pure reuse (so 1 = no better than the cache, 0 = exact), plus ``penalty(weights, i)``.
    The weights' logits are clamped to [-clamp, clamp] after each AdamW step (as L2C's code does).
    Returns the loss curve.
    """
    from tqdm.auto import tqdm

    from ..engine import apply

    transformer = default_model.transformer
    for p in transformer.parameters():
        p.requires_grad_(False)
    blend = _Blend()
    run = apply(transformer, blend)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    reuse_err: dict[tuple[int, int], float] = {}
    losses = []

    def forward(traj: Trajectory, step: int) -> torch.Tensor:
        out = transformer(**traj.inputs[step], return_dict=False)[0]
        return out

    try:
        for _ in tqdm(range(iters), desc=desc, leave=False):
            b = int(torch.randint(len(trajectories), (1,), generator=gen))
            i, j = pairs[int(torch.randint(len(pairs), (1,), generator=gen))]
            traj = trajectories[b]
            if (b, i) not in reuse_err:
                with torch.no_grad():
                    run.set_schedule([traj.timesteps[j], traj.timesteps[i]])
                    blend.weights = None
                    forward(traj, j)
                    blend.weights = [torch.zeros(())] * len(run.sites)
                    reuse_err[(b, i)] = float(((forward(traj, i) - traj.outputs[i]) ** 2).mean().clamp_min(1e-12))
            run.set_schedule([traj.timesteps[j], traj.timesteps[i]])
            blend.weights = None
            with torch.no_grad():
                forward(traj, j)
            blend.weights = weights_for(i)
            out = forward(traj, i)
            loss = ((out - traj.outputs[i]) ** 2).mean() / reuse_err[(b, i)] + penalty(blend.weights, i)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p in params:
                    p.clamp_(-clamp, clamp)
            losses.append(loss.item())
    finally:
        run.remove()
    return losses
