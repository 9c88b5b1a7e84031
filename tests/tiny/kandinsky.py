"""Kandinsky 5 (text-to-video) and Kandinsky 6 (video, and video with audio), on (B, T, H, W, C) latents.

Kandinsky6SRTransformer3DModel's NABLA attention always runs flex_attention, which torch's FlopCounterMode
cannot run eagerly (pytorch/pytorch#134385): its case runs with count_flops=False (``Case.flops``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import Kandinsky5Transformer3DModel, Kandinsky6SRTransformer3DModel, Kandinsky6Transformer3DModel

from .case import Case

TEXT = 8


@dataclass
class _Drawn(Case):
    """Kandinsky 5 zero-initialises every modulation (trained weights replace them): drawn here, or every gate
    would be 0 and the output would not depend on the blocks or the timestep."""

    def build(self, seed: int = 0):
        model = super().build(seed)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "modulation" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        return model


def _k5_inputs(model, batch, gen):
    c = model.config
    return {
        "hidden_states": torch.randn(batch, 1, 8, 8, c.in_visual_dim, generator=gen),    # (B, T, H, W, C)
        "encoder_hidden_states": torch.randn(batch, TEXT, c.in_text_dim, generator=gen),
        "pooled_projections": torch.randn(batch, c.in_text_dim2, generator=gen),
        "visual_rope_pos": [torch.arange(1), torch.arange(4), torch.arange(4)],          # patched (T, H, W)
        "text_rope_pos": torch.arange(TEXT),
    }


def _k6_inputs(model, batch, gen):
    c = model.config
    return {
        # visual_cond: the noisy latent, the conditioning latent and its mask: 2 * C + 1 channels
        "hidden_states": torch.randn(batch, 1, 8, 8, 2 * c.in_visual_dim + 1, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, c.in_text_dim, generator=gen),
        "pooled_projections": torch.randn(batch, c.in_text_dim2, generator=gen),
    }


def _k6_audio(model, batch, gen):
    """Joint video and audio generation: the fused blocks run their audio path and cross-modal attention."""
    return {"audio_hidden_states": torch.randn(batch, 12, model.config.in_audio_dim, generator=gen)}


_SMALL = dict(time_dim=16, patch_size=(1, 2, 2), model_dim=32, ff_dim=64, axes_dims=(4, 6, 6))

CASES = {
    "Kandinsky5Transformer3DModel": _Drawn(
        Kandinsky5Transformer3DModel,
        dict(_SMALL, in_visual_dim=4, out_visual_dim=4, in_text_dim=32, in_text_dim2=16, num_text_blocks=1,
             num_visual_blocks=2),
        _k5_inputs,
    ),
    "Kandinsky6Transformer3DModel": Case(
        Kandinsky6Transformer3DModel,
        # the released checkpoints' switches (text_token_padding, ca_rope, cross_gates, fix_modulation)
        dict(_SMALL, in_visual_dim=4, out_visual_dim=4, in_text_dim=32, in_text_dim2=16, num_text_blocks=1,
             num_visual_blocks=2, in_audio_dim=4, out_audio_dim=4, text_token_padding=True, ca_rope=True,
             cross_gates=True, fix_modulation=True),
        _k6_inputs, variants={"audio": _k6_audio},
    ),
    "Kandinsky6SRTransformer3DModel": Case(
        Kandinsky6SRTransformer3DModel,
        dict(in_visual_dim=4, out_visual_dim=4, time_dim=16, patch_size=(1, 1, 1), model_dim=32, ff_dim=64,
             num_visual_blocks=2, axes_dims=(4, 6, 6)),
        lambda model, batch, gen: {"hidden_states": torch.randn(batch, 1, 8, 8, 9, generator=gen)},  # 2 * C + 1
        flops=False,
    ),
}
