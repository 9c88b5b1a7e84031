"""AnyFlow at a tiny size: the bidirectional flow-map model (and, pending, the FAR-causal one)."""

from __future__ import annotations

import copy

import torch
from diffusers.models.transformers.transformer_anyflow import AnyFlowTransformer3DModel
from diffusers.models.transformers.transformer_anyflow_far import AnyFlowFARTransformer3DModel

from .case import Case

C, F, L, TXT, HEADS, HEAD_DIM = 4, 2, 8, 12, 2, 8  # latent channels and frames; text; attention
ANYFLOW = dict(num_attention_heads=HEADS, attention_head_dim=HEAD_DIM, in_channels=C, out_channels=C, text_dim=TXT,
               freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=32)


def _inputs(model, batch, gen):
    """(B, F, C, H, W) latents (frames first): 2 frames of 8 x 8, 32 tokens; the target timestep r fixed."""
    return {"hidden_states": torch.randn(batch, F, C, 8, 8, generator=gen),
            "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen),
            "r_timestep": torch.full((batch, F), 100.0)}


def _mean_velocity_off(model, batch, gen):
    """The flow map straight to the clean end (target r = 0)."""
    return {"r_timestep": torch.zeros(batch, F)}


def _timestep(t: float, batch: int) -> torch.Tensor:
    return torch.full((batch, F), float(t))  # (B, F): one source timestep per latent frame


def _kv_cache(model, batch):
    cfg, tokens = model.config, (8 // 2) * (8 // 2)
    return {i: {"full_cache": torch.zeros(2, batch, HEADS, cfg.full_chunk_limit * F * tokens, HEAD_DIM),
                "compressed_cache": torch.zeros(2, batch, HEADS, F * tokens // 4, HEAD_DIM)}
            for i in range(cfg.num_layers)}


def _far_inputs(model, batch, gen):
    """The first chunk's denoising calls (FAR inference path: KV cache present, nothing cached yet)."""
    return {**_inputs(model, batch, gen), "chunk_partition": [F], "kv_cache": _kv_cache(model, batch),
            "kv_cache_flag": {"num_cached_chunks": 0, "is_cache_step": False}}


def _far_second_chunk(model, batch, gen):
    """The second chunk: the first one written into the KV cache at t = 0 (uncached, as the pipeline's
    cache step between chunks), then denoising calls that attend to it."""
    kv, flag = _kv_cache(model, batch), {"num_cached_chunks": 0, "is_cache_step": True}
    first = torch.randn(batch, F, C, 8, 8, generator=gen)
    mask = model.build_attention_mask(chunk_partition=[F], height=8, width=8, device=torch.device("cpu"),
                                      mode="cache")
    with torch.no_grad():
        model(hidden_states=first, timestep=torch.zeros(batch, F), r_timestep=torch.zeros(batch, F),
              encoder_hidden_states=torch.randn(batch, L, TXT, generator=gen), chunk_partition=[F],
              attention_mask=mask, kv_cache=kv, kv_cache_flag=copy.deepcopy(flag), return_dict=False)
    return {"chunk_partition": [F, F], "kv_cache": kv,
            "kv_cache_flag": {"num_cached_chunks": 1, "is_cache_step": False}}


CASES = {
    "AnyFlowTransformer3DModel": Case(AnyFlowTransformer3DModel, ANYFLOW, _inputs, timestep=_timestep,
                                      variants={"r_zero": _mean_velocity_off}),
}

# Its self-attention is flex attention, which torch's FlopCounterMode cannot run in eager mode (torch 2.13: "no
# implementation found for 'torch.ops.higher_order.flex_attention'"): its case runs with count_flops=False.
CASES |= {
    "AnyFlowFARTransformer3DModel": Case(
        AnyFlowFARTransformer3DModel, dict(ANYFLOW, full_chunk_limit=3, chunk_partition=(F, F)), _far_inputs,
        timestep=_timestep, variants={"second_chunk": _far_second_chunk}, flops=False),
}
