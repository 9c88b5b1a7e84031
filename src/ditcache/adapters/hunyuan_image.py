"""HunyuanImage 2.1 (HunyuanImageTransformer2DModel): HunyuanVideo's layout for images: double-stream blocks over
[image; text], then single-stream blocks with one fused output projection; a token refiner on the text first."""

from __future__ import annotations

import torch
from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def hunyuan_image_patch(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """(frames, H, W) of the latents after patching: (B, C, H, W) with a 2-tuple patch_size, or (B, C, F, H, W)
    with a 3-tuple."""
    x = inputs["hidden_states"]
    p = tuple(model.config.patch_size)
    if x.ndim == 4:
        return (1, x.shape[2] // p[0], x.shape[3] // p[1])
    return (x.shape[2] // p[0], x.shape[3] // p[1], x.shape[4] // p[2])


def _finish_hunyuan_image_single(block: nn.Module, inputs: dict,
                                 pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HunyuanImageSingleTransformerBlock after its proj_out: [image; text] order, image returned first."""
    image, text = inputs["hidden_states"], inputs["encoder_hidden_states"]   # (B, N, D), (B, L, D)
    x = torch.cat([image, text], dim=1)                                      # (B, N + L, D)
    _, gate = block.norm(x, emb=inputs["temb"])                              # (B, D): this step's gate
    out = gate.unsqueeze(1) * pre + x
    return out[:, : image.shape[1]], out[:, image.shape[1]:]


GRIDS = {"hunyuan_image_patch": hunyuan_image_patch}

FINISH = {"hunyuan_image_single": _finish_hunyuan_image_single}

BLOCKS = {
    # Double stream: joint attention over [image; text] (rotary on the image part) returning (image, text), image
    # and text MLPs; returns (image, text).
    "HunyuanImageTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=0, text_first=False, lean="hunyuan_double"),  # HunyuanVideo's rule (adapters/hunyuan_video.py)
    # Single stream: attention (pre_only, no output projection) and MLP share one output projection: the whole block
    # is one site, cached as its pre-gate proj_out output. Takes and returns (image, text).
    "HunyuanImageSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("hidden_states", "encoder_hidden_states"), image_out=0,
        pre_gate="proj_out", finish="hunyuan_image_single",
    ),
}

MODELS = {
    # Raw scheduler timestep (0..1000). The text token refiner (context_embedder) is not a mapped block: it runs
    # every step. norm_out sees the image tokens (the single blocks return them apart from the text).
    "HunyuanImageTransformer2DModel": ModelSpec(grid="hunyuan_image_patch"),
}
