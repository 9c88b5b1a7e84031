"""SkyReels-V2: Wan's block (self-attention with rotary embeddings, cross-attention, MLP), with an optional
block-causal mask and per-frame timesteps (diffusion forcing)."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # attn1: self-attention with rotary embeddings and the block-causal mask (num_frame_per_block > 1); attn2:
    # cross-attention to text (and CLIP image tokens), no rotary embedding; ffn: token-wise. Under diffusion
    # forcing the modulation is per token ((B, 6, N, D) temb), applied outside the branches.
    "SkyReelsV2TransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ffn", "mlp", "tokens"),
    )),
}

MODELS = {
    # Diffusion forcing passes timestep (B, F), one per frame. Without a followed scheduler (a bare model in
    # a user loop) steps are told apart by its largest element, which asynchronous schedules (ar_step > 0)
    # hold at the start value while the last frames wait: pass the pipeline, whose scheduler delimits steps.
    "SkyReelsV2Transformer3DModel": ModelSpec(grid="patch3d"),
}
