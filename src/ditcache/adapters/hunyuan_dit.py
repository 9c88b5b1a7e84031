"""Hunyuan-DiT: U-shaped DiT blocks (self-attention, cross-attention, MLP, ungated residuals; the second half
joins a long skip from the first half through a linear before its branches)."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # HunyuanDiTBlock: attn1 self-attention with rotary on queries and keys; attn2 cross-attention to the
    # [CLIP; T5] caption with rotary on its queries (HunyuanAttnProcessor2_0 rotates the queries of every
    # attention, the keys only of self-attention), so neither has a token path; ff is token-wise on the image
    # tokens. The skip_linear of the second half runs before the branches and is recomputed every step.
    "HunyuanDiTBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn"),
        Branch("ff", "mlp", "tokens"),
    )),
}

MODELS = {"HunyuanDiT2DModel": ModelSpec(grid="patch2d")}

META = {
    # in_channels and patch_size default to None; those of the released Hunyuan-DiT checkpoints.
    "HunyuanDiT2DModel": {"in_channels": 4, "patch_size": 2},
}
