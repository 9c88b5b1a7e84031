"""CogVideoX."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec, adaln_chunks


def _lean_cogvideox(block: nn.Module, inputs: dict, cached: Callable[[str], object]) -> tuple:
    """CogVideoXBlock's (image, text) output from its cached branches: each stream x + gate * attn1 + gate_ff *
    its rows of ff (ff ran over [text; image]), the four gates from this call's temb through each norm's
    linear; the norms themselves are skipped."""
    image, text, temb = inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["temb"]
    _, _, gate, _, _, enc_gate = adaln_chunks(block.norm1, temb, 6)                      # 6 x (B, D)
    _, _, gate_ff, _, _, enc_gate_ff = adaln_chunks(block.norm2, temb, 6)
    attn_image, attn_text = cached("attn1")                                             # (B, N, D), (B, L, D)
    image = image + gate[:, None, :] * attn_image
    text = text + enc_gate[:, None, :] * attn_text
    ff, length = cached("ff"), text.size(1)                                             # (B, L + N, D)
    image = image + gate_ff[:, None, :] * ff[:, length:]
    text = text + enc_gate_ff[:, None, :] * ff[:, :length]
    return image, text


LEAN = {"cogvideox": LeanRule(_lean_cogvideox,
                              ("diffusers.models.transformers.cogvideox_transformer_3d.CogVideoXBlock",))}

BLOCKS = {
    # CogVideoX: joint attention over [text; image] returning (image, text), then one MLP over the joined
    # [text; image] sequence; returns (image, text). The MLP sees both streams at once, so it has no
    # image-only token path here: FORA, TaylorSeer and the frontier methods run, token methods refuse.
    "CogVideoXBlock": BlockSpec((
        Branch("attn1", "attn", stream="joint"),
        Branch("ff", "mlp", stream="joint"),
    ), image_out=0, lean="cogvideox"),
}

MODELS = {
    # CogVideoX: norm_final takes the image tokens after the last block (norm_out follows it).
    "CogVideoXTransformer3DModel": ModelSpec(grid="patch3d_frames_first", final="norm_final"),
}
