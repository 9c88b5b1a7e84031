"""Sana, Sana-Video, SANA-WM and the SANA-WM refiner at a tiny size."""

from __future__ import annotations

import torch
from diffusers import (
    SanaTransformer2DModel,
    SanaVideoTransformer3DModel,
    SanaWMLTX2RefinerTransformer3DModel,
    SanaWMTransformer3DModel,
)
from diffusers.models.transformers.transformer_sana_wm_refiner import SanaWMRefinerKVCache

from .case import Case

C, L, CAP = 4, 8, 16  # latent channels, caption length and width


def _caption(batch, gen):
    mask = torch.ones(batch, L, dtype=torch.long)
    mask[1:, L - 2:] = 0  # the second prompt is shorter
    return torch.randn(batch, L, CAP, generator=gen), mask


def _sana_inputs(model, batch, gen):
    text, mask = _caption(batch, gen)
    return {"hidden_states": torch.randn(batch, C, 8, 8, generator=gen), "encoder_hidden_states": text,
            "encoder_attention_mask": mask}


def _sana_controlnet(model, batch, gen):
    """ControlNet residuals, added after block 1."""
    return {"controlnet_block_samples": (0.1 * torch.randn(batch, 16, 32, generator=gen),)}


def _video_inputs(model, batch, gen):
    text, mask = _caption(batch, gen)
    return {"hidden_states": torch.randn(batch, C, 2, 8, 8, generator=gen), "encoder_hidden_states": text,
            "encoder_attention_mask": mask}


F_WM, H_WM, W_WM = 2, 2, 4  # SANA-WM latent frames and size: 16 tokens at patch (1, 1, 1)


def _wm_inputs(model, batch, gen):
    text, mask = _caption(batch, gen)
    return {"hidden_states": torch.randn(batch, C, F_WM, H_WM, W_WM, generator=gen),
            "encoder_hidden_states": text[:, None], "encoder_attention_mask": mask}


def _wm_camera(model, batch, gen):
    """Camera-controlled generation: per-frame camera-to-world (4x4, flattened) and pinhole intrinsics
    (fx, fy, cx, cy) drive the UCPE camera branch of every attention; Plucker rays the post-attention add."""
    c2w = torch.eye(4).repeat(batch, F_WM, 1, 1)
    c2w[..., :3, 3] = 0.1 * torch.randn(batch, F_WM, 3, generator=gen)
    intrinsics = torch.tensor([W_WM * 1.0, H_WM * 1.0, W_WM / 2, H_WM / 2]).repeat(batch, F_WM, 1)
    return {"camera_conditions": torch.cat([c2w.flatten(2), intrinsics], dim=-1),
            "chunk_plucker": torch.randn(batch, 48, F_WM, H_WM, W_WM, generator=gen)}


def _wm_timestep(t, batch):
    return torch.full((batch, 1, F_WM), float(t))  # (B, 1, F): one timestep per latent frame


F_R, H_R, W_R = 2, 4, 4  # refiner: one AR block of 2 latent frames, 32 tokens at patch 1


def _refiner_rope(model, batch, frames):
    return model.build_rotary_emb_for_absolute_positions(batch, frames, H_R, W_R, torch.device("cpu"), fps=24.0)


def _refiner_inputs(model, batch, gen):
    text, mask = _caption(batch, gen)
    return {"hidden_states": torch.randn(batch, F_R * H_R * W_R, C, generator=gen), "encoder_hidden_states": text,
            "encoder_attention_mask": mask, "video_rotary_emb": _refiner_rope(model, batch, [1, 2])}


def _refiner_kv_inject(model, batch, gen):
    """The refiner's denoising calls: queries of the active block attend to a sink frame's K/V, captured
    here once (uncached, as the pipeline does before its AR loop) and re-roped at its window offset."""
    cache = SanaWMRefinerKVCache(len(model.transformer_blocks))
    sink = torch.randn(batch, H_R * W_R, C, generator=gen)
    text, mask = _caption(batch, gen)
    with torch.no_grad():
        model(hidden_states=sink, encoder_hidden_states=text, timestep=torch.zeros(batch, H_R * W_R),
              video_rotary_emb=_refiner_rope(model, batch, [0]), encoder_attention_mask=mask, kv_cache=cache,
              kv_cache_mode="capture_pre_rope")
    for i in range(len(cache)):
        cache.get(i).store_sink(*cache.get(i).get_captured_pre_rope())
    cache.sink_pe = _refiner_rope(model, batch, [0])
    return {"kv_cache": cache, "kv_cache_mode": "inject"}


CASES = {
    "SanaTransformer2DModel": Case(
        SanaTransformer2DModel,
        dict(in_channels=C, out_channels=C, num_attention_heads=2, attention_head_dim=16, num_layers=2,
             num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32, caption_channels=CAP,
             sample_size=8, patch_size=2),
        _sana_inputs,
        variants={"controlnet": _sana_controlnet},
    ),
    "SanaVideoTransformer3DModel": Case(
        SanaVideoTransformer3DModel,
        dict(in_channels=C, out_channels=C, num_attention_heads=2, attention_head_dim=16, num_layers=2,
             num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32, caption_channels=CAP,
             sample_size=8, patch_size=(1, 2, 2), rope_max_seq_len=32),
        _video_inputs,
    ),
    "SanaWMTransformer3DModel": Case(
        SanaWMTransformer3DModel,
        dict(in_channels=C, num_layers=2, hidden_size=32, num_attention_heads=2, patch_size=(1, 1, 1),
             softmax_every_n=2, linear_head_dim=16, caption_channels=CAP, mlp_ratio=2.0),
        _wm_inputs,
        timestep=_wm_timestep,
        variants={"camera": _wm_camera},
        note="block 0 runs the GDN attention, block 1 the softmax one (softmax_every_n=2)",
    ),
    "SanaWMLTX2RefinerTransformer3DModel": Case(
        SanaWMLTX2RefinerTransformer3DModel,
        dict(in_channels=C, out_channels=C, num_attention_heads=2, attention_head_dim=16, cross_attention_dim=32,
             audio_in_channels=C, audio_out_channels=C, audio_num_attention_heads=2, audio_attention_head_dim=8,
             audio_cross_attention_dim=16, num_layers=2, caption_channels=CAP),
        _refiner_inputs,
        timestep=lambda t, batch: torch.full((batch, F_R * H_R * W_R), float(t)),  # (B, N): one per token
        variants={"kv_inject": _refiner_kv_inject},
    ),
}
