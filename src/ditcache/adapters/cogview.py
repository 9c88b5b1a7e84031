"""CogView3-Plus and CogView4 (one block class each; CogView4-Control is CogView4 with more input channels)."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # CogView3-Plus (CogVideoX's block in 2-D): joint attention over [text; image] returning (image, text),
    # then one MLP over the joined [text; image] sequence: no image-only token path. Returns (image, text).
    "CogView3PlusTransformerBlock": BlockSpec((
        Branch("attn1", "attn", stream="joint"),
        Branch("ff", "mlp", stream="joint"),
    ), image_out=0),
    # CogView4: joint attention (rotary on the image part), then the same `ff` module is called twice, on the
    # image and on the text tokens, so it cannot be one site: the block is cached whole, as the residual of
    # each stream (attention and MLP both skipped on reuse steps). Returns (image, text).
    "CogView4TransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("hidden_states", "encoder_hidden_states"), image_out=0,
    ),
}

MODELS = {
    # hidden_states (B, C, H, W); norm_out takes the image tokens only.
    "CogView3PlusTransformer2DModel": ModelSpec(grid="patch2d"),
    "CogView4Transformer2DModel": ModelSpec(grid="patch2d"),
}
