"""Motif-Video (MotifVideoTransformer3DModel): HunyuanVideo-style double-stream blocks over [video; text] and
single-stream blocks with one fused output projection, optional text cross-attention in both, and optional
decoder single blocks at the end that read the encoder's video tokens as their second stream."""

from __future__ import annotations

import torch
from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _finish_motif_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MotifVideoSingleTransformerBlock after its proj_out: [video; second stream] order, video returned first."""
    video, other = inputs["hidden_states"], inputs["encoder_hidden_states"]  # (B, N, D), (B, L, D)
    x = torch.cat([video, other], dim=1)                                     # (B, N + L, D)
    _, gate = block.norm(x, emb=inputs["temb"])                              # (B, D): this step's gate
    out = gate.unsqueeze(1) * pre + x
    return out[:, : video.shape[1]], out[:, video.shape[1]:]


FINISH = {"motif_single": _finish_motif_single}

BLOCKS = {
    # Double stream: attn is joint attention over [video; text] (rotary on the video) returning (video, text);
    # cross_attn (when enabled, else None) reads the video attention output as queries (rotary applied) and the
    # text as keys/values, added ungated: no token path. ff / ff_context: token-wise MLPs on one stream each.
    # Returns (video, text).
    "MotifVideoTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("cross_attn", "cross_attn"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=0, text_first=False),
    # Single stream (encoder and decoder blocks alike): attention (pre_only), its optional cross-attention and the
    # MLP share one output projection: the whole block is one site, cached as its pre-gate proj_out output. Takes
    # and returns (video, second stream); the second stream is the text, or the encoder's video in decoder blocks.
    "MotifVideoSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("hidden_states", "encoder_hidden_states"), image_out=0,
        pre_gate="proj_out", finish="motif_single",
    ),
}

MODELS = {
    # Raw scheduler timestep (0..1000); (B, C, F, H, W) latents with patch_size and patch_size_t.
    "MotifVideoTransformer3DModel": ModelSpec(grid="patch3d"),
}
