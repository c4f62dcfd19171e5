"""Every measure of a generated clip, in one place: benchmarks, notebooks and tests import it.

Two kinds of measure, because a classifier that says "right" is not a measure of quality:
- the oracle's verdicts (`oracle_hits`, `oracle_table`): did the clip show the captioned
  colour, shape and direction at all;
- fidelity (`shape_iou`, `colour_error`, `background_flicker`, `tracked_path`): how close is
  what it shows to what the world draws, always reported beside the same figure for rendered
  clips of the same captions (`fidelity`), since even those do not score perfectly at 16 px.

Plus the plain signal measures (`psnr`, `frame_differences`) and `bootstrap_interval` for the
95% intervals every table reports. Clips are (T, H, W, 3) uint8 with square frames, as
`render_clip` and the pipeline give them.
"""
from __future__ import annotations

import numpy as np

from .data import COLORS, SHAPES, parse_caption, read_caption
from .data.oracle import background_color, check_clip
from .data.toyvideos import AREA_PER_R2, CENTROID_DY, shape_coverage

ATTRIBUTES = ("color", "shape", "direction")

RADIUS_SCALES = np.linspace(0.85, 1.15, 7)      # the template's size search, around the area's
OFFSETS = np.linspace(-1.0, 1.0, 9)             # its position search, in pixels, each axis
STANDOUT = 48.0             # a pixel at this RGB distance from the background may be the shape's


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays of one shape; inf when identical."""
    if a.shape != b.shape:
        raise ValueError(f"psnr needs arrays of one shape; got {a.shape} and {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def frame_differences(clip: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T - 1,) mean |frame f+1 - frame f| in 1/255."""
    check_clip(clip)
    return np.abs(np.diff(clip.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))


def caption_truth(caption: str) -> dict:
    """`"a red circle moving left"` -> {"color": "red", "shape": "circle", "direction": "left"}."""
    return dict(zip(ATTRIBUTES, parse_caption(caption)))


def oracle_hits(clip: np.ndarray, caption: str) -> dict:
    """Which attributes the oracle reads as captioned: {"color", "shape", "direction", "all"}: bool."""
    read, truth = read_caption(clip), caption_truth(caption)
    hits = {a: read[a] == truth[a] for a in ATTRIBUTES}
    return {**hits, "all": all(hits.values())}


def oracle_table(clips, captions) -> dict:
    """Share (in %) of clips with each attribute, and all three, read as captioned."""
    hits = [oracle_hits(clip, caption) for clip, caption in zip(clips, captions, strict=True)]
    return {key: 100 * float(np.mean([h[key] for h in hits])) for key in (*ATTRIBUTES, "all")}


def shape_alpha(clip: np.ndarray) -> np.ndarray:
    """How much of the shape's colour each pixel holds: (T, H, W) in [0, 1].

    Per frame, the shape's colour is the median offset from the background of the pixels
    that stand out, and a pixel's alpha is its offset projected on that colour (the
    rasteriser's model: background + alpha * (colour - background)). A frame with nothing
    standing out is all zero."""
    check_clip(clip)
    offset = clip.astype(np.float64) - background_color(clip)            # (T, H, W, 3)
    standout = np.linalg.norm(offset, axis=-1) > STANDOUT                # (T, H, W)
    alpha = np.zeros(clip.shape[:3])
    for t in range(len(clip)):
        if standout[t].any():
            color = np.median(offset[t][standout[t]], axis=0)            # (3,)
            alpha[t] = np.clip(offset[t] @ color / (color @ color), 0.0, 1.0)
    return alpha


