"""Chroma (ChromaTransformer2DModel): FLUX.1's double- and single-stream blocks with the modulation pruned out of
the blocks (every block gets its slice of one approximator output) and a text attention mask."""

from __future__ import annotations

import torch
from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _finish_chroma_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> torch.Tensor:
    """ChromaSingleTransformerBlock after its proj_out: x + gate * pre over the joined [text; image] stream."""
    x = inputs["hidden_states"]                                  # (B, L + N, D)
    _, gate = block.norm(x, emb=inputs["temb"])                  # (B, D): this step's gate
    out = x + gate.unsqueeze(1) * pre
    if out.dtype == torch.float16:
        out = out.clip(-65504, 65504)
    return out


FINISH = {"chroma_single": _finish_chroma_single}

BLOCKS = {
    # Chroma double stream: joint attention over [text; image] returning (image, text), image and text MLPs;
    # returns (text, image).
    "ChromaTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1),
    # Chroma single stream: attention and MLP share one output projection over the joined stream (the model joins
    # it before the single blocks): the whole block is one site, cached as its pre-gate proj_out output.
    "ChromaSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("hidden_states",), pre_gate="proj_out",
        finish="chroma_single",
    ),
}

MODELS = {
    # timestep in [0, 1] (the pipeline passes t / 1000); img_ids as FLUX.1's.
    "ChromaTransformer2DModel": ModelSpec(grid="flux_ids"),
}
