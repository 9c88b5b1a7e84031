"""Tiny diffusers pipelines assembled offline from random components, for tests and examples.

Every part is built in-process from a config (transformer, VAE, text encoders) or from a word list
(tokenizers), so nothing is read from a hub. ``tiny_pipeline("flux")`` returns a real
``FluxPipeline`` that generates 16x16 images in a fraction of a second; ``PIPELINES`` lists the names, among
them the Flux and Qwen-Image components in their image-to-image, inpainting, Kontext / Edit and ControlNet
pipelines (``"flux-img2img"``, ..., ``"qwenimage-controlnet"``).
Needs ``transformers`` (in the ``dev`` and ``peers`` extras).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# A small vocabulary is enough: prompts in tests use these words (anything else maps to <unk>).
_WORDS = ["a", "photo", "of", "cat", "dog", "red", "blue", "shirt", "shoe", "bag", "dress", "coat", "in", "the"]


# For pipelines that format prompts with a chat template: render the user's text only, whether a message's
# content is a string or a list of typed parts (a system prompt would fill the few positions a tiny length allows).
_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endif %}{% endfor %}"
)


def _tokenizer(max_length: int, bos: bool = True, chat: bool = False):
    """A word-level fast tokenizer (T5- or CLIP-like) with pad/eos/unk/bos tokens; ``chat``: with a chat template."""
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
                                   bos_token="<s>", model_max_length=max_length,
                                   chat_template=_CHAT_TEMPLATE if chat else None)


def _vocab_size() -> int:
    return 4 + len(_WORDS)


def _t5(d_model: int = 16, vocab_size: int | None = None):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size or _vocab_size(), d_model=d_model, d_kv=8, d_ff=32,
                                   num_layers=1, num_heads=2, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0)).eval()


def _clip(hidden: int = 16, projection: int | None = None, positions: int = 16):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=_vocab_size(), hidden_size=hidden, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=positions, projection_dim=projection or hidden,
                         pad_token_id=0, bos_token_id=3, eos_token_id=1)
    return (CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)).eval()


def _vae(latent_channels: int, cls=None, **extra):
    """One block: no spatial downsampling, so latents are the image size (tiny and fast). ``cls``: an
    AutoencoderKL-like class (default AutoencoderKL)."""
    from diffusers import AutoencoderKL

    return (cls or AutoencoderKL)(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(8,), layers_per_block=1, latent_channels=latent_channels, norm_num_groups=4,
        sample_size=16, **extra).eval()


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


# --------------------------------------------------------------------------- newer families
# Their text encoders are decoder LMs (Gemma, Qwen, Mistral) built from configs over the word list's vocabulary;
# vision towers, where the class has one, are one layer and never see an image.


def _lm(**config) -> dict:
    """Config kwargs of a tiny decoder LM: width 16, 2 heads of 8, one layer (``config`` overrides)."""
    return {"vocab_size": _vocab_size(), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 64,
            "pad_token_id": 0, "bos_token_id": 3, "eos_token_id": 1, **config}


def _media_ids(n: int) -> list[int]:
    """``n`` image/vision special-token ids past the tokenizer's vocabulary (text never produces them)."""
    return [_vocab_size() + i for i in range(n)]


def _qwen25vl_text(**config) -> dict:
    """Qwen2.5-VL text config: multimodal RoPE sections (1, 1, 2) over head_dim 8."""
    rope = {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}
    return _lm(rope_scaling=rope, **config)


def _flow():
    """Flow-matching Euler with resolution-dependent shift, scaled to tiny token counts (16..256)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=256)


def _chroma():
    """ChromaPipeline: 1 double + 2 single blocks, width 16, a 1-layer modulation approximator; 16x16 -> 64 tokens."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel

    transformer = ChromaTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, axes_dims_rope=(2, 2, 4), approximator_num_channels=16, approximator_hidden_dim=16,
        approximator_layers=1).eval()
    return ChromaPipeline(scheduler=_flow(), vae=_vae(4, shift_factor=0.1, scaling_factor=0.5), text_encoder=_t5(16),
                          tokenizer=_tokenizer(8, bos=False), transformer=transformer)


