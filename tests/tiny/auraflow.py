"""AuraFlow on a tiny config: 8 x 8 latents in 2 x 2 patches (16 image tokens), 8 text tokens (+ 8 registers)."""

from __future__ import annotations

import torch
from diffusers import AuraFlowTransformer2DModel

from .case import Case

TEXT = 8


def _inputs(model, batch, gen):
    c = model.config
    return {
        "hidden_states": torch.randn(batch, c.in_channels, c.sample_size, c.sample_size, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, c.joint_attention_dim, generator=gen),
    }


CASES = {
    "AuraFlowTransformer2DModel": Case(
        AuraFlowTransformer2DModel,
        dict(sample_size=8, patch_size=2, in_channels=4, num_mmdit_layers=1, num_single_dit_layers=2,
             attention_head_dim=8, num_attention_heads=2, joint_attention_dim=12, caption_projection_dim=16,
             out_channels=4, pos_embed_max_size=64),
        _inputs,
        timestep=lambda t, batch: torch.full((batch,), t / 1000),
    ),
}
