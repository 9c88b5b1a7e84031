"""GLM-Image: text-to-image, and editing through a key/value cache of a condition image prefilled before the
denoising calls."""

from __future__ import annotations

import torch
from diffusers import GlmImageTransformer2DModel
from diffusers.models.transformers.transformer_glm_image import GlmImageKVCache

from .case import Case

TEXT = 8


def _inputs(model, batch, gen):
    c = model.config
    n = 16  # image tokens: 8 x 8 latents in 2 x 2 patches
    return {
        "hidden_states": torch.randn(batch, c.in_channels, 8, 8, generator=gen),        # (B, C, H, W)
        "encoder_hidden_states": torch.randn(batch, TEXT, c.text_embed_dim, generator=gen),
        "prior_token_id": torch.randint(0, c.prior_vq_quantizer_codebook_size, (batch, n), generator=gen),
        "prior_token_drop": torch.zeros(batch, n, dtype=torch.bool),
        "target_size": torch.tensor([[64.0, 64.0]] * batch),
        "crop_coords": torch.zeros(batch, 2),
    }


def _condition_image(model, batch, gen):
    """The pipeline's editing path: one prefill call at t = 0 on the condition image writes every layer's
    key/value cache (here on the unhooked model, before the run), then the denoising calls read it."""
    c = model.config
    cache = GlmImageKVCache(num_layers=c.num_layers)
    cache.set_mode("write")
    with torch.no_grad():
        model(hidden_states=torch.randn(1, c.in_channels, 8, 8, generator=gen),
              encoder_hidden_states=torch.zeros(1, 0, c.text_embed_dim),
              prior_token_id=torch.randint(0, c.prior_vq_quantizer_codebook_size, (1, 16), generator=gen),
              prior_token_drop=torch.zeros(1, 16, dtype=torch.bool), timestep=torch.zeros(1),
              target_size=torch.tensor([[64.0, 64.0]]), crop_coords=torch.zeros(1, 2), kv_caches=cache)
    cache.next_sample()
    cache.set_mode("read")
    return {"kv_caches": cache}


CASES = {
    "GlmImageTransformer2DModel": Case(
        GlmImageTransformer2DModel,
        dict(patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
             text_embed_dim=32, time_embed_dim=32, condition_dim=16, prior_vq_quantizer_codebook_size=64),
        _inputs, variants={"condition_image": _condition_image},
    ),
}