def shape_masks(clip: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: the pixels holding at least half the shape's colour."""
    return shape_alpha(clip) >= 0.5


def shape_iou(clip: np.ndarray, shape: str) -> np.ndarray:
    """Per frame, the IoU of the shape's mask with the best-fitting mask of `shape`: (T,).

    The template starts at the mask's area and centroid, and is searched over sizes
    (RADIUS_SCALES) and positions (OFFSETS, +-1 pixel); the best IoU counts, so a clip is
    not punished for a shape drawn a little larger or off-centre, only for its outline.
    NaN on frames where no shape stands out."""
    if shape not in SHAPES:
        raise ValueError(f"shape={shape!r}; accepted: {list(SHAPES)}")
    masks = shape_masks(clip)
    size = clip.shape[1]
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    scale, dx, dy = (g.ravel() for g in np.meshgrid(RADIUS_SCALES, OFFSETS, OFFSETS, indexing="ij"))
    ious = np.full(len(clip), np.nan)
    for t, mask in enumerate(masks):
        area = mask.sum()
        if area == 0:
            continue
        cx, cy = xs[mask].mean(), ys[mask].mean()
        radius = np.sqrt(area / AREA_PER_R2[shape]) * scale                          # (N,)
        templates = shape_coverage(shape, cx + dx, cy + dy - CENTROID_DY[shape] * radius,
                                   radius, size) >= 0.5                              # (N, H, W)
        overlap = (templates & mask).sum(axis=(1, 2))
        union = (templates | mask).sum(axis=(1, 2))
        ious[t] = (overlap / union).max()
    return ious


def colour_error(clip: np.ndarray, color: str) -> float:
    """Mean RGB distance (0-255) of the shape's core pixels (the mask, less its edge) to the
    captioned colour; NaN if no frame shows a shape."""
    if color not in COLORS:
        raise ValueError(f"color={color!r}; accepted: {list(COLORS)}")
    masks = shape_masks(clip)
    core = masks & _shrink(masks)
    core = np.where(core.any(axis=(1, 2), keepdims=True), core, masks)   # tiny shapes: all of it
    if not core.any():
        return float("nan")
    pixels = clip[core].astype(np.float64)                               # (n, 3)
    return float(np.linalg.norm(pixels - np.asarray(COLORS[color]), axis=-1).mean())


def background_flicker(clip: np.ndarray) -> float:
    """Mean |frame f+1 - frame f| (1/255) over the background: the pixels that are not the
    shape's, nor next to it, in either frame (VBench's temporal flickering, on the
    background only, so the shape's own motion does not count)."""
    masks = shape_alpha(clip) > 0.05                                     # any trace of the shape
    near = _grow(masks)
    background = ~(near[1:] | near[:-1])                                 # (T - 1, H, W)
    if not background.any():
        return float("nan")
    change = np.abs(np.diff(clip.astype(np.float64), axis=0)).mean(axis=-1)   # (T - 1, H, W)
    return float(change[background].mean())


def tracked_path(clip: np.ndarray) -> np.ndarray:
    """The shape's centroid per frame, (T, 2) as (x, y) in [0, 1] of the frame (y down);
    NaN on frames where no shape stands out."""
    alpha = shape_alpha(clip)
    alpha = np.where(alpha >= 0.5, alpha, 0.0)                           # the mask's pixels only
    size = clip.shape[1]
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    mass = alpha.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        path = np.stack([(alpha * xs).sum(axis=(1, 2)), (alpha * ys).sum(axis=(1, 2))], axis=1)
        return path / mass[:, None] / size


def path_error(clip: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance (share of the frame) between two clips' tracked paths, over the frames
    where both show a shape; NaN if none does."""
    if clip.shape[0] != reference.shape[0]:
        raise ValueError(f"clip has {clip.shape[0]} frames and reference {reference.shape[0]}; "
                         f"paths are compared frame by frame")
    distance = np.linalg.norm(tracked_path(clip) - tracked_path(reference), axis=1)
    return float(np.nanmean(distance)) if np.isfinite(distance).any() else float("nan")


def fidelity(clip: np.ndarray, caption: str) -> dict:
    """The fidelity of one clip to its caption: {"shape_iou": mean over frames,
    "colour_error", "background_flicker"}."""
    truth = caption_truth(caption)
    ious = shape_iou(clip, truth["shape"])
    return {"shape_iou": float(np.nanmean(ious)) if np.isfinite(ious).any() else 0.0,
            "colour_error": colour_error(clip, truth["color"]),
            "background_flicker": background_flicker(clip)}


def bootstrap_interval(values, confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of `values` (one per clip)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        raise ValueError(f"values has {len(values)} finite entries; an interval needs at least 2")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be between 0 and 1")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _shrink(masks: np.ndarray) -> np.ndarray:
    """(T, H, W) bool -> the pixels whose four neighbours are all in the mask (edge pixels out)."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    return (padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2]
            & padded[:, 1:-1, 2:] & masks)


def _grow(masks: np.ndarray) -> np.ndarray:
    """(T, H, W) bool -> the mask and its eight neighbours (one pixel wider all round)."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    size = masks.shape[1]
    grown = np.zeros_like(masks)
    for dy in range(3):
        for dx in range(3):
            grown |= padded[:, dy:dy + size, dx:dx + size]
    return grown
