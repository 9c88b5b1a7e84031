"""HunyuanVideo 1.5: HunyuanVideo's double-stream block over [image; text] (text: refined prompt, ByT5 glyph
tokens and image-condition tokens), no single-stream blocks."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # Joint attention over [image; text] (rotary on the image part), returning (image, text); image and
    # text MLPs. The token refiner ahead of the blocks (another class) is left uncached.
    "HunyuanVideo15TransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=0, text_first=False, lean="hunyuan_double"),  # HunyuanVideo's rule (adapters/hunyuan_video.py)
}

MODELS = {"HunyuanVideo15Transformer3DModel": ModelSpec(grid="patch3d", no_attention_score=(
    "its attention masks and orders the text stream its own way"))}
