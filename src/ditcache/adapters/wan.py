"""Wan 2.x (and the variants built of its block: VACE, Animate, Animate 2, ChronoEdit)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec


def _wan_list(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """Wan-Animate-2: hidden_states is a list of per-sample (C, F, H, W) latents, patchified unpadded."""
    x = inputs["hidden_states"][0]  # (C, F, H, W)
    pf, ph, pw = model.config.patch_size
    return (x.shape[1] // pf, x.shape[2] // ph, x.shape[3] // pw)


GRIDS = {"wan_list": _wan_list}


def _lean_wan(block: nn.Module, inputs: dict, cached: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """WanTransformerBlock's output from its cached branches: x + gate_msa * attn1 + attn2 + c_gate_msa * ffn in
    float32, as its forward adds them, the gates from this call's temb ((B, 6, D), or (B, S, 6, D) with
    per-token timesteps); its three norms and two modulations are skipped."""
    x, temb = inputs["hidden_states"], inputs["temb"]                                   # (B, S, D)
    if temb.ndim == 4:  # Wan 2.2 TI2V: a timestep per token
        mods = (block.scale_shift_table.unsqueeze(0) + temb.float()).chunk(6, dim=2)     # 6 x (B, S, 1, D)
        gate, c_gate = mods[2].squeeze(2), mods[5].squeeze(2)                            # (B, S, D)
    else:
        mods = (block.scale_shift_table + temb.float()).chunk(6, dim=1)                  # 6 x (B, 1, D)
        gate, c_gate = mods[2], mods[5]
    return wan_sum(x, gate, c_gate, cached)


def wan_sum(x: torch.Tensor, gate: torch.Tensor, c_gate: torch.Tensor, cached: Callable[[str], torch.Tensor]):
    """x + gate * attn1 + attn2 + c_gate * ffn, the gated adds in float32 as Wan's forward makes them."""
    if x.dtype == torch.float32:  # one fused pass per gated branch
        x = torch.addcmul(x, cached("attn1"), gate) + cached("attn2")
        return torch.addcmul(x, cached("ffn"), c_gate)
    x = (x.float() + cached("attn1") * gate).type_as(x)
    x = x + cached("attn2")
    return (x.float() + cached("ffn").float() * c_gate).type_as(x)


# Wan-Animate's and ChronoEdit's copies of the block have the same forward (diffusers 0.42.1)
LEAN = {"wan": LeanRule(_lean_wan, tuple(f"diffusers.models.transformers.{m}.WanTransformerBlock" for m in (
    "transformer_wan", "transformer_wan_animate", "transformer_chronoedit")))}

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
    ), lean="wan"),
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
