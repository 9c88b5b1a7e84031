"""PRX at a tiny size."""

from __future__ import annotations

import torch
from diffusers import PRXTransformer2DModel

from .case import Case

C, H, W, L, CAP = 4, 8, 8, 8, 16  # latent channels, latent size (16 tokens at patch 2), caption length, width


def _unzero_modulation(model) -> None:
    """PRX zero-initialises every block's modulation (all gates 0: each block is the identity), which leaves
    nothing to cache or forecast. Give them small random weights, once per built model (a trained model's
    are nonzero). Case has no init hook, so this runs from the inputs function, on its own generator."""
    gen = torch.Generator().manual_seed(1)
    for block in model.blocks:
        lin = block.modulation.lin
        if not lin.weight.any():
            with torch.no_grad():
                lin.weight.copy_(0.05 * torch.randn(lin.weight.shape, generator=gen))
                lin.bias.copy_(0.05 * torch.randn(lin.bias.shape, generator=gen))


def _inputs(model, batch, gen):
    _unzero_modulation(model)
    mask = torch.ones(batch, L, dtype=torch.bool)
    mask[1:, L - 2:] = False  # the second prompt is shorter
    return {"hidden_states": torch.randn(batch, C, H, W, generator=gen),
            "encoder_hidden_states": torch.randn(batch, L, CAP, generator=gen), "attention_mask": mask}


CASES = {
    "PRXTransformer2DModel": Case(
        PRXTransformer2DModel,
        dict(in_channels=C, patch_size=2, context_in_dim=CAP, hidden_size=32, mlp_ratio=2.0, num_heads=2, depth=2,
             axes_dim=[8, 8], resolution_embeds=True),
        _inputs,
        note="resolution_embeds=True, as the PRX-7B variant: the (H, W) embedding joins the timestep vector",
    ),
}
