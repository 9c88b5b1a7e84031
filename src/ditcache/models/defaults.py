"""The two embedded default models: a class-conditional DiT and a class-conditional Flux, both on
Fashion-MNIST 28x28 padded to 32x32, both unmodified diffusers classes.

Layout shared by both (chosen so that an uncached 50-step, 16-image CFG generation takes a few seconds
on 2 CPU threads, and so that training fits in ~45 minutes on 1 thread; see the model cards):

- pixels in [-1, 1], padded with -1 (the background value) from 28x28 to 32x32;
- 4x4 patches -> an 8x8 grid of 64 image tokens;
- class labels 0..9, and the id 10 (NULL_CLASS) meaning "no class" for classifier-free guidance.

DiT (Peebles & Xie 2023): DDPM epsilon objective, linear betas 1e-4..0.02 over 1000 timesteps, sampled
with DDIM. Flux (Black Forest Labs 2024; rectified flow, Esser et al. 2024): velocity objective
v = noise - x0, sampled with flow-matching Euler. Flux's "text" is a learned 4-token sequence per class.

The seed methods' own architectures, at the 256-token layout: U-ViT (Learning-to-Cache's) and MDT
(TokenCache's) are plain torch modules written from their papers (``models/uvit.py``, ``models/mdt.py``)
in DiT's layout and objective; ``latte`` is diffusers' LatteTransformer3DModel (spatial and temporal blocks
alternating, OpenSora's STDiT shape, ToCa's video model) on the video default's clips, with DDPM epsilon.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import DiTTransformer2DModel, FluxTransformer2DModel, LatteTransformer3DModel, WanTransformer3DModel
from torch import nn

from ..engine import cached
from ..sampling import sample  # the shared sampler: DDIM for DiT, flow Euler for Flux
from .mdt import MDT, MDTConfig
from .uvit import UViT, UViTConfig

# Label id that means "unconditional"; classes are 0..9, so the embedding tables have 11 rows.
NULL_CLASS = 10
NUM_CLASSES = 10

# Side of the square the 28x28 images are padded to; (32 - 28) / 2 = 2 pixels each side.
IMAGE_SIZE = 32
PAD = 2

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass
class DiTSpec:
    """Architecture of the default DiT (kwargs of diffusers.DiTTransformer2DModel, plus nothing else)."""

    num_attention_heads: int = 2  # 2 heads x 64 = width 128: measured to fit the CPU time budget
    attention_head_dim: int = 64  # DiT's own head size is 72; 64 keeps matmuls aligned
    num_layers: int = 6  # depth 6 -> 6 BasicTransformerBlocks (attn1 + ff sites each) for caching
    patch_size: int = 4  # 32x32 / 4x4 -> 64 tokens; patch 2 (256 tokens) measured ~4x too slow here
    num_embeds_ada_norm: int = NUM_CLASSES  # diffusers passes this to LabelEmbedding as num_classes:
    # the table gets num_classes + 1 rows and row num_classes (= NULL_CLASS = 10) is the null label

    def transformer_kwargs(self) -> dict:
        return dict(
            num_attention_heads=self.num_attention_heads,
            attention_head_dim=self.attention_head_dim,
            in_channels=1,  # grey pixels
            out_channels=1,  # epsilon only, no learned sigma
            num_layers=self.num_layers,
            sample_size=IMAGE_SIZE,
            patch_size=self.patch_size,
            num_embeds_ada_norm=self.num_embeds_ada_norm,
        )


@dataclass
class FluxSpec:
    """Architecture of the default Flux transformer and its class "text" conditioner."""

    num_attention_heads: int = 2  # 2 heads x 64 = width 128, same budget as the DiT
    attention_head_dim: int = 64  # Flux's own is 128; 64 = sum of axes_dims_rope
    num_layers: int = 2  # double-stream (joint) blocks: sites attn, ff, ff_context
    num_single_layers: int = 4  # single-stream blocks: one "block" site each
    joint_attention_dim: int = 64  # width of the learned class "text" tokens
    pooled_projection_dim: int = 64  # width of the learned pooled class vector
    axes_dims_rope: tuple[int, int, int] = (16, 24, 24)  # RoPE dims for (unused, row, col); sums to head dim
    patch: int = 4  # 4x4 pixel patches packed into channels: 64 tokens of 16 channels
    text_tokens: int = 4  # L: length of the class "text" sequence

    def transformer_kwargs(self) -> dict:
        return dict(
            patch_size=1,  # packing is done outside the model, as in diffusers' Flux pipeline
            in_channels=self.patch * self.patch,  # 16 pixels per token
            out_channels=self.patch * self.patch,
            num_layers=self.num_layers,
            num_single_layers=self.num_single_layers,
            attention_head_dim=self.attention_head_dim,
            num_attention_heads=self.num_attention_heads,
            joint_attention_dim=self.joint_attention_dim,
            pooled_projection_dim=self.pooled_projection_dim,
            guidance_embeds=False,  # real CFG, no guidance distillation
            axes_dims_rope=tuple(self.axes_dims_rope),
        )


@dataclass
class VideoSpec:
    """Architecture of the default video model (WanTransformer3DModel) on moving Fashion-MNIST clips."""

    num_attention_heads: int = 2  # 2 heads x 64 = width 128, as the image defaults
    attention_head_dim: int = 64  # Wan's rotary splits it into (time 24, rows 20, cols 20)
    num_layers: int = 4           # WanTransformerBlocks (attn1, attn2, ffn sites each)
    ffn_dim: int = 512            # 4 x width
    text_dim: int = 64            # width of the learned class "text" tokens
    freq_dim: int = 64            # sinusoidal timestep embedding size
    patch: int = 4                # 1 x 4 x 4 patches: 9 x 9 tokens per frame
    frames: int = 8               # clip length
    canvas: int = 36              # frame side in pixels
    item: int = 28                # the Fashion-MNIST item at its own size (the classifier's), moving 8 px at most
    text_tokens: int = 4          # L: length of the class "text" sequence

    def transformer_kwargs(self) -> dict:
        return dict(
            patch_size=(1, self.patch, self.patch), num_attention_heads=self.num_attention_heads,
            attention_head_dim=self.attention_head_dim, in_channels=1, out_channels=1, text_dim=self.text_dim,
            freq_dim=self.freq_dim, ffn_dim=self.ffn_dim, num_layers=self.num_layers,
            rope_max_seq_len=32,  # positions per axis the rotary table covers (8 frames, 8 x 8 tokens)
        )


@dataclass
class LatteSpec:
    """Architecture of the Latte video mini (LatteTransformer3DModel: spatial and temporal blocks alternating, the
    STDiT shape of OpenSora that ToCa's video results are on) on the moving clips of the ``video`` default."""

    num_attention_heads: int = 2  # 2 heads x 64 = width 128, as the other defaults
    attention_head_dim: int = 64  # head width
    num_layers: int = 3           # spatial + temporal block pairs: 3 spatial (attn1, attn2, ff sites) and 3
    #                               temporal (attn1, ff); counted per token, about 0.85 of the video default's
    #                               4 Wan blocks (which attend over all 648 tokens at once)
    text_dim: int = 64            # width of the learned class "text" tokens (Latte's caption_channels)
    patch: int = 4                # 4 x 4 patches per frame: 9 x 9 tokens per frame
    frames: int = 8               # clip length (Latte's video_length: its temporal position table)
    canvas: int = 36              # frame side in pixels, as the video default
    item: int = 28                # the Fashion-MNIST item at its own size, as the video default
    text_tokens: int = 4          # L: length of the class "text" sequence

    def transformer_kwargs(self) -> dict:
        return dict(
            num_attention_heads=self.num_attention_heads, attention_head_dim=self.attention_head_dim,
            in_channels=1, out_channels=1,  # grey pixels; epsilon only, no learned sigma
            num_layers=self.num_layers, sample_size=self.canvas, patch_size=self.patch,
            cross_attention_dim=self.num_attention_heads * self.attention_head_dim,  # caption projected to width
            caption_channels=self.text_dim, norm_type="ada_norm_single",  # Latte's (PixArt's) timestep adaLN
            activation_fn="gelu-approximate", num_embeds_ada_norm=1000, video_length=self.frames,
        )


class ClassText(nn.Module):
    """Class label -> a learned "text" sequence (B, L, text_dim) for cross-attention; id 10 = null."""

    def __init__(self, spec: VideoSpec | LatteSpec):
        super().__init__()
        self.text_tokens, self.text_dim = spec.text_tokens, spec.text_dim
        self.text = nn.Embedding(NUM_CLASSES + 1, spec.text_tokens * spec.text_dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.text(labels).view(-1, self.text_tokens, self.text_dim)


class ClassConditioner(nn.Module):
    """Class label -> Flux's (encoder_hidden_states, pooled_projections): learned tables, id 10 = null."""

    def __init__(self, spec: FluxSpec):
        super().__init__()
        self.text_tokens = spec.text_tokens
        self.joint_attention_dim = spec.joint_attention_dim
        self.text = nn.Embedding(NUM_CLASSES + 1, spec.text_tokens * spec.joint_attention_dim)
        self.pooled = nn.Embedding(NUM_CLASSES + 1, spec.pooled_projection_dim)

    def forward(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.text(labels).view(-1, self.text_tokens, self.joint_attention_dim)  # (B, L, J)
        return text, self.pooled(labels)  # (B, L, J), (B, P)


def images_to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 32, 32) in [-1, 1], padded with the background value -1."""
    x = images.float().div(127.5).sub(1.0).unsqueeze(1)  # (B, 1, 28, 28)
    return nn.functional.pad(x, (PAD, PAD, PAD, PAD), value=-1.0)  # (B, 1, 32, 32)


def crop(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 1, 32, 32) -> (B, 1, 28, 28) clamped to [-1, 1]."""
    return pixels[..., PAD:PAD + 28, PAD:PAD + 28].clamp(-1.0, 1.0)


def pack(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 1, H, W) -> (B, H/p * W/p, p*p), row-major over the token grid (diffusers' _pack_latents order)."""
    b, c, h, w = pixels.shape
    x = pixels.view(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpack(tokens: torch.Tensor, patch: int, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(B, N, p*p) -> (B, 1, size, size); inverse of pack."""
    b = tokens.shape[0]
    g = size // patch
    x = tokens.view(b, g, g, 1, patch, patch).permute(0, 3, 1, 4, 2, 5)  # (B, 1, g, p, g, p)
    return x.reshape(b, 1, size, size)


def image_ids(grid: int) -> torch.Tensor:
    """(grid*grid, 3) float ids (0, row, col) for Flux's RoPE, row-major like pack."""
    rows = torch.arange(grid).repeat_interleave(grid)
    cols = torch.arange(grid).repeat(grid)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=1).float()


def zero_init_modulation(transformer: nn.Module) -> None:
    """adaLN-Zero (DiT paper, sec. 3.2): zero the modulation and output layers so every block starts
    as the identity and the model starts by predicting 0. diffusers leaves them at PyTorch's default."""
    for name, module in transformer.named_modules():
        last = name.rsplit(".", 1)[-1]
        parent = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else ""
        is_modulation = last == "linear" and parent in ("norm1", "norm1_context", "norm", "norm_out")
        is_output = name in ("proj_out", "proj_out_1", "proj_out_2")
        if isinstance(module, nn.Linear) and (is_modulation or is_output):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)


class DefaultModel:
    """One embedded model: the diffusers transformer plus what turns labels and noise into its inputs.

    Subclasses (one per family, registered in MODELS) set the layout; nothing here changes the
    transformer, which stays a stock diffusers module that the caching engine can hook.
    """

    family: str                    # "dit" | "flux" | "video": picks method presets
    objective: str                 # "ddpm" (epsilon, DDIM sampling) | "flow" (velocity, flow-matching Euler)
    transformer_class: type        # the diffusers class of the transformer
    default_guidance_scale: float
    name: str = ""                 # the registry name ("dit", "dit256", ...), set by build()
    conditioner: nn.Module | None = None  # learned class "text" (Flux, video); DiT embeds labels itself

    def __init__(self, transformer: nn.Module, spec, device: str | torch.device = "cpu"):
        self.transformer = transformer
        self.spec = spec
        self.device = torch.device(device)
        self.last_run = None  # the ditcache Run of the latest cached generate(); None if uncached

    # --- per-family layout, overridden -------------------------------------------------------
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 1, 32, 32) pixels -> latents in the transformer's input layout."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents in the transformer's layout -> images (B, 1, 28, 28) in [-1, 1]."""
        raise NotImplementedError

    def model_kwargs(self, labels: torch.Tensor) -> dict:
        """Model kwargs other than hidden_states/timestep for class labels (B,) (differentiable: training)."""
        raise NotImplementedError

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Training inputs from uint8 Fashion-MNIST images (B, 28, 28): pixels (B, 1, 32, 32) in [-1, 1]."""
        return images_to_pixels(images)

    def conditioning(self, labels) -> tuple[dict, dict]:
        """Model kwargs other than hidden_states/timestep for the labels, and for the null label."""
        labels = self._labels(labels)
        with torch.no_grad():
            return self.model_kwargs(labels), self.model_kwargs(torch.full_like(labels, NULL_CLASS))

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        raise NotImplementedError

    @classmethod
    def make_transformer(cls, spec) -> nn.Module:
        """A freshly initialised transformer for the architecture ``spec``."""
        transformer = cls.transformer_class(**spec.transformer_kwargs())
        zero_init_modulation(transformer)
        return transformer

    def prepare_training(self) -> None:
        """Set the transformer up for the trainer (which drops class labels itself, once per sample)."""

    def train_prediction(self, x_t: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor,
                         generator: torch.Generator) -> torch.Tensor:
        """The transformer's prediction for a training batch (B, ...), scored against the target."""
        return self.transformer(x_t, timestep=timestep, **self.model_kwargs(labels)).sample

    # --- shared -------------------------------------------------------------------------------
    def _labels(self, labels) -> torch.Tensor:
        labels = torch.as_tensor(labels, dtype=torch.long, device=self.device).reshape(-1)  # (B,)
        if labels.numel() and (labels.min() < 0 or labels.max() > NULL_CLASS):
            raise ValueError(f"labels must be in 0..{NULL_CLASS} ({NULL_CLASS} = unconditional)")
        return labels

    def initial_noise(self, batch: int, seed: int) -> torch.Tensor:
        """Standard normal noise in the transformer's input layout, from a CPU generator so a seed
        gives the same noise on every device."""
        g = torch.Generator().manual_seed(seed)
        return torch.randn(self.latent_shape(batch), generator=g).to(self.device)

    @torch.no_grad()
    def generate(
        self,
        labels,
        steps: int = 50,
        seed: int = 0,
        method=None,
        guidance_scale: float | None = None,
        progress: bool = False,
        return_run: bool = False,
        count_flops: bool = True,
    ):
        """Images (B, 1, 28, 28) in [-1, 1] for class labels (B,). guidance_scale None -> the
        model's default_guidance_scale; 1.0 disables CFG. With a method, sampling runs inside
        ditcache.cached(...) and the run is kept in self.last_run (and returned if return_run)."""
        scale = self.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        labels = self._labels(labels)
        if labels.numel() == 0:
            raise ValueError("generate() needs at least one label (0..9, or 10 for unconditional)")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        cond, uncond = self.conditioning(labels)
        noise = self.initial_noise(labels.shape[0], seed)
        if method is None:
            self.last_run = None
            latents = sample(self.transformer, noise, cond, uncond if scale != 1.0 else None,
                             steps=steps, guidance_scale=scale, progress=progress)
        else:
            with cached(self.transformer, method, steps=steps, count_flops=count_flops) as run:
                latents = sample(self.transformer, noise, cond, uncond if scale != 1.0 else None,
                                 steps=steps, guidance_scale=scale, progress=progress)
            self.last_run = run
        images = self.decode(latents)
        return (images, self.last_run) if return_run else images


class DiTDefault(DefaultModel):
    family = "dit"
    objective = "ddpm"
    transformer_class = DiTTransformer2DModel
    # CFG scale: chosen on 1000 samples (model card) for class accuracy vs FD in classifier space
    default_guidance_scale = 3.0

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, 1, IMAGE_SIZE, IMAGE_SIZE)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels  # pixel space: (B, 1, 32, 32)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return crop(latents.float())

    def model_kwargs(self, labels: torch.Tensor) -> dict:
        return {"class_labels": labels}

    def prepare_training(self) -> None:
        # diffusers' DiT drops labels inside every block's own LabelEmbedding, independently per block
        # (each block has its own embedder); the trainer drops once per sample, so switch theirs off.
        for block in self.transformer.transformer_blocks:
            block.norm1.emb.class_embedder.dropout_prob = 0.0


class PaperDiTDefault(DiTDefault):
    """A model written here from its paper (U-ViT, MDT) in the DiT default's layout: pixels (B, 1, 32, 32),
    DDPM epsilon, ``class_labels`` with 10 = null. Its config dataclass is the spec; it initialises itself."""

    default_guidance_scale = 3.0  # as the DiT defaults; the model card's sweep checks it

    @classmethod
    def make_transformer(cls, spec) -> nn.Module:
        return cls.transformer_class(spec)

    def prepare_training(self) -> None:
        """Nothing to switch off: these embed labels once, without dropout of their own."""


class UViTDefault(PaperDiTDefault):
    transformer_class = UViT


class MDTDefault(PaperDiTDefault):
    transformer_class = MDT

    def train_prediction(self, x_t: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor,
                         generator: torch.Generator) -> torch.Tensor:
        """MDT's two objectives on one batch: the first half unmasked, the second with ``mask_ratio`` of the
        tokens dropped before the encoder (MDT sums both over the whole batch; halving keeps a step's cost
        at about one DiT step). Returns (B, 1, 32, 32) in batch order. The noise at a masked position never
        reaches the model, so its best prediction there is 0 at squared error 1: the training loss reads about
        0.15 + 0.85 x the unmasked loss (15% of the batch's tokens masked), higher than a DiT's."""
        half = x_t.shape[0] // 2
        full = self.transformer(x_t[:half], timestep=timestep[:half], class_labels=labels[:half]).sample
        masked = self.transformer(x_t[half:], timestep=timestep[half:], class_labels=labels[half:],
                                  mask_ratio=self.spec.mask_ratio, generator=generator).sample
        return torch.cat([full, masked])


class FluxDefault(DefaultModel):
    family = "flux"
    objective = "flow"
    transformer_class = FluxTransformer2DModel
    # CFG scale: chosen on 1000 samples (model card) for class accuracy vs FD in classifier space
    default_guidance_scale = 3.0

    def __init__(self, transformer: nn.Module, spec: FluxSpec, conditioner: ClassConditioner,
                 device: str | torch.device = "cpu"):
        super().__init__(transformer, spec, device)
        self.conditioner = conditioner
        grid = IMAGE_SIZE // spec.patch
        self.img_ids = image_ids(grid).to(self.device)  # (64, 3)
        self.txt_ids = torch.zeros(spec.text_tokens, 3, device=self.device)  # (L, 3): text has no position

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        grid = IMAGE_SIZE // self.spec.patch
        return (batch, grid * grid, self.spec.patch ** 2)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pack(pixels, self.spec.patch)  # (B, 64, 16)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return crop(unpack(latents.float(), self.spec.patch))

    def model_kwargs(self, labels: torch.Tensor) -> dict:
        text, pooled = self.conditioner(labels)  # (B, L, J), (B, P)
        return {"encoder_hidden_states": text, "pooled_projections": pooled,
                "img_ids": self.img_ids, "txt_ids": self.txt_ids}


class VideoDefault(DefaultModel):
    """Class-conditional clips (B, 1, F, 36, 36) of a Fashion-MNIST item moving across the frame."""

    family = "video"
    objective = "flow"
    transformer_class = WanTransformer3DModel
    default_guidance_scale = 3.0  # as the image defaults; the card's CFG sweep checks it

    def __init__(self, transformer: nn.Module, spec: VideoSpec, conditioner: ClassText,
                 device: str | torch.device = "cpu"):
        super().__init__(transformer, spec, device)
        self.conditioner = conditioner

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, 1, self.spec.frames, self.spec.canvas, self.spec.canvas)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels  # pixel space: (B, 1, F, H, W)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, H, W) -> frames (B, F, 1, H, W) in [-1, 1]."""
        return latents.float().clamp(-1.0, 1.0).transpose(1, 2)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from ..data import moving_clips

        s = self.spec
        return moving_clips(images, s.frames, s.canvas, s.item, generator)

    def model_kwargs(self, labels: torch.Tensor) -> dict:
        return {"encoder_hidden_states": self.conditioner(labels)}  # (B, L, text_dim)


