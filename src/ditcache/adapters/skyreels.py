"""SkyReels-V2: Wan's block (self-attention with rotary embeddings, cross-attention, MLP), with an optional
block-causal mask and per-frame timesteps (diffusion forcing)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec
from .wan import wan_sum


def _lean_skyreels(block: nn.Module, inputs: dict, cached: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """SkyReelsV2TransformerBlock's output from its cached branches: Wan's sum, the gates from this call's temb
    ((B, 6, D), or (B, 6, N, D) under diffusion forcing) and the block's table; its norms are skipped."""
    x, temb = inputs["hidden_states"], inputs["temb"]                                   # (B, N, D)
    if temb.dim() == 4:
        mods = [m.squeeze(1) for m in (block.scale_shift_table.unsqueeze(2) + temb.float()).chunk(6, dim=1)]
    else:
        mods = (block.scale_shift_table + temb.float()).chunk(6, dim=1)                  # 6 x (B, 1, D)
    return wan_sum(x, mods[2], mods[5], cached)


LEAN = {"skyreels": LeanRule(_lean_skyreels,
                             ("diffusers.models.transformers.transformer_skyreels_v2.SkyReelsV2TransformerBlock",))}

BLOCKS = {
    # attn1: self-attention with rotary embeddings and the block-causal mask (num_frame_per_block > 1); attn2:
    # cross-attention to text (and CLIP image tokens), no rotary embedding; ffn: token-wise. Under diffusion
    # forcing the modulation is per token ((B, 6, N, D) temb), applied outside the branches.
    "SkyReelsV2TransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ffn", "mlp", "tokens"),
    ), lean="skyreels"),
}

MODELS = {
    # Diffusion forcing passes timestep (B, F), one per frame. Without a followed scheduler (a bare model in
    # a user loop) steps are told apart by its largest element, which asynchronous schedules (ar_step > 0)
    # hold at the start value while the last frames wait: pass the pipeline, whose scheduler delimits steps.
    "SkyReelsV2Transformer3DModel": ModelSpec(grid="patch3d"),
}
