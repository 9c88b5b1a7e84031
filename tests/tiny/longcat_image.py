"""LongCat-Image on a tiny config: 16 image tokens on a 4 x 4 grid whose ids start at the text length, 8 text
tokens."""

from __future__ import annotations

import torch
from diffusers import LongCatImageTransformer2DModel

from .case import Case, grid_ids

SIDE, TEXT = 4, 8


def _ids(modality: int) -> torch.Tensor:
    """The pipeline's prepare_pos_ids for an image: rows and columns offset by the text length."""
    return grid_ids(SIDE, 3, modality, offset=TEXT)            # (16, 3)


def _inputs(model, batch, gen):
    text_ids = torch.zeros(TEXT, 3)
    text_ids[:, 1] = text_ids[:, 2] = torch.arange(TEXT)
    return {
        "hidden_states": torch.randn(batch, SIDE * SIDE, model.config.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, model.config.joint_attention_dim, generator=gen),
        "img_ids": _ids(1),
        "txt_ids": text_ids,
    }


def _edit(model, batch, gen):
    """LongCat-Image-Edit: the reference image's latents appended to hidden_states, on modality 2."""
    latents = torch.randn(batch, 2 * SIDE * SIDE, model.config.in_channels, generator=gen)  # [noisy; reference]
    return {"hidden_states": latents, "img_ids": torch.cat([_ids(1), _ids(2)])}


CASES = {
    "LongCatImageTransformer2DModel": Case(
        LongCatImageTransformer2DModel,
        dict(patch_size=1, in_channels=4, num_layers=1, num_single_layers=2, attention_head_dim=8,
             num_attention_heads=2, joint_attention_dim=12, pooled_projection_dim=12, axes_dims_rope=[2, 2, 4]),
        _inputs,
        timestep=lambda t, batch: torch.full((batch,), t / 1000),
        variants={"edit_reference": _edit},
    ),
}
