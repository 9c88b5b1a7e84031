"""Random-weight diffusers transformers by name, with matching conditioning: for tests and speed benchmarks.

Sizes are data (``CONFIGS``): ``*-tiny`` build in milliseconds for tests, ``*-bench`` take about a second
per 50-step generation on 2 CPU cores, ``dit-xl-2`` / ``flux-dev`` are the real architectures (for GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import (
    CogVideoXTransformer3DModel,
    DiTTransformer2DModel,
    FluxTransformer2DModel,
    HunyuanVideoTransformer3DModel,
    LatteTransformer3DModel,
    PixArtTransformer2DModel,
    SD3Transformer2DModel,
    WanTransformer3DModel,
)
from torch import nn


@dataclass(frozen=True)
class ZooEntry:
    cls: type
    kwargs: dict
    latent: tuple[int, ...]  # per-sample input shape of hidden_states


_DIT = dict(norm_type="ada_norm_zero", num_embeds_ada_norm=1000)
CONFIGS: dict[str, ZooEntry] = {
    "dit-tiny": ZooEntry(DiTTransformer2DModel, dict(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
        sample_size=8, patch_size=2, **_DIT), (4, 8, 8)),
    "pixart-tiny": ZooEntry(PixArtTransformer2DModel, dict(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, cross_attention_dim=16, caption_channels=12, norm_type="ada_norm_single",
        use_additional_conditions=False), (4, 8, 8)),
    "flux-tiny": ZooEntry(FluxTransformer2DModel, dict(
        patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_single_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=12, pooled_projection_dim=10, guidance_embeds=False,
        axes_dims_rope=(2, 2, 4)), (16, 4)),
    "sd3-tiny": ZooEntry(SD3Transformer2DModel, dict(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=12, caption_projection_dim=16, pooled_projection_dim=10,
        pos_embed_max_size=16), (4, 8, 8)),
    "wan-tiny": ZooEntry(WanTransformer3DModel, dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
        text_dim=12, freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=32), (4, 2, 8, 8)),
    "hunyuan-tiny": ZooEntry(HunyuanVideoTransformer3DModel, dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_single_layers=2, num_refiner_layers=1, patch_size=2, patch_size_t=1, guidance_embeds=False,
        text_embed_dim=12, pooled_projection_dim=10, rope_axes_dim=(2, 2, 4)), (4, 2, 8, 8)),
    "latte-tiny": ZooEntry(LatteTransformer3DModel, dict(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, cross_attention_dim=16, caption_channels=12, norm_type="ada_norm_single",
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, video_length=2), (4, 2, 8, 8)),
    "cogvideox-tiny": ZooEntry(CogVideoXTransformer3DModel, dict(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=16,
        text_embed_dim=12, num_layers=2, sample_width=8, sample_height=8, sample_frames=5, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=8, use_rotary_positional_embeddings=False), (2, 4, 8, 8)),
    # ~1 s per uncached 50-step generation of batch 2 (CFG) on 2 CPU cores: 256 tokens, hidden 256.
    "dit-bench": ZooEntry(DiTTransformer2DModel, dict(
        num_attention_heads=4, attention_head_dim=64, in_channels=4, out_channels=8, num_layers=4,
        sample_size=32, patch_size=2, **_DIT), (4, 32, 32)),
    "flux-bench": ZooEntry(FluxTransformer2DModel, dict(
        patch_size=1, in_channels=16, out_channels=16, num_layers=2, num_single_layers=4, attention_head_dim=64,
        num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=64, guidance_embeds=False,
        axes_dims_rope=(16, 24, 24)), (256, 16)),
    # The real architectures (random weights): for speed on GPUs.
    "dit-xl-2": ZooEntry(DiTTransformer2DModel, dict(
        num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
        sample_size=32, patch_size=2, **_DIT), (4, 32, 32)),
    "flux-dev": ZooEntry(FluxTransformer2DModel, dict(
        patch_size=1, in_channels=64, out_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
        axes_dims_rope=(16, 56, 56)), (4096, 64)),
}


def build(name: str, seed: int = 0) -> nn.Module:
    """A random-weight model in eval mode (diffusers builds models in train mode)."""
    try:
        entry = CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown zoo config {name!r}; known: {sorted(CONFIGS)}") from None
    torch.manual_seed(seed)
    return entry.cls(**entry.kwargs).eval()


def conditioning(name: str, batch: int, seed: int = 0) -> tuple[torch.Tensor, dict, dict]:
    """(noise, cond kwargs, uncond kwargs) for ``batch`` samples of zoo model ``name``."""
    entry = CONFIGS[name]
    return conditioning_for(entry.cls.__name__, entry.kwargs, batch, seed, latent=entry.latent)


def latent_shape(cls_name: str, config: dict) -> tuple[int, ...]:
    """Per-sample input shape of hidden_states for a model class and config (Flux: 256 packed tokens)."""
    c = config["in_channels"]
    if cls_name == "FluxTransformer2DModel":
        return (256, c)
    if cls_name in ("WanTransformer3DModel", "HunyuanVideoTransformer3DModel", "LatteTransformer3DModel"):
        return (c, 2, 16, 16)
    if cls_name == "CogVideoXTransformer3DModel":  # (F, C, H, W): latent frames from the pixel frames it was built for
        frames = (config["sample_frames"] - 1) // config["temporal_compression_ratio"] + 1
        return (frames, c, config["sample_height"], config["sample_width"])
    size = config.get("sample_size") or 32
    return (c, size, size)


def conditioning_for(cls_name: str, config, batch: int, seed: int = 0, latent: tuple[int, ...] | None = None):
    """(noise, cond, uncond) with random text embeddings for any supported model class.

    config: a model's ``.config`` (a mapping); latent: per-sample input shape (default from the config).
    The uncond branch gets zero embeddings (DiT: its null class)."""
    latent = latent or latent_shape(cls_name, config)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((batch, *latent), generator=g)
    cond: dict = {}
    uncond: dict = {}
    text_dim = {"PixArtTransformer2DModel": "caption_channels", "FluxTransformer2DModel": "joint_attention_dim",
                "SD3Transformer2DModel": "joint_attention_dim", "WanTransformer3DModel": "text_dim",
                "HunyuanVideoTransformer3DModel": "text_embed_dim",
                "LatteTransformer3DModel": "caption_channels",
                "CogVideoXTransformer3DModel": "text_embed_dim"}.get(cls_name)
    if cls_name == "DiTTransformer2DModel":
        n = config.get("num_embeds_ada_norm") or 1000
        cond["class_labels"] = torch.randint(0, n, (batch,), generator=g)
        uncond["class_labels"] = torch.full((batch,), n)  # DiT's null class
    if text_dim is not None:
        cond["encoder_hidden_states"] = torch.randn((batch, 8, config[text_dim]), generator=g)
        uncond["encoder_hidden_states"] = torch.zeros((batch, 8, config[text_dim]))
    if cls_name == "HunyuanVideoTransformer3DModel":  # its forward requires the text mask
        cond["encoder_attention_mask"] = uncond["encoder_attention_mask"] = torch.ones(batch, 8, dtype=torch.bool)
    if config.get("pooled_projection_dim") and cls_name != "PixArtTransformer2DModel":
        cond["pooled_projections"] = torch.randn((batch, config["pooled_projection_dim"]), generator=g)
        uncond["pooled_projections"] = torch.zeros((batch, config["pooled_projection_dim"]))
    if cls_name == "FluxTransformer2DModel":
        side = int(latent[0] ** 0.5)
        ids = torch.zeros(side, side, 3)
        ids[..., 1] = torch.arange(side)[:, None]
        ids[..., 2] = torch.arange(side)[None, :]
        for d in (cond, uncond):
            d["img_ids"] = ids.reshape(-1, 3)
            d["txt_ids"] = torch.zeros(8, 3)
        if config.get("guidance_embeds"):
            cond["guidance"] = uncond["guidance"] = torch.full((batch,), 3.5)
    return noise, cond, uncond
