"""MDT (Gao et al., ICCV 2023, "Masked Diffusion Transformer is a Strong Image Synthesizer", arXiv 2303.14389),
written from the paper's description as a plain ``torch.nn.Module`` and mapped into ditcache through the public
``register_block`` / ``register_model`` API, the path a user's own model takes.

What the paper fixes, and this follows:

- DiT's blocks (Peebles & Xie 2023): pre-LN attention and MLP whose LayerNorms are modulated (shift,
  scale) and whose outputs are gated by adaLN-Zero, from c = embed(t) + embed(y); a modulated final
  layer; patch tokens with fixed 2-D sine-cosine positions;
- the blocks split into an *encoder* and a *decoder*, with a *side-interpolater* between them. In
  training, a share (``mask_ratio``) of the patch tokens is dropped before the encoder, which then sees
  only the visible ones; the side-interpolater puts a learnable mask token at every dropped position,
  adds its own learned position embedding, runs a few blocks over the whole grid and keeps its output at
  the masked positions only (visible ones keep the encoder's), and the decoder predicts the noise of
  every token. At inference nothing is masked and the side-interpolater is not run: the model is
  encoder -> decoder, a DiT with the position embedding added again before the decoder (MDT's decoder
  position embedding, fixed sine-cosine as the encoder's).

Simplifications, each with its reason:

- MDT sums two losses every step, one with masking and one without, both over the whole batch; the
  default's training (``MDTDefault.train_prediction``) splits each batch in half between them, so a step
  costs about one DiT step on the CPU budget the defaults train on, and both objectives still train;
- the original MDT (v1) layout, without MDTv2's long skips inside the encoder (that would make it a
  U-ViT-DiT hybrid; U-ViT's skips are covered by ``models/uvit.py``);
- the patch embedding is a linear layer on flattened patches (equal to DiT's p x p, stride p
  convolution); attention uses torch's fused kernel; no learned sigma (epsilon only), no dropout.

For ditcache, every encoder and decoder block has the branches ``attn`` (self-attention; queries from a
token subset, keys and values from all tokens) and ``mlp`` (token-wise); the block applies the current
step's gate to them. The side-interpolater's blocks are left uncached (``ModelSpec.uncached``): they run in
training only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import nn

from ..adapters import Branch, ModelSpec, register_block, register_model
from .layers import Attention, Mlp, TimestepEmbedder, batch_timesteps, patchify, sincos_2d, unpatchify


@dataclass
class MDTConfig:
    sample_size: int = 32       # image side in pixels (Fashion-MNIST 28x28 padded to 32x32)
    patch_size: int = 2         # 2x2 patches -> 16 x 16 = 256 tokens (DiT-XL/2's token count)
    in_channels: int = 1        # grey pixels
    width: int = 128            # token width D, as the dit256 default (2 heads x 64)
    heads: int = 2              # attention heads of width 64
    mlp_ratio: float = 4.0      # MLP hidden width / D (DiT's 4)
    encoder_depth: int = 4      # encoder blocks: with the decoder's, dit256's depth 6
    decoder_depth: int = 2      # decoder blocks (MDT keeps the decoder short: most blocks encode)
    side_depth: int = 1         # side-interpolater blocks (MDT uses one or two; run in training only)
    mask_ratio: float = 0.3     # share of patch tokens dropped before the encoder in masked training (MDT's 0.3)
    num_classes: int = 10       # class labels 0..9; the embedding has one more row, the null label

    def transformer_kwargs(self) -> dict:
        """The fields, for the training record (``MDT(MDTConfig(**these))`` rebuilds the model)."""
        return dict(vars(self))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]  # (B, N, D) with (B, D) shift and scale


class MDTBlock(nn.Module):
    """DiT block with adaLN-Zero: x + gate * branch(modulate(LN(x))), for attention then the MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio, approximate="tanh")
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))  # c -> 3 (shift, scale, gate)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)  # (B, D) each
        x = x + gate1[:, None] * self.attn(_modulate(self.norm1(x), shift1, scale1))         # (B, N, D)
        return x + gate2[:, None] * self.mlp(_modulate(self.norm2(x), shift2, scale2))      # (B, N, D)


class SideInterpolater(nn.Module):
    """Fills the masked positions: (B, K, D) visible encoder outputs -> (B, N, D) on the whole grid."""

    def __init__(self, config: MDTConfig, tokens: int):
        super().__init__()
        c = config
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, c.width))  # learned, the side branch's own
        self.blocks = nn.ModuleList(MDTBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.side_depth))

    def forward(self, visible: torch.Tensor, keep: torch.Tensor, tokens: int, c: torch.Tensor) -> torch.Tensor:
        b, _, d = visible.shape
        idx = keep[..., None].expand(-1, -1, d)                                       # (B, K, D)
        known = self.mask_token.to(visible.dtype).expand(b, tokens, d).scatter(1, idx, visible)  # (B, N, D)
        x = known + self.pos_embed
        for block in self.blocks:
            x = block(x, c)
        masked = torch.ones(b, tokens, 1, dtype=torch.bool, device=visible.device)
        masked = masked.scatter(1, keep[..., None], False)                            # (B, N, 1)
        return torch.where(masked, x, known)          # interpolated at masked positions, encoder's elsewhere


