"""Tiny diffusers pipelines assembled offline from random components, for tests and examples.

Every part is built in-process from a config (transformer, VAE, text encoders) or from a word list
(tokenizers), so nothing is read from a hub. ``tiny_pipeline("flux")`` returns a real
``FluxPipeline`` that generates 16x16 images in a fraction of a second; ``PIPELINES`` lists the names.
Needs ``transformers`` (in the ``dev`` and ``peers`` extras).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# A small vocabulary is enough: prompts in tests use these words (anything else maps to <unk>).
_WORDS = ["a", "photo", "of", "cat", "dog", "red", "blue", "shirt", "shoe", "bag", "dress", "coat", "in", "the"]


def _tokenizer(max_length: int, bos: bool = True):
    """A word-level fast tokenizer (T5- or CLIP-like) with pad/eos/unk/bos tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    vocab = {w: i for i, w in enumerate(specials + _WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:  # CLIP-like: <s> text </s>
        tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                           special_tokens=[("<s>", 3), ("</s>", 1)])
    else:    # T5-like: text </s>
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>", model_max_length=max_length)


def _vocab_size() -> int:
    return 4 + len(_WORDS)


def _t5(d_model: int = 16):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=_vocab_size(), d_model=d_model, d_kv=8, d_ff=32, num_layers=1,
                                   num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()


def _clip(hidden: int = 16, projection: int | None = None, positions: int = 16):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=_vocab_size(), hidden_size=hidden, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=positions, projection_dim=projection or hidden,
                         pad_token_id=0, bos_token_id=3, eos_token_id=1)
    return (CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)).eval()


def _vae(latent_channels: int, **extra):
    """One block: no spatial downsampling, so latents are the image size (tiny and fast)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=4, sample_size=16, **extra).eval()


def _dit():
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    transformer = DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, norm_type="ada_norm_zero", num_embeds_ada_norm=1000).eval()  # 1000: DiTPipeline's null id
    return DiTPipeline(transformer=transformer, vae=_vae(4), scheduler=DDIMScheduler(),
                       id2label={0: "shirt", 1: "shoe"})


def _pixart():
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    transformer = PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, cross_attention_dim=16, caption_channels=16, norm_type="ada_norm_single",
        use_additional_conditions=False).eval()
    return PixArtSigmaPipeline(tokenizer=_tokenizer(8, bos=False), text_encoder=_t5(16), vae=_vae(4),
                               transformer=transformer, scheduler=DPMSolverMultistepScheduler())


def _flux():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, out_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=16, guidance_embeds=False,
        axes_dims_rope=(2, 2, 4)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16,
                                                max_image_seq_len=256, base_shift=0.5, max_shift=1.15)
    return FluxPipeline(scheduler=scheduler, vae=_vae(4, shift_factor=0.1, scaling_factor=0.5),
                        text_encoder=_clip(16), tokenizer=_tokenizer(8), text_encoder_2=_t5(16),
                        tokenizer_2=_tokenizer(8, bos=False), transformer=transformer)


def _sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=16,
        pos_embed_max_size=16).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(4, shift_factor=0.1, scaling_factor=0.5),
        text_encoder=_clip(8, projection=8), tokenizer=_tokenizer(8),
        text_encoder_2=_clip(8, projection=8), tokenizer_2=_tokenizer(8),
        text_encoder_3=_t5(16), tokenizer_3=_tokenizer(8, bos=False))


def _wan():
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=32).eval()
    vae = AutoencoderKLWan(base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                           latents_std=[1.0] * 4).eval()
    return WanPipeline(tokenizer=_tokenizer(8, bos=False), text_encoder=_t5(16), vae=vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=transformer)


def _latte():
    from diffusers import DDIMScheduler, LattePipeline, LatteTransformer3DModel

    transformer = LatteTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, cross_attention_dim=16, caption_channels=16, norm_type="ada_norm_single",
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, video_length=2).eval()
    return LattePipeline(tokenizer=_tokenizer(8, bos=False), text_encoder=_t5(16), vae=_vae(4),
                         transformer=transformer, scheduler=DDIMScheduler())


def _hunyuanvideo():
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import LlamaConfig, LlamaModel

    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_single_layers=2, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=16, rope_axes_dim=(2, 2, 4)).eval()
    llama = LlamaModel(LlamaConfig(vocab_size=_vocab_size(), hidden_size=16, intermediate_size=32,
                                   num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                   max_position_embeddings=256, pad_token_id=0)).eval()
    vae = AutoencoderKLHunyuanVideo(  # its encoder only supports 4x or 8x in time: 4 blocks
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        norm_num_groups=4, spatial_compression_ratio=8, temporal_compression_ratio=4).eval()
    return HunyuanVideoPipeline(text_encoder=llama, tokenizer=_tokenizer(256), transformer=transformer, vae=vae,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                text_encoder_2=_clip(16, positions=77), tokenizer_2=_tokenizer(77))


def _cogvideox():
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    # sample sizes are the latent ones of a 5-frame 32x32 call (the VAE compresses 8x in space, 4x in time);
    # the text length must equal max_text_seq_length (its positional table spans text and video)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=16,
        text_embed_dim=16, num_layers=2, sample_width=4, sample_height=4, sample_frames=5, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=8, use_rotary_positional_embeddings=False).eval()
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4).eval()
    return CogVideoXPipeline(tokenizer=_tokenizer(8, bos=False), text_encoder=_t5(16), vae=vae,
                             transformer=transformer, scheduler=CogVideoXDDIMScheduler())


# name -> builder. Each pipeline makes 16x16 images (videos: a few frames).
PIPELINES: dict[str, Callable] = {"dit": _dit, "pixart": _pixart, "flux": _flux, "sd3": _sd3, "wan": _wan,
                                  "latte": _latte, "hunyuanvideo": _hunyuanvideo, "cogvideox": _cogvideox}


def tiny_pipeline(name: str, seed: int = 0):
    """A diffusers pipeline of family ``name`` with random tiny components (weights from ``seed``)."""
    try:
        builder = PIPELINES[name]
    except KeyError:
        raise KeyError(f"no tiny pipeline {name!r}; known: {sorted(PIPELINES)}") from None
    torch.manual_seed(seed)
    pipe = builder()
    pipe.set_progress_bar_config(disable=True)
    return pipe