def _sana():
    """SanaPipeline: 2 linear-attention blocks, a 2-stage AutoencoderDC (2x) and a 1-layer Gemma2; 32x32 -> 64 tokens
    (Sana needs sizes divisible by 32)."""
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    transformer = SanaTransformer2DModel(
        patch_size=2, in_channels=4, out_channels=4, num_layers=2, num_attention_heads=2, attention_head_dim=8,
        num_cross_attention_heads=2, cross_attention_head_dim=8, cross_attention_dim=16, caption_channels=16,
        sample_size=16).eval()
    vae = AutoencoderDC(
        in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=("ResBlock",) * 2,
        decoder_block_types=("ResBlock",) * 2, encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), ()), decoder_qkv_multiscales=((), ()), encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1), downsample_block_type="conv", upsample_block_type="interpolate",
        scaling_factor=0.5).eval()
    return SanaPipeline(tokenizer=_tokenizer(8), text_encoder=Gemma2Model(Gemma2Config(**_lm())).eval(), vae=vae,
                        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))


def _qwenimage():
    """QwenImagePipeline: 2 dual-stream blocks, a 2-level Qwen VAE (2x) and a 1-layer Qwen2.5-VL; 16x16 -> 16
    tokens. The pipeline drops its template's first 34 tokens; the word-level tokenizer makes 37 of the system
    text, so the prompt survives (3 template tokens, then the prompt's)."""
    from diffusers import AutoencoderKLQwenImage, QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(2, 2, 4)).eval()
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 1], num_res_blocks=1, temperal_downsample=[False],
                                 latents_mean=[0.0] * 4, latents_std=[1.0] * 4).eval()
    start, end, image = _media_ids(3)
    config = Qwen2_5_VLConfig(
        text_config=_qwen25vl_text(vocab_size=image + 1), vocab_size=image + 1,
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        vision_start_token_id=start, vision_end_token_id=end, image_token_id=image, video_token_id=image)
    return QwenImagePipeline(scheduler=_flow(), vae=vae, text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(),
                             tokenizer=_tokenizer(64), transformer=transformer)


def _zimage():
    """ZImagePipeline: 2 main + 1 refiner layers of width 16 and a 2-layer Qwen3 (chat-templated); 16x16 -> 64
    tokens."""
    from diffusers import ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=16, n_layers=2, n_refiner_layers=1, n_heads=2,
        n_kv_heads=2, cap_feat_dim=16, axes_dims=[2, 2, 4], axes_lens=[64, 16, 16]).eval()
    with torch.no_grad():  # the pad tokens start as torch.empty: give them values
        transformer.x_pad_token.fill_(1.0)
        transformer.cap_pad_token.fill_(1.0)
    text_encoder = Qwen3Model(Qwen3Config(**_lm(num_hidden_layers=2))).eval()  # the pipeline reads hidden_states[-2]
    return ZImagePipeline(scheduler=_flow(), vae=_vae(4, shift_factor=0.1, scaling_factor=0.5),
                          text_encoder=text_encoder, tokenizer=_tokenizer(8, chat=True), transformer=transformer)


def _flux2_parts(guidance_embeds: bool) -> dict:
    """Transformer and VAE of both FLUX.2 pipelines: 1 double + 2 single blocks; the text width is 3 x 8 (the
    pipelines stack 3 hidden layers of the width-8 LM)."""
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel

    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=24, timestep_guidance_channels=16, mlp_ratio=2.0, axes_dims_rope=(2, 2, 2, 2),
        guidance_embeds=guidance_embeds).eval()
    return {"transformer": transformer, "vae": _vae(4, cls=AutoencoderKLFlux2), "scheduler": _flow(),
            "tokenizer": _tokenizer(8, chat=True)}


def _flux2():
    """Flux2Pipeline (guidance-distilled, one call per step) with a width-8 Mistral3 of 30 layers, so its default
    text_encoder_out_layers (10, 20, 30) exist; 16x16 -> 64 tokens."""
    from diffusers import Flux2Pipeline
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    text = _lm(model_type="mistral", hidden_size=8, intermediate_size=16, num_hidden_layers=30, head_dim=4,
               sliding_window=None)
    vision = {"model_type": "pixtral", "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
              "num_attention_heads": 2, "head_dim": 8, "image_size": 16, "patch_size": 8}
    config = Mistral3Config(text_config=text, vision_config=vision, image_token_index=_media_ids(1)[0],
                            pad_token_id=0, bos_token_id=3, eos_token_id=1)
    return Flux2Pipeline(text_encoder=Mistral3ForConditionalGeneration(config).eval(), **_flux2_parts(True))


