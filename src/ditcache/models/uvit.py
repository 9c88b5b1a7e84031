"""U-ViT (Bao et al., CVPR 2023, "All are Worth Words: A ViT Backbone for Diffusion Models", arXiv 2209.12152),
written from the paper's description as a plain ``torch.nn.Module`` and mapped into ditcache through the public
``register_block`` / ``register_model`` API, the path a user's own model takes.

What the paper fixes, and this follows:

- every input is a token: the timestep (sinusoidal features through a small MLP) and the class label (a
  learned embedding; row ``num_classes`` is the null label for classifier-free guidance) are prepended to
  the patch tokens; a learned 1-D position embedding covers all of them. No AdaLN: blocks see the
  condition only through attention;
- pre-LN transformer blocks (LayerNorm, attention, residual; LayerNorm, MLP, residual);
- long skip connections between the shallow and deep halves: ``depth // 2`` in-blocks, one mid block,
  ``depth // 2`` out-blocks; out-block i takes the output of in-block ``depth // 2 - 1 - i`` (U-Net order),
  concatenates it with its input on the channel axis and applies a linear layer (2D -> D, the paper's best
  of the combinations it compared) before its attention. The paper puts no normalisation after that
  linear layer; the block's own pre-LN follows it;
- a final LayerNorm and a linear layer to patches, the extra tokens dropped, unpatchify, and the
  optional 3x3 convolution at the end, which the paper adds against patch artifacts.

Choices and simplifications (for the 256-token Fashion-MNIST default, see ``models/defaults.py``):

- the extra tokens are dropped *before* the final LayerNorm instead of after the final linear layer: both
  act per token, so the output is the same, and ditcache's FreqCa (which caches the final layer's input
  over the token grid) then sees exactly the image tokens;
- the time token is the timestep's sinusoidal features through Linear, SiLU, Linear (a learned map lets a
  small model shape its one time token); attention uses torch's fused kernel; no dropout, no qkv bias.

For ditcache, a block's branches are ``attn`` (self-attention; queries from a token subset, keys and values
from all tokens) and ``mlp`` (token-wise); there is no gate, so the block adds them as they are. An
out-block's skip linear belongs to the block and runs on every call (it is not a branch). The prepended
time and label tokens sit in the same stream as the image tokens, so token methods may choose them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import nn

from ..adapters import Branch, ModelSpec, register_block, register_model
from .layers import Attention, Mlp, TimestepEmbedder, batch_timesteps, patchify, unpatchify


@dataclass
class UViTConfig:
    sample_size: int = 32       # image side in pixels (Fashion-MNIST 28x28 padded to 32x32)
    patch_size: int = 2         # 2x2 patches -> 16 x 16 = 256 tokens (DiT-XL/2's token count)
    in_channels: int = 1        # grey pixels
    width: int = 128            # token width D, as the dit256 default (2 heads x 64)
    depth: int = 7              # 3 in-blocks, 1 mid block, 3 out-blocks: odd, as every U-ViT (U-ViT-S: 13);
    #                             7 blocks of 256 tokens cost about the 6 adaLN blocks of dit256 per step
    heads: int = 2              # attention heads of width 64
    mlp_ratio: float = 4.0      # MLP hidden width / D (the paper's 4)
    num_classes: int = 10       # class labels 0..9; the embedding has one more row, the null label
    qkv_bias: bool = False      # the paper's default
    conv_out: bool = True       # the extra 3x3 convolution after unpatchify (the paper's optional block)

    def transformer_kwargs(self) -> dict:
        """The fields, for the training record (``UViT(UViTConfig(**these))`` rebuilds the model)."""
        return dict(vars(self))


class UViTBlock(nn.Module):
    """Pre-LN transformer block; an out-block first fuses the long skip: x = Linear([x; skip])."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, skip: bool = False):
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))  # (B, N, 2D) -> (B, N, D)
        x = x + self.attn(self.norm1(x))                        # (B, N, D)
        return x + self.mlp(self.norm2(x))                      # (B, N, D)


