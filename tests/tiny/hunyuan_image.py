"""HunyuanImage 2.1 on a tiny config: 16 image tokens on a 4 x 4 grid, 8 text tokens with their mask."""

from __future__ import annotations

import torch
from diffusers import HunyuanImageTransformer2DModel

from .case import Case

SIDE, TEXT = 4, 8


def _inputs(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, model.config.in_channels, SIDE, SIDE, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, model.config.text_embed_dim, generator=gen),
        "encoder_attention_mask": torch.ones(batch, TEXT, dtype=torch.bool),
    }


def _glyph_text(model, batch, gen):
    """The second (ByT5 glyph) text encoder: its tokens are reordered with the first's by the two masks."""
    mask = torch.ones(batch, TEXT // 2, dtype=torch.bool)
    mask[:, -1] = False  # one padded glyph token: valid tokens first, then padding
    return {"encoder_hidden_states_2": torch.randn(batch, TEXT // 2, model.config.text_embed_2_dim, generator=gen),
            "encoder_attention_mask_2": mask}


CASES = {
    "HunyuanImageTransformer2DModel": Case(
        HunyuanImageTransformer2DModel,
        dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
             num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=(1, 1), text_embed_dim=12,
             text_embed_2_dim=10, rope_axes_dim=(4, 4)),
        _inputs,
        variants={"glyph_text": _glyph_text},
    ),
}
