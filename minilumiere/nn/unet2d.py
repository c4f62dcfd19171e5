"""The text-to-image U-Net: the model Lumiere inflates (Ronneberger et al. 2015; Ho et al.
2020; Saharia et al. 2022).

    x_t (B, 3, H, W) --conv_in--> [level 0] -down-> [level 1] -down-> ... [coarsest]
                                      |                 |                   | mid
    prediction <--conv_out-- [level 0] <-up-- [level 1] <-up-- ... <--------+
                     (skip connections: every block's output, concatenated on the way up)

Each level holds SpatialBlocks (a ResBlock, then self-attention and cross-attention to the
text at the levels `cfg.attention_levels` names). The timestep embedding plus a pooled text
embedding (as in Imagen) condition every ResBlock.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import UNetConfig
from .layers import (CrossAttention, Downsample, ResBlock, SpatialSelfAttention,
                     TimestepEmbedding, Upsample, zero_init)


class SpatialBlock(nn.Module):
    """ResBlock, then (optionally) self-attention and cross-attention to the text tokens."""

    def __init__(self, in_channels: int, out_channels: int, cfg: UNetConfig, emb_dim: int,
                 attention: bool):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, cfg.norm_groups, cfg.dropout)
        self.self_attention = (SpatialSelfAttention(out_channels, cfg.head_dim, cfg.norm_groups)
                               if attention else None)
        self.cross_attention = (CrossAttention(out_channels, cfg.context_dim, cfg.head_dim)
                                if attention else None)

    def forward(self, x, emb, context):
        """x (N, C_in, H, W), emb (N, E), context (N, L, D) -> (N, C_out, H, W)."""
        x = self.res(x, emb)
        if self.self_attention is not None:
            x = self.cross_attention(self.self_attention(x), context)
        return x


class Level(nn.Module):
    """The blocks of one resolution, then the resampling to the next (None at the end)."""

    def __init__(self, blocks: list[nn.Module], resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


class UNet2D(nn.Module):
    """Text-conditioned image denoiser: model(x_t, t, context, cond=None) -> prediction.

    x_t (B, 3, H, W); t (B,) integer steps; context (B, L, D) text tokens; cond
    (B, cfg.cond_channels, H, W) extra input channels or None (= zeros). Output (B, 3, H, W).
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        widths = cfg.channels
        self.emb_dim = emb_dim = 4 * cfg.channels[0]
        self.time_embedding = TimestepEmbedding(widths[0], emb_dim)
        self.text_pool = nn.Linear(cfg.context_dim, emb_dim)
        self.conv_in = nn.Conv2d(cfg.image_channels, widths[0], 3, padding=1)
        self.cond_in = (zero_init(nn.Conv2d(cfg.cond_channels, widths[0], 3, padding=1, bias=False))
                        if cfg.cond_channels else None)

        def block(c_in, c_out, level):
            return SpatialBlock(c_in, c_out, cfg, emb_dim, cfg.attention_levels[level])

        channels, skips = widths[0], [widths[0]]
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            blocks = []
            for _ in range(cfg.blocks_per_level):
                blocks.append(block(channels, width, level))
                channels = width
                skips.append(channels)
            last = level == len(widths) - 1
            self.down.append(Level(blocks, None if last else Downsample(channels)))
            if not last:
                skips.append(channels)
        coarsest = len(widths) - 1
        self.mid = nn.ModuleList([block(channels, channels, coarsest),
                                  SpatialBlock(channels, channels, cfg, emb_dim, attention=False)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            blocks = []
            for _ in range(cfg.blocks_per_level + 1):
                blocks.append(block(channels + skips.pop(), widths[level], level))
                channels = widths[level]
            self.up.append(Level(blocks, Upsample(channels) if level > 0 else None))
        self.norm_out = nn.GroupNorm(cfg.norm_groups, channels)
        self.conv_out = nn.Conv2d(channels, cfg.image_channels, 3, padding=1)

    @property
    def downsamplings(self) -> int:
        return len(self.cfg.channels) - 1

    def embed(self, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(B,) steps and (B, L, D) text -> (B, E): timestep embedding + pooled text."""
        return self.time_embedding(t) + self.text_pool(context.mean(dim=1))

    def input_layer(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """conv_in(x) + cond_in(cond): the extra channels' weights start at zero."""
        h = self.conv_in(x)
        return h if cond is None else h + self.cond_in(cond)

    def output_layer(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(h)))

    def forward(self, x_t, t, context, cond=None):
        check_inputs(self.cfg, x_t, t, context, cond, self.cfg.cond_channels, spatial_dims=2,
                     multiple=2**self.downsamplings)
        emb = self.embed(t, context)
        h = self.input_layer(x_t, cond)
        skips = [h]
        for level in self.down:
            for block in level.blocks:
                h = block(h, emb, context)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)
        for block in self.mid:
            h = block(h, emb, context)
        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
            if level.resample is not None:
                h = level.resample(h)
        return self.output_layer(h)


def _check_config(cfg: UNetConfig) -> None:
    if len(cfg.attention_levels) != len(cfg.channels):
        raise ValueError(f"attention_levels {cfg.attention_levels} needs one flag per level "
                         f"of channels {cfg.channels}")
    bad = [c for c in cfg.channels if c % cfg.norm_groups]
    if bad:
        raise ValueError(f"channels {bad} must be divisible by norm_groups={cfg.norm_groups}")


def check_inputs(cfg: UNetConfig, x_t, t, context, cond, cond_channels: int, spatial_dims: int,
                 multiple: int, frame_multiple: int = 1) -> None:
    """Name the bad argument: shapes of x_t, t, context and cond against the config."""
    ndim = 2 + spatial_dims
    layout = "(B, C, H, W)" if spatial_dims == 2 else "(B, C, T, H, W)"
    if x_t.ndim != ndim or x_t.shape[1] != cfg.image_channels:
        raise ValueError(f"x_t must be {layout} with C={cfg.image_channels}; got {tuple(x_t.shape)}")
    height, width = x_t.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(f"size {height}x{width} must be divisible by {multiple} "
                         f"({multiple.bit_length() - 1} spatial down-samplings); try "
                         f"{max(multiple, height // multiple * multiple)}")
    if spatial_dims == 3 and x_t.shape[2] % frame_multiple:
        frames = x_t.shape[2]
        raise ValueError(f"frames={frames} must be divisible by {frame_multiple} "
                         f"({frame_multiple.bit_length() - 1} temporal down-samplings); try "
                         f"{max(frame_multiple, frames // frame_multiple * frame_multiple)} or "
                         f"{(frames // frame_multiple + 1) * frame_multiple}")
    batch = x_t.shape[0]
    if t.shape != (batch,):
        raise ValueError(f"t must have shape (B,) = ({batch},); got {tuple(t.shape)}")
    if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != cfg.context_dim:
        raise ValueError(f"context must be (B, L, D) = ({batch}, L, {cfg.context_dim}); "
                         f"got {tuple(context.shape)}")
    if cond is not None:
        expected = (batch, cond_channels, *x_t.shape[2:])
        if cond_channels == 0:
            raise ValueError("cond was given but this model has no conditioning channels "
                             "(cond_channels=0)")
        if tuple(cond.shape) != expected:
            raise ValueError(f"cond must have shape {expected}; got {tuple(cond.shape)}")
