"""CogView3-Plus and CogView4 (with its text padding mask as a variant)."""

from __future__ import annotations

import torch
from diffusers import CogView3PlusTransformer2DModel, CogView4Transformer2DModel

from .case import Case

TEXT = 8


def _inputs(model, batch, gen):
    c = model.config
    return {
        "hidden_states": torch.randn(batch, c.in_channels, 8, 8, generator=gen),        # (B, C, H, W): 16 tokens
        "encoder_hidden_states": torch.randn(batch, TEXT, c.text_embed_dim, generator=gen),
        "original_size": torch.tensor([[64.0, 64.0]] * batch),
        "target_size": torch.tensor([[64.0, 64.0]] * batch),
        "crop_coords": torch.zeros(batch, 2),
    }


def _padded_prompt(model, batch, gen):
    """CogView4's attention_mask: (B, text) with padded prompt positions (the last two) masked."""
    mask = torch.ones(batch, TEXT)
    mask[:, -2:] = 0
    return {"attention_mask": mask}


_CONFIG = dict(patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
               text_embed_dim=32, time_embed_dim=32, condition_dim=16, pos_embed_max_size=16, sample_size=8)

CASES = {
    "CogView3PlusTransformer2DModel": Case(CogView3PlusTransformer2DModel, dict(_CONFIG), _inputs),
    "CogView4Transformer2DModel": Case(CogView4Transformer2DModel, dict(_CONFIG, rope_axes_dim=(8, 8)), _inputs,
                                       variants={"padded_prompt": _padded_prompt}),
}
