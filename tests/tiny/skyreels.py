"""SkyReels-V2 at a tiny size, as its diffusion-forcing pipelines call it: per-frame timesteps and a block-causal
mask over frame blocks. (The fps embedding, inject_sample_info, is left out: under diffusion forcing the
model adds it for batch 1 only, repeating it per frame but not per sample.)"""

from __future__ import annotations

import torch
from diffusers import SkyReelsV2Transformer3DModel

from .case import Case

C, F, L, TXT = 4, 4, 8, 12  # latent channels and frames; text length and width


def _inputs(model, batch, gen):
    """4 latent frames of 4 x 8 (32 tokens) in 2 causal blocks of 2 frames."""
    return {"hidden_states": torch.randn(batch, C, F, 4, 8, generator=gen),
            "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen),
            "enable_diffusion_forcing": True}


def _timestep(t: float, batch: int) -> torch.Tensor:
    return torch.full((batch, F), float(t))  # (B, F): diffusion forcing's one timestep per latent frame


CASES = {
    "SkyReelsV2Transformer3DModel": Case(
        SkyReelsV2Transformer3DModel, dict(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=C, out_channels=C,
            text_dim=TXT, freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=32, num_frame_per_block=2),
        _inputs, timestep=_timestep,
        note="the plain (B,) timestep path is Wan's; diffusion forcing's prefix frames at other timesteps "
             "cannot be expressed: the harness gives every frame the same t"),
}
