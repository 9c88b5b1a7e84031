"""Lumina-Next and Lumina-Image 2.0 at a tiny size."""

from __future__ import annotations

import torch
from diffusers import Lumina2Transformer2DModel, LuminaNextDiT2DModel
from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina

from .case import Case

C, H, W, L, CAP = 4, 8, 8, 8, 16  # latent channels, latent size (16 tokens at patch 2), caption length, width


def _caption(batch, gen):
    mask = torch.ones(batch, L, dtype=torch.long)
    mask[1:, L - 2:] = 0  # the second prompt is shorter: padded caption rows
    return torch.randn(batch, L, CAP, generator=gen), mask


def _next_inputs(model, batch, gen):
    text, mask = _caption(batch, gen)
    return {
        "hidden_states": torch.randn(batch, C, H, W, generator=gen),
        "encoder_hidden_states": text,
        "encoder_mask": mask,
        "image_rotary_emb": get_2d_rotary_pos_embed_lumina(model.head_dim, 16, 16),  # sliced to the grid inside
        "cross_attention_kwargs": {},
    }


def _lumina2_inputs(model, batch, gen):
    text, mask = _caption(batch, gen)
    return {
        "hidden_states": torch.randn(batch, C, H, W, generator=gen),
        "encoder_hidden_states": text,
        "encoder_attention_mask": mask,
    }


CASES = {
    "LuminaNextDiT2DModel": Case(
        LuminaNextDiT2DModel,
        dict(sample_size=H, patch_size=2, in_channels=C, hidden_size=32, num_layers=2, num_attention_heads=2,
             num_kv_heads=2, multiple_of=16, cross_attention_dim=CAP),
        _next_inputs,
    ),
    "Lumina2Transformer2DModel": Case(
        Lumina2Transformer2DModel,
        dict(sample_size=H, patch_size=2, in_channels=C, hidden_size=32, num_layers=2, num_refiner_layers=1,
             num_attention_heads=2, num_kv_heads=2, multiple_of=16, axes_dim_rope=(4, 6, 6), axes_lens=(32, 16, 16),
             cap_feat_dim=CAP),
        _lumina2_inputs,
        note="a padded caption in the batch makes the joint sequences differ in length (masked attention)",
    ),
}