class LatteDefault(VideoDefault):
    """The video default's clips and class "text", on Latte's spatial/temporal blocks with Latte's own objective
    (DDPM epsilon, as DiT; sampled with DDIM) instead of the Wan default's rectified flow."""

    family = "latte"              # method presets: ToCa's OpenSora one
    objective = "ddpm"
    transformer_class = LatteTransformer3DModel
    # the card's sweep (50 clips per scale; per-frame accuracy / frame FD): 0.30 / 213 at 1.5, 0.44 / 178 at 3.0,
    # 0.51 / 176 at 5.0, 0.53 / 189 at 7.5, 0.50 / 192 at 10: 5.0 has the best FD and near the best accuracy
    default_guidance_scale = 5.0


# name -> (model class, architecture). The 64-token pair is the fast main job and the test models;
# the 256-token pair (DiT-XL/2's token count) is where token-level methods are meant to pay off.
MODELS = {
    "dit": (DiTDefault, DiTSpec()),
    "flux": (FluxDefault, FluxSpec()),
    "dit256": (DiTDefault, DiTSpec(patch_size=2)),  # 2x2 patches of 32x32 -> 16x16 = 256 tokens
    "flux256": (FluxDefault, FluxSpec(patch=2)),    # 2x2 pixels packed per token -> 256 tokens of 4 channels
    "video": (VideoDefault, VideoSpec()),           # 8 frames x 9 x 9 = 648 tokens
    # the seed methods' own architectures, written from their papers, at dit256's layout and width:
    "uvit": (UViTDefault, UViTConfig()),            # 256 patch tokens + a time and a label token (L2C's U-ViT)
    "mdt": (MDTDefault, MDTConfig()),               # 256 tokens; encoder, side-interpolater, decoder (TokenCache's)
    "latte": (LatteDefault, LatteSpec()),           # 8 frames x 9 x 9 tokens, spatial and temporal blocks (ToCa's)
}


