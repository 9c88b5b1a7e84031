"""ConsisID at a tiny size, with its identity branch (is_train_face: the local facial extractor and the
perceiver cross-attention after every block)."""

from __future__ import annotations

import torch
from diffusers import ConsisIDTransformer3DModel

from .case import Case

C, L, TXT, HEAD_DIM = 4, 8, 12, 12     # latent channels; text length and width; attention head size
F, H, W = 2, 8, 8                      # latent frames and size: 32 tokens at patch 2
ID_DIM, VIT_DIM, SCALES = 8, 8, 2      # face id embedding, ViT feature width, ViT feature scales


def _inputs(model, batch, gen):
    """(B, F, C, H, W) latents (frames first), the rotary embedding (cos, sin) over the 32 image tokens, and
    the face: an id embedding and one ViT hidden state per scale."""
    n = F * (H // 2) * (W // 2)
    angle = torch.rand(n, HEAD_DIM, generator=gen) * 6.28
    return {"hidden_states": torch.randn(batch, F, C, H, W, generator=gen),
            "encoder_hidden_states": torch.randn(batch, L, TXT, generator=gen),
            "image_rotary_emb": (angle.cos(), angle.sin()),
            "id_cond": torch.randn(batch, ID_DIM, generator=gen),
            "id_vit_hidden": [torch.randn(batch, 5, VIT_DIM, generator=gen) for _ in range(SCALES)]}


CASES = {
    "ConsisIDTransformer3DModel": Case(
        ConsisIDTransformer3DModel, dict(
            num_attention_heads=2, attention_head_dim=HEAD_DIM, in_channels=C, out_channels=C, time_embed_dim=16,
            text_embed_dim=TXT, num_layers=2, sample_width=W, sample_height=H, sample_frames=5, patch_size=2,
            temporal_compression_ratio=4, max_text_seq_length=L, use_rotary_positional_embeddings=True,
            is_train_face=True, cross_attn_interval=1, cross_attn_dim_head=4, cross_attn_num_heads=2,
            LFE_id_dim=ID_DIM, LFE_vit_dim=VIT_DIM, LFE_depth=SCALES, LFE_dim_head=4, LFE_num_heads=2,
            LFE_num_id_token=2, LFE_num_querie=4, LFE_output_dim=2 * HEAD_DIM * 2 // 3, LFE_ff_mult=1,
            LFE_num_scale=SCALES),
        _inputs, note="the identity inputs are required by is_train_face, so they are in the base inputs"),
}
