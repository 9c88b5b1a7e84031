"""ERNIE-Image: one sequence of [image; text] tokens, sequence-first (S, B, D), through single-stream blocks
with a modulation shared by all of them."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # self_attention (rotary) over the joint sequence, called on (B, S, D); mlp is called on the
    # sequence-first (S, B, D) joint tokens, so rows of its first input are not tokens: no token path.
    "ErnieImageSharedAdaLNBlock": BlockSpec((
        Branch("self_attention", "attn", stream="joint"),
        Branch("mlp", "mlp", stream="joint"),
    )),
}

MODELS = {
    # final_norm runs on the joint sequence-first tokens (the image rows are sliced after final_linear): no
    # image-only final layer for FreqCa.
    "ErnieImageTransformer2DModel": ModelSpec(final=None),
}
