"""DiT, PixArt, Latte (and every model built of diffusers' BasicTransformerBlock)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..tokens import gather_tokens
from .spec import BlockSpec, Branch, LeanRule, ModelSpec, adaln_chunks, table_chunks


def _lean_basic(block: nn.Module, inputs: dict, cached: Callable[..., torch.Tensor]) -> torch.Tensor | None:
    """BasicTransformerBlock's output from its cached branches: x + gate_msa * attn1 (+ attn2) + gate_mlp * ff,
    the gates from this call's timestep (adaLN-zero: the block's own embedding; adaLN-single: the model's
    embedding plus the block's table); LayerNorm blocks add ungated. None (the block then runs its forward)
    for the inputs this rule does not cover: GLIGEN's fuser, 4-d hidden states, an unknown norm. An ff
    computing a token subset (PARTIAL) gets its norm and modulation on those rows only."""
    x = inputs["hidden_states"]                                                      # (B, N, D)
    norm = block.norm_type
    if x.ndim != 3 or (inputs.get("cross_attention_kwargs") or {}).get("gligen") is not None or norm not in (
            "ada_norm_zero", "ada_norm_single", "layer_norm", "ada_norm", "ada_norm_continuous", "layer_norm_i2vgen"):
        return None
    gate_msa = gate_mlp = mods = None
    if norm == "ada_norm_zero":
        n1, emb = block.norm1, inputs.get("timestep")
        if n1.emb is not None:
            emb = n1.emb(emb, inputs.get("class_labels"), hidden_dtype=x.dtype)    # (B, D)
        mods = adaln_chunks(n1, emb, 6)                                              # 6 x (B, D)
        gate_msa, gate_mlp = mods[2].unsqueeze(1), mods[5].unsqueeze(1)              # (B, 1, D)
    elif norm == "ada_norm_single":
        mods = table_chunks(block.scale_shift_table, inputs["timestep"], x.shape[0])
        gate_msa, gate_mlp = mods[2], mods[5]                                        # (B, 1, D)
    a = cached("attn1")
    x = x + a if gate_msa is None else torch.addcmul(x, gate_msa, a)
    if block.attn2 is not None:
        x = x + cached("attn2")

    def ff_rows(idx: torch.Tensor) -> torch.Tensor:  # (B, k) -> the ff input at those rows (B, k, D), as forward
        h = gather_tokens(x, idx)
        if norm == "ada_norm_continuous":
            h = block.norm3(h, inputs["added_cond_kwargs"]["pooled_text_emb"])
        elif norm != "ada_norm_single":
            h = block.norm3(h)
        if norm == "ada_norm_zero":
            h = h * (1 + mods[4][:, None]) + mods[3][:, None]
        elif norm == "ada_norm_single":
            h = block.norm2(h) * (1 + mods[4]) + mods[3]
        return h

    f = cached("ff", ff_rows)
    return x + f if gate_mlp is None else torch.addcmul(x, gate_mlp, f)


LEAN = {"basic": LeanRule(_lean_basic, ("diffusers.models.attention.BasicTransformerBlock",), partial=("ff",))}

BLOCKS = {
    # DiT (attn1, ff) and PixArt (attn1, attn2, ff); attn2 is None in DiT and is then left out.
    "BasicTransformerBlock": BlockSpec((
        Branch("attn1", "attn", "self_kv"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    ), lean="basic"),
}

MODELS = {
    "DiTTransformer2DModel": ModelSpec(grid="patch2d"),
    "PixArtTransformer2DModel": ModelSpec(grid="patch2d"),
    # Latte: BasicTransformerBlocks, spatial ones on (B*F, S, D) and temporal ones on (B*S, F, D).
    "LatteTransformer3DModel": ModelSpec(grid="patch3d", temporal="temporal_transformer_blocks"),
}

# Latte's defaults leave its patch size unset: the released Latte-1's configuration, for the meta-device probe.
META = {"LatteTransformer3DModel": dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28, sample_size=64,
    patch_size=2, cross_attention_dim=1152, caption_channels=4096, norm_type="ada_norm_single",
    num_embeds_ada_norm=1000, video_length=16)}
