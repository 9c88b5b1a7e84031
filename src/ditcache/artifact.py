"""The artifact format of learned methods (L2C routers, TokenCache predictors, HyCa calibrations).

An artifact is a safetensors file: the learned tensor(s) plus string metadata recording the model
fingerprint (class and a hash of config and weights), the timesteps of the sampler it was trained for
(which fixes sampler and step count), and the method config. Loading checks all three. This module sits
below both ``methods/`` (which load artifacts) and ``learn/`` (which write them), so neither imports
the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
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
    if dataclasses.is_dataclass(config) and not isinstance(config, type):  # a plain module's config dataclass
        config = dataclasses.asdict(config)
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
        # a temporary file beside it, renamed over it when complete: an interrupted save leaves no half a file
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}, str(tmp), metadata=meta)
            os.chmod(tmp, 0o644)  # safetensors writes 0600: others on the machine could not load the artifact
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
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
