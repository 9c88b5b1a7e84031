"""FLUX.2 on a tiny config: 16 image tokens on a 4 x 4 grid, 8 text tokens, (t, h, w, l) position ids."""

from __future__ import annotations

import torch
from diffusers import Flux2Transformer2DModel

from .case import Case, grid_ids

SIDE, TEXT = 4, 8


def _image_ids(t: int) -> torch.Tensor:
    return grid_ids(SIDE, 4, t)                                # (16, 4)


def _inputs(model, batch, gen):
    text_ids = torch.zeros(TEXT, 4)
    text_ids[:, 3] = torch.arange(TEXT)
    return {
        "hidden_states": torch.randn(batch, SIDE * SIDE, model.config.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, model.config.joint_attention_dim, generator=gen),
        "img_ids": _image_ids(0),
        "txt_ids": text_ids,
    }


def _reference_image(model, batch, gen):
    """Multi-reference editing: a reference image's latents appended to hidden_states on the t = 10 plane."""
    latents = torch.randn(batch, 2 * SIDE * SIDE, model.config.in_channels, generator=gen)  # [noisy; reference]
    return {"hidden_states": latents, "img_ids": torch.cat([_image_ids(0), _image_ids(10)])}


CASES = {
    "Flux2Transformer2DModel": Case(
        Flux2Transformer2DModel,
        dict(patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_single_layers=2, attention_head_dim=8,
             num_attention_heads=2, joint_attention_dim=12, timestep_guidance_channels=16, mlp_ratio=2.0,
             axes_dims_rope=(2, 2, 2, 2), guidance_embeds=False),
        _inputs,
        timestep=lambda t, batch: torch.full((batch,), t / 1000),
        variants={"reference_image": _reference_image},
    ),
}
