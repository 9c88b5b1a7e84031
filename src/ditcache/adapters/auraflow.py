"""AuraFlow (AuraFlowTransformer2DModel): MMDiT joint blocks, then single DiT blocks over [text; image]. Every
block feeds the gated attention output through a post-norm into the MLP's input, and only the gated MLP output
reaches the residual stream; both are still one-call branch modules whose outputs the block gates itself."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # Joint block: attn is joint attention over [register + text; image] (learned positions, no rotary) returning
    # (image, text); ff / ff_context are token-wise SwiGLU MLPs on one stream each. Returns (text, image).
    "AuraFlowJointTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1),
    # Single block: self-attention and MLP over the joined [text; image] stream (the model joins it first): no
    # one-stream token path; its processor reads encoder_hidden_states as extra query tokens (add_q_proj), not as
    # the key/value source, so no self_kv path either. Returns the joined stream.
    "AuraFlowSingleTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", stream="joint"),
    )),
}

MODELS = {
    # timestep in [0, 1] (the pipeline passes t / 1000; the embedding scales by 1000); (B, C, H, W) latents.
    # norm_out (AuraFlowPreFinalBlock) takes the image tokens sliced off the joined stream.
    "AuraFlowTransformer2DModel": ModelSpec(grid="patch2d"),
}