def _flux2_klein():
    """Flux2KleinPipeline (true CFG: cond and uncond calls per step) with a width-8 Qwen3 of 27 layers, so its
    default text_encoder_out_layers (9, 18, 27) exist; 16x16 -> 64 tokens."""
    from diffusers import Flux2KleinPipeline
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**_lm(hidden_size=8, intermediate_size=16, num_hidden_layers=27, head_dim=4))
    return Flux2KleinPipeline(text_encoder=Qwen3ForCausalLM(config).eval(), **_flux2_parts(False))


def _hunyuanvideo15():
    """HunyuanVideo15Pipeline: 2 blocks, a 2-stage VAE (4x space, 2x time), a 3-layer Qwen2.5-VL text model and a
    ByT5 glyph encoder; 5 frames of 16x16 -> 48 tokens. The pipeline's text lengths (1000 + a 108-token system
    template, 256 glyph bytes, 729 vision tokens) are cut to 8, 8 and 4, the template to the user's text."""
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    transformer = HunyuanVideo15Transformer3DModel(  # in: latents, conditioning latents (zero for t2v) and a mask
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
        num_refiner_layers=1, mlp_ratio=2.0, text_embed_dim=16, text_embed_2_dim=16, image_embed_dim=8,
        rope_axes_dim=(2, 2, 4), target_size=16, task_type="t2v").eval()
    vae = AutoencoderKLHunyuanVideo15(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), layers_per_block=1,
        spatial_compression_ratio=4, temporal_compression_ratio=2, downsample_match_channel=False,
        upsample_match_channel=False).eval()
    text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(**_qwen25vl_text(num_hidden_layers=3))).eval()  # reads [-3]
    pipe = HunyuanVideo15Pipeline(
        text_encoder=text_encoder, tokenizer=_tokenizer(8, chat=True), transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=_t5(16, vocab_size=384),
        tokenizer_2=ByT5Tokenizer(), guider=ClassifierFreeGuidance(guidance_scale=6.0))
    pipe.tokenizer_max_length, pipe.prompt_template_encode_start_idx = 8, 0
    pipe.tokenizer_2_max_length, pipe.vision_num_semantic_tokens = 8, 4
    return pipe


