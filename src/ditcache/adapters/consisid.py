"""ConsisID: CogVideoX's block (joint attention, one MLP over [text; image]) plus identity cross-attention
between blocks."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # CogVideoX's block: attn1 joint attention over [text; image] returning (image, text); ff one MLP over
    # the joined [text; image] rows: no image-only token path.
    "ConsisIDBlock": BlockSpec((
        Branch("attn1", "attn", stream="joint"),
        Branch("ff", "mlp", stream="joint"),
    ), image_out=0),
    # is_train_face: after every cross_attn_interval-th block the image stream gets local_face_scale times
    # this cross-attention from the image rows to the face tokens: a model-level branch, its own site. No
    # token path: the image rows are its second argument (the face tokens come first).
    "PerceiverCrossAttention": BlockSpec((Branch("", "cross_attn"),)),
}

MODELS = {
    # norm_final runs on [text; image] (then the text rows are cut off); norm_out takes the image rows.
    "ConsisIDTransformer3DModel": ModelSpec(grid="patch3d_frames_first"),
}
