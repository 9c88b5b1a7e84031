"""Motif-Video on a tiny config: 2 x 8 x 8 latents in 1 x 2 x 2 patches (32 video tokens), 8 text tokens; text
cross-attention in the double and encoder single blocks, and one decoder single block."""

from __future__ import annotations

import torch
from diffusers import MotifVideoTransformer3DModel

from .case import Case

TEXT = 8


def _inputs(model, batch, gen):
    c = model.config
    return {
        "hidden_states": torch.randn(batch, c.in_channels, 2, 8, 8, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, c.text_embed_dim, generator=gen),
        "encoder_attention_mask": torch.ones(batch, TEXT, dtype=torch.bool),
    }


def _first_frame(model, batch, gen):
    """Image-to-video: vision-encoder embeddings of the first frame, prepended to the text tokens."""
    return {"image_embeds": torch.randn(batch, 4, model.config.image_embed_dim, generator=gen)}


CASES = {
    "MotifVideoTransformer3DModel": Case(
        MotifVideoTransformer3DModel,
        dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
             num_single_layers=2, num_decoder_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1,
             text_embed_dim=12, image_embed_dim=10, rope_axes_dim=(2, 2, 4), enable_text_cross_attention_dual=True,
             enable_text_cross_attention_single=True),
        _inputs,
        variants={"first_frame": _first_frame},
    ),
}
