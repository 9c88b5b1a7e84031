"""Wan 2.x (and the variants built of its block: VACE, Animate, ChronoEdit)."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # Wan: self-attention with rotary embeddings, cross-attention, MLP. Self-attention has no token-subset
    # path here (nor joint attention in Flux, SD3 and HunyuanVideo): every seed method's preset reuses
    # self-attention whole between full steps (ToCa's f_module for attention is 0 on DiT, PixArt and
    # OpenSora; ClusCa and TokenCache refresh MLPs), so a rotary subset path (queries from the subset with
    # their rotary rows, keys from every token) would serve none of them.
    "WanTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ffn", "mlp", "tokens"),
    )),
}

MODELS = {"WanTransformer3DModel": ModelSpec(grid="patch3d")}
