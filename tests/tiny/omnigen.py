"""OmniGen: a prompt of token ids, and (variant) a condition image whose latents replace 16 placeholder
tokens of the prompt."""

from __future__ import annotations

import torch
from diffusers import OmniGenTransformer2DModel

from .case import Case

TEXT = 8


def _sequence(batch: int, text: int) -> dict:
    seq = text + 1 + 16  # [prompt; time token; 16 image tokens]
    return {"attention_mask": torch.ones(batch, seq, seq), "position_ids": torch.arange(seq).expand(batch, -1)}


def _inputs(model, batch, gen):
    c = model.config
    return {
        "hidden_states": torch.randn(batch, c.in_channels, 8, 8, generator=gen),        # (B, C, H, W)
        "input_ids": torch.randint(1, c.vocab_size, (batch, TEXT), generator=gen),
        "input_img_latents": [],
        "input_image_sizes": {},
        **_sequence(batch, TEXT),
    }


def _condition_image(model, batch, gen):
    """One 8 x 8 condition latent per sample, embedded into prompt positions 2..18."""
    c = model.config
    text = 20
    return {
        "input_ids": torch.randint(1, c.vocab_size, (batch, text), generator=gen),
        "input_img_latents": [torch.randn(1, c.in_channels, 8, 8, generator=gen) for _ in range(batch)],
        "input_image_sizes": {b: [(2, 18)] for b in range(batch)},
        **_sequence(batch, text),
    }


CASES = {
    "OmniGenTransformer2DModel": Case(
        OmniGenTransformer2DModel,
        dict(in_channels=4, patch_size=2, hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
             intermediate_size=64, num_layers=2, pad_token_id=0, vocab_size=64, pos_embed_max_size=16,
             time_step_dim=32, rope_scaling={"short_factor": [1.0] * 8, "long_factor": [1.0] * 8}),
        _inputs, variants={"condition_image": _condition_image},
    ),
}
