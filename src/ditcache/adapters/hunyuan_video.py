"""HunyuanVideo (and Framepack, built of the same blocks): double-stream blocks over [image; text], then
single-stream blocks with one fused output projection."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec, adaln_chunks


def _finish_hunyuan_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HunyuanVideoSingleTransformerBlock after its proj_out: [image; text] order, image returned first."""
    image, text = inputs["hidden_states"], inputs["encoder_hidden_states"]   # (B, N, D), (B, L, D)
    x = torch.cat([image, text], dim=1)                                      # (B, N + L, D)
    gate = adaln_chunks(block.norm, inputs["temb"], 3)[2]                    # (B, D): this step's gate
    out = torch.addcmul(x, gate.unsqueeze(1), pre)
    return out[:, : image.shape[1]], out[:, image.shape[1]:]


def _lean_hunyuan_double(block: nn.Module, inputs: dict, cached: Callable[[str], object]) -> tuple:
    """HunyuanVideoTransformerBlock's (image, text) output from its cached branches: each stream x + gate_msa *
    attn + gate_mlp * ff, the gates from this call's temb; its four norms and modulations are skipped."""
    image, text, temb = inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["temb"]
    mods = adaln_chunks(block.norm1, temb, 6)                       # 6 x (B, D)
    c_mods = adaln_chunks(block.norm1_context, temb, 6)
    attn = cached("attn")                                           # (image, text)
    image = torch.addcmul(image, mods[2].unsqueeze(1), attn[0])
    text = torch.addcmul(text, c_mods[2].unsqueeze(1), attn[1])
    image = torch.addcmul(image, mods[5].unsqueeze(1), cached("ff"))
    text = torch.addcmul(text, c_mods[5].unsqueeze(1), cached("ff_context"))
    return image, text


FINISH = {"hunyuan_single": _finish_hunyuan_single}
# HunyuanVideo 1.5's and HunyuanImage's double blocks gate their streams the same way (their forwards name the
# rotary argument differently or take a mask, neither read here)
LEAN = {"hunyuan_double": LeanRule(_lean_hunyuan_double, (
    "diffusers.models.transformers.transformer_hunyuan_video.HunyuanVideoTransformerBlock",
    "diffusers.models.transformers.transformer_hunyuan_video15.HunyuanVideo15TransformerBlock",
    "diffusers.models.transformers.transformer_hunyuanimage.HunyuanImageTransformerBlock"))}

BLOCKS = {
    # HunyuanVideo double stream: joint attention over [image; text] (rotary on the image part), image and
    # text MLPs; returns (image, text). The token refiner ahead of the blocks is left uncached.
    "HunyuanVideoTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=0, text_first=False, lean="hunyuan_double"),
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
