"""LTX-Video and LTX-2 (video + audio): patchified token inputs, self-attention with rotary embeddings,
cross-attention to text, MLP; LTX-2 runs an audio stream beside the video one, with audio-to-video and
video-to-audio cross-attention between them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec


def _lean_ltx(block: nn.Module, inputs: dict, cached: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """LTXVideoTransformerBlock's output from its cached branches: x + attn1 * gate_msa + attn2 + ff * gate_mlp,
    the gates (per token: temb is (B, N or 1, 6 D)) from this call's temb and the block's table; its two norms
    and modulations are skipped."""
    x, temb = inputs["hidden_states"], inputs["temb"]                                   # (B, N, D)
    table = block.scale_shift_table
    ada = table[None, None].to(temb.device) + temb.reshape(x.size(0), temb.size(1), table.shape[0], -1)
    gates = ada.unbind(dim=2)                                                           # 6 x (B, N or 1, D)
    x = x + cached("attn1") * gates[2]
    x = x + cached("attn2")
    return x + cached("ff") * gates[5]


LEAN = {"ltx": LeanRule(_lean_ltx, ("diffusers.models.transformers.transformer_ltx.LTXVideoTransformerBlock",))}


def _ltx(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    # LTX-Video: hidden_states (B, N, C) are already patchified; num_frames / height / width are the token
    # grid (its rotary coordinates are arange(num_frames) x arange(height) x arange(width)).
    return (int(inputs["num_frames"]), int(inputs["height"]), int(inputs["width"]))


def _ltx2(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    # LTX-2: num_frames / height / width are latent sizes, patchified by patch_size_t / patch_size (rounded up,
    # as its rotary coordinates are arange(0, size, patch)).
    p, pt = model.config.patch_size, model.config.patch_size_t
    return (-(-int(inputs["num_frames"]) // pt), -(-int(inputs["height"]) // p), -(-int(inputs["width"]) // p))


GRIDS = {"ltx": _ltx, "ltx2": _ltx2}

BLOCKS = {
    # LTX-Video: attn1 self-attention with rotary embeddings; attn2 cross-attention to text, its queries the
    # un-normalised image rows (first argument), no rotary embedding; ff token-wise.
    "LTXVideoTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    ), lean="ltx"),
    # LTX-2: returns (video, audio). Video: attn1 (rotary; STG's perturbed processor inside), attn2 (text
    # cross-attention, no rotary on the queries; its optional per-token gate is token-wise), audio_to_video_attn
    # (queries video with rotary rows, keys audio: no token path), ff. Audio: audio_attn1, audio_attn2,
    # video_to_audio_attn (queries audio, keys video), audio_ff, marked "text" (the block's second stream: no
    # token grid, ClusCa's "probe-text" is its audio output); no token path on them, as ToCa and ClusCa score
    # and cluster the second stream as text. a2v / v2a do not run under isolate_modalities.
    "LTX2VideoTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("audio_attn1", "attn", stream="text"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("audio_attn2", "cross_attn", stream="text"),
        Branch("audio_to_video_attn", "cross_attn"),
        Branch("video_to_audio_attn", "cross_attn", stream="text"),
        Branch("ff", "mlp", "tokens"),
        Branch("audio_ff", "mlp", stream="text"),
    ), image_out=0),
}

MODELS = {
    # timestep may be (B, N), one per token (conditioning tokens at 0; steps are read from its largest
    # element). norm_out takes the video rows.
    "LTXVideoTransformer3DModel": ModelSpec(grid="ltx"),
    # No final layer: the model denoises two streams and each has its own (norm_out on video, audio_norm_out
    # on audio), so a method that skips the blocks and forecasts the final layer's input (FreqCa) would
    # leave the audio stream without its blocks.
    "LTX2VideoTransformer3DModel": ModelSpec(grid="ltx2", final=None),
}
