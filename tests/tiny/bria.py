"""Bria, Bria FIBO and Bria FIBO 2 on tiny configs: 16 image tokens on a 4 x 4 grid, 8 text tokens."""

from __future__ import annotations

import torch
from diffusers import BriaFibo2Transformer2DModel, BriaFiboTransformer2DModel, BriaTransformer2DModel

from .case import Case, grid_ids

SIDE, TEXT = 4, 8


def _image_ids(index: int = 0) -> torch.Tensor:
    return grid_ids(SIDE, 3, index)                            # (16, 3)


def _bria_inputs(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, SIDE * SIDE, model.config.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, model.config.joint_attention_dim, generator=gen),
        "img_ids": _image_ids(),
        "txt_ids": torch.zeros(TEXT, 3),
    }


def _fibo_inputs(model, batch, gen):
    layers = model.config.num_layers + model.config.num_single_layers
    return {**_bria_inputs(model, batch, gen),  # one text-encoder layer per block
            "text_encoder_layers": [torch.randn(batch, TEXT, model.config.text_encoder_dim, generator=gen)
                                    for _ in range(layers)]}


def _fibo_reference(model, batch, gen):
    """FIBO Edit: a reference image's latents appended to hidden_states, its ids on index plane 1."""
    latents = torch.randn(batch, 2 * SIDE * SIDE, model.config.in_channels, generator=gen)  # [noisy; reference]
    return {"hidden_states": latents, "img_ids": torch.cat([_image_ids(0), _image_ids(1)])}


def _fibo2_inputs(model, batch, gen):
    # Frozen weights: under no_grad, the Perceiver's input is a view of a parameter (latent_queries[:n]) that still
    # requires grad, and torch's FlopCounterMode (its ModuleTracker) fails on such a module input. See the note.
    model.requires_grad_(False)
    bundles = 1 + len(model.config.injection_layer_ids)  # the Perceiver's bundle, then one per injection block
    return {
        "hidden_states": torch.randn(batch, model.config.in_channels, 2 * SIDE, 2 * SIDE, generator=gen),
        "encoder_hidden_states": torch.randn(batch, bundles, TEXT, model.config.cap_feat_dim, generator=gen),
    }


def _fibo2_context(model, batch, gen):
    """Editing: the latents of one image to edit, clean context tokens joined after the image tokens."""
    return {"context_latents": [torch.randn(batch, model.config.in_channels, 2 * SIDE, 2 * SIDE, generator=gen)]}


def _fibo2_padded_text(model, batch, gen):
    """Prompts of different lengths: a text mask, so the batch pads its gist tokens (the gist goes last)."""
    mask = torch.ones(batch, TEXT, dtype=torch.bool)
    mask[0, TEXT // 2:] = False
    return {"encoder_attention_mask": mask}


_BRIA = dict(patch_size=1, in_channels=4, num_layers=1, num_single_layers=2, attention_head_dim=8,
             num_attention_heads=2, joint_attention_dim=12, axes_dims_rope=[2, 2, 4])

CASES = {
    "BriaTransformer2DModel": Case(BriaTransformer2DModel, dict(_BRIA), _bria_inputs),
    "BriaFiboTransformer2DModel": Case(
        BriaFiboTransformer2DModel, dict(_BRIA, text_encoder_dim=10), _fibo_inputs,
        variants={"reference_image": _fibo_reference},
    ),
    "BriaFibo2Transformer2DModel": Case(
        BriaFibo2Transformer2DModel,
        dict(in_channels=4, patch_size=2, dim=32, n_layers=2, n_refiner_layers=1, n_heads=2, cap_feat_dim=12,
             injection_layer_ids=(1,), perceiver_num_layers=1, min_num_gist_tokens=4, max_num_gist_tokens=8,
             gist_step=4, gist_min_text_len=4, gist_max_text_len=8, axes_dims=(4, 6, 6), axes_lens=(16, 16, 16)),
        _fibo2_inputs,
        timestep=lambda t, batch: torch.full((batch,), t / 1000),
        variants={"context_image": _fibo2_context, "padded_text": _fibo2_padded_text},
        note="weights frozen in inputs(): with requires_grad weights, counting FLOPs (torch's FlopCounterMode) fails "
             "on the Perceiver, whose input is a no_grad view of a parameter that requires grad",
    ),
}
