"""The oracle: read a caption back from a clip, or say None when it cannot tell.

It is how the book measures whether a generated clip matches its caption, so it is strict:
it reads the world's own model (a palette of colors over a uniform dark background, three
shape templates drawn by the same rasteriser, solid or outlined, a straight path at constant
speed) and answers None whenever the clip does not fit that model well.

The background is read from the clip (`background_color`), not assumed: a clip over another
dark shade than the world's own reads the same. Then, per frame:
1. color: the mean of the pixels that stand out from the background -> nearest palette color;
2. coverage: how much of that color each pixel holds (alpha in [0, 1]);
3. shape: fit each template, in each style, at the coverage's centroid and area; keep the
   clear winner (a shape's misfit is its better style's);
then over the clip: majority votes for color and shape, a least-squares line through the
centroids for the direction.
"""
from __future__ import annotations

import numpy as np

from .toyvideos import (BACKGROUND, COLORS, DIRECTIONS, SHAPES, STYLES, area_per_r2, centroid_dy,
                        shape_coverage)

_PALETTE = {name: np.asarray(rgb, dtype=np.float64) for name, rgb in COLORS.items()}
_MIN_CONTRAST = min(np.linalg.norm(c - np.asarray(BACKGROUND)) for c in _PALETTE.values())

# Thresholds (pixel values in 0..255, lengths as a share of the frame).
DARK = 64                          # a background's brightest channel, at most
STANDOUT = 0.35 * _MIN_CONTRAST    # a pixel "stands out" from the background above this
FULL_COVERAGE = 0.8                # the shape's core must reach this coverage of its color
AREA_RANGE = (0.03, 0.30)          # shape area as a share of the frame
IMPURITY = 0.15                    # share of the standing-out energy the color may leave unexplained
FAINT = 0.1                        # coverage below this is background noise
SHAPE_ERROR = 0.25                 # template misfit (L1 / area) of the winner, at most
SHAPE_MARGIN = 0.08                # winner's misfit at least this much below the runner-up
VOTE = 0.7                         # share of frames that must agree
MIN_TRAVEL = 0.12                  # the path must cover this much of the frame ...
MAX_CROSS = 0.35                   # ... with the cross-axis at most this share of it
MAX_PATH_RESIDUAL = 0.04           # RMS distance of centroids from a straight, constant-speed path


def read_caption(clip: np.ndarray) -> dict:
    """Read {"color", "shape", "direction"} from a (T, H, W, 3) uint8 clip; None = can't tell."""
    check_clip(clip)
    background = background_color(clip)
    if background.max() > DARK:
        return {"color": None, "shape": None, "direction": None}
    frames = [_read_frame(frame, background) for frame in clip.astype(np.float64)]
    color = _vote([f["color"] for f in frames])
    shape = _vote([f["shape"] if f["color"] == color else None for f in frames]) if color else None
    direction = _direction(frames, clip.shape[2], clip.shape[1]) if color else None
    return {"color": color, "shape": shape, "direction": direction}


def background_color(clip: np.ndarray) -> np.ndarray:
    """The clip's background RGB (3,) float: the per-channel median of all its pixels. The
    shape covers at most a third of any frame, so the median is a background pixel's value,
    whatever shade the background is."""
    return np.median(clip.reshape(-1, 3), axis=0).astype(np.float64)


def check_clip(clip) -> None:
    """A (T, H, W, 3) uint8 clip with T >= 2 and square frames of at least 8 pixels, or an
    error that names what is wrong."""
    if not isinstance(clip, np.ndarray):
        raise TypeError(f"clip must be a numpy array (T, H, W, 3) uint8, got {type(clip).__name__}")
    if clip.dtype != np.uint8:
        raise TypeError(f"clip has dtype {clip.dtype}; it must be uint8 (0-255), (T, H, W, 3)")
    if (clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < 2 or clip.shape[1] < 8
            or clip.shape[1] != clip.shape[2]):
        raise ValueError(f"clip has shape {clip.shape}; it must be (T, H, W, 3) with T >= 2 "
                         f"frames and square frames H == W >= 8 (the toy world's)")


