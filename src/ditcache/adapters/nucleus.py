"""NucleusMoE-Image: single-stream image blocks whose attention takes its keys and values from the image
tokens and the text tokens; the MLP is dense in the first and last blocks and a Mixture-of-Experts elsewhere."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # attn: image queries (rotary) over [image; text] keys/values, returns the image tokens only.
    # img_mlp: a dense SwiGLU FeedForward in some blocks, a NucleusMoELayer in the others (same child name in
    # one block class). The MoE layer routes by expert choice (each expert takes its top-C tokens of the whole
    # sequence) and takes the unmodulated tokens as a second input, so a token subset does not give the rows
    # of the full call: no token path for either (FORA, TaylorSeer and the frontier methods run).
    "NucleusMoEImageTransformerBlock": BlockSpec((
        Branch("attn", "attn"),
        Branch("img_mlp", "mlp"),
    )),
}

MODELS = {
    # img_shapes as Qwen-Image's (the rule lives in qwen_image.py); norm_out takes the image tokens only.
    "NucleusMoEImageTransformer2DModel": ModelSpec(grid="qwen_img_shapes"),
}
