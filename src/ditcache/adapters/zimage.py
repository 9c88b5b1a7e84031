"""Z-Image: single-stream blocks over one sequence of image and caption tokens ([image; caption], or in omni
mode [captions; images; SigLIP tokens]), after per-stream refiner blocks of the same class."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # ZImageTransformerBlock: attention (rotary on every token) and a SwiGLU feed_forward, both over the joint
    # sequence; each output passes a post-norm (attention_norm2, ffn_norm2) and a tanh gate, recomputed every
    # step. Both branches see image and caption rows together, so neither has an image-only token path.
    # Returns one tensor (the joint sequence), not a tuple.
    "ZImageTransformerBlock": BlockSpec((
        Branch("attention", "attn", stream="joint"),
        Branch("feed_forward", "mlp", stream="joint"),
    ), text_first=False),
}

MODELS = {
    # Timestep argument `t` ((1000 - timestep) / 1000: 0 at noise, 1 when clean); inputs are lists of
    # per-sample tensors. The refiners (noise_refiner on the image tokens, context_refiner and siglip_refiner
    # on the caption and SigLIP tokens, the last two without timestep modulation) are blocks of the same class
    # running on one stream before the main layers: left uncached, so the block entry above (stream "joint")
    # describes only the main `layers`. The final layer sits in all_final_layer[...] and takes the joint
    # sequence, so FreqCa has no image-only input.
    "ZImageTransformer2DModel": ModelSpec(timestep_arg="t", final=None,
                                          uncached=("noise_refiner", "context_refiner", "siglip_refiner")),
}
