"""HunyuanVideo's variants at a tiny size: Framepack (next-frame-section packing of history latents)."""

from __future__ import annotations

import torch
from diffusers import HunyuanVideoFramepackTransformer3DModel

from .case import Case

C, L, TXT, POOL, CLIP = 4, 8, 12, 10, 12  # latent channels; text length, width, pooled width; CLIP width
WINDOW, HISTORY, H, W = 2, (1, 2, 4), 4, 8  # latent frames generated; history frames at 1x, 2x, 4x; latent size


def _framepack_latents(batch, gen, indices):
    """The latent window and its history, laid out as the pipeline's "vanilla" sampling does: indices
    arange(1 + 4 + 2 + 1 + 2) split as [prefix, 4x, 2x, 1x, latents]; the clean latents are the prefix (the
    input image) and the 1x history. At 4 x 8 latents: 16 + 16 clean + 2 (2x) + 1 (4x) image tokens (the
    history padded to whole 2x / 4x patches)."""
    prefix, h4, h2, h1, latent = indices.split([1, HISTORY[2], HISTORY[1], HISTORY[0], WINDOW])
    return {"hidden_states": torch.randn(batch, C, WINDOW, H, W, generator=gen), "indices_latents": latent,
            "latents_clean": torch.randn(batch, C, 1 + HISTORY[0], H, W, generator=gen),
            "indices_latents_clean": torch.cat([prefix, h1]),
            "latents_history_2x": torch.randn(batch, C, HISTORY[1], H, W, generator=gen),
            "indices_latents_history_2x": h2,
            "latents_history_4x": torch.randn(batch, C, HISTORY[2], H, W, generator=gen),
            "indices_latents_history_4x": h4}


def _framepack_inputs(model, batch, gen):
    """Every history input is required by the forward (it reads their rotary embeddings unconditionally)."""
    return {**_framepack_latents(batch, gen, torch.arange(1 + sum(HISTORY) + WINDOW)),
            "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen),
            "encoder_attention_mask": torch.ones(batch, L, dtype=torch.long),
            "pooled_projections": torch.randn(batch, POOL, generator=gen),
            "image_embeds": torch.randn(batch, 4, CLIP, generator=gen),
            "guidance": torch.full((batch,), 6000.0)}


def _framepack_inverted(model, batch, gen):
    """The inverted anti-drifting layout: indices split as [prefix, padding, latents, 1x, 2x, 4x] (the
    window is generated before its history in time)."""
    indices = torch.arange(1 + WINDOW + WINDOW + sum(HISTORY))
    prefix, _, latent, h1, h2, h4 = indices.split([1, WINDOW, WINDOW, *HISTORY])
    return {"indices_latents": latent, "indices_latents_clean": torch.cat([prefix, h1]),
            "indices_latents_history_2x": h2, "indices_latents_history_4x": h4}


def _framepack_padded_prompt(model, batch, gen):
    """A shorter second prompt: the blocks' attention mask ends each sample's sequence at its valid text."""
    mask = torch.ones(batch, L, dtype=torch.long)
    mask[1:, L - 3:] = 0
    return {"encoder_attention_mask": mask}


CASES = {
    "HunyuanVideoFramepackTransformer3DModel": Case(
        HunyuanVideoFramepackTransformer3DModel, dict(
            in_channels=C, out_channels=C, num_attention_heads=2, attention_head_dim=8, num_layers=1,
            num_single_layers=1, num_refiner_layers=1, patch_size=2, patch_size_t=1, guidance_embeds=True,
            text_embed_dim=TXT, pooled_projection_dim=POOL, rope_axes_dim=(2, 2, 4), has_image_proj=True,
            image_proj_dim=CLIP, has_clean_x_embedder=True),
        _framepack_inputs, variants={"inverted_layout": _framepack_inverted,
                                     "padded_prompt": _framepack_padded_prompt}),
}
