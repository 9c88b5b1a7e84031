"""The legacy Transformer2DModel (patched, PixArt-alpha form), the unCLIP prior and Cosmos 3's omni model at a
tiny size."""

from __future__ import annotations

import torch
from diffusers import Cosmos3OmniTransformer, PriorTransformer, Transformer2DModel

from .case import Case

L = 8  # text length


def _transformer_2d(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, 4, 8, 8, generator=gen),  # 16 tokens at patch 2
        "encoder_hidden_states": torch.randn(batch, L, 12, generator=gen),
    }


def _transformer_2d_text_mask(model, batch, gen):
    """A padded caption: the cross-attention key mask (B, L), turned into a bias by the model."""
    mask = torch.ones(batch, L)
    mask[:, -3:] = 0
    return {"encoder_attention_mask": mask}


PRIOR_TEXT, PRIOR_DIM = 12, 12  # text tokens (rows: 12 text + embedding + time + image + prd = 16), CLIP width


def _prior(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, PRIOR_DIM, generator=gen),    # the noisy image embedding
        "proj_embedding": torch.randn(batch, PRIOR_DIM, generator=gen),   # the text embedding
        "encoder_hidden_states": torch.randn(batch, PRIOR_TEXT, PRIOR_DIM, generator=gen),
        "attention_mask": torch.ones(batch, PRIOR_TEXT, dtype=torch.bool),  # the causal mask comes with it
    }


def _prior_padded_text(model, batch, gen):
    mask = torch.ones(batch, PRIOR_TEXT, dtype=torch.bool)
    mask[:, -4:] = False
    return {"attention_mask": mask}


# Cosmos 3: one packed sequence (no batch axis: `batch` is not used), [text (und); vision (gen)]: a latent
# video of 2 frames of 8 x 8 at patch 2 = 32 vision tokens, all of them noisy.
TEXT, FRAMES, SIDE, P, LATENT = 8, 2, 8, 2, 4
VISION = FRAMES * (SIDE // P) ** 2
SOUND = 4  # sound frames (the sound variant)


def _positions(n_text: int, grid: tuple[int, int, int], extra: int = 0) -> torch.Tensor:
    """(3, N) mRoPE ids: text on the diagonal, then (t, h, w) of each vision token, then 1-D extra tokens."""
    text = torch.arange(n_text).expand(3, -1)
    t, h, w = torch.meshgrid(*(torch.arange(s) for s in grid), indexing="ij")
    vision = torch.stack([t, h, w]).reshape(3, -1) + n_text
    tail = (torch.arange(extra) + int(vision.max()) + 1).expand(3, -1)
    return torch.cat([text, vision, tail], dim=1)


def _cosmos3(model, batch, gen):
    grid = (FRAMES, SIDE // P, SIDE // P)
    return {
        "input_ids": torch.randint(0, 64, (TEXT,), generator=gen),
        "text_indexes": torch.arange(TEXT),
        "position_ids": _positions(TEXT, grid),
        "und_len": TEXT,
        "sequence_length": TEXT + VISION,
        "vision_tokens": [torch.randn(1, LATENT, FRAMES, SIDE, SIDE, generator=gen)],
        "vision_token_shapes": [grid],
        "vision_sequence_indexes": torch.arange(TEXT, TEXT + VISION),
        "vision_mse_loss_indexes": torch.arange(TEXT, TEXT + VISION),
        "vision_noisy_frame_indexes": [torch.arange(FRAMES)],
    }


def _cosmos3_sound(model, batch, gen):
    """Joint video + sound generation: SOUND noisy sound frames packed after the vision tokens (their
    timestep held at 0.5 here: the step is read from vision_timesteps)."""
    n = TEXT + VISION
    return {
        "sequence_length": n + SOUND,
        "position_ids": _positions(TEXT, (FRAMES, SIDE // P, SIDE // P), SOUND),
        "sound_tokens": [torch.randn(4, SOUND, generator=gen)],
        "sound_token_shapes": [(SOUND, 1, 1)],
        "sound_sequence_indexes": torch.arange(n, n + SOUND),
        "sound_mse_loss_indexes": torch.arange(n, n + SOUND),
        "sound_timesteps": torch.full((SOUND,), 500.0),
        "sound_noisy_frame_indexes": [torch.arange(SOUND)],
    }


CASES = {
    "Transformer2DModel": Case(
        Transformer2DModel,
        dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
             sample_size=8, patch_size=2, cross_attention_dim=32, caption_channels=12,
             norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6),
        _transformer_2d,
        variants={"text_mask": _transformer_2d_text_mask},
        note="the patched PixArt-alpha form (the legacy class PixArt-alpha and DiT checkpoints load into)",
    ),
    "PriorTransformer": Case(
        PriorTransformer,
        dict(num_attention_heads=2, attention_head_dim=16, num_layers=2, embedding_dim=PRIOR_DIM,
             num_embeddings=PRIOR_TEXT, additional_embeddings=4),
        _prior,
        timestep=lambda t, batch: torch.tensor(int(t)),  # the pipeline passes the scheduler's scalar t
        variants={"padded_text": _prior_padded_text},
    ),
    "Cosmos3OmniTransformer": Case(
        Cosmos3OmniTransformer,
        dict(head_dim=16, hidden_size=32, intermediate_size=64, latent_channel=LATENT, latent_patch_size=P,
             num_attention_heads=2, num_hidden_layers=2, num_key_value_heads=1, patch_latent_dim=LATENT * P * P,
             vocab_size=64, rope_axes_dim=(4, 2, 2), sound_dim=4, sound_gen=True),
        _cosmos3,
        timestep=lambda t, batch: torch.full((VISION,), t),  # per noisy vision token, scaled by 0.001 inside
        variants={"sound": _cosmos3_sound},
        note="one packed sample per call (no batch axis)",
    ),
}
