"""Every measure of a generated clip, in one place: benchmarks, notebooks and tests import it.

Two kinds of measure, because a classifier that says "right" is not a measure of quality:
- the oracle's verdicts (`oracle_hits`, `oracle_table`): did the clip show the captioned
  colour, shape and direction at all;
- fidelity (`shape_iou`, `colour_error`, `background_flicker`, `tracked_path`): how close is
  what it shows to what the world draws, always reported beside the same figure for rendered
  clips of the same captions (`fidelity`), since even those do not score perfectly at 16 px;
- the look (`style_score`): how much of the outlined style (a hole in the shape) a clip shows.

Plus the plain signal measures (`psnr`, `frame_differences`) and `bootstrap_interval` for the
95% intervals every table reports. Clips are (T, H, W, 3) uint8 with square frames, as
`render_clip` and the pipeline give them.
"""
from __future__ import annotations

import numpy as np

from .data import COLORS, SHAPES, STYLES, parse_caption, read_caption
from .data.oracle import background_color, check_clip
from .data.toyvideos import area_per_r2, centroid_dy, shape_coverage

ATTRIBUTES = ("color", "shape", "direction")

RADIUS_SCALES = np.linspace(0.85, 1.15, 7)      # the template's size search, around the area's
OFFSETS = np.linspace(-1.0, 1.0, 9)             # its position search, in pixels, each axis
STANDOUT = 48.0             # a pixel at this RGB distance from the background may be the shape's
SHAPE_FIT = 0.5             # style_score reads a frame only where its best template explains this
                            # share of the colour's energy (a shape: nearly all; noise: little)


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
    return np.clip(_colour_projection(clip), 0.0, 1.0)


def _colour_projection(clip: np.ndarray) -> np.ndarray:
    """`shape_alpha` before clipping to [0, 1]: (T, H, W). Where few pixels hold the full
    colour (a thin outline at 16 px), the median is dimmer than the colour and the fully
    covered pixels project above 1; a fit that scales the projection can still use them."""
    check_clip(clip)
    offset = clip.astype(np.float64) - background_color(clip)            # (T, H, W, 3)
    standout = np.linalg.norm(offset, axis=-1) > STANDOUT                # (T, H, W)
    projection = np.zeros(clip.shape[:3])
    for t in range(len(clip)):
        if standout[t].any():
            color = np.median(offset[t][standout[t]], axis=0)            # (3,)
            projection[t] = offset[t] @ color / (color @ color)
    return projection


