"""Qwen-Image (text-to-image, Edit's reference latents, ControlNet residuals) and Qwen-Image 2.1."""

from __future__ import annotations

import torch
from diffusers import QwenImage21Transformer2DModel, QwenImageTransformer2DModel

from .case import Case

TEXT = 8
GRID = (1, 4, 4)  # (frames, h, w) of the packed latent tokens: 16 image tokens


def _qwen_inputs(model, batch, gen):
    c = model.config
    return {
        "hidden_states": torch.randn(batch, 16, c.in_channels, generator=gen),                # (B, N, C) packed
        "encoder_hidden_states": torch.randn(batch, TEXT, c.joint_attention_dim, generator=gen),
        "encoder_hidden_states_mask": torch.ones(batch, TEXT, dtype=torch.long),
        "img_shapes": [[GRID]] * batch,
    }


def _qwen_edit(model, batch, gen):
    """Qwen-Image-Edit: the reference image's latents follow the target's, and img_shapes lists both."""
    c = model.config
    ref = (1, 2, 4)
    return {
        "hidden_states": torch.randn(batch, 16 + 8, c.in_channels, generator=gen),
        "img_shapes": [[GRID, ref]] * batch,
    }


def _qwen_controlnet(model, batch, gen):
    """ControlNet residuals added to the image stream after the blocks (one per control block)."""
    dim = model.config.num_attention_heads * model.config.attention_head_dim
    return {"controlnet_block_samples": [torch.randn(batch, 16, dim, generator=gen) for _ in range(2)]}


def _qwen21_inputs(model, batch, gen):
    """Text-to-image: the vision-language sequence is the prompt's positions, then one slot per 2 x 2 group
    of target latents (img_mask True there); the target latents fill those slots."""
    c = model.config
    slots = 16 // 4
    return {
        "hidden_states": torch.randn(batch, 16, c.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(batch, TEXT, c.context_in_dim, generator=gen),
        "encoder_hidden_states_mask": torch.ones(batch, TEXT, dtype=torch.bool),
        "img_shapes": [[GRID]] * batch,
        "img_mask": torch.cat([torch.zeros(batch, TEXT, dtype=torch.bool), torch.ones(batch, slots, dtype=torch.bool)],
                              dim=1),
    }


def _qwen21_edit(model, batch, gen):
    """Editing: a condition image's slots inside the prompt (its latents come first, the target last)."""
    c = model.config
    vlm = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1], dtype=torch.bool)  # 4 cond + 4 target slots
    return {
        "hidden_states": torch.randn(batch, 16 + 16, c.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(batch, 12, c.context_in_dim, generator=gen),   # the VLM positions
        "encoder_hidden_states_mask": torch.ones(batch, 12, dtype=torch.bool),
        "img_shapes": [[GRID, GRID]] * batch,
        "img_mask": vlm.expand(batch, -1),
    }


CASES = {
    "QwenImageTransformer2DModel": Case(
        QwenImageTransformer2DModel,
        dict(patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
             joint_attention_dim=32, axes_dims_rope=(4, 6, 6)),
        _qwen_inputs, variants={"edit": _qwen_edit, "controlnet": _qwen_controlnet},
    ),
    "QwenImage21Transformer2DModel": Case(
        QwenImage21Transformer2DModel,
        dict(patch_size=1, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2,
             context_in_dim=32, mlp_ratio=2, axes_dims_rope=(4, 6, 6)),
        _qwen21_inputs, timestep=lambda t, batch: torch.full((batch,), t / 1000), variants={"edit": _qwen21_edit},
        note="no kv_cache: its first call ('extract') runs every row, later ones ('cached') only the target's, "
             "so a site reused after the first step returns the wrong row count (pipeline: use_kv_cache=False)",
    ),
}
