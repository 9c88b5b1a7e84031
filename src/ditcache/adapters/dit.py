"""DiT, PixArt, Latte (and every model built of diffusers' BasicTransformerBlock)."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # DiT (attn1, ff) and PixArt (attn1, attn2, ff); attn2 is None in DiT and is then left out.
    "BasicTransformerBlock": BlockSpec((
        Branch("attn1", "attn", "self_kv"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    )),
}

MODELS = {
    "DiTTransformer2DModel": ModelSpec(grid="patch2d"),
    "PixArtTransformer2DModel": ModelSpec(grid="patch2d"),
    # Latte: BasicTransformerBlocks, spatial ones on (B*F, S, D) and temporal ones on (B*S, F, D).
    "LatteTransformer3DModel": ModelSpec(grid="patch3d", temporal="temporal_transformer_blocks"),
}
