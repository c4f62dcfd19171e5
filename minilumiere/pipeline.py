"""Caption in, clip out: sampling a text-conditioned denoiser, and the `Pipeline` readers use.

    pipe = load_pipeline("toy")                      # the shipped weights, offline
    clip = pipe("a red circle moving left", seed=0)  # (T, H, W, 3) uint8
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import checkpoints
from .data import parse_caption, to_uint8
from .diffusion import Schedule, classifier_free_guidance, ddim_sample
from .model import TextConditionedDenoiser

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"


@torch.no_grad()
def sample(model: TextConditionedDenoiser, captions: list[str], seed: int | list[int] = 0,
           steps: int | None = None, guidance: float | None = None, eta: float = 0.0,
           progress: bool = False, trajectory: list | None = None) -> list[np.ndarray]:
    """DDIM samples with classifier-free guidance, one per caption: (T, H, W, 3) uint8 each
    ((1, H, W, 3) for a T2I model). Item i starts from noise seeded by seeds[i]."""
    cfg = model.cfg
    steps = cfg.diffusion.sample_steps if steps is None else steps
    guidance = cfg.diffusion.guidance if guidance is None else guidance
    seeds = [seed + i for i in range(len(captions))] if isinstance(seed, int) else list(seed)
    if len(seeds) != len(captions):
        raise ValueError(f"got {len(seeds)} seeds for {len(captions)} captions")
    for caption in captions:
        if caption:
            parse_caption(caption)
    device = next(model.parameters()).device
    shape = (3, cfg.size, cfg.size) if model.stage == "t2i" else (3, cfg.frames, cfg.size, cfg.size)
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s))
                         for s in seeds]).to(device)
    context = model.encode(captions)
    null_context = model.encode([""] * len(captions))
    model_fn = classifier_free_guidance(model.net, context, null_context, guidance)
    x0 = ddim_sample(model_fn, noise.shape, Schedule.named(cfg.diffusion.schedule,
                                                           cfg.diffusion.num_steps),
                     steps=steps, eta=eta, prediction=cfg.diffusion.prediction, x_T=noise,
                     clip_x0=True, progress=progress, trajectory=trajectory)
    if model.stage == "t2i":
        x0 = x0[:, :, None]                                   # (B, 3, 1, H, W)
    return [to_uint8(clip) for clip in x0]


class Pipeline:
    """The shipped models behind one call: `pipe(caption, seed=0) -> (T, H, W, 3) uint8`."""

    def __init__(self, video: TextConditionedDenoiser, t2i: TextConditionedDenoiser | None = None):
        self.video, self.t2i = video.eval(), (t2i.eval() if t2i is not None else None)
        self.cfg = video.cfg

    def __call__(self, caption: str, seed: int = 0, steps: int | None = None,
                 guidance: float | None = None) -> np.ndarray:
        _check_sampling_args(steps, guidance, self.cfg.diffusion.num_steps)
        return sample(self.video, [caption], seed, steps, guidance)[0]

    def image(self, caption: str, seed: int = 0, steps: int | None = None,
              guidance: float | None = None) -> np.ndarray:
        """A still from the T2I model the video model was inflated from: (H, W, 3) uint8."""
        if self.t2i is None:
            raise ValueError("this pipeline was loaded without its T2I model")
        _check_sampling_args(steps, guidance, self.cfg.diffusion.num_steps)
        return sample(self.t2i, [caption], seed, steps, guidance)[0][0]


def _check_sampling_args(steps, guidance, num_steps: int) -> None:
    if steps is not None and (not isinstance(steps, int) or not 1 <= steps <= num_steps):
        raise ValueError(f"steps={steps!r} must be an int from 1 to {num_steps}")
    if guidance is not None and not (isinstance(guidance, (int, float)) and 0 <= guidance <= 50):
        raise ValueError(f"guidance={guidance!r} must be a number from 0 to 50 (1 = no guidance)")


def load_pipeline(source: str | Path = "toy", device: str = "cpu") -> Pipeline:
    """"toy" (the shipped weights in checkpoints/toy/) or a folder holding t2i.safetensors
    and video.safetensors."""
    folder = SHIPPED / source if str(source) in ("toy",) else Path(source)
    video, t2i = folder / "video.safetensors", folder / "t2i.safetensors"
    if not video.is_file():
        raise FileNotFoundError(f"no video.safetensors in {folder}; pass 'toy' or a folder "
                                f"with t2i.safetensors and video.safetensors")
    return Pipeline(checkpoints.load(video, device=device),
                    checkpoints.load(t2i, device=device) if t2i.is_file() else None)
