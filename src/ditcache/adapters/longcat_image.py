"""LongCat-Image (LongCatImageTransformer2DModel): FLUX.1-style double-stream blocks, then single-stream blocks with
one fused output projection; LongCat-Image-Edit appends the reference image's tokens to hidden_states."""

from __future__ import annotations

from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def longcat_ids(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """(1, H, W) of the generated image from its (modality, row, col) img_ids. Rows and columns start at the text
    length (the pipeline offsets them by it), and Edit's reference tokens sit on modality 2: both are handled."""
    ids = inputs["img_ids"]                     # (N, 3)
    ids = ids[0] if ids.ndim == 3 else ids
    own = ids[ids[:, 0] == ids[0, 0]]           # (H * W, 3): the generated image's modality
    rows, cols = own[:, 1], own[:, 2]
    return (1, int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)


GRIDS = {"longcat_ids": longcat_ids}

BLOCKS = {
    # Double stream (FLUX.1's): joint attention over [text; image] returning (image, text), image and text MLPs;
    # returns (text, image).
    "LongCatImageTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1, lean="flux_double"),  # FLUX.1's forward (adapters/flux.py)
    # Single stream (FLUX.1's): attention and MLP share one output projection: the whole block is one site, cached
    # as its pre-gate proj_out output. Takes (image, text), returns (text, image).
    "LongCatImageSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("encoder_hidden_states", "hidden_states"), image_out=1,
        pre_gate="proj_out", finish="flux_single",  # FLUX.1's gate rule (adapters/flux.py)
    ),
}

MODELS = {
    # timestep in [0, 1] (the pipeline passes t / 1000).
    "LongCatImageTransformer2DModel": ModelSpec(grid="longcat_ids"),
}
