"""CogVideoX."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # CogVideoX: joint attention over [text; image] returning (image, text), then one MLP over the joined
    # [text; image] sequence; returns (image, text). The MLP sees both streams at once, so it has no
    # image-only token path here: FORA, TaylorSeer and the frontier methods run, token methods refuse.
    "CogVideoXBlock": BlockSpec((
        Branch("attn1", "attn", stream="joint"),
        Branch("ff", "mlp", stream="joint"),
    ), image_out=0),
}

MODELS = {
    # CogVideoX: norm_final takes the image tokens after the last block (norm_out follows it).
    "CogVideoXTransformer3DModel": ModelSpec(grid="patch3d_frames_first", final="norm_final"),
}
