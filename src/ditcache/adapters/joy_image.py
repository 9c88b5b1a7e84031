"""JoyImage-Edit and JoyImage-Edit-Plus: double-stream blocks (joint attention over [image; text], separate
image and text MLPs) with Wan-style modulation."""

from __future__ import annotations

from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _joy_items(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """JoyImage-Edit: hidden_states (B, C, T, H, W), or (B, N, C, T, H, W) with N items (the target and its
    reference images) laid out as N * T frames."""
    x = inputs["hidden_states"]
    pt, ph, pw = model.config.patch_size
    frames = x.shape[1] * x.shape[3] if x.ndim == 6 else x.shape[2]
    return (frames // pt, x.shape[-2] // ph, x.shape[-1] // pw)


def _joy_shape_list(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """JoyImage-Edit-Plus: the (t, h, w) token grid of the target, the first entry of shape_list[0] (the
    sequence then holds the references and padding after it)."""
    t, h, w = inputs["shape_list"][0][0]
    return (int(t), int(h), int(w))


GRIDS = {"joy_items": _joy_items, "joy_shape_list": _joy_shape_list}

_DOUBLE = BlockSpec((
    # attn: joint attention over [image; text] (rotary on the image part), returns (image, text).
    Branch("attn", "attn", stream="joint"),
    Branch("img_mlp", "mlp", "tokens"),
    Branch("txt_mlp", "mlp", "tokens", stream="text"),
), image_out=0, text_first=False)

BLOCKS = {
    "JoyImageTransformerBlock": _DOUBLE,
    "JoyImageEditPlusTransformerBlock": _DOUBLE,  # same block, with a padding mask and batched rotary tables
}

MODELS = {
    # norm_out takes the image tokens only (the reference items' tokens included).
    "JoyImageEditTransformer3DModel": ModelSpec(grid="joy_items"),
    "JoyImageEditPlusTransformer3DModel": ModelSpec(grid="joy_shape_list"),
}
