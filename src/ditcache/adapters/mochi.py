"""Mochi: asymmetric double-stream blocks (joint attention over [image; text], separate MLPs)."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # attn1: joint attention over [image; valid text] per sample (rotary on the image part), returning
    # (image, text); ff image MLP; ff_context text MLP (None in the last block, context_pre_only).
    "MochiTransformerBlock": BlockSpec((
        Branch("attn1", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=0, text_first=False),
}

MODELS = {"MochiTransformer3DModel": ModelSpec(grid="patch3d", no_attention_score=(
    "its rotary embedding is applied by its own processor"))}
