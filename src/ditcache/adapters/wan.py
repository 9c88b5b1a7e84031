"""Wan 2.x (and the variants built of its block: VACE, Animate, Animate 2, ChronoEdit)."""

from __future__ import annotations

from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _wan_list(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """Wan-Animate-2: hidden_states is a list of per-sample (C, F, H, W) latents, patchified unpadded."""
    x = inputs["hidden_states"][0]  # (C, F, H, W)
    pf, ph, pw = model.config.patch_size
    return (x.shape[1] // pf, x.shape[2] // ph, x.shape[3] // pw)


GRIDS = {"wan_list": _wan_list}

BLOCKS = {
    # Wan: self-attention with rotary embeddings, cross-attention, MLP. Self-attention has no token-subset
    # path here (nor joint attention in Flux, SD3 and HunyuanVideo): every seed method's preset reuses
    # self-attention whole between full steps (ToCa's f_module for attention is 0 on DiT, PixArt and
    # OpenSora; ClusCa and TokenCache refresh MLPs), so a rotary subset path (queries from the subset with
    # their rotary rows, keys from every token) would serve none of them. (Wan-Animate's and ChronoEdit's
    # copies of this block have the same name and children.)
    "WanTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ffn", "mlp", "tokens"),
    )),
    # VACE: the control blocks all run before the main blocks, on the control stream (control video tokens,
    # zero-padded to the latent's token count, plus the latent at block 0); each returns (hint, control), and
    # hint i is added to the main stream after main block vace_layers[i]. Their branches are Wan's and feed
    # the control stream's residual, so they are sites (up to 8 extra blocks on 40). The MLP keeps no token
    # path on purpose: ClusCa probes the last block (in module order) with an image MLP token path, and the
    # control blocks come after the main blocks in module order but run before them; without it the probe
    # stays on the last main block.
    "WanVACETransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ffn", "mlp"),
    ), image_out=1),
    # Wan-Animate's face adapter: a model-level branch (not inside a block) whose output is added to the main
    # stream after every 5th block: cross-attention from the video tokens to the face-motion tokens of the
    # same frame. The module is its own site. No token path: it regroups its queries per frame (rows
    # reshaped to (B * T, S / T)) and multiplies by a per-token mask.
    "WanAnimateFaceBlockCrossAttention": BlockSpec((Branch("", "cross_attn"),)),
    # Wan-Animate-2: Wan's block with its own names. Self-attention runs over the generation tokens and the
    # reference tokens read from a per-layer KV cache; cross-attention over text (plus CLIP image tokens) has
    # no rotary embedding; the MLP is token-wise.
    "WanAnimate2TransformerBlock": BlockSpec((
        Branch("self_attn", "attn"),
        Branch("cross_attn", "cross_attn", "tokens"),
        Branch("ffn", "mlp", "tokens"),
    )),
}

MODELS = {
    "WanTransformer3DModel": ModelSpec(grid="patch3d"),
    # VACE: control_hidden_states (B, 96, F, H, W) enters through its own patch embedding; the grid is the
    # latent's.
    "WanVACETransformer3DModel": ModelSpec(grid="patch3d"),
    # Wan-Animate: the pose latents are added to frames 1.. of the patch-embedded latent, so the token grid is
    # hidden_states' (2C + 4 channels, T + 1 frames).
    "WanAnimateTransformer3DModel": ModelSpec(grid="patch3d"),
    # Wan-Animate-2: the denoising calls (kv_cache_mode="cached") are what ditcache caches; the "extract"
    # pass (the reference video at a fixed timestep, which fills the KV cache from inside the self-attention)
    # must compute every site, so run it outside the ditcache run. Head takes the blocks' output
    # (B, seq_len, D).
    "WanAnimate2Transformer3DModel": ModelSpec(grid="wan_list", final="head"),
    # ChronoEdit: Wan's blocks; 2 frames (input, output) use the temporal-skip rotary rows, longer clips the
    # temporal-reasoning frames between them.
    "ChronoEditTransformer3DModel": ModelSpec(grid="patch3d"),
}
