"""NVIDIA Cosmos (1.0 and Predict2 / Transfer2.5): DiT blocks with self-attention, cross-attention and an MLP,
each behind an AdaLN-LoRA gate."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # CosmosTransformerBlock: attn1 self-attention with 3D rotary on queries and keys (no subset path); attn2
    # cross-attention from the video tokens to the text, no rotary (the block passes none), a token path; the
    # CosmosAttention variant (img_context) adds a second query projection of the same rows over the image
    # context tokens, still row-wise in the queries. ff token-wise on the video tokens. ControlNet residuals
    # are added after the branches; the ControlNet's own blocks (after_proj) return a tuple and belong to
    # CosmosControlNetModel, not to this entry's model.
    "CosmosTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    )),
}

MODELS = {"CosmosTransformer3DModel": ModelSpec(grid="patch3d")}