def _family(name: str):
    if name not in MODELS:
        raise KeyError(f"unknown default model {name!r}; valid names: {sorted(MODELS)}")
    return MODELS[name]


def build(name: str, spec=None, device: str | torch.device = "cpu") -> DefaultModel:
    """A freshly initialised (untrained) default model; spec None -> the shipped architecture."""
    cls, default_spec = _family(name)
    spec = default_spec if spec is None else spec
    transformer = cls.make_transformer(spec)
    if cls is FluxDefault:
        model = cls(transformer.to(device), spec, ClassConditioner(spec).to(device), device)
    elif issubclass(cls, VideoDefault):  # the video default and Latte: a learned class "text"
        model = cls(transformer.to(device), spec, ClassText(spec).to(device), device)
    else:
        model = cls(transformer.to(device), spec, device)
    model.name = name
    return model


def trainable_modules(model: DefaultModel) -> dict[str, nn.Module]:
    """Prefix in the safetensors file -> module whose weights are stored under it."""
    modules = {"transformer": model.transformer}
    if model.conditioner is not None:
        modules["conditioner"] = model.conditioner
    return modules


def state_dict(model: DefaultModel) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().contiguous().cpu()
            for prefix, module in trainable_modules(model).items()
            for k, v in module.state_dict().items()}


def load_default(name: str, device: str | torch.device = "cpu", weights_dir: str | Path = WEIGHTS_DIR) -> DefaultModel:
    """The shipped, trained model `name` ('dit' or 'flux') in eval mode; reads safetensors + JSON only."""
    from safetensors.torch import load_file

    _, default_spec = _family(name)
    weights_dir = Path(weights_dir)
    config_path, weights_path = weights_dir / f"{name}.json", weights_dir / f"{name}.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; train it with `ditcache train-default --model {name}`")
    config = json.loads(config_path.read_text())
    spec = type(default_spec)(**config["architecture"])
    model = build(name, spec, device="cpu")
    tensors = load_file(str(weights_path))
    for prefix, module in trainable_modules(model).items():
        own = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        module.load_state_dict({k: v.float() for k, v in own.items()}, strict=True)
    for module in trainable_modules(model).values():
        module.to(device).eval().requires_grad_(False)
    model.device = torch.device(device)
    if isinstance(model, FluxDefault):
        model.img_ids, model.txt_ids = model.img_ids.to(device), model.txt_ids.to(device)
    return model


def spec_dict(spec) -> dict:
    d = asdict(spec)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
