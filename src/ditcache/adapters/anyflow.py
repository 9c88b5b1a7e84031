"""AnyFlow: a Wan 2.1 backbone distilled into a flow map (each call conditions on the source timestep t and
the target r), bidirectional or FAR-causal (chunk-wise autoregressive, with a KV cache of past chunks)."""

from __future__ import annotations

from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def _frames_first(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    x = inputs["hidden_states"]  # (B, F, C, H, W): AnyFlow puts frames before channels
    pf, ph, pw = model.config.patch_size
    return (x.shape[1] // pf, x.shape[3] // ph, x.shape[4] // pw)


GRIDS = {"anyflow_frames_first": _frames_first}

BLOCKS = {
    # Both models' block (AnyFlowTransformerBlock, defined in each file): attn1 self-attention with rotary
    # embeddings (FAR: a block-causal flex mask, and the KV cache of past chunks read or written inside it);
    # attn2 cross-attention to text (called with keywords), no rotary embedding; ffn token-wise.
    "AnyFlowTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ffn", "mlp", "tokens"),
    )),
}

MODELS = {
    "AnyFlowTransformer3DModel": ModelSpec(grid="anyflow_frames_first"),
    # FAR inference: each chunk's denoising calls attend to the KV cache of past chunks; after a chunk the
    # pipeline writes it into the cache with a call at t = 0 (kv_cache_flag["is_cache_step"]), which must
    # compute every site (a reused self-attention would not write the cache). Under the pipeline that call
    # comes after the chunk's last scheduler step, so ditcache counts it as the first step of a new
    # generation, which every method computes; with a bare model, keep that call outside the ditcache run.
    "AnyFlowFARTransformer3DModel": ModelSpec(grid="anyflow_frames_first"),
}
