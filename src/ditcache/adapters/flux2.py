"""FLUX.2 (Flux2Transformer2DModel): double-stream blocks (joint attention over [text; image], separate SwiGLU
MLPs), then single-stream blocks whose ``attn`` is a parallel attention + MLP (one fused input projection, one
fused output projection) whose output the block gates itself."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .spec import BlockSpec, Branch, LeanRule, ModelSpec


def flux2_ids(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    """(1, H, W) of the generated image from its (t, h, w, l) position ids. Reference images concatenated to
    hidden_states (multi-reference editing) sit on other t planes (10, 20, ...) and are left out."""
    ids = inputs["img_ids"]                     # (N, 4) or (B, N, 4)
    ids = ids[0] if ids.ndim == 3 else ids
    own = ids[ids[:, 0] == ids[0, 0]]           # (H * W, 4): the generated image's plane
    return (1, int(own[:, 1].max()) + 1, int(own[:, 2].max()) + 1)


GRIDS = {"flux2_ids": flux2_ids}


def _gates(mod: torch.Tensor, sets: int) -> tuple[torch.Tensor, ...]:
    """The gate of each of ``sets`` (shift, scale, gate) triples in a FLUX.2 modulation (B, 3 * sets * D) or
    (B, 1, 3 * sets * D), as the model's Flux2Modulation.split lays them out: each (B, 1, D)."""
    mod = mod.unsqueeze(1) if mod.ndim == 2 else mod
    chunks = mod.chunk(3 * sets, dim=-1)
    return tuple(chunks[3 * i + 2] for i in range(sets))


def _lean_flux2_double(block: nn.Module, inputs: dict, cached: Callable[[str], object]) -> tuple:
    """Flux2TransformerBlock's (text, image) output from its cached branches: each stream x + gate_msa * attn
    + gate_mlp * ff, the gates from the model's shared modulations of this call (temb_mod_img, temb_mod_txt);
    the four norms and their modulations are skipped."""
    gate_msa, gate_mlp = _gates(inputs["temb_mod_img"], 2)
    c_gate_msa, c_gate_mlp = _gates(inputs["temb_mod_txt"], 2)
    attn, context_attn = cached("attn")                                      # (B, N, D), (B, L, D)
    image = torch.addcmul(inputs["hidden_states"], gate_msa, attn)
    image = torch.addcmul(image, gate_mlp, cached("ff"))
    text = torch.addcmul(inputs["encoder_hidden_states"], c_gate_msa, context_attn)
    text = torch.addcmul(text, c_gate_mlp, cached("ff_context"))
    if text.dtype == torch.float16:
        text = text.clip(-65504, 65504)
    return text, image


def _lean_flux2_single(block: nn.Module, inputs: dict, cached: Callable[[str], object]):
    """Flux2SingleTransformerBlock's output from its cached parallel attention + MLP: [text; image] + gate *
    attn (split back into (text, image) when asked), the gate from this call's temb_mod; its norm and
    modulation are skipped."""
    x, text = inputs["hidden_states"], inputs.get("encoder_hidden_states")
    text_len = inputs.get("text_seq_len")
    if text is not None:  # the streams come apart: join them as the forward does
        text_len = text.shape[1]
        x = torch.cat([text, x], dim=1)                                        # (B, L + N, D)
    (gate,) = _gates(inputs["temb_mod"], 1)
    x = torch.addcmul(x, gate, cached("attn"))
    if x.dtype == torch.float16:
        x = x.clip(-65504, 65504)
    if inputs.get("split_hidden_states", False):
        return x[:, :text_len], x[:, text_len:]
    return x


_MODULE = "diffusers.models.transformers.transformer_flux2"
LEAN = {"flux2_double": LeanRule(_lean_flux2_double, (f"{_MODULE}.Flux2TransformerBlock",)),
        "flux2_single": LeanRule(_lean_flux2_single, (f"{_MODULE}.Flux2SingleTransformerBlock",))}

BLOCKS = {
    # FLUX.2 double stream: attn is joint attention over [text; image] (rotary on both) returning (image, text);
    # ff / ff_context are token-wise SwiGLU MLPs on one stream each. Returns (text, image).
    "Flux2TransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1, lean="flux2_double"),
    # FLUX.2 single stream: attn (Flux2ParallelSelfAttention) is attention and MLP fused into one module over the
    # joined [text; image] sequence; its output is the pre-gate branch output (the block applies the step's gate and
    # residual), so it is one branch of its own, no FINISH rule needed. Rotary self-attention over both streams:
    # no token path. The model calls it with the streams already joined, so it returns one tensor.
    "Flux2SingleTransformerBlock": BlockSpec((Branch("attn", "attn", stream="joint"),), lean="flux2_single"),
}

MODELS = {
    # timestep in [0, 1] (the pipeline passes t / 1000; the model scales by 1000). norm_out sees the image tokens
    # after the text (and, in KV-extract mode, reference) tokens are sliced off.
    "Flux2Transformer2DModel": ModelSpec(grid="flux2_ids"),
}