class FinalLayer(nn.Module):
    """Modulated LayerNorm and a linear layer to patches: (B, N, D) -> (B, N, C*p*p)."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.linear(_modulate(self.norm(x), shift, scale))


class MDT(nn.Module):
    """Noise prediction eps(x_t, t, y): (B, C, H, W) pixels -> (B, C, H, W). ``mask_ratio`` > 0 (training)
    drops that share of patch tokens before the encoder, chosen per sample with ``generator``."""

    def __init__(self, config: MDTConfig | None = None):
        super().__init__()
        self.config = c = config if config is not None else MDTConfig()
        if c.sample_size % c.patch_size:
            raise ValueError(f"sample_size {c.sample_size} is not a multiple of patch_size {c.patch_size}")
        grid = c.sample_size // c.patch_size
        self.tokens = grid * grid
        patch_dim = c.in_channels * c.patch_size ** 2
        self.patch_embed = nn.Linear(patch_dim, c.width)
        self.register_buffer("pos_embed", sincos_2d(c.width, grid)[None], persistent=False)  # (1, N, D), fixed
        self.time_embed = TimestepEmbedder(c.width)
        self.label_embed = nn.Embedding(c.num_classes + 1, c.width)
        self.encoder_blocks = nn.ModuleList(MDTBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.encoder_depth))
        self.side_interpolater = SideInterpolater(c, self.tokens)
        self.decoder_blocks = nn.ModuleList(MDTBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.decoder_depth))
        self.final_layer = FinalLayer(c.width, patch_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT's: Xavier-uniform linears with zero biases, N(0, 0.02) for the embeddings and the time MLP, and
        adaLN-Zero: every modulation and the final linear at zero, so each block starts as the identity."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        nn.init.normal_(self.label_embed.weight, std=0.02)
        nn.init.normal_(self.side_interpolater.mask_token, std=0.02)
        nn.init.normal_(self.side_interpolater.pos_embed, std=0.02)
        for block in (*self.encoder_blocks, *self.side_interpolater.blocks, *self.decoder_blocks, self.final_layer):
            nn.init.zeros_(block.modulation[1].weight)
            nn.init.zeros_(block.modulation[1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)

    def forward(self, hidden_states: torch.Tensor, timestep, class_labels: torch.Tensor, return_dict: bool = True,
                mask_ratio: float = 0.0, generator: torch.Generator | None = None):
        cfg = self.config
        b = hidden_states.shape[0]
        t = batch_timesteps(timestep, b, hidden_states.device)                     # (B,)
        c = self.time_embed(t) + self.label_embed(class_labels.reshape(-1).expand(b))  # (B, D)
        x = self.patch_embed(patchify(hidden_states, cfg.patch_size)) + self.pos_embed  # (B, N, D)
        keep = None
        if mask_ratio > 0:
            n_keep = self.tokens - round(self.tokens * mask_ratio)
            noise = torch.rand(b, self.tokens, generator=generator).to(x.device)        # (B, N)
            keep = noise.argsort(dim=1)[:, :n_keep]                                   # (B, K) visible tokens
            x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))              # (B, K, D)
        for block in self.encoder_blocks:
            x = block(x, c)
        if keep is not None:
            x = self.side_interpolater(x, keep, self.tokens, c)                       # (B, N, D)
        x = x + self.pos_embed
        for block in self.decoder_blocks:
            x = block(x, c)
        x = self.final_layer(x, c)                                                    # (B, N, C*p*p)
        out = unpatchify(x, cfg.patch_size, cfg.in_channels, cfg.sample_size)        # (B, C, H, W)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)


def _lean(block: MDTBlock, inputs: dict, cached) -> torch.Tensor:
    """An MDT block's output when both branches are cached: x + gate1 * attn + gate2 * mlp, this call's gates
    from its modulation, in the forward's order (so bit-identical to it); the norms and modulate are skipped."""
    _, _, gate1, _, _, gate2 = block.modulation(inputs["c"]).chunk(6, dim=-1)          # (B, D) each
    x = inputs["x"] + gate1[:, None] * cached("attn")                                  # (B, N, D)
    return x + gate2[:, None] * cached("mlp")


# What ditcache knows about MDT, as data: the block's two branches (and its lean rule), the token grid, the final
# layer whose first input is the image tokens after the last block, and the side-interpolater left uncached
# (training only).
register_block(MDTBlock, Branch("attn", "attn", "self_kv"), Branch("mlp", "mlp", "tokens"), lean=_lean)
register_model(MDT, ModelSpec(grid="patch2d", final="final_layer", uncached=("side_interpolater",)))
