"""Ideogram 4: a packed sequence of 8 text and 16 image tokens (indicators 3 and 2), one sample per segment."""

from __future__ import annotations

import torch
from diffusers import Ideogram4Transformer2DModel

from .case import Case

TEXT, H, W = 8, 4, 4
IMAGE_POSITION_OFFSET = 65536  # diffusers' offset of image grid coordinates past the text positions


def _packed(batch: int, text: int, h: int, w: int) -> dict:
    n = h * w
    text_pos = torch.arange(text)[:, None].expand(text, 3)                               # (L, 3): t = h = w
    hh, ww = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image_pos = torch.stack([torch.full((n,), IMAGE_POSITION_OFFSET), IMAGE_POSITION_OFFSET + hh.reshape(-1),
                             IMAGE_POSITION_OFFSET + ww.reshape(-1)], dim=-1)           # (N, 3)
    return {
        "position_ids": torch.cat([text_pos, image_pos]).expand(batch, -1, -1),
        "segment_ids": torch.zeros(batch, text + n, dtype=torch.long),
        "indicator": torch.cat([torch.full((text,), 3), torch.full((n,), 2)]).expand(batch, -1),
    }


def _inputs(model, batch, gen):
    c = model.config
    seq = TEXT + H * W
    return {
        "hidden_states": torch.randn(batch, seq, c.in_channels, generator=gen),      # image rows used
        "encoder_hidden_states": torch.randn(batch, seq, c.llm_features_dim, generator=gen),  # text rows used
        **_packed(batch, TEXT, H, W),
    }


CASES = {
    "Ideogram4Transformer2DModel": Case(
        Ideogram4Transformer2DModel,
        # head_dim 16: 8 rotary frequencies, every third of them to h and to w (mrope_section 2 each)
        dict(in_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2, intermediate_size=64,
             adaln_dim=16, llm_features_dim=32, mrope_section=(4, 2, 2)),
        _inputs, timestep=lambda t, batch: torch.full((batch,), 1 - t / 1000),  # flow time: 0 noise, 1 data
    ),
}
