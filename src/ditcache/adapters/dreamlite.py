"""DreamLite: the transformer stages of the DreamLite U-Net, blocks like diffusers' BasicTransformerBlock
(self-attention, which some stages drop, cross-attention, MLP) over the pixels of one feature map."""

from __future__ import annotations

from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _feature_map(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    x = inputs["hidden_states"]  # (B, C, H, W): one token per pixel, no patching
    return (1, x.shape[-2], x.shape[-1])


GRIDS = {"dreamlite_feature_map": _feature_map}

BLOCKS = {
    # BasicTransformerBlockDreamLite, as dit.py's BasicTransformerBlock: attn1 a plain Attention self-attention
    # without positional embedding (keys/values from encoder_hidden_states when given: a query-subset path,
    # valid while only_cross_attention is False, its default); attn2 cross-attention to the text (a token
    # path); ff token-wise. attn1 is None in the "no self-attention" stages (use_self_attention=False) and is
    # then left out. Chunked feed-forward (set_chunk_feed_forward) calls ff once per chunk: the engine refuses
    # it loudly (a site run twice).
    "BasicTransformerBlockDreamLite": BlockSpec((
        Branch("attn1", "attn", "self_kv"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    )),
}

MODELS = {
    # Standalone, a step is seen through its timestep argument; inside the DreamLite U-Net the stages are
    # called without one (layer_norm blocks ignore it), so there the U-Net is the model to cache. proj_out
    # takes (B, D, H, W) when use_linear_projection is False, so FreqCa gets no final entry.
    "DreamLiteTransformer2DModel": ModelSpec(grid="dreamlite_feature_map", final=None),
}

META = {
    # in_channels defaults to None, which the constructor refuses (continuous inputs only); any width builds.
    "DreamLiteTransformer2DModel": {"in_channels": 320},
}
