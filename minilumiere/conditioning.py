"""Conditioning by extra input channels: the model input is <J, C, M> (Lumiere, Section 4).

J is the noisy clip (3 channels), C a clip of the pixels we know, zero elsewhere (3), and M
a binary mask, 1 where C is known (1): 7 input channels instead of 3. One model, several
tasks, told apart only by what C and M hold:

    task              C                                   M
    none              0                                   0
    image-to-video    the image on frame 0, 0 after       1 on frame 0
    inpainting        the clip where known                1 on the known region
    cinemagraph       the image on every frame            1 on frame 0 and outside the region

Everything here works on tensors in [-1, 1]: clips (3, T, H, W), images (3, H, W), masks
bool (T, H, W) or (H, W). A condition is (4, T, H, W): C then M.
"""
from __future__ import annotations

import torch

from .diffusion import Schedule, from_x0_eps, to_x0_eps

TASKS = ("none", "image_to_video", "inpainting", "cinemagraph")


def condition(known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """<C, M> from a clip and the mask of its known pixels: (3, T, H, W), (T, H, W) -> (4, T, H, W)."""
    _check_clip("known", known)
    if mask.shape != known.shape[1:]:
        raise ValueError(f"mask has shape {tuple(mask.shape)}; it must be (T, H, W) = "
                         f"{tuple(known.shape[1:])}, matching the clip")
    m = mask.to(known.dtype)[None]                                   # (1, T, H, W)
    return torch.cat([known * m, m])


def unconditioned(frames: int, height: int, width: int) -> torch.Tensor:
    """Nothing known: C = 0, M = 0. (4, T, H, W)."""
    return torch.zeros(4, frames, height, width)


def image_to_video(image: torch.Tensor, frames: int) -> torch.Tensor:
    """The first frame is given: (3, H, W) -> (4, T, H, W)."""
    _check_image("image", image)
    known = image[:, None].expand(-1, frames, -1, -1)
    mask = torch.zeros(frames, *image.shape[1:], dtype=torch.bool)
    mask[0] = True
    return condition(known, mask)


def inpainting(clip: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill the unknown part of a clip: (3, T, H, W), known (T, H, W) bool -> (4, T, H, W)."""
    _check_clip("clip", clip)
    return condition(clip, known.bool())


def cinemagraph(image: torch.Tensor, region: torch.Tensor, frames: int) -> torch.Tensor:
    """Animate only `region` of a still: image (3, H, W), region (H, W) bool -> (4, T, H, W).
    Frame 0 is the image; outside the region every frame is the image."""
    _check_image("image", image)
    if region.shape != image.shape[1:]:
        raise ValueError(f"region has shape {tuple(region.shape)}; it must be (H, W) = "
                         f"{tuple(image.shape[1:])}, matching the image")
    known = image[:, None].expand(-1, frames, -1, -1)
    mask = (~region.bool())[None].repeat(frames, 1, 1)
    mask[0] = True
    return condition(known, mask)


def split(cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of <C, M> into the known pixels C (B, 3, T, H, W) and the mask M (B, 1, T, H, W)."""
    return cond[:, :3], cond[:, 3:4]


def hold_noise_still(noise: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
    """Starting noise for a clip whose `still` pixels must not move (a cinemagraph's outside):
    noise (B, 3, T, H, W), still (B, H, W) bool -> (B, 3, T, H, W).

    With fresh noise on every frame, the model redraws a still pixel a little differently on
    every frame, in two ways:
    - per pixel: each frame's noise there is different, and so is what the model makes of it.
      Here every frame gets frame 0's noise at the still pixels;
    - per frame: the mean of a frame's noise (per channel) is its lowest frequency, and the
      model turns it into the frame's overall colour, so every pixel shifts together from one
      frame to the next. Here the noise of the other pixels is shifted so that every frame's
      mean is frame 0's.
    The moving pixels keep fresh noise, and a clip without a still pixel keeps its noise as it
    is. Noise held still is not what a model trained on fresh noise expects: it can no longer
    tell a still pixel's noise from its content by comparing frames. So the conditioning
    stage trains its cinemagraph examples on this noise too (chapter 8 shows both starts)."""
    if still.shape != (noise.shape[0], *noise.shape[-2:]):
        raise ValueError(f"still has shape {tuple(still.shape)}; it must be (B, H, W) = "
                         f"{(noise.shape[0], *noise.shape[-2:])}, one mask per clip")
    still = still.bool().to(noise.device)[:, None, None]                # (B, 1, 1, H, W)
    held = torch.where(still, noise[:, :, :1], noise)
    moving = (~still).to(noise.dtype)
    count = moving.sum(dim=(-1, -2), keepdim=True).clamp(min=1)
    mean = (held * moving).sum(dim=(-1, -2), keepdim=True) / count      # (B, 3, T, 1, 1)
    held = held - moving * (mean - mean[:, :, :1])
    return torch.where(still.any(dim=(-1, -2), keepdim=True), held, noise)


def known_pixel_weights(cond: torch.Tensor, weight: float) -> torch.Tensor:
    """Loss weights for a batch of conditions: `weight` where M = 1, 1 elsewhere.
    (B, 4, T, H, W) -> (B, 1, T, H, W), broadcasting over the 3 colour channels."""
    return 1 + (weight - 1) * split(cond)[1]


def keep_known(model_fn, cond: torch.Tensor, schedule: Schedule, prediction: str):
    """Replacement at every step: wherever M = 1, overwrite the model's predicted x0 with C
    (and take the eps that goes with it), so the sampler lands exactly on the known pixels.

    A sampler-side guarantee, not something the model learned: the benchmark reports the
    conditioning model with and without it. cond (B, 4, T, H, W)."""
    known, mask = split(cond)

    def wrapped(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = schedule.abar(t, x_t)
        x0, _ = to_x0_eps(model_fn(x_t, t), x_t, abar, prediction)
        x0 = mask * known + (1 - mask) * x0
        x0, eps = to_x0_eps(x0, x_t, abar, "x0")              # the eps consistent with x_t
        return from_x0_eps(x0, eps, abar, prediction)
    return wrapped


def random_hole(frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """An inpainting mask (T, H, W) bool, True = known: everything but a box that covers
    30-70% of the frame's side, over all frames or a run of at least a quarter of them."""
    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (), generator=generator))
    height, width = draw(int(0.3 * size), int(0.7 * size)), draw(int(0.3 * size), int(0.7 * size))
    top, left = draw(0, size - height), draw(0, size - width)
    if torch.rand((), generator=generator) < 0.5:
        first, last = 0, frames
    else:
        length = draw(max(1, frames // 4), frames)
        first = draw(0, frames - length)
        last = first + length
    known = torch.ones(frames, size, size, dtype=torch.bool)
    known[first:last, top:top + height, left:left + width] = False
    return known


def _check_clip(name: str, clip: torch.Tensor) -> None:
    if not torch.is_tensor(clip) or clip.ndim != 4 or clip.shape[0] != 3:
        shape = tuple(clip.shape) if torch.is_tensor(clip) else type(clip).__name__
        raise ValueError(f"{name} must be a (3, T, H, W) tensor in [-1, 1], got {shape}")


def _check_image(name: str, image: torch.Tensor) -> None:
    if not torch.is_tensor(image) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise ValueError(f"{name} must be a (3, H, W) tensor in [-1, 1], got {shape}")
