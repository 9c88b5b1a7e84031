"""Wan's variants at a tiny size: VACE (control blocks), Animate (pose latents, face video), Animate 2
(in-context reference through a KV cache) and ChronoEdit (image edit as a 2-frame video)."""

from __future__ import annotations

import torch
from diffusers import ChronoEditTransformer3DModel, WanAnimateTransformer3DModel, WanVACETransformer3DModel
from diffusers.models.transformers import transformer_wan_animate_2 as wan_animate_2
from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache, WanAnimate2Transformer3DModel

from .case import Case

C, L, TXT = 4, 8, 12  # latent channels, text length and width
WAN = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, text_dim=TXT, freq_dim=16,
           ffn_dim=32, num_layers=2, rope_max_seq_len=32)  # 32 tokens at (2, 8, 8) latents


def _text(batch, gen, length=L):
    return torch.randn(batch, length, TXT, generator=gen)


# ------------------------------------------------------------------ VACE
def _vace_inputs(model, batch, gen):
    return {"hidden_states": torch.randn(batch, C, 2, 8, 8, generator=gen), "encoder_hidden_states": _text(batch, gen),
            "control_hidden_states": torch.randn(batch, 8, 2, 8, 8, generator=gen)}


def _vace_scales(model, batch, gen):
    """Per-hint strengths (control_hidden_states_scale, one per VACE layer)."""
    return {"control_hidden_states_scale": torch.tensor([0.5, 2.0])}


def _vace_short_control(model, batch, gen):
    """A control clip shorter than the latent: its tokens are zero-padded to the latent's count."""
    return {"control_hidden_states": torch.randn(batch, 8, 1, 8, 8, generator=gen),
            "control_hidden_states_scale": torch.tensor([1.0, 0.7])}


# ------------------------------------------------------------------ Animate
FACE = 8  # face video resolution (the motion encoder's size)


def _animate_inputs(model, batch, gen):
    """Pose latents (frames 1..) and a face video are required; text is 512 tokens long because the cross-
    attention's CLIP split is hard-coded to 512 text tokens (added_kv_proj_dim set, as in the real model)."""
    return {"hidden_states": torch.randn(batch, 2 * C + 4, 2, 8, 8, generator=gen),
            "encoder_hidden_states": _text(batch, gen, 512),
            "encoder_hidden_states_image": torch.randn(batch, 4, 12, generator=gen),
            "pose_hidden_states": torch.randn(batch, C, 1, 8, 8, generator=gen),
            "face_pixel_values": torch.randn(batch, 3, 1, FACE, FACE, generator=gen)}


def _animate_longer(model, batch, gen):
    """A 3-latent-frame segment: 5 face frames become 2 motion frames (+ a zero pad frame), one per latent
    frame; the motion encoder runs in batches of 3 face images."""
    return {"hidden_states": torch.randn(batch, 2 * C + 4, 3, 8, 8, generator=gen),
            "pose_hidden_states": torch.randn(batch, C, 2, 8, 8, generator=gen),
            "face_pixel_values": torch.randn(batch, 3, 5, FACE, FACE, generator=gen),
            "motion_encode_batch_size": 3}


# ------------------------------------------------------------------ Animate 2
REF_GRID, GEN_FRAMES, ORIGIN_LEN, ORIGIN_AREA = (2, 4, 4), 3, 8, [64, 64]  # origin: 3 frames of 4 x 4 tokens


def _animate2_cache(model, batch, gen) -> WanAnimate2KVCache:
    """The reference pass (kv_cache_mode="extract"), uncached as the pipeline runs it before denoising, and
    the flex block mask built without compiling it (the model's own create_mask compiles: ~10 s on CPU)."""
    frames, hw = ORIGIN_LEN // 4 + 1, ORIGIN_AREA[0] * ORIGIN_AREA[1] // 256
    if (frames, hw) not in model.block_masks:
        compiled = wan_animate_2.create_block_mask
        wan_animate_2.create_block_mask = lambda *a, **k: compiled(*a, **{**k, "_compile": False})
        try:
            model.block_masks[(frames, hw)] = model.create_mask(frames, hw, torch.device("cpu"))
        finally:
            wan_animate_2.create_block_mask = compiled
    cache = WanAnimate2KVCache(model.config.num_layers)
    ref = [torch.randn(C, 2, 8, 8, generator=gen) for _ in range(batch)]
    grid = torch.tensor([REF_GRID] * batch)
    with torch.no_grad():
        model(hidden_states=ref, timestep=torch.zeros(batch), encoder_hidden_states=list(_text(batch, gen)),
              condition_latents=[torch.randn_like(r) for r in ref], kv_cache=cache, kv_cache_mode="extract",
              seq_len=32, offset_grid_sizes=grid)
    return cache


