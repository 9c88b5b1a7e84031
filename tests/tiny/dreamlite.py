"""DreamLite's transformer stage at a tiny size, called on its own with a timestep (ada_norm blocks)."""

from __future__ import annotations

import torch
from diffusers import DreamLiteTransformer2DModel

from .case import Case

C, H, W, L, TXT = 8, 4, 4, 8, 16  # feature channels, feature map (16 tokens), text length and width


def _inputs(model, batch, gen):
    return {"hidden_states": torch.randn(batch, C, H, W, generator=gen),
            "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen)}


def _text_mask(model, batch, gen):
    mask = torch.ones(batch, L, dtype=torch.long)
    mask[1:, L - 2:] = 0  # the second prompt is shorter
    return {"encoder_attention_mask": mask}


CASES = {
    "DreamLiteTransformer2DModel": Case(
        DreamLiteTransformer2DModel,
        dict(num_attention_heads=2, attention_head_dim=16, in_channels=C, num_layers=2, norm_num_groups=4,
             cross_attention_dim=TXT, qk_norm="rms_norm", ff_mult=2, norm_type="ada_norm", num_embeds_ada_norm=1000),
        _inputs,
        timestep=lambda t, batch: torch.tensor(int(t)),  # AdaLayerNorm: one table index for the whole batch
        variants={"text_mask": _text_mask},
        note="ada_norm blocks (the other norm DreamLite exercises): with layer_norm the output would not depend "
             "on the timestep, and a forecast would equal the computed step",
    ),
}
