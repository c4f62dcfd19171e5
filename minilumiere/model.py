"""A text-conditioned denoiser: the text encoder and the network, trained and saved together.

Stage "t2i": ToyTextEncoder + UNet2D on single frames. Stage "video": the same text encoder
(frozen) + the STUNet inflated from that UNet2D. Later stages (SSR, conditioning) are STUNets
with extra input channels.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import Config
from .nn import STUNet, UNet2D
from .text import build_text_encoder

STAGES = ("t2i", "video")


class TextConditionedDenoiser(nn.Module):
    """captions -> context -> net(x_t, t, context, cond). `stage` names which net it holds."""

    def __init__(self, cfg: Config, stage: str):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage={stage!r}; choose one of {list(STAGES)}")
        self.cfg, self.stage = cfg, stage
        self.text = build_text_encoder(cfg.text)
        self.net = UNet2D(cfg.unet) if stage == "t2i" else STUNet(cfg.unet, cfg.stunet)
        if stage == "video" and cfg.stunet.freeze_spatial:
            self.text.requires_grad_(False)        # the T2I model's text encoder stays as it was

    def forward(self, x_t, t, token_ids, token_mask, cond=None):
        """Training entry point (one module for DDP): tokens -> context -> prediction."""
        return self.net(x_t, t, self.text(token_ids, token_mask), cond)

    def encode(self, captions: list[str]) -> torch.Tensor:
        """captions (B,) -> context (B, L, D)."""
        context, _ = self.text.encode(captions)
        return context
