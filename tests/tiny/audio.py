"""Audio DiTs at a tiny size: 1-D latent sequences of 16 frames (plus the tokens some prepend), t in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import (
    AceStepTransformer1DModel,
    LongCatAudioDiTTransformer,
    MiniMaxMusic3Transformer1DModel,
    StableAudio3DiTModel,
    StableAudioDiTModel,
    T5FilmDecoder,
)
from diffusers.models.embeddings import get_1d_rotary_pos_embed

from .case import Case

C, T, L, TEXT = 4, 16, 8, 12  # latent channels, latent frames (tokens), text length, text feature width


def unit_timestep(t: float, batch: int) -> torch.Tensor:
    """(B,) flow-matching time in [0, 1] (these models scale it themselves)."""
    return torch.full((batch,), t / 1000.0)


@dataclass
class DrawnCase(Case):
    """A case whose class zero-initialises some output or gate layers (its outputs, or its branches'
    contribution, would be identically zero at random init): those parameters are drawn at random."""

    zero_init: tuple[str, ...] = ()  # parameter-name prefixes to draw

    def build(self, seed: int = 0) -> torch.nn.Module:
        model = super().build(seed)
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith(self.zero_init):
                    p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        return model


def _ace_step(model, batch, gen):
    # 2 T frames at patch 2 = T tokens; context_latents = [source latents; chunk mask] (C + 1 channels)
    return {
        "hidden_states": torch.randn(batch, 2 * T, C, generator=gen),
        "timestep_r": torch.zeros(batch),  # r: the mean-flow reference time (pipelines pass r = t)
        "encoder_hidden_states": torch.randn(batch, L, 16, generator=gen),
        "context_latents": torch.randn(batch, 2 * T, C + 1, generator=gen),
    }


def _stable_audio(model, batch, gen):
    # rows: [global token; T frames]; the pipeline's rotary table covers both, over half the head width
    cos, sin = get_1d_rotary_pos_embed(8, T + 1, use_real=True, repeat_interleave_real=False)
    return {
        "hidden_states": torch.randn(batch, C, T, generator=gen),
        "encoder_hidden_states": torch.randn(batch, L, TEXT, generator=gen),
        "global_hidden_states": torch.randn(batch, 1, TEXT, generator=gen),
        "rotary_embedding": (cos, sin),
    }


def _stable_audio_masks(model, batch, gen):
    """Padding masks over the frames (self-attention keys) and the text (cross-attention keys)."""
    text = torch.ones(batch, L, dtype=torch.bool)
    text[:, -2:] = False
    return {"attention_mask": torch.ones(batch, T, dtype=torch.bool), "encoder_attention_mask": text}


def _stable_audio_3(model, batch, gen):
    text = torch.ones(batch, L, dtype=torch.bool)
    text[:, -2:] = False  # padded text positions get the learned padding embedding
    return {
        "hidden_states": torch.randn(batch, C, T, generator=gen),
        "encoder_hidden_states": torch.randn(batch, L, TEXT, generator=gen),
        "global_hidden_states": torch.randn(batch, TEXT, generator=gen),
        "encoder_attention_mask": text,
    }


def _stable_audio_3_inpaint(model, batch, gen):
    """Inpainting: the local-additive conditioning, added to the frames' residual in every block."""
    return {"local_add_cond": torch.randn(batch, 5, T, generator=gen)}


def _longcat(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, T, C, generator=gen),
        "encoder_hidden_states": torch.randn(batch, L, TEXT, generator=gen),
        "encoder_attention_mask": torch.ones(batch, L, dtype=torch.bool),
    }


def _longcat_prompt_audio(model, batch, gen):
    """Voice-prompted generation: the prompt audio's latents as latent_cond, and the frames' mask."""
    return {"latent_cond": torch.randn(batch, T, C, generator=gen),
            "attention_mask": torch.ones(batch, T, dtype=torch.bool)}


def _minimax(model, batch, gen):
    return {
        "hidden_states": torch.randn(batch, C, T, generator=gen),
        "encoder_hidden_states": torch.randn(batch, T, 8, generator=gen),  # frame-aligned LM states
    }


def _t5_film(model, batch, gen):
    # two encoders' outputs (notes, continuous context) with their masks, as the pipeline passes them
    return {
        "encodings_and_masks": [
            (torch.randn(batch, L, 32, generator=gen), torch.ones(batch, L)),
            (torch.randn(batch, 4, 32, generator=gen), torch.ones(batch, 4)),
        ],
        "decoder_input_tokens": torch.randn(batch, T, C, generator=gen),
    }


CASES = {
    "AceStepTransformer1DModel": Case(
        AceStepTransformer1DModel,
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, head_dim=16, in_channels=2 * C + 1, audio_acoustic_hidden_dim=C,
             patch_size=2, sliding_window=4, encoder_hidden_size=16),
        _ace_step,
        timestep=unit_timestep,
        note="layer 0 sliding-window attention (window 4), layer 1 full; GQA (2 query heads, 1 key/value head)",
    ),
    "StableAudioDiTModel": Case(
        StableAudioDiTModel,
        dict(sample_size=T, in_channels=C, num_layers=2, attention_head_dim=16, num_attention_heads=2,
             num_key_value_attention_heads=1, out_channels=C, cross_attention_dim=16, time_proj_dim=16,
             global_states_input_dim=TEXT, cross_attention_input_dim=TEXT),
        _stable_audio,
        variants={"masks": _stable_audio_masks},
    ),
    "StableAudio3DiTModel": DrawnCase(
        StableAudio3DiTModel,
        dict(io_channels=C, embed_dim=32, depth=2, num_heads=2, cond_token_dim=TEXT, global_cond_dim=TEXT,
             local_add_cond_dim=5, timestep_features_dim=16, ff_mult=2.0, num_memory_tokens=4),
        _stable_audio_3,
        timestep=unit_timestep,
        variants={"inpaint": _stable_audio_3_inpaint},
        zero_init=("preprocess_conv", "postprocess_conv", "transformer_blocks.0.to_local_embed.2",
                   "transformer_blocks.1.to_local_embed.2"),
    ),
    "LongCatAudioDiTTransformer": DrawnCase(
        LongCatAudioDiTTransformer,
        dict(dit_dim=32, dit_depth=2, dit_heads=2, dit_text_dim=TEXT, latent_dim=C, ff_mult=2.0),
        _longcat,
        timestep=unit_timestep,
        variants={"prompt_audio": _longcat_prompt_audio},
        zero_init=("adaln_global_mlp.mlp.1", "norm_out.linear", "proj_out"),  # gates and output: zero at init
    ),
    "MiniMaxMusic3Transformer1DModel": Case(
        MiniMaxMusic3Transformer1DModel,
        dict(in_channels=C, condition_dim=8, num_layers=2, num_attention_heads=2, attention_head_dim=16,
             ff_inner_dim=64, rotary_dim=8, fourier_embedding_dim=16),
        _minimax,
        timestep=unit_timestep,
    ),
    "T5FilmDecoder": Case(
        T5FilmDecoder,
        dict(input_dims=C, targets_length=T, d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=32,
             dropout_rate=0.0),
        _t5_film,
        timestep=unit_timestep,  # decoder_noise_time in [0, 1)
        output=lambda out: out,  # the spectrogram frames themselves
        return_dict=False,
    ),
}
