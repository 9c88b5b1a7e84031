"""Chroma (ChromaTransformer2DModel): FLUX.1's double- and single-stream blocks with the modulation pruned out of
the blocks (every block gets its slice of one approximator output) and a text attention mask."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .flux import gated_double
from .spec import BlockSpec, Branch, LeanRule, ModelSpec


def _finish_chroma_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> torch.Tensor:
    """ChromaSingleTransformerBlock after its proj_out: x + gate * pre over the joined [text; image] stream."""
    x = inputs["hidden_states"]                                  # (B, L + N, D)
    _, gate = block.norm(x, emb=inputs["temb"])                  # (B, D): this step's gate
    out = x + gate.unsqueeze(1) * pre
    if out.dtype == torch.float16:
        out = out.clip(-65504, 65504)
    return out


FINISH = {"chroma_single": _finish_chroma_single}


def _lean_chroma_double(block: nn.Module, inputs: dict, cached: Callable[[str], object]) -> tuple | None:
    """ChromaTransformerBlock's (text, image) output from its cached branches: FLUX.1's form, each stream's six
    chunks read from its slice of the model's modulation (temb (B, 12, D): image rows 0..5, text rows 6..11)
    as the pruned norms read them; the norms are skipped. Declined if a norm makes its own embedding."""
    if block.norm1.emb is not None or block.norm1_context.emb is not None:
        return None
    temb = inputs["temb"]
    mods = temb[:, :6].flatten(1, 2).chunk(6, dim=1)                                  # 6 x (B, D)
    c_mods = temb[:, 6:].flatten(1, 2).chunk(6, dim=1)
    return gated_double(inputs["hidden_states"], inputs["encoder_hidden_states"], mods, c_mods, cached)


LEAN = {"chroma_double": LeanRule(_lean_chroma_double,
                                  ("diffusers.models.transformers.transformer_chroma.ChromaTransformerBlock",))}


BLOCKS = {
    # Chroma double stream: joint attention over [text; image] returning (image, text), image and text MLPs;
    # returns (text, image).
    "ChromaTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1, lean="chroma_double"),
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
