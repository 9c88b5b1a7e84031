"""ERNIE-Image: 16 image tokens and an 8-token prompt (the variant pads two of its positions)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ErnieImageTransformer2DModel

from .case import Case

TEXT = 8


@dataclass
class _Drawn(Case):
    """ERNIE-Image zero-initialises its shared modulation and its final projection (trained weights replace
    them): drawn here, or every block would add nothing and the output would be zero."""

    def build(self, seed: int = 0):
        model = super().build(seed)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in (*model.adaLN_modulation.parameters(), *model.final_linear.parameters()):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        return model


def _inputs(model, batch, gen):
    c = model.config
    return {
        "hidden_states": torch.randn(batch, c.in_channels, 4, 4, generator=gen),         # (B, C, H, W)
        "text_bth": torch.randn(batch, TEXT, c.text_in_dim, generator=gen),
        "text_lens": torch.full((batch,), TEXT),
    }


def _padded_prompt(model, batch, gen):
    return {"text_lens": torch.tensor([TEXT - 2] * batch)}


CASES = {
    "ErnieImageTransformer2DModel": _Drawn(
        ErnieImageTransformer2DModel,
        dict(hidden_size=32, num_attention_heads=2, num_layers=2, ffn_hidden_size=64, in_channels=16, out_channels=16,
             patch_size=1, text_in_dim=24, rope_axes_dim=(4, 6, 6)),
        _inputs, variants={"padded_prompt": _padded_prompt},
    ),
}
