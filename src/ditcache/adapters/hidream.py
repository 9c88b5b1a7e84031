"""HiDream-I1 (HiDreamImageTransformer2DModel): double-stream blocks over [image; text] with a mixture-of-experts
image MLP, then single-stream blocks over the joined stream; each block is wrapped in a HiDreamBlock."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # Double stream: attn1 is joint attention over [image; text] (rotary on both) returning (image, text); ff_i is
    # the image MLP (MoE: shared experts plus top-k routed per token, so token-wise), ff_t the text SwiGLU MLP.
    # Returns (image, text).
    "HiDreamImageTransformerBlock": BlockSpec((
        Branch("attn1", "attn", stream="joint"),
        Branch("ff_i", "mlp", "tokens"),
        Branch("ff_t", "mlp", "tokens", stream="text"),
    ), image_out=0, text_first=False),
    # Single stream: rotary self-attention and the MoE MLP both over the joined [image; text] stream (the model appends
    # a fresh text-encoder layer before each block): no one-stream token path. Returns the joined stream.
    "HiDreamImageSingleTransformerBlock": BlockSpec((
        Branch("attn1", "attn", stream="joint"),
        Branch("ff_i", "mlp", stream="joint"),
    )),
}

MODELS = {
    # The timestep argument is `timesteps` (raw scheduler value, 0..1000); hidden_states are (B, C, H, W) latents
    # patchified inside (square latents; non-square ones are padded to max_resolution and passed pre-patched).
    # final_layer takes the image tokens sliced out of the joined stream.
    "HiDreamImageTransformer2DModel": ModelSpec(timestep_arg="timesteps", grid="patch2d", final="final_layer",
                                                    no_attention_score="its rotary table has its own layout"),
}

META = {
    # The defaults leave patch_size and caption_channels None, which do not build: HiDream-I1's values.
    "HiDreamImageTransformer2DModel": {"patch_size": 2, "in_channels": 16, "caption_channels": [4096, 4096],
                                       "axes_dims_rope": (64, 32, 32)},
}
