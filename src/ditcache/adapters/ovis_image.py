"""Ovis-Image (OvisImageTransformer2DModel): FLUX.1-style double-stream blocks with SwiGLU MLPs, then single-stream
blocks with a gated (SwiGLU) MLP half and one fused output projection."""

from __future__ import annotations

import torch
from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _finish_ovis_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OvisImageSingleTransformerBlock after its proj_out: x + gate * pre over [text; image], split back."""
    text, image = inputs["encoder_hidden_states"], inputs["hidden_states"]   # (B, L, D), (B, N, D)
    x = torch.cat([text, image], dim=1)                                      # (B, L + N, D)
    _, gate = block.norm(x, emb=inputs["temb"])                              # (B, D): this step's gate
    out = x + gate.unsqueeze(1) * pre
    if out.dtype == torch.float16:
        out = out.clip(-65504, 65504)
    return out[:, : text.shape[1]], out[:, text.shape[1]:]


FINISH = {"ovis_single": _finish_ovis_single}

BLOCKS = {
    # Double stream: joint attention over [text; image] returning (image, text), image and text SwiGLU MLPs;
    # returns (text, image).
    "OvisImageTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1),
    # Single stream: attention and the gated MLP share one output projection: the whole block is one site, cached
    # as its pre-gate proj_out output. Takes (image, text), returns (text, image).
    "OvisImageSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("encoder_hidden_states", "hidden_states"), image_out=1,
        pre_gate="proj_out", finish="ovis_single",
    ),
}

MODELS = {
    # timestep in [0, 1] (the pipeline passes t / 1000); FLUX.1-style (0, row, col) img_ids.
    "OvisImageTransformer2DModel": ModelSpec(grid="flux_ids"),
}
