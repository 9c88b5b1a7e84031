"""Z-Image at a tiny size: lists of per-sample latents and captions, t in [0, 1] (0 = noise)."""

from __future__ import annotations

import torch
from diffusers import ZImageTransformer2DModel

from .case import Case

C, H, W, L = 4, 8, 8, 8  # latent channels, latent size (16 tokens at patch 2), caption length
CAP, SIGLIP = 16, 8      # caption and SigLIP feature widths


def _inputs(model, batch, gen):
    return {
        "x": [torch.randn(C, 1, H, W, generator=gen) for _ in range(batch)],
        "cap_feats": [torch.randn(L, CAP, generator=gen) for _ in range(batch)],
    }


def _omni(model, batch, gen):
    """Omni mode: per sample a condition image and the target, one caption each, SigLIP tokens of the
    condition image, and the noise mask (condition clean, target noisy)."""
    return {
        "x": [[torch.randn(C, 1, H, W, generator=gen) for _ in range(2)] for _ in range(batch)],
        "cap_feats": [[torch.randn(L, CAP, generator=gen) for _ in range(2)] for _ in range(batch)],
        "siglip_feats": [[torch.randn(4, 4, SIGLIP, generator=gen), None] for _ in range(batch)],
        "image_noise_mask": [[0, 1] for _ in range(batch)],
    }


def _controlnet(model, batch, gen):
    """Control residuals added after main layer 0 (the unified sequence: 32 image + 32 caption rows)."""
    return {"controlnet_block_samples": {0: 0.1 * torch.randn(batch, 64, 32, generator=gen)}}


CASES = {
    "ZImageTransformer2DModel": Case(
        ZImageTransformer2DModel,
        dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=C, dim=32, n_layers=2, n_refiner_layers=1,
             n_heads=2, n_kv_heads=2, cap_feat_dim=CAP, siglip_feat_dim=SIGLIP, axes_dims=[4, 6, 6],
             axes_lens=[64, 32, 32]),
        _inputs,
        timestep=lambda t, batch: torch.full((batch,), (1000.0 - t) / 1000.0),  # as the pipeline: 0 = noise, 1 = clean
        variants={"omni": _omni, "controlnet": _controlnet},
    ),
}
