"""Krea 2 on a tiny config: 16 image tokens on a 4 x 4 grid, 8 text tokens of 2 tapped text-encoder layers."""

from __future__ import annotations

import torch
from diffusers import Krea2Transformer2DModel

from .case import Case

SIDE, TEXT = 4, 8


def _inputs(model, batch, gen):
    c = model.config
    ids = torch.zeros(TEXT + SIDE * SIDE, 3)                    # text rows all zero, then the image grid
    ids[TEXT:, 1] = torch.arange(SIDE).repeat_interleave(SIDE)
    ids[TEXT:, 2] = torch.arange(SIDE).repeat(SIDE)
    return {
        "hidden_states": torch.randn(batch, SIDE * SIDE, c.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, c.num_text_layers, c.text_hidden_dim, generator=gen),
        "position_ids": ids,
    }


def _padded_text(model, batch, gen):
    """Prompts of different lengths: the text key-padding mask."""
    mask = torch.ones(batch, TEXT, dtype=torch.bool)
    mask[0, TEXT // 2:] = False
    return {"encoder_attention_mask": mask}


CASES = {
    "Krea2Transformer2DModel": Case(
        Krea2Transformer2DModel,
        dict(in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2, num_key_value_heads=1,
             intermediate_size=32, timestep_embed_dim=16, text_hidden_dim=12, num_text_layers=2,
             text_num_attention_heads=2, text_num_key_value_heads=2, text_intermediate_size=16,
             num_layerwise_text_blocks=1, num_refiner_text_blocks=1, axes_dims_rope=(2, 2, 4)),
        _inputs,
        timestep=lambda t, batch: torch.full((batch,), t / 1000),
        variants={"padded_text": _padded_text},
    ),
}
