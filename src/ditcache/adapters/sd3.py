"""Stable Diffusion 3 / 3.5 (MMDiT)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec, adaln_chunks


def _lean_joint(block: nn.Module, inputs: dict, cached: Callable[[str], object]) -> tuple:
    """JointTransformerBlock's (text, image) output from its cached branches: image = x + gate_msa * attn
    (+ gate_msa2 * attn2, SD3.5's dual attention) + gate_mlp * ff, text likewise with its own six gates; the last,
    context_pre_only block returns no text. The gates come from this call's temb; the norms are skipped."""
    image, text, temb = inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["temb"]
    # norm1: AdaLayerNormZero (6 chunks) or SD35AdaLayerNormZeroX (9: the last three for attn2), each (B, D)
    mods = adaln_chunks(block.norm1, temb, 9 if block.use_dual_attention else 6)
    attn = cached("attn")                                                 # (image, text) outputs
    image = torch.addcmul(image, mods[2].unsqueeze(1), attn[0])
    if block.use_dual_attention:
        image = torch.addcmul(image, mods[8].unsqueeze(1), cached("attn2"))
    image = torch.addcmul(image, mods[5].unsqueeze(1), cached("ff"))
    if block.context_pre_only:
        return None, image
    c_mods = adaln_chunks(block.norm1_context, temb, 6)
    text = torch.addcmul(text, c_mods[2].unsqueeze(1), attn[1])
    return torch.addcmul(text, c_mods[5].unsqueeze(1), cached("ff_context")), image


LEAN = {"joint": LeanRule(_lean_joint, ("diffusers.models.attention.JointTransformerBlock",))}

BLOCKS = {
    # SD3 / SD3.5: joint attention, optional second attention (SD3.5 dual), image and text MLPs
    # (ff_context is None in the last, context_pre_only block).
    "JointTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("attn2", "attn"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1, lean="joint"),
}

MODELS = {"SD3Transformer2DModel": ModelSpec(grid="patch2d")}
