"""Qwen-Image (and Qwen-Image-Edit, whose reference-image latents are appended to the image tokens) and
Qwen-Image 2.1 (one stream of text and image tokens through single-stream blocks)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec


def qwen_img_shapes(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """(frames, H, W) of the image tokens from ``img_shapes``: per sample, one (f, h, w) (NucleusMoE) or a list
    of them (Qwen-Image; Edit: [target, reference, ...], their tokens in that order). References of the
    target's size stack as frames; otherwise the grid is the target's alone (a prefix of the tokens)."""
    shapes = inputs["img_shapes"]
    if isinstance(shapes[0], int):        # a single (f, h, w)
        shapes = [shapes]
    elif isinstance(shapes[0][0], int):   # one (f, h, w) per sample
        shapes = [shapes[0]]
    else:                                 # per sample, a list of (f, h, w)
        shapes = list(shapes[0])
    (f, h, w), rest = shapes[0], shapes[1:]
    if all((rh, rw) == (h, w) for _, rh, rw in rest):
        f += sum(rf for rf, _, _ in rest)
    return (int(f), int(h), int(w))


GRIDS = {"qwen_img_shapes": qwen_img_shapes}


def _lean_qwen_double(block: nn.Module, inputs: dict, cached: Callable[[str], object]) -> tuple | None:
    """QwenImageTransformerBlock's (text, image) output from its cached branches: each stream x + gate1 * attn +
    gate2 * mlp, the gates the third of each half of img_mod(temb) / txt_mod(temb); its four norms and
    modulations are skipped. None (the block runs its forward) under Edit-2511's per-token modulation
    (``modulate_index``, ``zero_cond_t``), whose gates differ per token."""
    if inputs.get("modulate_index") is not None or getattr(block, "zero_cond_t", False):
        return None
    image, text, temb = inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["temb"]

    def gates(mod: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = mod(temb).chunk(2, dim=-1)        # (B, 3D) each: shift, scale, gate
        return first.chunk(3, dim=-1)[2].unsqueeze(1), second.chunk(3, dim=-1)[2].unsqueeze(1)  # (B, 1, D)

    img_gate1, img_gate2 = gates(block.img_mod)
    txt_gate1, txt_gate2 = gates(block.txt_mod)
    attn = cached("attn")                                   # (image, text)
    image = torch.addcmul(image, img_gate1, attn[0])
    text = torch.addcmul(text, txt_gate1, attn[1])
    image = torch.addcmul(image, img_gate2, cached("img_mlp"))
    text = torch.addcmul(text, txt_gate2, cached("txt_mlp"))
    if text.dtype == torch.float16:
        text = text.clip(-65504, 65504)
    if image.dtype == torch.float16:
        image = image.clip(-65504, 65504)
    return text, image


LEAN = {"qwen_double": LeanRule(
    _lean_qwen_double, ("diffusers.models.transformers.transformer_qwenimage.QwenImageTransformerBlock",))}

BLOCKS = {
    # Qwen-Image double stream: joint attention over [text; image] (rotary on both, inside the processor)
    # returning (image, text); separate image and text MLPs, each called once on its own stream (token-wise,
    # also under Edit-2511's per-token modulate_index, which only changes their input). Returns (text, image).
    "QwenImageTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("img_mlp", "mlp", "tokens"),
        Branch("txt_mlp", "mlp", "tokens", stream="text"),
    ), image_out=1, lean="qwen_double"),
    # Qwen-Image 2.1 single stream: text, condition-image and target tokens interleaved in one sequence; a
    # block-causal self-attention with rotary embeddings and one SwiGLU MLP, both over that joint sequence:
    # no image-only token path (FORA, TaylorSeer and the frontier methods run; token methods refuse).
    "QwenImage21TransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("img_mlp", "mlp", stream="joint"),
    )),
}

MODELS = {
    # norm_out takes the image tokens only (Edit's reference tokens included).
    "QwenImageTransformer2DModel": ModelSpec(grid="qwen_img_shapes"),
    # Qwen-Image 2.1: norm_out and proj_out run on the whole joint sequence (the pipeline slices the target
    # off the output), so there is no image-only final layer for FreqCa.
    "QwenImage21Transformer2DModel": ModelSpec(final=None),
}
