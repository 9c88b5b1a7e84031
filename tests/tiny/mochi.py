"""Mochi at a tiny size."""

from __future__ import annotations

import torch
from diffusers import MochiTransformer3DModel

from .case import Case

C, L, TXT = 4, 8, 16  # latent channels; text length and width (its attention pool has 8 heads)


def _inputs(model, batch, gen):
    """2 x 8 x 8 latents at patch 2: 32 tokens; the second prompt shorter (Mochi attends per sample to its
    valid text tokens only)."""
    mask = torch.ones(batch, L, dtype=torch.long)
    mask[1:, L - 3:] = 0
    return {"hidden_states": torch.randn(batch, C, 2, 8, 8, generator=gen),
            "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen), "encoder_attention_mask": mask}


CASES = {
    "MochiTransformer3DModel": Case(
        MochiTransformer3DModel, dict(
            patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2, pooled_projection_dim=16,
            in_channels=C, text_embed_dim=TXT, time_embed_dim=16, max_sequence_length=L),
        _inputs, note="the last block is context_pre_only: its ff_context is None and is left out"),
}
