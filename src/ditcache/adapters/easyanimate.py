"""EasyAnimate (V5 / V5.1): MMDiT blocks, joint attention over [text; video] with separate video and text
MLPs."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # EasyAnimateTransformerBlock: attn1 is joint attention over [text; video] (rotary on the video rows)
    # returning (video, text); ff is the video MLP and txt_ff the text MLP, both token-wise on one stream.
    # A non-MMDiT block (index >= mmdit_layers) has no txt_ff and calls ff on the video and then on the text:
    # the engine refuses such a model loudly (a site run twice); the defaults (mmdit_layers = num_layers) use
    # MMDiT blocks throughout. text_first=False although the processor concatenates [text; video]: the flag
    # only tells ToCa's attention score where the rotary table applies, and here it covers the video rows
    # alone (as HunyuanVideo's); attention received is the same in either order.
    "EasyAnimateTransformerBlock": BlockSpec((
        Branch("attn1", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("txt_ff", "mlp", "tokens", stream="text"),
    ), image_out=0, text_first=False),
}

MODELS = {
    # norm_final takes the video tokens after the last block (norm_out follows it). Frames are not patched.
    "EasyAnimateTransformer3DModel": ModelSpec(grid="patch3d", final="norm_final"),
}

META = {
    # in_channels, out_channels and patch_size default to None: a 16-channel latent at patch 2.
    "EasyAnimateTransformer3DModel": {"in_channels": 16, "out_channels": 16, "patch_size": 2},
}
