"""Training the learned methods on a user's own pipeline: trajectories recorded from the pipeline's calls.

``record_pipeline(pipe, prompts, steps)`` runs the pipeline uncached, once per prompt (one image per seed), and
keeps what its transformer saw and returned at every call: the pipeline's own prompt conditioning, scheduler
and CFG. Calls with the same timestep are the branches of one step (split CFG, true CFG); each (prompt, branch)
becomes one ``Trajectory``, the sequence of that branch's calls, which the trainers replay exactly as they
replay a default model's. ``train_l2c(pipe, prompts=..., steps=...)`` and the same for TokenCache and HyCa then
run the shipped trainers on those trajectories; the artifact is fingerprinted to the pipeline's transformer and
its timesteps (so to its step count and schedule), and loads with ``L2C(artifact=PATH)`` inside
``ditcache.cached(pipe, ...)``.
"""

from __future__ import annotations

import inspect
from dataclasses import replace

import torch
from tqdm.auto import tqdm

from ..userpipe import CallOptions, generate
from .common import Trajectory


@torch.no_grad()
def record_pipeline(pipe, prompts: list[str], steps: int, seeds: list[int] | None = None,
                    options: CallOptions | None = None, progress: bool = True) -> list[Trajectory]:
    """One trajectory per (prompt, branch) from uncached pipeline calls (``seeds``: one image each, default [0])."""
    from ..adapters import timestep_value

    model = pipe.transformer
    if getattr(model, "_ditcache_run", None) is not None:
        raise RuntimeError("record_pipeline needs the plain pipeline: remove ditcache from it first")
    options = replace(options or CallOptions(), steps=steps)
    signature = inspect.signature(type(model).forward)
    calls: list[tuple[dict, torch.Tensor]] = []

    def keep(module, args, kwargs, out) -> None:
        inputs = signature.bind_partial(module, *args, **kwargs).arguments
        inputs = {k: v for k, v in inputs.items() if k not in ("self", "return_dict")}
        calls.append((inputs, out[0] if isinstance(out, tuple) else out.sample))

    out: list[Trajectory] = []
    handle = model.register_forward_hook(keep, with_kwargs=True)
    try:
        for prompt in tqdm(prompts, desc="recording trajectories", disable=not progress):
            calls.clear()
            generate(pipe, options, [prompt], list(seeds or [0]))
            out += _branches(calls, type(pipe.scheduler).__name__, timestep_value)
    finally:
        handle.remove()
    return out


def _branches(calls: list, sampler: str, timestep_value) -> list[Trajectory]:
    """Calls in order -> one Trajectory per branch (a branch: a call's place among those with its timestep)."""
    per: dict[int, Trajectory] = {}
    last, branch = None, 0
    for inputs, output in calls:
        t = timestep_value(inputs["timestep"])
        branch = branch + 1 if t == last else 0
        last = t
        traj = per.setdefault(branch, Trajectory([], [], [], sampler))
        traj.inputs.append(inputs)
        traj.outputs.append(output)
        traj.timesteps.append(t)
    full = len(per[0].inputs) if per else 0
    return [t for t in per.values() if len(t.inputs) == full]  # a branch present at every step (not SLG's few)


class PipelineSource:
    """Recorded pipeline trajectories in the shape the trainers take a default model: ``.transformer``, and
    ``record_trajectory(labels, steps, seed)`` serving batch ``seed - first_seed`` (the trainers ask for
    ``config.batches`` batches with seeds ``config.seed``, ``config.seed + 1``, ...)."""

    def __init__(self, pipe, trajectories: list[Trajectory], first_seed: int) -> None:
        self.transformer = pipe.transformer
        self.trajectories = trajectories
        self.first_seed = first_seed

    def record_trajectory(self, labels, steps: int, seed: int) -> Trajectory:
        traj = self.trajectories[seed - self.first_seed]
        if len(traj.inputs) != steps:
            raise ValueError(f"recorded {len(traj.inputs)} steps, the trainer asks for {steps}")
        return traj


def _source(pipe, prompts, steps, seeds, options, progress, config):
    """Record, then the trainer's config set to the recorded step count and batches."""
    trajs = record_pipeline(pipe, prompts, steps, seeds, options, progress)
    if not trajs:
        raise ValueError("the pipeline called its transformer no times: nothing to train on")
    recorded = len(trajs[0].inputs)
    return PipelineSource(pipe, trajs, config.seed), replace(config, steps=recorded, batches=len(trajs))


def _options(height, width, num_frames, guidance, negative_prompt, call_args) -> CallOptions:
    return CallOptions(height=height, width=width, num_frames=num_frames, guidance=guidance,
                       negative_prompt=negative_prompt, extra=dict(call_args or {}))


def train_l2c(pipe, prompts: list[str], steps: int = 50, config=None, *, seeds: list[int] | None = None,
              height: int | None = None, width: int | None = None, num_frames: int | None = None,
              guidance: float | None = None, negative_prompt: str | None = None, call_args: dict | None = None,
              progress: bool = True):
    """An L2C router for ``pipe`` at ``steps`` steps: (Artifact, loss curve)."""
    from .l2c import L2CTrainConfig
    from .l2c import train_l2c as train

    cfg = config or L2CTrainConfig(steps=steps)
    source, cfg = _source(pipe, prompts, steps, seeds, _options(height, width, num_frames, guidance,
                                                                negative_prompt, call_args), progress, cfg)
    return train(source, cfg)


def train_tokencache(pipe, prompts: list[str], steps: int = 50, config=None, *, seeds: list[int] | None = None,
                     height: int | None = None, width: int | None = None, num_frames: int | None = None,
                     guidance: float | None = None, negative_prompt: str | None = None,
                     call_args: dict | None = None, progress: bool = True):
    """A TokenCache predictor for ``pipe`` at ``steps`` steps: (Artifact, loss curve)."""
    from .tokencache import TokenCacheTrainConfig
    from .tokencache import train_tokencache as train

    cfg = config or TokenCacheTrainConfig(steps=steps)
    source, cfg = _source(pipe, prompts, steps, seeds, _options(height, width, num_frames, guidance,
                                                                negative_prompt, call_args), progress, cfg)
    return train(source, cfg)


def train_hyca(pipe, prompts: list[str], steps: int = 50, config=None, *, seeds: list[int] | None = None,
               height: int | None = None, width: int | None = None, num_frames: int | None = None,
               guidance: float | None = None, negative_prompt: str | None = None, call_args: dict | None = None,
               progress: bool = True):
    """A HyCa calibration for ``pipe`` at ``steps`` steps: (Artifact, share of channels per solver)."""
    from .hyca import HyCaTrainConfig
    from .hyca import train_hyca as train

    cfg = config or HyCaTrainConfig(steps=steps)
    source, cfg = _source(pipe, prompts, steps, seeds, _options(height, width, num_frames, guidance,
                                                                negative_prompt, call_args), progress, cfg)
    return train(source, cfg)