class UViT(nn.Module):
    """Noise prediction eps(x_t, t, y): (B, C, H, W) pixels -> (B, C, H, W)."""

    extras = 2  # prepended tokens: time, class label

    def __init__(self, config: UViTConfig | None = None):
        super().__init__()
        self.config = c = config if config is not None else UViTConfig()
        if c.sample_size % c.patch_size:
            raise ValueError(f"sample_size {c.sample_size} is not a multiple of patch_size {c.patch_size}")
        tokens = (c.sample_size // c.patch_size) ** 2
        patch_dim = c.in_channels * c.patch_size ** 2
        self.patch_embed = nn.Linear(patch_dim, c.width)       # a p x p, stride p convolution, as a linear layer
        self.time_embed = TimestepEmbedder(c.width)
        self.label_embed = nn.Embedding(c.num_classes + 1, c.width)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + tokens, c.width))  # (1, 2 + N, D), learned
        half = c.depth // 2
        self.in_blocks = nn.ModuleList(UViTBlock(c.width, c.heads, c.mlp_ratio, c.qkv_bias) for _ in range(half))
        self.mid_block = UViTBlock(c.width, c.heads, c.mlp_ratio, c.qkv_bias)
        self.out_blocks = nn.ModuleList(UViTBlock(c.width, c.heads, c.mlp_ratio, c.qkv_bias, skip=True)
                                        for _ in range(half))
        self.norm_out = nn.LayerNorm(c.width)
        self.proj_out = nn.Linear(c.width, patch_dim)
        self.conv_out = nn.Conv2d(c.in_channels, c.in_channels, 3, padding=1) if c.conv_out else None
        self._init_weights()

    def _init_weights(self) -> None:
        """Truncated normal (std 0.02) linears, embeddings and positions, zero biases (ViT's init, which the
        paper's models use)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, hidden_states: torch.Tensor, timestep, class_labels: torch.Tensor,
                return_dict: bool = True):
        c = self.config
        b = hidden_states.shape[0]
        t = batch_timesteps(timestep, b, hidden_states.device)                      # (B,)
        x = self.patch_embed(patchify(hidden_states, c.patch_size))                 # (B, N, D)
        time = self.time_embed(t).unsqueeze(1)                                      # (B, 1, D)
        label = self.label_embed(class_labels.reshape(-1).expand(b)).unsqueeze(1)    # (B, 1, D)
        x = torch.cat([time.to(x.dtype), label.to(x.dtype), x], dim=1) + self.pos_embed  # (B, 2 + N, D)
        skips = []
        for block in self.in_blocks:
            x = block(x)
            skips.append(x)
        x = self.mid_block(x)
        for block in self.out_blocks:
            x = block(x, skips.pop())                                               # deepest in-block first
        x = self.proj_out(self.norm_out(x[:, self.extras:]))                        # (B, N, C*p*p)
        out = unpatchify(x, c.patch_size, c.in_channels, c.sample_size)              # (B, C, H, W)
        if self.conv_out is not None:
            out = self.conv_out(out)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)


def _lean(block: UViTBlock, inputs: dict, cached) -> torch.Tensor:
    """A U-ViT block's output when both branches are cached: the long skip's linear layer (the block's own work,
    every call), then x + attn + mlp, added in the forward's order; the two LayerNorms are skipped."""
    x = inputs["x"]                                                             # (B, N, D)
    if block.skip_linear is not None:
        x = block.skip_linear(torch.cat([x, inputs["skip"]], dim=-1))          # (B, N, 2D) -> (B, N, D)
    return x + cached("attn") + cached("mlp")


# What ditcache knows about U-ViT, as data: the block's two branches (and its lean rule), the token grid of the
# patches and the final layer whose input is the image tokens after the last block.
register_block(UViTBlock, Branch("attn", "attn", "self_kv"), Branch("mlp", "mlp", "tokens"), lean=_lean)
register_model(UViT, ModelSpec(grid="patch2d", final="norm_out"))
