"""The families mapped before 2026-12: DiT, PixArt, Flux, SD3, Wan, HunyuanVideo, Latte, CogVideoX, through
``ditcache.zoo``'s tiny configs and conditioning."""

from __future__ import annotations

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