def shape_masks(clip: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: the pixels holding at least half the shape's colour."""
    return shape_alpha(clip) >= 0.5


def shape_iou(clip: np.ndarray, shape: str, style: str = "solid") -> np.ndarray:
    """Per frame, the IoU of the shape's mask with the best-fitting mask of `shape` drawn in
    `style` ("solid", the world's own, or "outlined"): (T,).

    The template starts at the mask's area and centroid, and is searched over sizes
    (RADIUS_SCALES) and positions (OFFSETS, +-1 pixel); the best IoU counts, so a clip is
    not punished for a shape drawn a little larger or off-centre, only for its outline.
    NaN on frames where no shape stands out."""
    _check_choice("shape", shape, SHAPES)
    _check_choice("style", style, STYLES)
    masks = shape_masks(clip)
    ious = np.full(len(clip), np.nan)
    for t, mask in enumerate(masks):
        if mask.any():
            window, place = _templates(mask, shape, style)
            templates = shape_coverage(shape, *place, style) >= 0.5             # (N, w, w)
            overlap = (templates & mask[window]).sum(axis=(1, 2))
            union = (templates | mask[window]).sum(axis=(1, 2))
            ious[t] = (overlap / union).max()
    return ious


def style_score(clip: np.ndarray) -> float:
    """How much of the outlined style a clip shows: the mean of `frame_style_scores` over
    the frames that show a shape; 0 for a solid shape, about 1 for an outlined one. NaN when
    no frame shows a shape."""
    scores = frame_style_scores(clip)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")


def frame_style_scores(clip: np.ndarray) -> np.ndarray:
    """Per frame, how empty the shape's inside is where an outline's hole would be: (T,)
    in [0, 1], NaN on frames with no shape to read (nothing stands out, or no template
    explains SHAPE_FIT of the frame's colour: noise, several blobs).

    The silhouette is the shape's mask with its holes filled. Around it, templates of every
    shape are searched as in `shape_iou`; each gives the solid coverage S and the coverage H
    of its outline's hole (the shape scaled by 1 - OUTLINE about its inscribed centre), and
    the colour projection P (`shape_alpha` unclipped) is fitted by least squares as
    P ~ c * (S - depth * H). The best-fitting template's depth is the score: 0 when the
    inside is full, 1 when the hole is background, 0.5 when it holds half the colour. The
    fit weighs the hole's anti-aliased pixels by how much of them the hole covers, so even
    a 16 px triangle's hole of a few partial pixels is measured; c absorbs a colour that the
    frame's median misjudges. Independent of the background's shade, like every measure here."""
    projection = _colour_projection(clip)                                # (T, H, W)
    silhouettes = _fill_holes(projection >= 0.5)
    scores = np.full(len(clip), np.nan)
    for t, silhouette in enumerate(silhouettes):
        if silhouette.any():
            scores[t] = _hole_depth(projection[t], silhouette)
    return scores


def _hole_depth(projection: np.ndarray, silhouette: np.ndarray) -> float:
    """The depth of the best-fitting template's hole in one frame (see `frame_style_scores`):
    projection (H, W) float, silhouette (H, W) bool -> a float in [0, 1], or NaN when no
    template explains SHAPE_FIT of the frame's projection (no shape to read)."""
    energy = (projection**2).sum()
    best_residual, depth = np.inf, float("nan")
    for shape in SHAPES:
        window, place = _templates(silhouette, shape, "solid")
        target = projection[window]                                      # (w, w)
        solid = shape_coverage(shape, *place)                            # (N, w, w)
        hole = solid - shape_coverage(shape, *place, "outlined")
        ss, sh, hh = (np.einsum("nij,nij->n", x, y) for x, y in ((solid, solid), (solid, hole),
                                                                  (hole, hole)))      # (N,)
        sp, hp = np.einsum("nij,ij->n", solid, target), np.einsum("nij,ij->n", hole, target)
        determinant = ss * hh - sh**2
        usable = (hh > 1e-6) & (determinant > 1e-9)                      # the template has a hole
        if not usable.any():
            continue
        # the normal equations of P ~ c * S - c_depth * H, per template; depth = c_depth / c.
        # The templates are zero outside the window, so the residual is the whole frame's.
        c = (hh * sp - sh * hp)[usable] / determinant[usable]
        c_depth = (sh * sp - ss * hp)[usable] / determinant[usable]
        residual = energy - c * sp[usable] + c_depth * hp[usable]
        best = int(np.argmin(residual))
        if residual[best] < best_residual and c[best] > 0:
            best_residual = residual[best]
            depth = float(np.clip(c_depth[best] / c[best], 0.0, 1.0))
    return depth if best_residual <= (1 - SHAPE_FIT) * energy else float("nan")


def _templates(mask: np.ndarray, shape: str, style: str):
    """The templates of `shape` in `style` to try against a frame's mask (H, W) bool, and
    the part of the frame they need: (window, place). window, a (rows, cols) pair of slices,
    is a square that holds the mask and every template (cutting the frame down to it
    changes no sum and saves most of the work at 64 px); place = (cx, cy, radius, width),
    `shape_coverage`'s arguments that draw the N templates on the window. They start at the
    mask's area and centroid and span RADIUS_SCALES x OFFSETS x OFFSETS."""
    size = mask.shape[0]
    ys, xs = np.nonzero(mask)
    scale, dx, dy = (g.ravel() for g in np.meshgrid(RADIUS_SCALES, OFFSETS, OFFSETS, indexing="ij"))
    radius = np.sqrt(mask.sum() / area_per_r2(shape, style)) * scale                 # (N,)
    cx = xs.mean() + 0.5 + dx
    cy = ys.mean() + 0.5 + dy - centroid_dy(shape, style) * radius
    # every shape lies within `radius` of its centre on each axis; its soft edge reaches
    # under 2 pixels further (1.12 at the triangle's apex)
    low = [min(ys.min(), int(np.floor((cy - radius).min() - 2))),
           min(xs.min(), int(np.floor((cx - radius).min() - 2)))]
    high = [max(ys.max() + 1, int(np.ceil((cy + radius).max() + 2))),
            max(xs.max() + 1, int(np.ceil((cx + radius).max() + 2)))]
    width = min(size, max(high[0] - low[0], high[1] - low[1]))
    y0, x0 = (int(np.clip(start, 0, size - width)) for start in low)
    window = (slice(y0, y0 + width), slice(x0, x0 + width))
    return window, (cx - x0, cy - y0, radius, width)


def colour_error(clip: np.ndarray, color: str) -> float:
    """Mean RGB distance (0-255) of the shape's core pixels (the mask, less its edge) to the
    captioned colour; NaN if no frame shows a shape."""
    _check_choice("color", color, COLORS)
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


def fidelity(clip: np.ndarray, caption: str, style: str = "solid") -> dict:
    """The fidelity of one clip to its caption, its shape measured against the template
    drawn in `style`: {"shape_iou": mean over frames, "colour_error", "background_flicker"}."""
    truth = caption_truth(caption)
    ious = shape_iou(clip, truth["shape"], style)
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


def _check_choice(name: str, value, accepted) -> None:
    if value not in accepted:
        raise ValueError(f"{name}={value!r}; accepted: {list(accepted)}")


def _fill_holes(masks: np.ndarray) -> np.ndarray:
    """(T, H, W) bool -> the masks with their holes filled: every pixel that the frame's
    border cannot reach through pixels outside the mask (stepping up, down, left, right)."""
    outside = ~masks
    reached = np.zeros_like(masks)
    reached[:, [0, -1], :] = outside[:, [0, -1], :]
    reached[:, :, [0, -1]] |= outside[:, :, [0, -1]]
    while True:
        padded = np.pad(reached, ((0, 0), (1, 1), (1, 1)))
        grown = (reached | padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2]
                 | padded[:, 1:-1, 2:]) & outside
        if (grown == reached).all():
            return ~reached
        reached = grown


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
