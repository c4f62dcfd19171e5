"""The Space-Time U-Net (STUNet) and `inflate`: Lumiere's Section 3.1.

The STUNet is the text-to-image U-Net run on every frame, with temporal layers added
between its blocks:

    level 0 .. coarsest-1:  SpatialBlock per frame -> FactorizedConv   (new (2+1)D conv block)
    coarsest level + mid:   SpatialBlock per frame -> TemporalAttention
    after each spatial down-sampling:  TemporalDownsample (identity conv, stride 2)
    after each spatial up-sampling:    TemporalUpsample (duplicate frames, identity conv)

so the clip is compressed in time as well as in space: 16 frames at 16x16 become 4 frames
at 4x4 at the toy preset's coarsest level, and most computation happens there.

The T2I weights live, copied, in `stunet.unet2d`; the new layers live beside them. Copied,
not shared: training or interpolating the video model (e.g. stylization, W = a W_style +
(1 - a) W_base) never changes the T2I model it came from, and a STUNet checkpoint is
self-contained. With `freeze_spatial` (the paper's recipe) only the new layers train.
"""
from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from ..config import STUNetConfig, UNetConfig
from .layers import (TemporalAttention, FactorizedConv, TemporalDownsample, TemporalUpsample,
                     TextPooling, zero_init)
from .unet2d import UNet2D, check_inputs


def per_frame(module: nn.Module, x: torch.Tensor, *args) -> torch.Tensor:
    """Run a 2D module on every frame: x (B, C, T, H, W) -> (B, C', T, H', W').

    Extra per-sample args (emb (B, E), context (B, L, D)) are repeated for every frame.
    """
    frames = x.shape[2]
    images = rearrange(x, "b c t h w -> (b t) c h w")                 # fold time into batch
    args = [repeat(a, "b ... -> (b t) ...", t=frames) for a in args]
    return rearrange(module(images, *args), "(b t) c h w -> b c t h w", t=frames)


