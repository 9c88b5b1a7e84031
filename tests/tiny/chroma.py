"""Chroma on a tiny config: 16 image tokens on a 4 x 4 grid, 8 text tokens with their attention mask."""

from __future__ import annotations

import torch
from diffusers import ChromaTransformer2DModel

from .case import Case, grid_ids

SIDE, TEXT = 4, 8


def _inputs(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, SIDE * SIDE, model.config.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, model.config.joint_attention_dim, generator=gen),
        "img_ids": grid_ids(SIDE, 3),
        "txt_ids": torch.zeros(TEXT, 3),
        # over [text; image] tokens, as the pipeline builds it
        "attention_mask": torch.ones(batch, TEXT + SIDE * SIDE, dtype=torch.bool),
    }


def _padded_text(model, batch, gen):
    """A prompt shorter than the text length: its padded text tokens masked out (the pipeline keeps one pad)."""
    mask = torch.ones(batch, TEXT + SIDE * SIDE, dtype=torch.bool)
    mask[0, TEXT // 2: TEXT] = False
    return {"attention_mask": mask}


CASES = {
    "ChromaTransformer2DModel": Case(
        ChromaTransformer2DModel,
        dict(patch_size=1, in_channels=4, num_layers=1, num_single_layers=2, attention_head_dim=8,
             num_attention_heads=2, joint_attention_dim=12, axes_dims_rope=(2, 2, 4), approximator_num_channels=8,
             approximator_hidden_dim=16, approximator_layers=1),
        _inputs,
        timestep=lambda t, batch: torch.full((batch,), t / 1000),
        variants={"padded_text": _padded_text},
    ),
}
