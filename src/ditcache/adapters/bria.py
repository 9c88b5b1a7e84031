"""Bria (BriaTransformer2DModel) and Bria FIBO (BriaFiboTransformer2DModel): FLUX.1-style double-stream blocks,
then single-stream blocks with one fused output projection; and Bria FIBO 2 (BriaFibo2Transformer2DModel),
Z-Image-style single-stream blocks over [gist; image; context] with occasional text cross-attention."""

from __future__ import annotations

import torch
from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _finish_bria_fibo_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> torch.Tensor:
    """BriaFiboSingleTransformerBlock after its proj_out: x + gate * pre over the joined [text; image] stream."""
    x = inputs["hidden_states"]                                  # (B, L + N, D)
    _, gate = block.norm(x, emb=inputs["temb"])                  # (B, D)
    out = x + gate.unsqueeze(1) * pre
    if out.dtype == torch.float16:
        out = out.clip(-65504, 65504)
    return out


def bria_ids(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """(1, H, W) of the generated image from FLUX.1-style (index, row, col) img_ids; FIBO Edit's reference images,
    appended to hidden_states, carry their reference index in column 0 and are left out."""
    ids = inputs["img_ids"]                     # (N, 3) or (B, N, 3)
    ids = ids[0] if ids.ndim == 3 else ids
    own = ids[ids[:, 0] == ids[0, 0]]           # (H * W, 3): the generated image's plane
    return (1, int(own[:, 1].max()) + 1, int(own[:, 2].max()) + 1)


GRIDS = {"bria_ids": bria_ids}

FINISH = {"bria_fibo_single": _finish_bria_fibo_single}

BLOCKS = {
    # Bria double stream (FLUX.1's): joint attention over [text; image] returning (image, text), image and text
    # MLPs; returns (text, image).
    "BriaTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1, lean="flux_double"),  # FLUX.1's forward (adapters/flux.py)
    # Bria single stream (FLUX.1's): attention and MLP share one output projection: the whole block is one site,
    # cached as its pre-gate proj_out output. Takes (image, text), returns (text, image).
    "BriaSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("encoder_hidden_states", "hidden_states"), image_out=1,
        pre_gate="proj_out", finish="flux_single",  # FLUX.1's gate rule (adapters/flux.py)
    ),
    # Bria FIBO double stream: as Bria's (the text stream is re-mixed with a per-block text-encoder layer by the model
    # before each block); returns (text, image).
    "BriaFiboTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1, lean="flux_double"),  # FLUX.1's forward (adapters/flux.py)
    # Bria FIBO single stream: Bria's fused block, fed the joined [text; image] stream and returning it joined.
    "BriaFiboSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("hidden_states",), pre_gate="proj_out",
        finish="bria_fibo_single",
    ),
    # Bria FIBO 2 (Z-Image's block): rotary self-attention over the one stream [gist; image; context] (its output is
    # RMS-normed and gated by the block), in injection blocks a cross-attention from every token of that stream to a
    # text-encoder layer (None elsewhere; its queries are the joint stream, not the image alone), and a SwiGLU MLP on
    # the joint stream. No branch sees the image tokens alone: no token path.
    "BriaFibo2TransformerBlock": BlockSpec((
        Branch("attention", "attn", stream="joint"),
        Branch("cross_attention", "cross_attn", stream="joint"),
        Branch("feed_forward", "mlp", stream="joint"),
    )),
}

MODELS = {
    # Bria and FIBO take the raw scheduler timestep (0..1000) and FLUX.1-style (index, row, col) img_ids.
    "BriaTransformer2DModel": ModelSpec(grid="bria_ids"),
    "BriaFiboTransformer2DModel": ModelSpec(grid="bria_ids"),
    # FIBO 2: timestep in [0, 1]; hidden_states are (B, C, H, W) latents patchified inside. The noise refiner (same
    # block class, image and context tokens only, ahead of the gist tokens joining) stays uncached; the Perceiver
    # that makes the gist tokens is not a mapped block. final_layer takes the image tokens sliced out of the stream.
    "BriaFibo2Transformer2DModel": ModelSpec(grid="patch2d", final="final_layer", uncached=("noise_refiner",)),
}
