"""MiniMax-H3: one stack of single-stream blocks over one packed sequence of text, video and audio rows
(any order, given by index tensors); per-row AdaLN by (timestep, modality)."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # attn: self-attention with rotary embeddings over the packed sequence; ff: token-wise over every row of
    # it (text, video and audio together): joint, so no single-stream token path.
    "MiniMaxH3TransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", stream="joint"),
    )),
}

MODELS = {
    # timestep holds the distinct noise levels of the packed rows, in [0, 1]; steps are read from the largest
    # (the target rows' level). No grid (the video rows' places are packed) and no final layer on the video
    # rows alone: norm_out runs on the packed sequence.
    "MiniMaxH3Transformer3DModel": ModelSpec(grid=None, final=None),
}
