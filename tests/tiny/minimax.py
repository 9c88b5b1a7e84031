"""MiniMax-H3 at a tiny size: one packed sequence of text, video and audio rows."""

from __future__ import annotations

import torch
from diffusers import MiniMaxH3Transformer3DModel

from .case import Case

C, A, TXT = 4, 4, 12               # video latent channels, audio channels, text width
TEXT, F, H, W, AUDIO = 8, 2, 4, 4, 8  # rows: text, video patch grid (32 rows), audio


def _layout():
    """[text; video; audio] rows: 8 text, 32 video (2 frames of 4 x 4 patches), 8 audio; per row the index
    of its timestep (0: the target level), its modality tag (1 text, 0 video, 2 audio) and its (t, h, w)
    rotary coordinates (text and audio along t)."""
    n_video = F * H * W
    n = TEXT + n_video + AUDIO
    tags = torch.cat([torch.ones(TEXT), torch.zeros(n_video), torch.full((AUDIO,), 2.0)]).long()
    t, h, w = torch.meshgrid(torch.arange(F), torch.arange(H), torch.arange(W), indexing="ij")
    video_pos = torch.stack([t, h, w], dim=-1).reshape(-1, 3)
    text_pos = torch.arange(TEXT)[:, None].expand(-1, 3)
    audio_pos = torch.stack([torch.arange(AUDIO), torch.zeros(AUDIO, dtype=torch.long),
                             torch.zeros(AUDIO, dtype=torch.long)], dim=-1)
    return {"timestep_indices": torch.zeros(n, dtype=torch.long), "token_tags": tags,
            "position_ids": torch.cat([text_pos, video_pos, audio_pos]),
            "text_indices": torch.arange(TEXT), "video_indices": torch.arange(TEXT, TEXT + n_video),
            "audio_indices": torch.arange(TEXT + n_video, n)}


def _inputs(model, batch, gen):
    patch = C * 1 * 2 * 2
    return {"hidden_states": torch.randn(batch, F * H * W, patch, generator=gen),
            "audio_hidden_states": torch.randn(batch, AUDIO, A, generator=gen),
            "encoder_hidden_states": torch.randn(batch, TEXT, TXT, generator=gen), **_layout()}


def _conditioned(model, batch, gen):
    """Image-to-video: the first video frame's rows are a clean condition, at timestep index 1 (t = 0)."""
    layout = _layout()
    idx = layout["timestep_indices"].clone()
    idx[TEXT:TEXT + H * W] = 1
    return {"timestep_indices": idx}


def _timestep(t: float, batch: int) -> torch.Tensor:
    return torch.tensor([t / 1000.0, 0.0])  # the distinct noise levels in [0, 1]: target, clean condition


def _both_streams(out) -> torch.Tensor:
    return torch.cat([out[0].flatten(1), out[1].flatten(1)], dim=1)  # video (B, N, P) and audio (B, A, C)


CASES = {
    "MiniMaxH3Transformer3DModel": Case(
        MiniMaxH3Transformer3DModel, dict(
            num_attention_heads=2, attention_head_dim=8 * 3 * 2, hidden_size=32, num_layers=2, num_refiner_layers=1,
            ffn_dim=32, in_channels=C, audio_in_channels=A, patch_size=(1, 2, 2), text_dim=TXT, freq_dim=16,
            time_embed_hidden_dim=32, time_embed_dim=16, rope_freq_dim=8),
        _inputs, timestep=_timestep, output=_both_streams, variants={"image_condition": _conditioned},
        note="timestep is (2,): the target level and the clean condition's 0; output: video and audio joined"),
}
