"""Ideogram 4: one packed sequence of text and image tokens through single-stream blocks."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # Self-attention (multi-axis rotary, block-diagonal segment mask) and a SwiGLU MLP, both over the packed
    # text + image sequence; the block post-norms each output before its gate. No image-only token path.
    "Ideogram4TransformerBlock": BlockSpec((
        Branch("attention", "attn", stream="joint"),
        Branch("feed_forward", "mlp", stream="joint"),
    )),
}

MODELS = {
    # final_layer projects the whole packed sequence (only image positions are used): no image-only final
    # layer for FreqCa.
    "Ideogram4Transformer2DModel": ModelSpec(final=None),
}
