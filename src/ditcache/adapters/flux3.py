"""FLUX.3 (Flux3Transformer2DModel): per-mode blocks (each token mode self-attends within itself: the text, the
noisy image, the reference image), then joint single blocks over [text; image; reference] with per-token
modulation. Every block is a parallel block: attention and MLP read the same modulated input and their sum is
gated once, so both are separate branches."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # Per-mode block: attn is rotary self-attention within one mode, ff a token-wise SwiGLU MLP on the same input;
    # returns x + gate * (attn + ff). The model's image-mode blocks (mode_blocks.image) are the cached ones; the text
    # and reference modes run at timestep 0 and are left uncached (ModelSpec.uncached), so the stream is the image.
    "Flux3ModeTransformerBlock": BlockSpec((
        Branch("attn", "attn"),
        Branch("ff", "mlp", "tokens"),
    )),
    # Joint single block: attn (rotary self-attention) and ff both run on the joined [text; image; reference]
    # sequence (text modulated separately), so the MLP has no one-stream token path. Returns (text, content).
    "Flux3SingleTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", stream="joint"),
    ), image_out=1),
}

MODELS = {
    # timestep in [0, 1]. The text and reference-image mode blocks see only their own tokens at timestep 0 (clean
    # conditioning, like a refiner ahead of the joint blocks): uncached. img_ids are the image's own (t, h, w, l)
    # ids, so flux_ids reads its grid; norm_out sees the image tokens only.
    "Flux3Transformer2DModel": ModelSpec(grid="flux_ids", uncached=("txt_mode_blocks", "mode_blocks.image_cond")),
}
