"""Ovis-Image (OvisImageTransformer2DModel): FLUX.1-style double-stream blocks with SwiGLU MLPs, then single-stream
blocks with a gated (SwiGLU) MLP half and one fused output projection."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # Double stream: joint attention over [text; image] returning (image, text), image and text SwiGLU MLPs;
    # returns (text, image).
    "OvisImageTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1, lean="flux_double"),  # FLUX.1's forward (adapters/flux.py)
    # Single stream: attention and the gated MLP share one output projection: the whole block is one site, cached
    # as its pre-gate proj_out output. Takes (image, text), returns (text, image).
    "OvisImageSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("encoder_hidden_states", "hidden_states"), image_out=1,
        pre_gate="proj_out", finish="flux_single",  # FLUX.1's gate rule (adapters/flux.py)
    ),
}

MODELS = {
    # timestep in [0, 1] (the pipeline passes t / 1000); FLUX.1-style (0, row, col) img_ids.
    "OvisImageTransformer2DModel": ModelSpec(grid="flux_ids"),
}
