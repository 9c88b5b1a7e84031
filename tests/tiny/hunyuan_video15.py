"""HunyuanVideo 1.5 at a tiny size."""

from __future__ import annotations

import torch
from diffusers import HunyuanVideo15Transformer3DModel

from .case import Case

C, L, TXT, CLIP = 4, 8, 12, 12  # latent channels; text length and width (both encoders); image-embed width


def _inputs(model, batch, gen):
    """Text to video: the prompt (second one shorter), ByT5 glyph tokens, and all-zero image embeddings
    (the model then masks the image-condition tokens out). 2 x 4 x 4 latents at patch 1: 32 tokens."""
    mask = torch.ones(batch, L, dtype=torch.long)
    mask[1:, L - 2:] = 0
    return {"hidden_states": torch.randn(batch, C, 2, 4, 4, generator=gen),
            "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen), "encoder_attention_mask": mask,
            "encoder_hidden_states_2": torch.randn(batch, 4, TXT, generator=gen),
            "encoder_attention_mask_2": torch.ones(batch, 4, dtype=torch.long),
            "image_embeds": torch.zeros(batch, 4, CLIP)}


def _image_to_video(model, batch, gen):
    """Image to video: real image embeddings, joined to the text stream as valid tokens."""
    return {"image_embeds": torch.randn(batch, 4, CLIP, generator=gen)}


def _meanflow(model, batch, gen):
    """MeanFlow (the step-distilled and super-resolution checkpoints): a reference timestep r."""
    return {"timestep_r": torch.full((batch,), 250.0)}


CASES = {
    "HunyuanVideo15Transformer3DModel": Case(
        HunyuanVideo15Transformer3DModel, dict(
            in_channels=C, out_channels=C, num_attention_heads=2, attention_head_dim=8, num_layers=2,
            num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=TXT,
            text_embed_2_dim=TXT, image_embed_dim=CLIP, rope_axes_dim=(2, 2, 4), use_meanflow=True),
        _inputs, variants={"image_to_video": _image_to_video, "meanflow": _meanflow}),
}
