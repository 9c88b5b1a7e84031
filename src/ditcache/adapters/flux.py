"""FLUX.1: double-stream blocks (joint attention, separate image and text MLPs), then single-stream blocks
whose attention and MLP share one fused output projection."""

from __future__ import annotations

import torch
from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _finish_flux_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FluxSingleTransformerBlock after its proj_out: x + gate * pre over [text; image], split back."""
    text, image = inputs["encoder_hidden_states"], inputs["hidden_states"]   # (B, L, D), (B, N, D)
    x = torch.cat([text, image], dim=1)                                      # (B, L + N, D)
    _, gate = block.norm(x, emb=inputs["temb"])                              # (B, D): this step's gate
    out = x + gate.unsqueeze(1) * pre
    if out.dtype == torch.float16:
        out = out.clip(-65504, 65504)
    return out[:, : text.shape[1]], out[:, text.shape[1]:]


FINISH = {"flux_single": _finish_flux_single}

BLOCKS = {
    # Flux double stream: joint attention returns (image, text) outputs; separate image / text MLPs.
    "FluxTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1),
    # Flux single stream: attention and MLP are fused into one projection: cache the whole block, as its
    # pre-gate proj_out output, so a cached step applies its own gate.
    "FluxSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("encoder_hidden_states", "hidden_states"), image_out=1,
        pre_gate="proj_out", finish="flux_single",
    ),
}

MODELS = {"FluxTransformer2DModel": ModelSpec(grid="flux_ids")}
