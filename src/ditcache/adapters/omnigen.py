"""OmniGen: a Phi-3 language model over [condition tokens; time token; image tokens], no modulation in the
blocks."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # Self-attention (rotary) and MLP over the joint sequence: no image-only token path.
    "OmniGenBlock": BlockSpec((
        Branch("self_attn", "attn", stream="joint"),
        Branch("mlp", "mlp", stream="joint"),
    )),
}

MODELS = {
    # hidden_states (B, C, H, W); norm_out takes the image tokens only (sliced off the sequence after
    # the RMSNorm `norm`).
    "OmniGenTransformer2DModel": ModelSpec(grid="patch2d"),
}

# The rotary embedding reads rope_scaling["short_factor"] / ["long_factor"] (one factor per rotary frequency:
# head_dim / 2 = 48 at the default 3072 / 32 heads); the default rope_scaling=None does not build.
META = {"OmniGenTransformer2DModel": {"rope_scaling": {"short_factor": [1.0] * 48, "long_factor": [1.0] * 48}}}
