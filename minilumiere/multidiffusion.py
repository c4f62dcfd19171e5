"""MultiDiffusion over time: denoise a long clip as overlapping windows, blended every step.

A model that sees W frames at a time (memory) can still denoise a clip of any T >= W: cut
the clip into windows of W frames, consecutive windows sharing `overlap` frames (Lumiere:
2), the last window aligned to the end of the clip. At *every* denoising step each window
gets its own prediction, and the clip's prediction at frame f is the mean over the windows
that cover f. That mean is the least-squares reconciliation of the windows,

    argmin_J  sum_i || J[window_i] - Phi(J[window_i]) ||^2   (solved frame by frame),

and because a DDIM step is linear in the prediction, blending predictions is the same as
blending the windows' next states (exactly so without clipping the predicted x0; with
clipping, as the samplers here do, nearly so). Windows sampled on their own and stitched at the end
disagree where they meet (seams); blended windows never get the chance to.
"""
from __future__ import annotations

from typing import Callable

import torch

Window = tuple[int, int]          # [start, stop) in frames


def temporal_windows(frames: int, window: int, overlap: int) -> list[Window]:
    """Windows of `window` frames covering `frames`, consecutive ones sharing at least
    `overlap` frames; the last is aligned to the end (it may overlap its neighbour more)."""
    for name, value in (("frames", frames), ("window", window), ("overlap", overlap)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be an int")
    if window < 1:
        raise ValueError(f"window={window} must be at least 1 frame")
    if window > frames:
        raise ValueError(f"window={window} is longer than the clip ({frames} frames); use a "
                         f"window of 1 to {frames} frames")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap={overlap} must be from 0 to window - 1 = {window - 1}")
    stride = window - overlap
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return [(start, start + window) for start in starts]


def frame_weights(frames: int, windows: list[Window]) -> torch.Tensor:
    """(len(windows), frames): weight of window i at frame f, 1 / (windows covering f) inside
    window i and 0 outside. Every column sums to one."""
    cover = torch.zeros(len(windows), frames)
    for i, (start, stop) in enumerate(windows):
        cover[i, start:stop] = 1.0
    counts = cover.sum(0)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"windows {windows} leave frames {missing} uncovered")
    return cover / counts


def blend(predictions: list[torch.Tensor], windows: list[Window], frames: int) -> torch.Tensor:
    """Per-frame mean of window predictions: [(B, C, W, H, W')] -> (B, C, T, H, W')."""
    weights = frame_weights(frames, windows)
    first = predictions[0]
    out = first.new_zeros(first.shape[0], first.shape[1], frames, *first.shape[3:])
    for weight, (start, stop), prediction in zip(weights, windows, predictions):
        out[:, :, start:stop] += weight[start:stop].to(out).view(1, 1, -1, 1, 1) * prediction
    return out


WindowFn = Callable[[torch.Tensor, torch.Tensor, Window], torch.Tensor]


def multidiffusion(window_fn: WindowFn, windows: list[Window]):
    """A clip-level model_fn(x_t, t) from window_fn(x_t_window, t, (start, stop)): every
    call runs each window and blends (the per-step reconciliation)."""
    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        predictions = [window_fn(x_t[:, :, start:stop], t, (start, stop))
                       for start, stop in windows]
        return blend(predictions, windows, x_t.shape[2])
    return model_fn


def stitch(clips: list[torch.Tensor], windows: list[Window], frames: int) -> torch.Tensor:
    """The no-blending baseline: windows finished on their own, each frame taken from the
    first window that covers it. [(B, C, W, H, W')] -> (B, C, T, H, W')."""
    first = clips[0]
    out = first.new_zeros(first.shape[0], first.shape[1], frames, *first.shape[3:])
    filled = 0
    for clip, (start, stop) in zip(clips, windows):
        out[:, :, filled:stop] = clip[:, :, filled - start:]
        filled = max(filled, stop)
    return out


def window_borders(windows: list[Window]) -> list[int]:
    """Frames f where a stitched clip switches window between f - 1 and f."""
    borders, filled = [], 0
    for start, stop in windows:
        if filled > 0 and stop > filled:
            borders.append(filled)
        filled = max(filled, stop)
    return borders
