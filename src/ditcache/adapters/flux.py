"""FLUX.1: double-stream blocks (joint attention, separate image and text MLPs), then single-stream blocks
whose attention and MLP share one fused output projection."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..tokens import gather_tokens
from .spec import BlockSpec, Branch, LeanRule, ModelSpec, adaln_chunks


def _finish_flux_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FluxSingleTransformerBlock after its proj_out: x + gate * pre over [text; image], split back."""
    text, image = inputs["encoder_hidden_states"], inputs["hidden_states"]   # (B, L, D), (B, N, D)
    x = torch.cat([text, image], dim=1)                                      # (B, L + N, D)
    gate = adaln_chunks(block.norm, inputs["temb"], 3)[2]                    # (B, D): this step's gate
    out = torch.addcmul(x, gate.unsqueeze(1), pre)
    if out.dtype == torch.float16:
        out = out.clip(-65504, 65504)
    return out[:, : text.shape[1]], out[:, text.shape[1]:]


def gated_double(image: torch.Tensor, text: torch.Tensor, mods: tuple, c_mods: tuple,
                 cached: Callable[..., object], norms: tuple | None = None) -> tuple:
    """A FLUX.1-style double block's (text, image) output from its cached branches and each stream's six
    modulation chunks (each (B, D)): x + gate_msa * attn + gate_mlp * ff per stream (an IP-adapter's third
    attention output added to the image ungated), the text clipped in float16 as the forward does. With
    ``norms`` (the block's norm2, norm2_context), an MLP computing a token subset gets its input at those
    rows: the norm and the modulation (shift chunk 3, scale chunk 4) run on them only."""
    attn = cached("attn")                                           # (image, text[, ip]) each (B, *, D)
    image = torch.addcmul(image, mods[2].unsqueeze(1), attn[0])
    image = torch.addcmul(image, mods[5].unsqueeze(1), cached("ff", _mlp_rows(image, mods, norms, 0)))
    if len(attn) == 3:
        image = image + attn[2]
    text = torch.addcmul(text, c_mods[2].unsqueeze(1), attn[1])
    text = torch.addcmul(text, c_mods[5].unsqueeze(1), cached("ff_context", _mlp_rows(text, c_mods, norms, 1)))
    if text.dtype == torch.float16:
        text = text.clip(-65504, 65504)
    return text, image


def _mlp_rows(x: torch.Tensor, mods: tuple, norms: tuple | None, which: int):
    """rows(idx): a double block's MLP input at rows idx (B, k) of its stream x (B, N, D), as its forward builds
    it for every row: norm2(x) * (1 + scale) + shift. None without the norms (the rule then serves no PARTIAL)."""
    if norms is None:
        return None
    return lambda idx: norms[which](gather_tokens(x, idx)) * (1 + mods[4][:, None]) + mods[3][:, None]


def _lean_flux_double(block: nn.Module, inputs: dict, cached: Callable[..., object]) -> tuple | None:
    """FluxTransformerBlock's (text, image) output from its cached branches, the six gates of each stream from
    this call's temb through its adaLN-zero norm; the four norms and modulations that feed the branches are
    skipped (those of an MLP computing a token subset run on its rows)."""
    temb = inputs["temb"]
    return gated_double(inputs["hidden_states"], inputs["encoder_hidden_states"],
                        adaln_chunks(block.norm1, temb, 6), adaln_chunks(block.norm1_context, temb, 6), cached,
                        norms=(block.norm2, block.norm2_context))


FINISH = {"flux_single": _finish_flux_single}
# FLUX.1's double block and the copies of it whose forward is the same (diffusers 0.42.1; Bria's names its
# attention kwargs differently, which the rule does not read)
LEAN = {"flux_double": LeanRule(_lean_flux_double, tuple(f"diffusers.models.transformers.{m}" for m in (
    "transformer_flux.FluxTransformerBlock", "transformer_bria.BriaTransformerBlock",
    "transformer_bria_fibo.BriaFiboTransformerBlock", "transformer_longcat_image.LongCatImageTransformerBlock",
    "transformer_ovis_image.OvisImageTransformerBlock")), partial=("ff", "ff_context"))}

BLOCKS = {
    # Flux double stream: joint attention returns (image, text) outputs; separate image / text MLPs.
    "FluxTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1, lean="flux_double"),
    # Flux single stream: attention and MLP are fused into one projection: cache the whole block, as its
    # pre-gate proj_out output, so a cached step applies its own gate.
    "FluxSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("encoder_hidden_states", "hidden_states"), image_out=1,
        pre_gate="proj_out", finish="flux_single",
    ),
}

MODELS = {"FluxTransformer2DModel": ModelSpec(grid="flux_ids")}
