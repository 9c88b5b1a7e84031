"""Krea 2 (Krea2Transformer2DModel): a text-fusion stage, then single-stream blocks over [text; image] with a
shared time modulation plus per-block tables."""

from __future__ import annotations

from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def krea2_ids(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """(1, H, W) from the (t, h, w) position_ids of the joined sequence: the image rows are the last N."""
    n = inputs["hidden_states"].shape[1]        # hidden_states: (B, N, C) packed latents
    ids = inputs["position_ids"][-n:]           # (N, 3)
    return (1, int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1)


GRIDS = {"krea2_ids": krea2_ids}

BLOCKS = {
    # Single stream over [text; image]: attn is gated-output GQA self-attention with rotary embeddings, ff a SwiGLU
    # MLP, both on the joined stream: no one-stream token path. The text-fusion blocks (Krea2TextFusionBlock) are a
    # different class and run every step.
    "Krea2TransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", stream="joint"),
    )),
}

MODELS = {
    # timestep in [0, 1]; final_layer takes the image tokens sliced off the joined stream.
    "Krea2Transformer2DModel": ModelSpec(grid="krea2_ids", final="final_layer"),
}
