"""NucleusMoE-Image: one dense block and one Mixture-of-Experts block."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import NucleusMoEImageTransformer2DModel

from .case import Case

TEXT = 8


@dataclass
class _ExpertsInit(Case):
    """The MoE experts' packed weights are allocated with torch.empty (set by checkpoint loading): draw them."""

    def build(self, seed: int = 0):
        model = super().build(seed)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".experts." in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * p.shape[-2] ** -0.5)
        return model


def _inputs(model, batch, gen):
    c = model.config
    return {
        "hidden_states": torch.randn(batch, 16, c.in_channels, generator=gen),                 # (B, N, C) packed
        "img_shapes": [(1, 4, 4)] * batch,
        "encoder_hidden_states": torch.randn(batch, TEXT, c.joint_attention_dim, generator=gen),
        "encoder_hidden_states_mask": torch.ones(batch, TEXT, dtype=torch.bool),
    }


CASES = {
    "NucleusMoEImageTransformer2DModel": _ExpertsInit(
        NucleusMoEImageTransformer2DModel,
        # mlp_ratio 6: the dense inner width is rounded down to a multiple of 128 (int(32 * 6 * 2 / 3) -> 128);
        # block 0 dense, block 1 MoE (4 experts, expert-choice capacity 2 * 16 / 4 tokens each).
        dict(patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
             num_key_value_heads=1, joint_attention_dim=32, axes_dims_rope=(4, 6, 6), mlp_ratio=6.0,
             dense_moe_strategy="leave_first_block_dense", num_experts=4, moe_intermediate_dim=32,
             capacity_factors=2.0),
        _inputs,
    ),
}
