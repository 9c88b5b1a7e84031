"""Hunyuan-DiT at a tiny size."""

from __future__ import annotations

import torch
from diffusers import HunyuanDiT2DModel
from diffusers.models.embeddings import get_2d_rotary_pos_embed

from .case import Case

C, H, W, L, L5 = 4, 8, 8, 8, 8  # latent channels, latent size (16 tokens at patch 2), CLIP and T5 lengths


def _inputs(model, batch, gen):
    mask = torch.ones(batch, L, dtype=torch.long)
    mask[1:, L - 2:] = 0  # the second prompt is shorter: its padded rows take text_embedding_padding
    grid = (H // 2, W // 2)
    return {
        "hidden_states": torch.randn(batch, C, H, W, generator=gen),
        "encoder_hidden_states": torch.randn(batch, L, 16, generator=gen),
        "text_embedding_mask": mask,
        "encoder_hidden_states_t5": torch.randn(batch, L5, 16, generator=gen),
        "text_embedding_mask_t5": torch.ones(batch, L5, dtype=torch.long),
        "image_meta_size": torch.tensor([[64.0, 64.0, 64.0, 64.0, 0.0, 0.0]]).repeat(batch, 1),
        "style": torch.zeros(batch, dtype=torch.long),
        "image_rotary_emb": get_2d_rotary_pos_embed(16, ((0, 0), grid), grid, output_type="pt"),
    }


CASES = {
    "HunyuanDiT2DModel": Case(
        HunyuanDiT2DModel,
        dict(num_attention_heads=2, attention_head_dim=16, in_channels=C, patch_size=2, sample_size=H,
             hidden_size=32, num_layers=4, cross_attention_dim=16, cross_attention_dim_t5=16,
             pooled_projection_dim=16, text_len=L, text_len_t5=L5),
        _inputs,
        note="4 layers: block 3 joins the long skip from block 0 (skip_linear). controlnet_block_samples is "
             "popped in place by the forward, so the same kwargs cannot be passed twice: no variant for it",
    ),
}
