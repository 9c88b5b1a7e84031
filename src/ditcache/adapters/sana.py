"""Sana (linear self-attention, cross-attention, a convolutional MLP), Sana-Video (the same with rotary and a
temporal convolution), SANA-WM (camera-conditioned GDN / softmax attention) and its LTX-2 based refiner."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec, table_chunks


def _lean_sana(block: nn.Module, inputs: dict, cached: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """SanaTransformerBlock's output from its cached branches: x + gate_msa * attn1 (+ attn2) + gate_mlp * ff,
    the gates from this call's timestep and the block's table, ff's cached (B, D, H, W) output laid back out as
    tokens; the two norms and modulations (and the reshape to the grid) are skipped."""
    x = inputs["hidden_states"]                                                          # (B, N, D)
    mods = table_chunks(block.scale_shift_table, inputs["timestep"], x.shape[0])
    x = x + mods[2] * cached("attn1")                                                    # gates (B, 1, D)
    if block.attn2 is not None:
        x = cached("attn2") + x
    ff = cached("ff").flatten(2, 3).permute(0, 2, 1)                                     # (B, D, H, W) -> (B, N, D)
    return x + mods[5] * ff


LEAN = {"sana": LeanRule(_lean_sana, ("diffusers.models.transformers.sana_transformer.SanaTransformerBlock",))}

BLOCKS = {
    # Sana: attn1 is ReLU linear attention (SanaLinearAttnProcessor2_0) with no positional embedding inside,
    # keys and values from encoder_hidden_states when given, each query's output depending only on its own
    # row and the key/value sums: a query-subset path ("self_kv"). attn2 is cross-attention from the image
    # tokens (ungated residual) to the caption: a token path. ff is GLUMBConv, 1x1 and depthwise 3x3
    # convolutions on the (B, D, H, W) grid the block reshapes the tokens to: a row subset is no grid, so no
    # token path (the site caches its (B, D, H, W) output).
    "SanaTransformerBlock": BlockSpec((
        Branch("attn1", "attn", "self_kv"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp"),
    ), lean="sana"),
    # Sana-Video: linear attention with rotary on queries and keys (no subset path), cross-attention to the
    # caption (a token path), GLUMBTempConv on the (B, F, H, W, D) grid (spatial and temporal convolutions:
    # no token path).
    "SanaVideoTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp"),
    )),
    # SANA-WM: attn is the camera-conditioned attention (bidirectional Gated-Delta-Net recurrence over frames,
    # or softmax every softmax_every_n-th block; rotary, per-frame gates from frame means): no subset path.
    # cross_attn is MultiHeadCrossAttention, queries from the image tokens (ungated residual), keys/values from
    # the caption, no positional embedding: a token path. mlp is GLUMBConvTemp (convolutions over the frame
    # grid, the released ffn_type) or a token-wise MLP (ffn_type="mlp"); the entry is per class, so the
    # convolutional one decides: no token path.
    "SanaVideoMSCamCtrlBlock": BlockSpec((
        Branch("attn", "attn"),
        Branch("cross_attn", "cross_attn", "tokens"),
        Branch("mlp", "mlp"),
    )),
    # SANA-WM refiner (LTX-2 video block, video stream only): attn2 is cross-attention to the prompt with no
    # rotary on the queries (a token path), ff a token-wise MLP (a token path). attn1 is left out: it reads
    # and, in the capture kv_cache_modes the refiner pipeline runs after each block, writes the sliding-window
    # KV cache (store_captured_*), so it must run on every call; a reused attn1 would skip those writes.
    "SanaWMLTX2RefinerTransformerBlock": BlockSpec((
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    )),
}

MODELS = {
    "SanaTransformer2DModel": ModelSpec(grid="patch2d"),
    "SanaVideoTransformer3DModel": ModelSpec(grid="patch3d"),
    # SANA-WM: timestep (B, 1, F) per frame; final_layer (T2IFinalLayer) takes the image tokens.
    "SanaWMTransformer3DModel": ModelSpec(grid="patch3d", final="final_layer"),
    # The refiner takes patchified tokens (B, N, C) of one AR block: no grid rule reads (F, H, W) from them,
    # and FreqCa's per-frame DCT needs that grid, so norm_out is not offered as its final layer.
    "SanaWMLTX2RefinerTransformer3DModel": ModelSpec(final=None),
}
