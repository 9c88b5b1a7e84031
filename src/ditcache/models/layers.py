"""Building blocks shared by the models written here from their papers (U-ViT, MDT): attention, MLP,
timestep and position embeddings.

The attention module is laid out as ditcache's token methods read it: ``to_q``, ``to_k``, ``to_v``,
``to_out`` linears and ``heads``; ``forward(hidden_states, encoder_hidden_states=None)`` takes queries
from ``hidden_states`` and keys/values from ``encoder_hidden_states`` when given (ToCa's subset path
passes the subset as queries and every token as keys/values), and runs torch's fused attention.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head self-attention: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = self.to_q(hidden_states).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, Nq, d)
        k = self.to_k(context).unflatten(-1, (self.heads, -1)).transpose(1, 2)        # (B, H, Nk, d)
        v = self.to_v(context).unflatten(-1, (self.heads, -1)).transpose(1, 2)        # (B, H, Nk, d)
        out = F.scaled_dot_product_attention(q, k, v)                                # (B, H, Nq, d)
        return self.to_out(out.transpose(1, 2).flatten(2))                           # (B, Nq, D)


class Mlp(nn.Module):
    """Token-wise two-layer MLP: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, ratio: float, approximate: str = "none"):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) sinusoidal features [cos | sin] at geometric frequencies (Vaswani et al. 2017;
    DDPM's time embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]                                           # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)                      # (B, dim)


class TimestepEmbedder(nn.Module):
    """(B,) timesteps -> (B, D): sinusoidal features, then Linear, SiLU, Linear."""

    def __init__(self, dim: int, features: int = 256):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_features(t, self.features))


def batch_timesteps(timestep, batch: int, device: torch.device) -> torch.Tensor:
    """A timestep argument (number, 0-d or (B,) tensor) as a (B,) float tensor."""
    t = torch.as_tensor(timestep, device=device).float().reshape(-1)
    return t.expand(batch) if t.numel() == 1 else t


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """(grid*grid, dim) fixed 2-D sine-cosine position embedding, row-major: half the channels encode the
    row, half the column (MAE's and DiT's choice)."""
    if dim % 4:
        raise ValueError(f"2-D sine-cosine embedding needs a width divisible by 4, got {dim}")
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = pos.repeat_interleave(grid), pos.repeat(grid)                       # (G*G,) each
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (D/4,)

    def one(p: torch.Tensor) -> torch.Tensor:
        a = p[:, None] * omega[None]                                                 # (G*G, D/4)
        return torch.cat([torch.sin(a), torch.cos(a)], dim=1)                        # (G*G, D/2)

    return torch.cat([one(rows), one(cols)], dim=1).float()                          # (G*G, D)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, C*p*p), row-major over the token grid."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(tokens: torch.Tensor, patch: int, channels: int, size: int) -> torch.Tensor:
    """(B, N, C*p*p) -> (B, C, size, size); inverse of patchify for a square grid."""
    b, g = tokens.shape[0], size // patch
    x = tokens.view(b, g, g, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)       # (B, C, g, p, g, p)
    return x.reshape(b, channels, size, size)
