"""FLUX.2 (Flux2Transformer2DModel): double-stream blocks (joint attention over [text; image], separate SwiGLU
MLPs), then single-stream blocks whose ``attn`` is a parallel attention + MLP (one fused input projection, one
fused output projection) whose output the block gates itself."""

from __future__ import annotations

from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def flux2_ids(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """(1, H, W) of the generated image from its (t, h, w, l) position ids. Reference images concatenated to
    hidden_states (multi-reference editing) sit on other t planes (10, 20, ...) and are left out."""
    ids = inputs["img_ids"]                     # (N, 4) or (B, N, 4)
    ids = ids[0] if ids.ndim == 3 else ids
    own = ids[ids[:, 0] == ids[0, 0]]           # (H * W, 4): the generated image's plane
    return (1, int(own[:, 1].max()) + 1, int(own[:, 2].max()) + 1)


GRIDS = {"flux2_ids": flux2_ids}

BLOCKS = {
    # FLUX.2 double stream: attn is joint attention over [text; image] (rotary on both) returning (image, text);
    # ff / ff_context are token-wise SwiGLU MLPs on one stream each. Returns (text, image).
    "Flux2TransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1),
    # FLUX.2 single stream: attn (Flux2ParallelSelfAttention) is attention and MLP fused into one module over the
    # joined [text; image] sequence; its output is the pre-gate branch output (the block applies the step's gate and
    # residual), so it is one branch of its own, no FINISH rule needed. Rotary self-attention over both streams:
    # no token path. The model calls it with the streams already joined, so it returns one tensor.
    "Flux2SingleTransformerBlock": BlockSpec((Branch("attn", "attn", stream="joint"),)),
}

MODELS = {
    # timestep in [0, 1] (the pipeline passes t / 1000; the model scales by 1000). norm_out sees the image tokens
    # after the text (and, in KV-extract mode, reference) tokens are sliced off.
    "Flux2Transformer2DModel": ModelSpec(grid="flux2_ids"),
}
