"""Z-Image: single-stream blocks over one sequence of image and caption tokens ([image; caption], or in omni
mode [captions; images; SigLIP tokens]), after per-stream refiner blocks of the same class."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec


def _lean_zimage(block: nn.Module, inputs: dict, cached: Callable[[str], torch.Tensor]) -> torch.Tensor | None:
    """ZImageTransformerBlock's output from its cached branches: x + gate_msa * attention_norm2(attention)
    + gate_mlp * ffn_norm2(feed_forward), the tanh gates from this call's adaln_input (no gates without
    modulation). The post-norms act on the cached outputs and still run; the pre-norms and their scales
    (attention_norm1, ffn_norm1) are skipped. Declined (None) for omni mode's per-token modulation."""
    if inputs.get("noise_mask") is not None:
        return None
    x = inputs["x"]                                                                      # (B, S, D)
    attn = block.attention_norm2(cached("attention"))
    if not block.modulation:
        x = x + attn
        return x + block.ffn_norm2(cached("feed_forward"))
    _, gate_msa, _, gate_mlp = block.adaLN_modulation(inputs["adaln_input"]).unsqueeze(1).chunk(4, dim=2)
    x = x + gate_msa.tanh() * attn                                                      # gates (B, 1, D)
    return x + gate_mlp.tanh() * block.ffn_norm2(cached("feed_forward"))


LEAN = {"zimage": LeanRule(_lean_zimage, ("diffusers.models.transformers.transformer_z_image.ZImageTransformerBlock",))}

BLOCKS = {
    # ZImageTransformerBlock: attention (rotary on every token) and a SwiGLU feed_forward, both over the joint
    # sequence; each output passes a post-norm (attention_norm2, ffn_norm2) and a tanh gate, recomputed every
    # step. Both branches see image and caption rows together, so neither has an image-only token path.
    # Returns one tensor (the joint sequence), not a tuple.
    "ZImageTransformerBlock": BlockSpec((
        Branch("attention", "attn", stream="joint"),
        Branch("feed_forward", "mlp", stream="joint"),
    ), text_first=False, lean="zimage"),
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
