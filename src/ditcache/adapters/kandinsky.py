"""Kandinsky 5 (text-to-video / image), Kandinsky 6 (video with audio) and the Kandinsky 6 super-resolution
transformer: video tokens in (B, T, H, W, C) latents, text refined by its own encoder blocks (left unmapped:
they run on the text alone, before the visual blocks) and read through cross-attention."""

from __future__ import annotations

from torch import nn

from .spec import BlockSpec, Branch, ModelSpec


def kandinsky_thw(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    x = inputs["hidden_states"]  # (B, T, H, W, C): channels last
    pt, ph, pw = model.config.patch_size
    return (x.shape[1] // pt, x.shape[2] // ph, x.shape[3] // pw)


GRIDS = {"kandinsky_thw": kandinsky_thw}

_VISUAL = BlockSpec((
    # self_attention: video tokens (3-D rotary); cross_attention: video queries, text keys/values, no rotary,
    # token-wise on its queries; feed_forward: token-wise MLP.
    Branch("self_attention", "attn"),
    Branch("cross_attention", "cross_attn", "tokens"),
    Branch("feed_forward", "mlp", "tokens"),
))

BLOCKS = {
    "Kandinsky5TransformerDecoderBlock": _VISUAL,
    # Kandinsky 6: Kandinsky6FusedTransformerDecoderBlock calls the children of two of these containers
    # (video_dec_block, audio_dec_block; a container's own forward never runs), so each container is a block
    # here. The audio container is mapped too (its sites run only when audio_hidden_states is given; its rows
    # are audio tokens, labelled "image" as STREAMS has no audio). The fused block's cross-modal attentions
    # (va_/av_cross_attention, rotary on the queries) stay computed. No token paths for now, though the
    # cross-attention and the MLP are token-wise: ToCa plans a subset from a site's last full output, which
    # the audio sites lack when no audio is given, and ClusCa's probe hooks the block's forward, which a
    # container never runs.
    "Kandinsky6TransformerDecoderBlock": BlockSpec((
        Branch("self_attention", "attn"),
        Branch("cross_attention", "cross_attn"),
        Branch("feed_forward", "mlp"),
    )),
    # Kandinsky 6 SR: video self-attention (rotary, NABLA sparse on the flex backend) and a token-wise MLP; the
    # tokens are in 8 x 8 tile order, not raster order. Run it with count_flops=False: torch's FLOP counter
    # cannot run flex_attention eagerly (pytorch/pytorch#134385).
    "Kandinsky6SRTransformerBlock": BlockSpec((
        Branch("self_attention", "attn"),
        Branch("feed_forward", "mlp", "tokens"),
    )),
}

MODELS = {
    # out_layer takes the video tokens back on their (B, T, H, W, D) grid, not (B, N, D): no FreqCa final
    # layer. The grid is raster order except under Kandinsky 5's sparse attention (to_fractal: 8 x 8 tiles).
    "Kandinsky5Transformer3DModel": ModelSpec(grid="kandinsky_thw", final=None),
    "Kandinsky6Transformer3DModel": ModelSpec(grid="kandinsky_thw", final=None),
    # SR: rows are in NABLA's 8 x 8 tile order, so no (F, H, W) raster grid describes them.
    "Kandinsky6SRTransformer3DModel": ModelSpec(final=None),
}
