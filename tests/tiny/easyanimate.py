"""EasyAnimate at a tiny size: the inpainting (InP) variant, whose latents carry 4 mask/reference channels."""

from __future__ import annotations

import torch
from diffusers import EasyAnimateTransformer3DModel

from .case import Case

C, F, H, W, L, TXT = 4, 2, 8, 8, 8, 16  # latent channels, frames, size (32 tokens at patch 2), text length, width


def _inputs(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, C, F, H, W, generator=gen),
        "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen),
        "inpaint_latents": torch.randn(batch, C, F, H, W, generator=gen),
    }


def _control(model, batch, gen):
    """The control variant: control latents in the extra channels instead of inpainting latents."""
    return {"inpaint_latents": None, "control_latents": torch.randn(batch, C, F, H, W, generator=gen)}


def _t5(model, batch, gen):
    """A second text encoder's states, projected by text_proj_t5 and appended to the text tokens."""
    return {"encoder_hidden_states_t5": torch.randn(batch, 4, TXT, generator=gen)}


CASES = {
    "EasyAnimateTransformer3DModel": Case(
        EasyAnimateTransformer3DModel,
        dict(num_attention_heads=2, attention_head_dim=16, in_channels=2 * C, out_channels=C, patch_size=2,
             sample_width=W, sample_height=H, num_layers=2, mmdit_layers=2, time_embed_dim=32, text_embed_dim=TXT,
             text_embed_dim_t5=TXT),
        _inputs,
        variants={"control": _control, "t5": _t5},
    ),
}
