"""Helios at a tiny size, with its multi-term memory: short, mid and long history latents prepended at 1x,
2x and 4x patches."""

from __future__ import annotations

import torch
from diffusers import HeliosTransformer3DModel

from .case import Case

C, L, TXT = 4, 8, 12  # latent channels; text length and width


def _inputs(model, batch, gen):
    """2 latent frames of 4 x 8 (16 tokens) after 1 short, 2 mid and 4 long history frames (8 + 2 + 1 tokens,
    the mid and long ones padded to whole patches), as the pipeline lays out their frame indices."""
    idx = torch.arange(4 + 2 + 1 + 2)[None].expand(batch, -1)
    return {"hidden_states": torch.randn(batch, C, 2, 4, 8, generator=gen),
            "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen),
            "indices_latents_history_long": idx[:, :4], "indices_latents_history_mid": idx[:, 4:6],
            "indices_latents_history_short": idx[:, 6:7], "indices_hidden_states": idx[:, 7:],
            "latents_history_long": torch.randn(batch, C, 4, 4, 8, generator=gen),
            "latents_history_mid": torch.randn(batch, C, 2, 4, 8, generator=gen),
            "latents_history_short": torch.randn(batch, C, 1, 4, 8, generator=gen)}


def _no_history(model, batch, gen):
    """The first chunk of a video: no history (every branch then sees the same 16 rows)."""
    return {k: None for k in ("indices_latents_history_long", "indices_latents_history_mid",
                              "indices_latents_history_short", "latents_history_long", "latents_history_mid",
                              "latents_history_short")}


CASES = {
    "HeliosTransformer3DModel": Case(
        HeliosTransformer3DModel, dict(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=C, out_channels=C,
            text_dim=TXT, freq_dim=16, ffn_dim=32, num_layers=2, rope_dim=(4, 4, 4), is_amplify_history=True),
        _inputs, variants={"no_history": _no_history}),
}
