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

# Latte's defaults leave its patch size unset: the released Latte-1's configuration, for the meta-device probe.
META = {"LatteTransformer3DModel": dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28, sample_size=64,
    patch_size=2, cross_attention_dim=1152, caption_channels=4096, norm_type="ada_norm_single",
    num_embeds_ada_norm=1000, video_length=16)}
