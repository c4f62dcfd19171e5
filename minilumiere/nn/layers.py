"""The building blocks of both U-Nets, each small and testable alone.

Spatial layers work on images (N, C, H, W); a clip runs through them frame by frame.
Temporal layers work on clips (B, C, T, H, W) and are the only layers inflation adds
(Lumiere, Section 3.1): factorized space-time convolution blocks, temporal down/up-sampling
initialised to identity, and temporal attention. Every temporal layer is
the identity at initialisation on a static clip, so the inflated model starts as the
text-to-image model applied to every frame.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10_000.0):
    """positions (N,) -> (N, dim): cos/sin at geometric frequencies (Vaswani et al. 2017)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[:, None] * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def zero_init(module: nn.Module) -> nn.Module:
    """Set a layer's weights (and bias) to zero: its branch starts switched off."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class TimestepEmbedding(nn.Module):
    """t (B,) integer steps -> (B, dim): sinusoidal features, then a two-layer MLP."""

    def __init__(self, base_dim: int, dim: int):
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.base_dim))


class ResBlock(nn.Module):
    """Two 3x3 convs with GroupNorm and SiLU; the embedding is added in between (DDPM)."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                     else nn.Identity())

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x (N, C_in, H, W), emb (N, E) -> (N, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SpatialSelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of each image (residual)."""

    def __init__(self, channels: int, head_dim: int, groups: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W) -> (N, C, H, W)."""
        height = x.shape[2]
        tokens = rearrange(self.norm(x), "n c h w -> n (h w) c")
        q, k, v = rearrange(self.qkv(tokens), "n l (three heads d) -> three n heads l d",
                            three=3, heads=self.heads)
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = rearrange(attended, "n heads l d -> n l (heads d)")
        return x + rearrange(self.out(attended), "n (h w) c -> n c h w", h=height)


class CrossAttention(nn.Module):
    """Each image position attends to the text tokens `context` (residual)."""

    def __init__(self, channels: int, context_dim: int, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.context_dim = context_dim
        self.norm = nn.LayerNorm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W), context (N, L, D) -> (N, C, H, W)."""
        height = x.shape[2]
        tokens = self.norm(rearrange(x, "n c h w -> n (h w) c"))
        q = rearrange(self.q(tokens), "n l (heads d) -> n heads l d", heads=self.heads)
        k, v = rearrange(self.kv(context), "n l (two heads d) -> two n heads l d",
                         two=2, heads=self.heads)
        attended = rearrange(F.scaled_dot_product_attention(q, k, v), "n heads l d -> n l (heads d)")
        return x + rearrange(self.out(attended), "n (h w) c -> n c h w", h=height)


class Downsample(nn.Module):
    """Halve H and W with a strided 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# --- temporal layers: clips (B, C, T, H, W) -------------------------------------------------


def identity_init(conv: nn.Conv1d) -> nn.Conv1d:
    """A 1D conv that copies its input: centre tap 1 on the diagonal, everything else 0."""
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    with torch.no_grad():
        conv.weight[range(conv.out_channels), range(conv.in_channels), conv.kernel_size[0] // 2] = 1.0
    return conv


def temporal_conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """Run a 1D conv along time at every pixel: (B, C, T, H, W) -> (B, C', T', H, W)."""
    batch, height = x.shape[0], x.shape[3]
    pixels = rearrange(x, "b c t h w -> (b h w) c t")   # one sequence of frames per pixel
    return rearrange(conv(pixels), "(b h w) c t -> b c t h w", b=batch, h=height)


class FactorizedConv(nn.Module):
    """A new factorized (2+1)D convolution block (residual): a 3x3 conv on every frame, the
    embedding (timestep + caption) applied, then a 1D conv over time whose weights start at
    zero, so the block is the identity at initialisation.

    Why a spatial conv of its own: the frozen T2I convs move features the same way in every
    frame and were never trained to move them at all. Motion "to the left" means content at
    (x + 1, t - 1) reappears at (x, t): the new block needs a space-time receptive field
    (3x3 then 3 frames) that it can shape by the caption (a purely per-pixel temporal conv
    did not learn the direction words: checkpoints/toy/EXPERIMENTS.md).

    scale_shift=True: the embedding scales and shifts the normalised features, h * (1 + s) + b
    (FiLM, Perez et al. 2018; diffusers' "scale_shift"), instead of being added before the
    norm. A scale lets the caption switch whole channels, and so whole motion patterns, on
    and off, where a sum can only shift them (the two compared: checkpoints/toy/EXPERIMENTS.md).
    """

    def __init__(self, channels: int, kernel: int, groups: int, emb_dim: int,
                 scale_shift: bool = False):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(groups, channels)
        self.spatial = nn.Conv2d(channels, channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * channels if scale_shift else channels)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.temporal = zero_init(nn.Conv1d(channels, channels, kernel, padding=kernel // 2))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W), emb (B, E) -> (B, C, T, H, W)."""
        frames = x.shape[2]
        h = rearrange(F.silu(self.norm1(x)), "b c t h w -> (b t) c h w")    # every frame
        h = rearrange(self.spatial(h), "(b t) c h w -> b c t h w", t=frames)
        emb = self.emb_proj(F.silu(emb))[:, :, None, None, None]
        if self.scale_shift:
            scale, shift = emb.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift                         # GroupNorm over (C/g, T, H, W)
        else:
            h = self.norm2(h + emb)
        return x + temporal_conv1d(self.temporal, F.silu(h))


class TemporalDownsample(nn.Module):
    """Halve T: a 1D temporal conv initialised to identity, with stride 2 (keeps frames
    0, 2, 4, ... at initialisation)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = identity_init(nn.Conv1d(channels, channels, kernel, stride=2,
                                            padding=kernel // 2))

    def forward(self, x):
        return temporal_conv1d(self.conv, x)


class TemporalUpsample(nn.Module):
    """Double T: duplicate every frame, then a 1D temporal conv initialised to identity
    (nearest-neighbour in time at initialisation)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = identity_init(nn.Conv1d(channels, channels, kernel, padding=kernel // 2))

    def forward(self, x):
        return temporal_conv1d(self.conv, x.repeat_interleave(2, dim=2))


class TextPooling(nn.Module):
    """A learned query attends over the text tokens: context (B, L, D) -> (B, E).

    The video stage's own reading of the caption for its temporal layers: the frozen T2I
    model never had a reason to encode the direction words, so a mean over tokens carries
    them only faintly; attention can pick them out.

    zero_out=True starts the output projection at zero. It need not: every layer that reads
    the pooled text is switched off at initialisation by its own zero output, so the inflated
    model is the T2I model per frame either way. A zero projection adds a second switch in
    series: the attention gets no gradient until the projection has grown, which delays
    learning the direction words (checkpoints/toy/EXPERIMENTS.md).
    """

    def __init__(self, context_dim: int, emb_dim: int, head_dim: int, zero_out: bool = True):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, context_dim) * 0.02)
        self.attention = nn.MultiheadAttention(context_dim, max(1, context_dim // head_dim),
                                               batch_first=True)
        self.out = nn.Linear(context_dim, emb_dim)
        if zero_out:
            zero_init(self.out)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        query = self.query.repeat(context.shape[0], 1, 1)                # (B, 1, D)
        pooled, _ = self.attention(query, context, context, need_weights=False)  # (B, 1, D)
        return self.out(pooled[:, 0])


class TemporalAttention(nn.Module):
    """Self-attention across frames at every pixel (residual, output projection at zero).
    Frame positions (sinusoidal) and the embedding (timestep + pooled text) are added to the
    normalised input of the queries, keys and values."""

    def __init__(self, channels: int, head_dim: int, emb_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.LayerNorm(channels)
        self.emb_proj = nn.Linear(emb_dim, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W), emb (B, E) -> (B, C, T, H, W)."""
        batch, channels, frames, height, width = x.shape
        tokens = self.norm(rearrange(x, "b c t h w -> (b h w) t c"))   # one sequence per pixel
        tokens = tokens + sinusoidal_embedding(torch.arange(frames, device=x.device), channels)
        tokens = tokens + repeat(self.emb_proj(F.silu(emb)), "b c -> (b h w) 1 c", h=height, w=width)
        q, k, v = rearrange(self.qkv(tokens), "n t (three heads d) -> three n heads t d",
                            three=3, heads=self.heads)
        attended = rearrange(F.scaled_dot_product_attention(q, k, v), "n heads t d -> n t (heads d)")
        return x + rearrange(self.out(attended), "(b h w) t c -> b c t h w", b=batch, h=height)
