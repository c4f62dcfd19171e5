"""A text-conditioned denoiser: the text encoder and the network, trained and saved together.

One class, five stages (the paper's models, in the order they are trained):
- "t2i": ToyTextEncoder + UNet2D on single frames.
- "style": the T2I model fine-tuned on frames of one style (its text encoder frozen); the
  video model's spatial weights are interpolated towards it (stylized generation, 4.1).
- "video": the same text encoder (frozen) + the STUNet inflated from that UNet2D.
- "conditioning": the video model with 4 more input channels <C, M> (masked clip + mask),
  fine-tuned for image-to-video, inpainting and cinemagraphs.
- "ssr": spatial super-resolution, an inflated U-Net of its own (`cfg.ssr`) whose 3 extra
  input channels carry the upsampled base clip; trained from scratch on short windows.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .config import Config, STUNetConfig, UNetConfig
from .nn import STUNet, UNet2D
from .text import build_text_encoder

STAGES = ("t2i", "style", "video", "conditioning", "ssr")
IMAGE_STAGES = ("t2i", "style")                       # single frames, a UNet2D
COND_CHANNELS = {"t2i": 0, "style": 0, "video": 0, "conditioning": 4, "ssr": 3}   # extra input channels


def stage_networks(cfg: Config, stage: str) -> tuple[UNetConfig, STUNetConfig | None]:
    """The U-Net config and (for video stages) the inflation config a stage's network uses."""
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}; choose one of {list(STAGES)}")
    if stage in IMAGE_STAGES:
        return cfg.unet, None
    if stage == "video":
        return cfg.unet, cfg.stunet
    if stage == "conditioning":
        frozen = cfg.stunet.freeze_spatial and not cfg.train.cond_train_spatial
        return cfg.unet, dataclasses.replace(cfg.stunet, cond_channels=COND_CHANNELS[stage],
                                             freeze_spatial=frozen)
    ssr = cfg.ssr
    unet = dataclasses.replace(cfg.unet, channels=ssr.channels,
                               attention_levels=ssr.attention_levels,
                               cond_channels=COND_CHANNELS[stage])
    return unet, STUNetConfig(temporal_downsample=ssr.temporal_downsample,
                              temporal_kernel=cfg.stunet.temporal_kernel, freeze_spatial=False)


class TextConditionedDenoiser(nn.Module):
    """captions -> context -> net(x_t, t, context, cond). `stage` names which net it holds."""

    def __init__(self, cfg: Config, stage: str):
        super().__init__()
        unet_cfg, stunet_cfg = stage_networks(cfg, stage)
        self.cfg, self.stage = cfg, stage
        self.text = build_text_encoder(cfg.text)
        self.net = UNet2D(unet_cfg) if stunet_cfg is None else STUNet(unet_cfg, stunet_cfg)
        if stage == "style" or (stage in ("video", "conditioning") and cfg.stunet.freeze_spatial):
            self.text.requires_grad_(False)        # the T2I model's text encoder stays as it was

    @property
    def is_image_model(self) -> bool:
        return self.stage in IMAGE_STAGES

    @property
    def cond_channels(self) -> int:
        return COND_CHANNELS[self.stage]

    def forward(self, x_t, t, token_ids, token_mask, cond=None):
        """Training entry point (one module for DDP): tokens -> context -> prediction."""
        return self.net(x_t, t, self.text(token_ids, token_mask), cond)

    def encode(self, captions: list[str]) -> torch.Tensor:
        """captions (B,) -> context (B, L, D)."""
        context, _ = self.text.encode(captions)
        return context
