"""One tiny diffusers model to test: its class, a small config, and how to call it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


def grid_ids(side: int, width: int, plane: int = 0, offset: int = 0) -> torch.Tensor:
    """(side * side, width) position ids of a side x side image in FLUX's layout: (plane, row, col[, 0]), rows
    and columns starting at ``offset`` (LongCat offsets them by the text length)."""
    ids = torch.zeros(side, side, width)
    ids[..., 0] = plane
    ids[..., 1] = torch.arange(side)[:, None] + offset
    ids[..., 2] = torch.arange(side)[None, :] + offset
    return ids.reshape(-1, width)


def float_timestep(t: float, batch: int):
    """(B,) float timesteps (most diffusers models embed any real t)."""
    return torch.full((batch,), float(t))


def first_output(out) -> torch.Tensor:
    """The denoiser output of a forward called with return_dict=False (or an output object)."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "sample"):
        out = out.sample
    if isinstance(out, (tuple, list)):  # a list of per-sample tensors (Z-Image)
        out = torch.stack(list(out))
    return out


@dataclass
class Case:
    cls: type
    config: dict                                  # constructor kwargs: small dimensions, 16+ image tokens
    inputs: Callable[[nn.Module, int, torch.Generator], dict]  # forward kwargs except the timestep
    timestep: Callable[[float, int], object] = float_timestep  # (t in [0, 1000], batch) -> the timestep argument
    output: Callable[[object], torch.Tensor] = first_output
    return_dict: bool = True                      # the forward takes return_dict (then called with False)
    variants: dict[str, Callable[[nn.Module, int, torch.Generator], dict]] = field(default_factory=dict)
    # ^ extra inputs of the class's own features (VACE hints, reference frames, ...): kwargs added to inputs
    note: str = ""                                # anything a reader of the case should know
    flops: bool = True                            # torch's FLOP counter can run it (flex_attention cannot eagerly)

    def build(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return self.cls(**self.config).eval()

    def call(self, model: nn.Module, kwargs: dict, t: float, batch: int) -> torch.Tensor:
        extra = {"return_dict": False} if self.return_dict else {}
        with torch.no_grad():
            return self.output(model(**kwargs, **{self.timestep_arg(model): self.timestep(t, batch)}, **extra))

    @staticmethod
    def timestep_arg(model: nn.Module) -> str:
        from ditcache import adapters

        return adapters.model_spec(model).timestep_arg
