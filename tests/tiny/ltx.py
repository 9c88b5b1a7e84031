"""LTX-Video and LTX-2 (video + audio) at a tiny size."""

from __future__ import annotations

import torch
from diffusers import LTX2VideoTransformer3DModel, LTXVideoTransformer3DModel

from .case import Case

C, L, CAP = 4, 8, 12               # latent channels; caption length and width
F, H, W = 2, 4, 4                  # video latent grid at patch 1: 32 tokens
AUDIO = 8                          # audio latent frames (tokens)


def _caption(batch, gen):
    mask = torch.ones(batch, L)
    mask[1:, L - 2:] = 0  # the second prompt is shorter
    return torch.randn(batch, L, CAP, generator=gen), mask


def _ltx_inputs(model, batch, gen):
    text, mask = _caption(batch, gen)
    return {"hidden_states": torch.randn(batch, F * H * W, C, generator=gen), "encoder_hidden_states": text,
            "encoder_attention_mask": mask, "num_frames": F, "height": H, "width": W}


def _ltx_rope_scale(model, batch, gen):
    """The pipeline's rope_interpolation_scale (latent-to-pixel strides over the frame rate)."""
    return {"rope_interpolation_scale": (8 / 25, 32.0, 32.0)}


def _ltx2_inputs(model, batch, gen):
    text, mask = _caption(batch, gen)
    audio_text, _ = _caption(batch, gen)
    return {"hidden_states": torch.randn(batch, F * H * W, C, generator=gen),
            "audio_hidden_states": torch.randn(batch, AUDIO, C, generator=gen),
            "encoder_hidden_states": text, "audio_encoder_hidden_states": audio_text,
            "encoder_attention_mask": mask, "audio_encoder_attention_mask": mask,
            "num_frames": F, "height": H, "width": W, "fps": 24.0, "audio_num_frames": AUDIO}


def _ltx2_stg(model, batch, gen):
    """Spatio-temporal guidance: block 1's self-attentions return their values for the second sample."""
    return {"spatio_temporal_guidance_blocks": [1], "perturbation_mask": torch.tensor([1.0, 0.0])[:batch]}


def _ltx2_isolated(model, batch, gen):
    """Modality guidance: no audio-to-video / video-to-audio attention (those sites do not run)."""
    return {"isolate_modalities": True}


def _both_streams(out) -> torch.Tensor:
    video, audio = out[0], out[1]  # (B, N, C), (B, A, C)
    return torch.cat([video.flatten(1), audio.flatten(1)], dim=1)


CASES = {
    "LTXVideoTransformer3DModel": Case(
        LTXVideoTransformer3DModel, dict(in_channels=C, out_channels=C, num_attention_heads=2, attention_head_dim=8,
                                         cross_attention_dim=16, num_layers=2, caption_channels=CAP),
        _ltx_inputs, variants={"rope_scale": _ltx_rope_scale}),
    # LTX-2.3's options on: per-head gates on every attention, prompt cross-attention modulation (its static
    # per-layer table: use_prompt_adaln_single=False needs no sigma), the STG-capable attention processor.
    "LTX2VideoTransformer3DModel": Case(
        LTX2VideoTransformer3DModel, dict(
            in_channels=C, out_channels=C, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
            cross_attention_dim=16, audio_in_channels=C, audio_out_channels=C, audio_num_attention_heads=2,
            audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, caption_channels=CAP,
            gated_attn=True, audio_gated_attn=True, cross_attn_mod=True, audio_cross_attn_mod=True,
            use_prompt_adaln_single=False, perturbed_attn=True),
        _ltx2_inputs, output=_both_streams, variants={"stg": _ltx2_stg, "isolate_modalities": _ltx2_isolated},
        note="output: the video and audio predictions, flattened and joined"),
}
