"""HunyuanVideo (and Framepack, built of the same blocks): double-stream blocks over [image; text], then
single-stream blocks with one fused output projection."""

from __future__ import annotations

import torch
from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _finish_hunyuan_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HunyuanVideoSingleTransformerBlock after its proj_out: [image; text] order, image returned first."""
    image, text = inputs["hidden_states"], inputs["encoder_hidden_states"]   # (B, N, D), (B, L, D)
    x = torch.cat([image, text], dim=1)                                      # (B, N + L, D)
    _, gate = block.norm(x, emb=inputs["temb"])
    out = gate.unsqueeze(1) * pre + x
    return out[:, : image.shape[1]], out[:, image.shape[1]:]


FINISH = {"hunyuan_single": _finish_hunyuan_single}

BLOCKS = {
    # HunyuanVideo double stream: joint attention over [image; text] (rotary on the image part), image and
    # text MLPs; returns (image, text). The token refiner ahead of the blocks is left uncached.
    "HunyuanVideoTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=0, text_first=False),
    # HunyuanVideo single stream: Flux's fused block with image first; cached as its pre-gate output.
    "HunyuanVideoSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("hidden_states", "encoder_hidden_states"), image_out=0,
        pre_gate="proj_out", finish="hunyuan_single",
    ),
}

MODELS = {
    "HunyuanVideoTransformer3DModel": ModelSpec(grid="patch3d"),
    # Framepack: the same blocks over [4x history; 2x history; clean history; latent] image tokens (the
    # history rows are patchified at their own scales and prepended); norm_out sees the latent's rows only.
    # The grid is the latent's (hidden_states (B, C, F, H, W)); the history rows make the blocks' token
    # count larger than it, which ToCa's spatial bonus and ClusCa's frame-wise clustering check for.
    "HunyuanVideoFramepackTransformer3DModel": ModelSpec(grid="patch3d"),
}