def _read_frame(frame: np.ndarray, background: np.ndarray) -> dict:
    """One (H, W, 3) float frame over a background (3,) -> {"color", "shape", "centroid"}
    (None where unsure)."""
    empty = {"color": None, "shape": None, "centroid": None}
    height, width = frame.shape[:2]
    offset = frame - background                                    # (H, W, 3)
    standout = np.linalg.norm(offset, axis=-1) > STANDOUT           # (H, W)
    if not AREA_RANGE[0] <= standout.mean() <= AREA_RANGE[1]:
        return empty
    color, alpha = _fit_color(offset, standout, background)
    if color is None:
        return empty
    alpha = np.where(alpha < FAINT, 0.0, alpha)       # faint background noise is not the shape
    area = alpha.sum()
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    centroid = np.array([(alpha * xs).sum(), (alpha * ys).sum()]) / area
    return {"color": color, "shape": _best_shape(alpha, area, centroid),
            "centroid": centroid / np.array([width, height])}


def _fit_color(offset: np.ndarray, standout: np.ndarray, background: np.ndarray):
    """The palette color that explains the frame best, with its coverage alpha (H, W).

    Each pixel is modelled as background + alpha * (color - background); the color whose
    model leaves the least energy unexplained on the pixels that stand out wins, if that is
    little and the shape's core reaches the full color (alpha near 1). Otherwise (None, None).
    """
    energy = np.linalg.norm(offset[standout], axis=-1).sum()
    best, best_alpha, best_unexplained = None, None, np.inf
    for name, rgb in _PALETTE.items():
        target = rgb - background
        alpha = np.clip(offset @ target / (target @ target), 0.0, 1.0)          # (H, W)
        residual = offset - alpha[..., None] * target
        unexplained = np.linalg.norm(residual[standout], axis=-1).sum()
        if unexplained < best_unexplained:
            best, best_alpha, best_unexplained = name, alpha, unexplained
    if best_unexplained > IMPURITY * energy or best_alpha.max() < FULL_COVERAGE:
        return None, None
    return best, best_alpha


def _best_shape(alpha: np.ndarray, area: float, centroid: np.ndarray) -> str | None:
    """Fit every template with the same area and centroid; return the clear winner or None."""
    misfit = {shape: min(_misfit(alpha, area, centroid, shape, style) for style in STYLES)
              for shape in SHAPES}
    ranked = sorted(misfit, key=misfit.get)
    best, runner_up = ranked[0], ranked[1]
    if misfit[best] > SHAPE_ERROR or misfit[runner_up] - misfit[best] < SHAPE_MARGIN:
        return None
    return best


def _misfit(alpha: np.ndarray, area: float, centroid: np.ndarray, shape: str, style: str) -> float:
    """L1 distance (per unit area) of the coverage from the template of `shape` in `style`
    that has its area and centroid."""
    radius = np.sqrt(area / area_per_r2(shape, style))
    cy = centroid[1] - centroid_dy(shape, style) * radius
    template = shape_coverage(shape, [centroid[0]], [cy], [radius], alpha.shape[0], style)[0]
    return np.abs(template - alpha).sum() / area


def _vote(labels: list) -> str | None:
    """The label most frames agree on, if at least VOTE of all frames do."""
    known = [label for label in labels if label is not None]
    if not known:
        return None
    winner = max(set(known), key=known.count)
    return winner if known.count(winner) >= VOTE * len(labels) else None


def _direction(frames: list[dict], width: int, height: int) -> str | None:
    """Direction of a straight, constant-speed path through the centroids, or None."""
    times = np.array([t for t, f in enumerate(frames) if f["centroid"] is not None], dtype=float)
    if len(times) < max(2, VOTE * len(frames)):
        return None
    points = np.stack([f["centroid"] for f in frames if f["centroid"] is not None])  # (n, 2)
    design = np.stack([np.ones_like(times), times], axis=1)                         # (n, 2)
    coefficients, *_ = np.linalg.lstsq(design, points, rcond=None)                  # (2, 2)
    residual = points - design @ coefficients
    if np.sqrt((residual**2).sum(axis=1).mean()) > MAX_PATH_RESIDUAL:
        return None
    travel = coefficients[1] * (len(frames) - 1)                                    # (dx, dy)
    major = int(np.argmax(np.abs(travel)))
    if abs(travel[major]) < MIN_TRAVEL or abs(travel[1 - major]) > MAX_CROSS * abs(travel[major]):
        return None
    sign = int(np.sign(travel[major]))
    for name, (dx, dy) in DIRECTIONS.items():
        if (dx, dy)[major] == sign:
            return name
    return None
