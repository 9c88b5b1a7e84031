"""Cosmos at a tiny size (text-to-world: no condition mask; no padding mask, whose resize needs torchvision)."""

from __future__ import annotations

import torch
from diffusers import CosmosTransformer3DModel

from .case import Case

C, F, H, W, L, TXT = 4, 2, 8, 8, 8, 16  # latent channels, frames, size (32 tokens at patch (1, 2, 2)), text length
D = 32                                   # hidden size


def _inputs(model, batch, gen):
    return {"hidden_states": torch.randn(batch, C, F, H, W, generator=gen),
            "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen)}


def _video(model, batch, gen):
    """Video conditioning: the frame rate scales the temporal rotary, and a text mask pads the second prompt."""
    mask = torch.ones(batch, L, dtype=torch.bool)
    mask[1:, L - 2:] = False
    return {"fps": 24, "attention_mask": mask}


def _controlnet(model, batch, gen):
    """ControlNet residuals (Transfer2.5), one per block with controlnet_block_every_n=1, added after each."""
    return {"block_controlnet_hidden_states": [0.1 * torch.randn(batch, F * H * W // 4, D, generator=gen)
                                               for _ in model.transformer_blocks]}


CASES = {
    "CosmosTransformer3DModel": Case(
        CosmosTransformer3DModel,
        dict(in_channels=C, out_channels=C, num_attention_heads=2, attention_head_dim=16, num_layers=2, mlp_ratio=2.0,
             text_embed_dim=TXT, adaln_lora_dim=8, max_size=(4, 16, 16), patch_size=(1, 2, 2),
             concat_padding_mask=False, controlnet_block_every_n=1),
        _inputs,
        variants={"video": _video, "controlnet": _controlnet},
    ),
}