class STUNet(nn.Module):
    """Video denoiser: model(x_t, t, context, cond=None) -> prediction, all (B, C, T, H, W).

    cond (B, unet.cond_channels + stunet.cond_channels, T, H, W): extra input channels; the
    first unet.cond_channels go through the T2I model's own input weights, the rest (e.g.
    <C, M> = 4 channels) through a new input layer that starts at zero.
    """

    def __init__(self, unet_cfg: UNetConfig, cfg: STUNetConfig):
        super().__init__()
        levels = len(unet_cfg.channels)
        if len(cfg.temporal_downsample) != levels - 1:
            raise ValueError(f"temporal_downsample {cfg.temporal_downsample} needs one flag per "
                             f"spatial down-sampling ({levels - 1} for channels {unet_cfg.channels})")
        self.cfg, self.unet_cfg = cfg, unet_cfg
        self.unet2d = UNet2D(unet_cfg)
        widths, coarsest = unet_cfg.channels, levels - 1
        emb_dim = self.unet2d.emb_dim

        def temporal(level: int) -> nn.Module:
            if level == coarsest:
                return TemporalAttention(widths[level], unet_cfg.head_dim, emb_dim)
            return FactorizedConv(widths[level], cfg.temporal_kernel, unet_cfg.norm_groups, emb_dim,
                                  cfg.emb_scale_shift)

        self.cond_in = (zero_init(nn.Conv2d(cfg.cond_channels, widths[0], 3, padding=1, bias=False))
                        if cfg.cond_channels else None)
        self.text_pooling = TextPooling(unet_cfg.context_dim, emb_dim, unet_cfg.head_dim,
                                        cfg.text_pooling_zero_init)
        self.down_temporal = nn.ModuleList(
            nn.ModuleList(temporal(level) for _ in range(unet_cfg.blocks_per_level))
            for level in range(levels))
        self.temporal_downsample = nn.ModuleList(
            TemporalDownsample(widths[level], cfg.temporal_kernel) if flag else nn.Identity()
            for level, flag in enumerate(cfg.temporal_downsample))
        self.mid_temporal = nn.ModuleList(temporal(coarsest) for _ in self.unet2d.mid)
        self.up_temporal = nn.ModuleList(
            nn.ModuleList(temporal(level) for _ in range(unet_cfg.blocks_per_level + 1))
            for level in reversed(range(levels)))
        # up-sampling from level l to l - 1 mirrors the down-sampling from l - 1 to l
        self.temporal_upsample = nn.ModuleList(
            TemporalUpsample(widths[level], cfg.temporal_kernel)
            if cfg.temporal_downsample[level - 1] else nn.Identity()
            for level in reversed(range(1, levels)))
        self.freeze_spatial(cfg.freeze_spatial)

    def freeze_spatial(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the T2I weights; the new temporal layers always train."""
        self.unet2d.requires_grad_(not frozen)

    def temporal_parameters(self):
        """The layers inflation added (everything outside `unet2d`)."""
        return [p for name, p in self.named_parameters() if not name.startswith("unet2d.")]

    @property
    def frame_multiple(self) -> int:
        return 2 ** sum(self.cfg.temporal_downsample)

    def frames_by_level(self, frames: int, size: int) -> list[tuple[int, int]]:
        """(frames, size) at every level of the U-Net, finest first."""
        shapes = [(frames, size)]
        for flag in self.cfg.temporal_downsample:
            frames, size = (frames // 2 if flag else frames), size // 2
            shapes.append((frames, size))
        return shapes

    def forward(self, x_t, t, context, cond=None):
        unet = self.unet2d
        check_inputs(self.unet_cfg, x_t, t, context, cond,
                     self.unet_cfg.cond_channels + self.cfg.cond_channels, spatial_dims=3,
                     multiple=2**unet.downsamplings, frame_multiple=self.frame_multiple)
        emb = unet.embed(t, context)                                     # (B, E), T2I layers
        temporal_emb = emb + self.text_pooling(context)                  # (B, E), new layers
        h = self.input_layer(x_t, cond)                                  # (B, C0, T, H, W)
        skips = [h]
        for i, (level, temporal_layers) in enumerate(zip(unet.down, self.down_temporal)):
            for block, temporal in zip(level.blocks, temporal_layers):
                h = temporal(per_frame(block, h, emb, context), temporal_emb)
                skips.append(h)
            if level.resample is not None:
                h = per_frame(level.resample, h)                         # H, W halve
                h = self.temporal_downsample[i](h)                       # T halves (if set)
                skips.append(h)
        for block, temporal in zip(unet.mid, self.mid_temporal):
            h = temporal(per_frame(block, h, emb, context), temporal_emb)
        for i, (level, temporal_layers) in enumerate(zip(unet.up, self.up_temporal)):
            for block, temporal in zip(level.blocks, temporal_layers):
                h = torch.cat([h, skips.pop()], dim=1)
                h = temporal(per_frame(block, h, emb, context), temporal_emb)
            if level.resample is not None:
                h = per_frame(level.resample, h)                         # H, W double
                h = self.temporal_upsample[i](h)                         # T doubles (if set)
        return per_frame(unet.output_layer, h)

    def input_layer(self, x_t, cond):
        """Per-frame conv_in of the T2I model, plus the conditioning channels' input layers."""
        h = per_frame(self.unet2d.conv_in, x_t)
        if cond is None:
            return h
        unet_channels = self.unet_cfg.cond_channels
        if unet_channels:
            h = h + per_frame(self.unet2d.cond_in, cond[:, :unet_channels])
        if self.cond_in is not None:
            h = h + per_frame(self.cond_in, cond[:, unet_channels:])
        return h


def inflate(unet2d: UNet2D, cfg: STUNetConfig) -> STUNet:
    """A STUNet whose spatial layers are a copy of `unet2d`'s weights and whose new temporal
    layers are the identity on static clips (Lumiere, Section 3.1)."""
    stunet = STUNet(unet2d.cfg, cfg)
    stunet.unet2d.load_state_dict(unet2d.state_dict())          # copies into its own tensors
    return stunet
