"""HiDream-I1 on a tiny config: 8 x 8 latents in 2 x 2 patches (16 image tokens), T5 and Llama text tokens."""

from __future__ import annotations

import torch
from diffusers import HiDreamImageTransformer2DModel

from .case import Case

TEXT = 4


def _inputs(model, batch, gen):
    c = model.config
    llama = len(c.llama_layers)  # one Llama layer per block, stacked first
    return {
        "hidden_states": torch.randn(batch, c.in_channels, 8, 8, generator=gen),
        "encoder_hidden_states_t5": torch.randn(batch, TEXT, c.caption_channels[0], generator=gen),
        "encoder_hidden_states_llama3": torch.randn(llama, batch, TEXT, c.caption_channels[1], generator=gen),
        "pooled_embeds": torch.randn(batch, c.text_emb_dim, generator=gen),
    }


CASES = {
    "HiDreamImageTransformer2DModel": Case(
        HiDreamImageTransformer2DModel,
        dict(patch_size=2, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
             num_attention_heads=2, caption_channels=[12, 10], text_emb_dim=12, num_routed_experts=2,
             num_activated_experts=1, axes_dims_rope=(4, 2, 2), max_resolution=(16, 16), llama_layers=[0, 1]),
        _inputs,
    ),
}
