"""What both learned methods share: recorded trajectories, model fingerprints and artifact files.

An artifact is a safetensors file: the learned tensor(s) plus string metadata recording the model
fingerprint (class and a hash of config and weights), the timesteps of the sampler it was trained for
(which fixes sampler and step count), and the method config. Loading checks all three.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = "ditcache-artifact-1"


def fingerprint(model: nn.Module) -> str:
    """Class name + sha256 of the config and every parameter and buffer (in name order)."""
    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None:
        # underscore keys are diffusers bookkeeping (e.g. _use_default_values, built from a set, so its
        # order changes between processes): they do not describe the model
        public = {k: v for k, v in dict(config).items() if not k.startswith("_")}
        h.update(json.dumps(public, sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return f"{type(model).__name__}:{h.hexdigest()[:16]}"


@dataclass
class Artifact:
    method: str                   # "l2c" | "tokencache"
    tensors: dict[str, torch.Tensor]
    fingerprint: str              # of the model it was trained on
    timesteps: list[float]        # the sampler's timesteps it was trained for
    sampler: str                  # scheduler class name, for the error message
    config: dict                  # the method/training settings

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "method": self.method, "fingerprint": self.fingerprint,
                "timesteps": json.dumps(self.timesteps), "sampler": self.sampler, "config": json.dumps(self.config)}
        save_file({k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, method: str) -> Artifact:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no {method} artifact at {path}; train one with `ditcache train {method} ...`")
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path} is not a readable ditcache artifact (corrupted?): {e}") from None
        if meta.get("format") != FORMAT or meta.get("method") != method:
            raise ValueError(f"{path} is not a {method} artifact (format {meta.get('format')!r}, "
                             f"method {meta.get('method')!r})")
        try:
            return cls(method, tensors, meta["fingerprint"], json.loads(meta["timesteps"]), meta["sampler"],
                       json.loads(meta["config"]))
        except (KeyError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: damaged metadata ({e})") from None

    def check_model(self, model: nn.Module) -> None:
        got = fingerprint(model)
        if got != self.fingerprint:
            raise ValueError(f"this {self.method} artifact was trained on model {self.fingerprint}, "
                             f"but it is being applied to {got}: retrain it for this model")

    def check_step(self, step: int, num_steps: int, timestep: float) -> None:
        if num_steps != len(self.timesteps):
            raise ValueError(f"this {self.method} artifact was trained for {len(self.timesteps)} steps of "
                             f"{self.sampler}; this run has {num_steps} steps")
        want = self.timesteps[step]
        if abs(want - timestep) > 1e-3 * max(1.0, abs(want)):
            raise ValueError(f"this {self.method} artifact was trained for {self.sampler} timesteps "
                             f"(step {step}: {want:g}); this run called the model with {timestep:g}: "
                             "another sampler or schedule")


@dataclass
class Trajectory:
    """The uncached model's inputs and outputs at every step of one batch of generations."""

    inputs: list[dict]            # per step: the transformer's keyword arguments (CFG-doubled batch)
    outputs: list[torch.Tensor]   # per step: the transformer's output
    timesteps: list[float]        # the timestep value the model saw at each step
    sampler: str


@torch.no_grad()
def record_trajectory(default_model, labels, steps: int, seed: int, guidance_scale: float | None = None) -> Trajectory:
    """Sample once without caching and keep what the transformer saw and returned at each step."""
    from ..adapters import timestep_value
    from ..sampling import make_scheduler, sample

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
