"""Allegro: PixArt-like video blocks (self-attention, cross-attention, MLP) over every token of the clip."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # AllegroTransformerBlock: attn1 self-attention with 3D rotary on queries and keys (no subset path);
    # attn2 cross-attention from the video tokens (un-normalised, ungated residual) to the caption, no rotary
    # (AllegroAttnProcessor2_0 rotates only self-attention): a token path; ff token-wise on the video tokens.
    "AllegroTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    )),
}

MODELS = {"AllegroTransformer3DModel": ModelSpec(grid="patch3d")}
