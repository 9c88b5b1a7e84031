"""Helios: Wan's block over [long; mid; short history; current] latent tokens (the history rows are
patchified at 4x, 2x and 1x and prepended, at timestep 0), cross-attention on the current rows only."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # attn1: self-attention with rotary embeddings over history and current rows; attn2 (guidance_cross_attn,
    # the default): cross-attention to text whose queries are the current rows only (the block splits the
    # history rows off before it and puts them back after), no rotary embedding; ffn: token-wise over every
    # row. Both token paths are valid, but they see different row counts when history is passed.
    "HeliosTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ffn", "mlp", "tokens"),
    )),
}

MODELS = {
    # The grid is the current latent's (hidden_states (B, C, F, H, W)); with history the blocks run on more
    # rows than it holds. No final layer: norm_out (HeliosOutputNorm) takes every row, history included, and
    # keeps the current ones itself, so its input is not the grid's tokens (the pipeline always passes
    # history) and FreqCa's low band of it is not defined.
    "HeliosTransformer3DModel": ModelSpec(grid="patch3d", final=None, no_attention_score=(
        "its attention joins history rows to the image tokens, which the score does not see")),
}
