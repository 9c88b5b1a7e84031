"""FLUX.3 on a tiny config: 16 image tokens on a 4 x 4 grid, 8 text tokens, (t, h, w, l) position ids."""

from __future__ import annotations

import torch
from diffusers import Flux3Transformer2DModel

from .case import Case
from .flux2 import SIDE, _image_ids, _inputs  # FLUX.3 is called with FLUX.2's inputs: (t, h, w, l) ids


def _reference_image(model, batch, gen):
    """Image-to-image: VAE tokens of a reference image, run through their own mode blocks, joined after the image."""
    return {"image_cond_hidden_states": torch.randn(batch, SIDE * SIDE, model.config.cond_in_channels, generator=gen),
            "image_cond_ids": _image_ids(1)}


CASES = {
    "Flux3Transformer2DModel": Case(
        Flux3Transformer2DModel,
        dict(in_channels=4, cond_in_channels=4, num_layers=1, num_single_layers=2, attention_head_dim=8,
             num_attention_heads=2, joint_attention_dim=12, timestep_channels=16, mlp_ratio=2.0,
             axes_dims_rope=(2, 2, 2, 2)),
        _inputs,
        timestep=lambda t, batch: torch.full((batch,), t / 1000),
        variants={"reference_image": _reference_image},
    ),
}