def _ltx2():
    """LTX2Pipeline (video + audio): 2 audio-visual blocks, a 2-stage video VAE (4x space and time), a 1-stage
    audio VAE, a 1-upsample vocoder, 1-layer text connectors and a 1-layer Gemma3; 5 frames of 32x32 -> 128 video
    tokens (sizes must be divisible by 32)."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    begin, end, image = _media_ids(3)
    config = Gemma3Config(
        text_config=_lm(sliding_window=16), mm_tokens_per_image=4, boi_token_index=begin, eoi_token_index=end,
        image_token_index=image, pad_token_id=0, bos_token_id=3, eos_token_id=1,
        vision_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": 8})
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
        audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2, audio_attention_head_dim=4,
        audio_cross_attention_dim=8, num_layers=2, caption_channels=16, rope_double_precision=False,
        rope_type="split").eval()
    connectors = LTX2TextConnectors(  # the pipeline stacks every hidden state of the 1-layer LM: 2 of them
        caption_channels=16, text_proj_in_factor=2, video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_double_precision=False,
        rope_type="split").eval()
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
        layers_per_block=(1, 1), decoder_layers_per_block=(1, 1, 1), spatio_temporal_scaling=(True, True),
        decoder_spatio_temporal_scaling=(True, True), decoder_inject_noise=(False, False, False),
        downsample_type=("spatiotemporal",) * 2, upsample_type=("spatiotemporal",) * 2,
        upsample_residual=(False, False), upsample_factor=(1, 1), patch_size=1, patch_size_t=1,
        decoder_causal=False).eval()
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, in_channels=2, resolution=32,
        latent_channels=2, mel_bins=8).eval()
    vocoder = LTX2Vocoder(in_channels=2 * 8, hidden_channels=8, out_channels=2, upsample_kernel_sizes=[4],
                          upsample_factors=[2], resnet_kernel_sizes=[3], resnet_dilations=[[1]],
                          output_sampling_rate=16000).eval()
    return LTX2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, audio_vae=audio_vae,
                        text_encoder=Gemma3ForConditionalGeneration(config).eval(), tokenizer=_tokenizer(8),
                        connectors=connectors, transformer=transformer, vocoder=vocoder)


# --------------------------------------------------------------------------- variants of Flux and Qwen-Image
# The same tiny components (the same weights at a seed) in the families' image-to-image, inpainting,
# reference-image (Kontext, Edit) and ControlNet pipelines.


def _unzeroed(controlnet, *names: str):
    """A ControlNet's output layers start at zero (its residuals are 0 until trained): give the layers ``names``
    random weights, so its residuals change what the transformer computes."""
    with torch.no_grad():
        for name in names:
            for p in getattr(controlnet, name).parameters():
                p.normal_(0.0, 0.1)
    return controlnet


def _flux_controlnet():
    """FluxControlNetPipeline: the Flux components and a ControlNet of the same shape (1 double + 2 single
    blocks), whose residuals enter every transformer block; the control image is VAE-encoded."""
    from diffusers import FluxControlNetModel, FluxControlNetPipeline

    base = _flux()  # first: the family's weights at the seed
    controlnet = FluxControlNetModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, pooled_projection_dim=16, guidance_embeds=False, axes_dims_rope=(2, 2, 4)).eval()
    controlnet = _unzeroed(controlnet, "controlnet_blocks", "controlnet_single_blocks", "controlnet_x_embedder")
    return FluxControlNetPipeline(controlnet=controlnet, **base.components)


def _qwenimage_controlnet():
    """QwenImageControlNetPipeline: the Qwen-Image components and a 2-block ControlNet, one residual per block."""
    from diffusers import QwenImageControlNetModel, QwenImageControlNetPipeline

    base = _qwenimage()  # first: the family's weights at the seed
    controlnet = QwenImageControlNetModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, axes_dims_rope=(2, 2, 4)).eval()
    controlnet = _unzeroed(controlnet, "controlnet_blocks", "controlnet_x_embedder")
    return QwenImageControlNetPipeline(controlnet=controlnet, **base.components)


def _qwenimage_edit():
    """QwenImageEditPipeline: the Qwen-Image components, a tokenizer that knows Qwen2.5-VL's vision tokens (the ids
    the text encoder's config names) and an image-only Qwen2-VL processor: 28x28 pixels per image, one vision
    token. Qwen2VLProcessor itself cannot be built here: its video processor slot is type-checked against
    transformers' video processor classes, which need torchvision (not importable beside this torch), even when
    it is None. The pipeline encodes its reference image at ~1024x1024 (``calculate_dimensions(1024 * 1024, ...)``
    in its module): callers shrink that target area for tiny runs."""
    from diffusers import QwenImageEditPipeline
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template)

    base = _qwenimage()
    tokenizer = _tokenizer(128)  # the edit template is ~80 words
    # the vision ids (past the word list's, in _qwenimage's order) and a video id the model never sees
    tokenizer.add_special_tokens({"additional_special_tokens": [
        "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]})
    processor = ImageOnlyQwen2VLProcessor(Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=28 * 28), tokenizer)
    return QwenImageEditPipeline(processor=processor, **{**base.components, "tokenizer": tokenizer})


def _variant(family: Callable, cls_name: str) -> Callable:
    """A builder of the diffusers pipeline ``cls_name`` from ``family``'s components."""
    def build():
        import diffusers

        return getattr(diffusers, cls_name)(**family().components)

    build.__doc__ = f"{cls_name} from the components of {family.__name__.lstrip('_')}."
    return build


# name -> builder. Each pipeline makes 16x16 images (Sana, LTX-2: 32x32, their minimum; videos: a few frames).
PIPELINES: dict[str, Callable] = {"dit": _dit, "pixart": _pixart, "flux": _flux, "sd3": _sd3, "wan": _wan,
                                  "latte": _latte, "hunyuanvideo": _hunyuanvideo, "cogvideox": _cogvideox,
                                  "chroma": _chroma, "sana": _sana, "qwenimage": _qwenimage, "zimage": _zimage,
                                  "flux2": _flux2, "flux2-klein": _flux2_klein, "hunyuanvideo15": _hunyuanvideo15,
                                  "ltx2": _ltx2,
                                  # variants: the families' components in their other pipelines
                                  "flux-img2img": _variant(_flux, "FluxImg2ImgPipeline"),
                                  "flux-inpaint": _variant(_flux, "FluxInpaintPipeline"),
                                  "flux-kontext": _variant(_flux, "FluxKontextPipeline"),
                                  "flux-controlnet": _flux_controlnet,
                                  "qwenimage-img2img": _variant(_qwenimage, "QwenImageImg2ImgPipeline"),
                                  "qwenimage-inpaint": _variant(_qwenimage, "QwenImageInpaintPipeline"),
                                  "qwenimage-edit": _qwenimage_edit,
                                  "qwenimage-controlnet": _qwenimage_controlnet}


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
