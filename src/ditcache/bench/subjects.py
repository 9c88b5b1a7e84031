"""What is benchmarked: a transformer and how to build its inputs and read its outputs, per seed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass
class Subject:
    """A transformer and how to build its inputs for a list of seeds (one image per seed)."""

    name: str
    family: str                  # "dit" | "flux" | ... : picks method presets
    transformer: nn.Module
    inputs: Callable             # seeds -> (noise, cond, uncond)
    decode: Callable             # latents -> images (B, 1, 28, 28) in [-1, 1], or the latents themselves
    guidance: float
    labels: Callable | None = None  # seeds -> requested classes (shipped defaults only)
    artifact: str | None = None  # name the learned methods' shipped artifacts go by (shipped defaults only)


FAMILIES = {"DiTTransformer2DModel": "dit", "PixArtTransformer2DModel": "pixart", "FluxTransformer2DModel": "flux",
            "SD3Transformer2DModel": "sd3", "WanTransformer3DModel": "wan",
            "HunyuanVideoTransformer3DModel": "hunyuanvideo", "LatteTransformer3DModel": "latte"}


def _family(transformer: nn.Module) -> str:
    return FAMILIES.get(type(transformer).__name__, "dit")


def load_subject(model: str, config: str | None = None) -> Subject:
    """A shipped default ('dit', 'flux', 'dit256', ...), a local diffusers model folder, or a zoo config
    (random weights)."""
    from .. import zoo
    from ..models.defaults import MODELS

    if config is not None:
        transformer = zoo.build(config)
        entry = zoo.CONFIGS[config]
        return Subject(config, _family(transformer), transformer,
                       lambda seeds: _stack_inputs(seeds, lambda s: zoo.conditioning_for(
                           entry.cls.__name__, entry.kwargs, 1, s, latent=entry.latent)),
                       lambda x: x, guidance=4.0)
    if model in MODELS:
        from ..models import load_default

        m = load_default(model)

        def inputs(seeds):
            labels = torch.tensor([s % 10 for s in seeds])
            cond, uncond = m.conditioning(labels)
            noise = torch.cat([m.initial_noise(1, s) for s in seeds])
            return noise, cond, uncond

        return Subject(model, m.family, m.transformer, inputs, m.decode, m.default_guidance_scale,
                       labels=lambda seeds: torch.tensor([s % 10 for s in seeds]), artifact=model)
    path = Path(model)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{model!r} is neither a shipped default ({sorted(MODELS)}) nor a diffusers "
                                "model folder with config.json")
    import diffusers

    cls_name = json.loads((path / "config.json").read_text()).get("_class_name")
    cls = getattr(diffusers, cls_name or "", None)
    if cls is None:
        raise ValueError(f"{path}/config.json names class {cls_name!r}, which diffusers does not have")
    transformer = cls.from_pretrained(str(path)).eval().float()
    return Subject(path.name, _family(transformer), transformer,
                   lambda seeds: _stack_inputs(seeds, lambda s: zoo.conditioning_for(
                       cls_name, transformer.config, 1, s)), lambda x: x, guidance=4.0)


def _stack_inputs(seeds, one) -> tuple:
    parts = [one(s) for s in seeds]
    noise = torch.cat([p[0] for p in parts])
    cond, uncond = ({k: (torch.cat([p[i][k] for p in parts]) if k not in ("img_ids", "txt_ids") else parts[0][i][k])
                     for k in parts[0][i]} for i in (1, 2))
    return noise, cond, uncond