def _animate2_inputs(model, batch, gen):
    cache = _animate2_cache(model, batch, gen)
    return {"hidden_states": [torch.randn(C, GEN_FRAMES, 8, 8, generator=gen) for _ in range(batch)],
            "encoder_hidden_states": list(_text(batch, gen)),
            "condition_latents": [torch.randn(C, GEN_FRAMES, 8, 8, generator=gen) for _ in range(batch)],
            "kv_cache": cache, "kv_cache_mode": "cached", "seq_len": GEN_FRAMES * 16,
            "reference_grid_sizes": torch.tensor([REF_GRID] * batch), "origin_len": ORIGIN_LEN,
            "origin_area": ORIGIN_AREA}


def _animate2_uncond(model, batch, gen):
    """The unconditional CFG branch skips block 9 (here: none of the 2 blocks; the flag must still pass)."""
    return {"is_uncondtion": True}


# ------------------------------------------------------------------ ChronoEdit
def _chrono_inputs(model, batch, gen):
    """An edit: 2 latent frames (input image, output), which take the temporal-skip rotary rows; CLIP image
    tokens ahead of 512 text tokens (the cross-attention's split is hard-coded to 512 text tokens)."""
    return {"hidden_states": torch.randn(batch, C, 2, 8, 8, generator=gen),
            "encoder_hidden_states": _text(batch, gen, 512),
            "encoder_hidden_states_image": torch.randn(batch, 4, 12, generator=gen)}


def _chrono_reasoning(model, batch, gen):
    """Temporal reasoning: the input and output frames with 2 reasoning frames between them (4 latent frames,
    ordinary rotary rows)."""
    return {"hidden_states": torch.randn(batch, C, 4, 8, 8, generator=gen)}


CASES = {
    "WanVACETransformer3DModel": Case(
        WanVACETransformer3DModel, dict(WAN, in_channels=C, out_channels=C, vace_layers=[0, 1], vace_in_channels=8),
        _vace_inputs, variants={"hint_scales": _vace_scales, "short_control": _vace_short_control}),
    "WanAnimateTransformer3DModel": Case(
        WanAnimateTransformer3DModel, dict(
            WAN, in_channels=2 * C + 4, latent_channels=C, out_channels=C, image_dim=12, added_kv_proj_dim=16,
            motion_encoder_channel_sizes={"4": 8, "8": 8}, motion_encoder_size=FACE, motion_style_dim=8,
            motion_dim=4, motion_encoder_dim=8, face_encoder_hidden_dim=8, face_encoder_num_heads=2,
            inject_face_latents_blocks=1),
        _animate_inputs, variants={"longer_segment": _animate_longer}),
    "ChronoEditTransformer3DModel": Case(
        ChronoEditTransformer3DModel, dict(WAN, in_channels=C, out_channels=C, image_dim=12, added_kv_proj_dim=16,
                                           rope_temporal_skip_len=4),
        _chrono_inputs, variants={"temporal_reasoning": _chrono_reasoning}),
}

# Its self-attention is flex attention, which torch's FlopCounterMode cannot run in eager mode (torch 2.13: "no
# implementation found for 'torch.ops.higher_order.flex_attention'"): its case runs with count_flops=False.
CASES |= {
    "WanAnimate2Transformer3DModel": Case(
        WanAnimate2Transformer3DModel, dict(
            patch_size=(1, 2, 2), text_len=L, in_dim=2 * C, dim=24, ffn_dim=32, freq_dim=16, text_dim=TXT,
            out_dim=C, num_heads=2, num_layers=2, use_img_emb=False),
        _animate2_inputs, variants={"uncond": _animate2_uncond},
        note="denoising calls (kv_cache_mode='cached') against a reference cache filled uncached", flops=False),
}
