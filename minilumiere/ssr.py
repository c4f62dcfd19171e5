"""Spatial super-resolution (SSR): the base clip in, the clip at `cfg.ssr_size` out.

The SSR model is an inflated U-Net of its own (stage "ssr", `cfg.ssr`): it denoises a
high-resolution clip J given the caption and the base clip, upsampled to the high
resolution and fed in as 3 extra input channels. It sees only `ssr.window` frames at a time,
so a whole clip is denoised as overlapping windows blended at every step (MultiDiffusion,
`multidiffusion.py`). It trains on crops (`ssr.crop` pixels) of windows: it is convolutional
in space, and the crops make a training step cheap.

Low-resolution clips come from high-resolution ones by area averaging (what a camera
sensor with bigger pixels would see), which is what the base model was trained on too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .conditioning import hold_noise_still
from .diffusion import Schedule, classifier_free_guidance, ddim_sample
from .multidiffusion import multidiffusion, stitch, temporal_windows


def downsample(clip: torch.Tensor, factor: int) -> torch.Tensor:
    """Area average over factor x factor pixels: (..., T, H, W) -> (..., T, H/f, W/f)."""
    if clip.shape[-1] % factor or clip.shape[-2] % factor:
        raise ValueError(f"clip of {clip.shape[-2]}x{clip.shape[-1]} pixels is not divisible "
                         f"by the factor {factor}")
    return F.avg_pool3d(clip, (1, factor, factor))


def grain_block(cfg) -> int:
    """`render_clip`'s grain for real clips at `cfg.ssr_size`: the up-sampling factor when the
    SSR model is trained on grainy backgrounds (`cfg.ssr.grain`), else 0 (plain)."""
    return cfg.ssr_size // cfg.size if cfg.ssr.grain else 0


def upsample(clip: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize every frame to size x size: (..., C, T, h, w) -> (..., C, T, size, size)."""
    squeeze = clip.ndim == 4
    x = clip[None] if squeeze else clip                                  # (B, C, T, h, w)
    frames = rearrange(x, "b c t h w -> (b t) c h w")
    frames = F.interpolate(frames, size=(size, size), mode=mode, align_corners=False,
                           antialias=False)
    out = rearrange(frames, "(b t) c h w -> b c t h w", t=x.shape[2])
    return out[0] if squeeze else out


@torch.no_grad()
def super_resolve(model, low: torch.Tensor, captions: list[str], seeds: list[int],
                  steps: int | None = None, guidance: float | None = None,
                  window: int | None = None, overlap: int | None = None,
                  blended: bool = True, progress: bool = False,
                  still: torch.Tensor | None = None) -> torch.Tensor:
    """DDIM sampling of the SSR model over temporal windows.

    low (B, 3, T, h, w) in [-1, 1] -> (B, 3, T, ssr_size, ssr_size) in [-1, 1]. blended=True
    is MultiDiffusion (windows averaged at every step); blended=False samples each window on
    its own, from its own noise, and stitches the results (the baseline that shows seams).
    still (B, ssr_size, ssr_size) bool: pixels that stay still on every frame (a cinemagraph's
    outside); their noise is held still (`conditioning.hold_noise_still`).
    """
    cfg = model.cfg
    steps = cfg.ssr.sample_steps if steps is None else steps
    guidance = cfg.ssr.guidance if guidance is None else guidance
    window = cfg.ssr.window if window is None else window
    overlap = cfg.ssr.overlap if overlap is None else overlap
    if low.ndim != 5 or low.shape[1] != 3 or low.shape[-1] != cfg.size or low.shape[-2] != cfg.size:
        raise ValueError(f"low-res clips must be (B, 3, T, {cfg.size}, {cfg.size}), got "
                         f"{tuple(low.shape)}")
    if len(captions) != low.shape[0] or len(seeds) != low.shape[0]:
        raise ValueError(f"got {len(captions)} captions and {len(seeds)} seeds for "
                         f"{low.shape[0]} clips")
    device = next(model.parameters()).device
    frames, size = low.shape[2], cfg.ssr_size
    held = (lambda x: x) if still is None else (lambda x: hold_noise_still(x, still))
    windows = temporal_windows(frames, window, overlap)
    cond = upsample(low.to(device), size)                                # (B, 3, T, H, W)
    noise = held(_noise(seeds, (3, frames, size, size), device))
    context, null_context = model.encode(captions), model.encode([""] * len(captions))
    schedule = Schedule.named(cfg.diffusion.schedule, cfg.diffusion.num_steps)

    def window_fn(x_t, t, span):
        start, stop = span
        guided = classifier_free_guidance(model.net, context, null_context, guidance,
                                          cond=cond[:, :, start:stop])
        return guided(x_t, t)

    def run(model_fn, x_T):
        return ddim_sample(model_fn, x_T.shape, schedule, steps=steps,
                           prediction=cfg.diffusion.prediction, x_T=x_T, clip_x0=True,
                           progress=progress)

    if blended:
        return run(multidiffusion(window_fn, windows), noise)
    # each window its own sampling run from its own noise, as separate calls would be
    parts = [run(lambda x, t, span=span: window_fn(x, t, span),
                 held(_noise([s * len(windows) + i for s in seeds], (3, window, size, size),
                             device)))
             for i, span in enumerate(windows)]
    return stitch(parts, windows, frames)


def _noise(seeds: list[int], shape, device) -> torch.Tensor:
    """(len(seeds), *shape) standard normal noise, item i from a generator seeded seeds[i]."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s))
                        for s in seeds]).to(device)
