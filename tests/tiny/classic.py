"""The families mapped before 2026-12: DiT, PixArt, Flux, SD3, Wan, HunyuanVideo, Latte, CogVideoX, through
``ditcache.zoo``'s tiny configs and conditioning."""

from __future__ import annotations

import torch

from ditcache import zoo

from .case import Case


def _zoo_case(name: str) -> Case:
    entry = zoo.CONFIGS[name]

    def inputs(model, batch, gen):
        noise, cond, _ = zoo.conditioning(name, batch, seed=int(gen.initial_seed()))
        return {"hidden_states": noise, **cond}

    return Case(entry.cls, dict(entry.kwargs), inputs)


CASES = {zoo.CONFIGS[n].cls.__name__: _zoo_case(n) for n in (
    "dit-tiny", "pixart-tiny", "flux-tiny", "sd3-tiny", "wan-tiny", "hunyuan-tiny", "latte-tiny", "cogvideox-tiny")}


def _kontext(model, batch, gen):
    """FLUX.1 Kontext: the reference image's tokens follow the target's in hidden_states, with their ids on
    plane 1 (the pipeline keeps the first N rows of the output)."""
    noise, cond, _ = zoo.conditioning("flux-tiny", batch, seed=int(gen.initial_seed()))
    ref_ids = cond["img_ids"].clone()
    ref_ids[:, 0] = 1
    return {"hidden_states": torch.cat([noise, torch.randn(noise.shape, generator=gen)], dim=1),
            "img_ids": torch.cat([cond["img_ids"], ref_ids])}


CASES["FluxTransformer2DModel"].variants["kontext"] = _kontext
