"""Allegro at a tiny size, with the pipeline's 3D rotary embedding."""

from __future__ import annotations

import torch
from diffusers import AllegroTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed_allegro

from .case import Case

C, F, H, W, L, CAP = 4, 2, 8, 8, 8, 16  # latent channels, frames, size (32 tokens at patch 2), caption length, width


def _rope(model):
    """AllegroPipeline._prepare_rotary_positional_embeddings on the tiny latent grid."""
    cfg, grid = model.config, (H // model.config.patch_size, W // model.config.patch_size)
    freqs_t, freqs_h, freqs_w, grid_t, grid_h, grid_w = get_3d_rotary_pos_embed_allegro(
        embed_dim=cfg.attention_head_dim, crops_coords=((0, 0), grid), grid_size=grid, temporal_size=F,
        interpolation_scale=(cfg.interpolation_scale_t, cfg.interpolation_scale_h, cfg.interpolation_scale_w),
        device=torch.device("cpu"))
    pos = torch.cartesian_prod(grid_t.long(), grid_h.long(), grid_w.long())
    pos = pos.reshape(-1, 3).transpose(0, 1).reshape(3, 1, -1).contiguous()
    return (freqs_t, freqs_h, freqs_w), tuple(pos)


def _inputs(model, batch, gen):
    mask = torch.ones(batch, L, dtype=torch.long)
    mask[1:, L - 2:] = 0  # the second prompt is shorter
    return {
        "hidden_states": torch.randn(batch, C, F, H, W, generator=gen),
        "encoder_hidden_states": torch.randn(batch, L, CAP, generator=gen),
        "encoder_attention_mask": mask,
        "image_rotary_emb": _rope(model),
    }


# head_dim 12: the 3D rotary splits it in three even parts (t, h, w)
CASES = {
    "AllegroTransformer3DModel": Case(
        AllegroTransformer3DModel,
        dict(patch_size=2, patch_size_t=1, num_attention_heads=2, attention_head_dim=12, in_channels=C,
             out_channels=C, num_layers=2, cross_attention_dim=24, sample_height=H, sample_width=W, sample_frames=F,
             caption_channels=CAP),
        _inputs,
    ),
}
