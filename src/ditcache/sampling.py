"""A sampling loop for bare diffusers transformers, with classifier-free guidance as a doubled batch.

DiT, PixArt, Latte and CogVideoX are sampled with DDIM (epsilon prediction), Flux, SD3, Wan and HunyuanVideo
with FlowMatchEuler (velocity prediction). How each family is called is data (``FAMILIES``); the loop is shared.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler
from torch import nn
from tqdm.auto import tqdm

from .engine import notify_schedule


@dataclass(frozen=True)
class Family:
    scheduler: str                 # key of SCHEDULERS
    timestep_scale: float = 1.0    # the model is called with scheduler timestep * scale (Flux takes t / 1000)
    unbatched: tuple[str, ...] = ()  # conditioning kwargs without a batch dimension (not doubled for CFG)
    fixed: tuple[tuple[str, object], ...] = ()  # extra kwargs every call needs


def _ddim() -> DDIMScheduler:
    # The DDPM training schedule of DiT (linear betas 1e-4..0.02 over 1000 steps), deterministic DDIM (eta 0).
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
        clip_sample=False, set_alpha_to_one=False,
    )


def _flow() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)  # shift 1: small images


SCHEDULERS = {"ddim": _ddim, "flow": _flow}

FAMILIES: dict[str, Family] = {
    "DiTTransformer2DModel": Family("ddim"),
    "PixArtTransformer2DModel": Family(
        "ddim", fixed=(("added_cond_kwargs", {"resolution": None, "aspect_ratio": None}),)
    ),
    "FluxTransformer2DModel": Family("flow", timestep_scale=1e-3, unbatched=("img_ids", "txt_ids")),
    "SD3Transformer2DModel": Family("flow"),
    "WanTransformer3DModel": Family("flow"),
    "HunyuanVideoTransformer3DModel": Family("flow"),
    "LatteTransformer3DModel": Family("ddim"),
    # CogVideoX's pipelines use DDIM with v-prediction; this loop serves random-weight tests and speed runs,
    # for which plain DDIM calls the model the same way
    "CogVideoXTransformer3DModel": Family("ddim"),
    # the models written here from their papers (ditcache.models.uvit, .mdt): DDPM epsilon, as DiT
    "UViT": Family("ddim"),
    "MDT": Family("ddim"),
}


def family(model: nn.Module) -> Family:
    """How a model class is sampled (a torch.compile'd model: its original's)."""
    try:
        return FAMILIES[type(getattr(model, "_orig_mod", model)).__name__]
    except KeyError:
        raise TypeError(
            f"no sampling loop for {type(model).__name__}; supported: {sorted(FAMILIES)}"
        ) from None


def make_scheduler(model: nn.Module):
    return SCHEDULERS[family(model).scheduler]()


def initial_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Gaussian noise from a fresh seeded CPU generator (the same on every machine)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _cfg_batch(cond: dict, uncond: dict, unbatched: tuple[str, ...]) -> dict:
    out = {}
    for k, v in cond.items():
        if k in unbatched or not isinstance(v, torch.Tensor):
            out[k] = v
        else:
            out[k] = torch.cat([uncond[k], v])  # (2B, ...): [uncond; cond]
    return out


@torch.no_grad()
def sample(
    model: nn.Module,
    noise: torch.Tensor,
    cond: dict,
    uncond: dict | None = None,
    *,
    steps: int,
    guidance_scale: float = 1.0,
    scheduler=None,
    progress: bool = False,
    before_call=None,
) -> torch.Tensor:
    """Denoise ``noise`` (the model's input layout) in ``steps`` steps; returns the final latents.

    before_call(step_index, timestep, num_steps), if given, runs before each model call (peers that
    need a cache context per call set it there)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    fam = family(model)
    scheduler = scheduler if scheduler is not None else make_scheduler(model)
    scheduler.set_timesteps(steps)
    notify_schedule(model, scheduler.timesteps)
    use_cfg = uncond is not None and guidance_scale != 1.0
    kwargs = _cfg_batch(cond, uncond, fam.unbatched) if use_cfg else dict(cond)
    kwargs.update(fam.fixed)
    x = noise * getattr(scheduler, "init_noise_sigma", 1.0)  # DDIM: 1; flow matching starts at pure noise
    for i, t in enumerate(tqdm(scheduler.timesteps, desc="sampling", disable=not progress, leave=False)):
        if before_call is not None:
            before_call(i, t, steps)
        xin = torch.cat([x, x]) if use_cfg else x                   # (2B, ...) with CFG
        xin = scheduler.scale_model_input(xin, t) if hasattr(scheduler, "scale_model_input") else xin
        tt = torch.full((xin.shape[0],), float(t) * fam.timestep_scale, dtype=x.dtype, device=x.device)
        if fam.scheduler == "ddim":
            tt = tt.long() if fam.timestep_scale == 1.0 else tt
        out = model(hidden_states=xin, timestep=tt, return_dict=False, **kwargs)[0]
        out = out[:, : x.shape[1]]                                   # drop learned-sigma channels
        if use_cfg:
            u, c = out.chunk(2)
            out = u + guidance_scale * (c - u)
        x = scheduler.step(out, t, x, return_dict=False)[0]
    return x
