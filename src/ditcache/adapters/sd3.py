"""Stable Diffusion 3 / 3.5 (MMDiT)."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # SD3 / SD3.5: joint attention, optional second attention (SD3.5 dual), image and text MLPs
    # (ff_context is None in the last, context_pre_only block).
    "JointTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("attn2", "attn"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1),
}

MODELS = {"SD3Transformer2DModel": ModelSpec(grid="patch2d")}
