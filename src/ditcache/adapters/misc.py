"""The rest of diffusers.models.transformers: the legacy Transformer2DModel and the unCLIP prior (both built of
BasicTransformerBlock, mapped in dit.py), Cosmos 3's omni mixture-of-transformers, and the classes that are
not per-step denoisers over image/video/audio tokens, each with its reason."""

from __future__ import annotations

from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _transformer_2d(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """Transformer2DModel's three input forms: patched (B, C, H, W) latents (DiT / PixArt-alpha checkpoints),
    continuous (B, C, H, W) latents (one token per pixel), vectorized (B, N) codes on a sample_size grid."""
    if model.is_input_vectorized:
        return (1, model.height, model.width)
    x = inputs["hidden_states"]  # (B, C, H, W)
    p = model.config.patch_size if model.is_input_patches else 1
    return (1, x.shape[-2] // p, x.shape[-1] // p)


GRIDS = {"transformer_2d": _transformer_2d}

BLOCKS = {
    # Cosmos 3 omni: one attention module runs the text ("und", causal) pathway and the generation pathway
    # (vision, sound and action tokens, attending to text and generation keys) and returns (und, gen); each
    # pathway has its own MLP. The sequences are packed without a batch axis ((N, D), one sample per call),
    # which the token-subset path (rows of a (B, N, D) input) does not cover: no token paths. The und pathway
    # attends causally to text alone, so its outputs are the same at every step (reusing them is exact).
    "Cosmos3VLTextMoTDecoderLayer": BlockSpec((
        Branch("self_attn", "attn", stream="joint"),
        Branch("mlp", "mlp", stream="text"),
        Branch("mlp_moe_gen", "mlp", stream="image"),
    ), image_out=1),
}

MODELS = {
    # Legacy Transformer2DModel (BasicTransformerBlock: attn1, attn2, ff over image tokens only, no prepended
    # tokens, no causal mask; text enters through attn2). The patched form is DiT / PixArt-alpha, whose
    # norm_out takes the image tokens; the vectorized form is VQ-Diffusion; the continuous form (a UNet layer,
    # where it gets no timestep) has no norm_out, so FreqCa refuses it. The UNet-layer options
    # only_cross_attention and double_self_attention would break dit.py's token paths (attn1 then takes text
    # as keys, attn2 becomes a self-attention): the per-step forms above leave them off.
    "Transformer2DModel": ModelSpec(grid="transformer_2d"),
    # unCLIP prior: BasicTransformerBlocks over [text (77); text embedding; time; noisy image embedding; prd]
    # under a causal mask (B * heads, N, N) when attention_mask is given (the pipelines always give it).
    # One "image" token among ~81 rows and no grid. ff's token path is valid (token-wise); attn1's
    # ("self_kv" in dit.py) is not here: the mask is indexed by query row, so a subset of queries does not
    # line up with it. ToCa's defaults never refresh self-attention (f_module 0); a module_factor that does
    # would fail on this model. norm_out takes every row (only prd is read), so no final module.
    "PriorTransformer": ModelSpec(final=None),
    # Cosmos 3: vision_timesteps holds the step's t for every noisy vision token (the first one is read).
    # norm_moe_gen takes the generation pathway, but there is no grid (packed, ragged items), so no FreqCa.
    "Cosmos3OmniTransformer": ModelSpec(timestep_arg="vision_timesteps", final=None),
    # Sub-layers of UNets (see UNMAPPED): their BasicTransformerBlocks are left uncached so ditcache.apply
    # refuses them with the reason below instead of mapping a layer that is not called once per step.
    "DualTransformer2DModel": ModelSpec(uncached=("transformers",)),
    "TransformerTemporalModel": ModelSpec(uncached=("transformer_blocks",)),
}

UNMAPPED = {
    "RFD4ProteinaTransformer": "a protein structure model (backbone coordinates and local latents with two "
                               "timesteps, a pair representation updated between trunk layers, recycling that "
                               "reruns every layer in one call): not a denoiser over image/video/audio tokens",
    "DualTransformer2DModel": "a layer of Versatile Diffusion's UNet (two Transformer2DModels mixed), called "
                              "once per UNet block without a timestep: not the per-step denoiser",
    "TransformerTemporalModel": "a temporal attention layer of video UNets (UNet3DConditionModel, I2VGen-XL), "
                                "called once per UNet block without a timestep: not the per-step denoiser",
}

META = {
    # The patched, DiT-like form (the default constructor has no input form and refuses to build).
    "Transformer2DModel": dict(in_channels=4, patch_size=2, sample_size=32, norm_type="ada_norm_zero",
                               num_embeds_ada_norm=1000),
    # Continuous input as Versatile Diffusion's UNet builds it (the defaults give no input form); the
    # temporal layer's GroupNorm needs its channels. Both are refused, with their reason, once built.
    "DualTransformer2DModel": dict(in_channels=320, cross_attention_dim=768),
    "TransformerTemporalModel": dict(in_channels=320),
}
