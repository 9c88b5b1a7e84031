"""GLM-Image: CogView4's block (joint attention, one MLP called on each stream) with an optional key/value
cache of condition images for editing."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # As CogView4: `ff` runs twice per block (image, then text), so the block is cached whole as the residual
    # of each stream. Its attention reads (mode "read") or writes (mode "write", the condition-image prefill
    # calls before the denoising loop) the layer's kv_cache: a reused block does neither, which is harmless on
    # "read" steps. Returns (image, text).
    "GlmImageTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("hidden_states", "encoder_hidden_states"), image_out=0,
    ),
}

MODELS = {
    # hidden_states (B, C, H, W); norm_out takes the image tokens only.
    "GlmImageTransformer2DModel": ModelSpec(grid="patch2d"),
}
