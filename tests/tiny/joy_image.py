"""JoyImage-Edit (a single image, or the target with a reference item) and JoyImage-Edit-Plus (padded patch
sequences of the target and its references)."""

from __future__ import annotations

import torch
from diffusers import JoyImageEditPlusTransformer3DModel, JoyImageEditTransformer3DModel

from .case import Case

TEXT = 8
_CONFIG = dict(patch_size=[1, 2, 2], in_channels=4, hidden_size=32, num_attention_heads=2, text_dim=32,
               mlp_width_ratio=2.0, num_layers=2, rope_dim_list=[4, 6, 6])


def _edit_inputs(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, 4, 1, 8, 8, generator=gen),                  # (B, C, T, H, W)
        "encoder_hidden_states": torch.randn(batch, TEXT, 32, generator=gen),
    }


def _edit_reference(model, batch, gen):
    """Multi-item input (B, N, C, T, H, W): the last item is the target, the others reference images."""
    return {"hidden_states": torch.randn(batch, 2, 4, 1, 8, 8, generator=gen)}


def _plus_inputs(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, 16, 4, 1, 2, 2, generator=gen),              # (B, patches, C, pt, ph, pw)
        "encoder_hidden_states": torch.randn(batch, TEXT, 32, generator=gen),
        "encoder_hidden_states_mask": torch.ones(batch, TEXT),
        "shape_list": [[(1, 4, 4)]] * batch,
    }


def _plus_references(model, batch, gen):
    """The target (4 x 4 patches) and a 2 x 4 reference, padded to 28 patches; the prompt's last two
    positions are padding."""
    mask = torch.ones(batch, TEXT)
    mask[:, -2:] = 0
    return {
        "hidden_states": torch.randn(batch, 28, 4, 1, 2, 2, generator=gen),
        "shape_list": [[(1, 4, 4), (1, 2, 4)]] * batch,
        "encoder_hidden_states_mask": mask,
    }


CASES = {
    "JoyImageEditTransformer3DModel": Case(JoyImageEditTransformer3DModel, dict(_CONFIG), _edit_inputs,
                                           variants={"reference": _edit_reference}),
    "JoyImageEditPlusTransformer3DModel": Case(JoyImageEditPlusTransformer3DModel, dict(_CONFIG), _plus_inputs,
                                               variants={"references": _plus_references}),
}
