"""Ovis-Image on a tiny config: 16 image tokens on a 4 x 4 grid, 8 text tokens."""

from __future__ import annotations

import torch
from diffusers import OvisImageTransformer2DModel

from .case import Case, grid_ids

SIDE, TEXT = 4, 8


def _inputs(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, SIDE * SIDE, model.config.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, model.config.joint_attention_dim, generator=gen),
        "img_ids": grid_ids(SIDE, 3),
        "txt_ids": torch.zeros(TEXT, 3),
    }


CASES = {
    "OvisImageTransformer2DModel": Case(
        OvisImageTransformer2DModel,
        dict(patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_single_layers=2, attention_head_dim=8,
             num_attention_heads=2, joint_attention_dim=12, axes_dims_rope=(2, 2, 4)),
        _inputs,
        timestep=lambda t, batch: torch.full((batch,), t / 1000),
    ),
}
