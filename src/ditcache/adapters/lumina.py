"""Lumina-Next (self- and cross-attention blocks over the image tokens) and Lumina-Image 2.0 (single-stream
blocks over [caption; image], after per-stream refiner blocks of the same class)."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # Lumina-Next: attn1 (self-attention, rotary on queries and keys) and attn2 (cross-attention to the
    # caption, rotary on the queries) each return per-head outputs (B, N, heads, head_dim) without an output
    # projection; the block mixes them (attn2's per-head tanh gate) and applies attn2.to_out[0] itself, so
    # that projection is recomputed every step. Rotary on the queries leaves attn2 without a token path; the
    # SwiGLU feed_forward is token-wise on the image tokens.
    "LuminaNextDiTBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn"),
        Branch("feed_forward", "mlp", "tokens"),
    )),
    # Lumina 2: attention (rotary) and SwiGLU feed_forward over the joint [caption; image] sequence, each
    # through a post-norm and a tanh gate recomputed every step. No image-only branch, so no token path.
    "Lumina2TransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("feed_forward", "mlp", stream="joint"),
    )),
}

MODELS = {
    "LuminaNextDiT2DModel": ModelSpec(grid="patch2d"),
    # Lumina 2: the caption refiner (context_refiner, no timestep modulation) and the image refiner
    # (noise_refiner) run one stream each before the joint `layers`: left uncached. norm_out takes the joint
    # [caption; image] sequence, not the image tokens alone, so FreqCa has no image-only input.
    "Lumina2Transformer2DModel": ModelSpec(grid="patch2d", final=None, uncached=("noise_refiner", "context_refiner")),
}

META = {
    # num_kv_heads defaults to None, which the q/k norms cannot size; 8 as in the Lumina-Next-SFT release.
    "LuminaNextDiT2DModel": {"num_kv_heads": 8},
}
