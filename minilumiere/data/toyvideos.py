"""The toy world: procedural captioned videos, deterministic by seed.

One solid shape on a dark background, moving in a straight line at constant speed,
fully inside the frame for the whole clip, travelling at least a quarter of the frame.
Captions follow the grammar `a {color} {shape} moving {direction}`. Shapes are drawn
with anti-aliased edges (pixel coverage from a signed distance), so downsampling and
super-resolution have something real to lose and recover.

Shapes come in two styles (`style=`): "solid", the world's own, and "outlined", a band
along the edge whose width is OUTLINE of the shape's inradius, leaving a hole of the
background's colour. The style is a look, not a caption word: Lumiere's stylized generation
(chapter 9) gets it from a text-to-image model fine-tuned on styled frames.

On request (`grain=g`) the background carries a static grain finer than g x g pixels: every
g x g block of it averages to the background colour, so it vanishes when the clip is
area-downsampled by g. A clip at the base resolution cannot tell the grain, so a
super-resolution model has to invent it, and must invent it the same way on every frame.
"""
from __future__ import annotations

import hashlib
import itertools

import numpy as np
import torch
from torch.utils.data import Dataset

COLORS = {  # name -> RGB in [0, 255]
    "red": (230, 45, 45),
    "green": (40, 200, 60),
    "blue": (55, 90, 245),
    "yellow": (235, 215, 40),
    "cyan": (40, 215, 225),
    "magenta": (215, 50, 215),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (dx, dy), y down
BACKGROUND = (16, 16, 24)
GRAMMAR = "a {color} {shape} moving {direction}"
STYLES = ("solid", "outlined")

MIN_SIZE, MAX_SIZE = 16, 256
MIN_FRAMES, MAX_FRAMES = 2, 128
RADIUS_RANGE = (0.17, 0.24)   # half-extent of the shape, as a share of the frame
MIN_TRAVEL = 0.25             # share of the frame travelled over the clip
GRAIN_AMPLITUDE = 8.0         # background grain: uniform in +-8/255 before the block means go

# Held out of training: 12 of the 72 combinations, i -> (color i mod 6, shape i mod 3,
# direction i mod 4). Every color is held out twice, every shape four times, every
# direction three times, so each word is still seen in training, only the combination is new.
HELDOUT = tuple(
    (list(COLORS)[i % 6], SHAPES[i % 3], list(DIRECTIONS)[i % 4]) for i in range(12)
)


def caption_of(color: str, shape: str, direction: str) -> str:
    return GRAMMAR.format(color=color, shape=shape, direction=direction)


def parse_caption(caption: str) -> tuple[str, str, str]:
    """`"a red circle moving left"` -> `("red", "circle", "left")`; ValueError names the bad word."""
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a str, got {type(caption).__name__}")
    words = caption.strip().lower().split()
    slots = [("a", {"a"}), ("color", COLORS), ("shape", SHAPES), ("moving", {"moving"}),
             ("direction", DIRECTIONS)]
    if len(words) != len(slots):
        raise ValueError(f"caption {caption!r} has {len(words)} words; the grammar is "
                         f"{GRAMMAR!r} with color in {list(COLORS)}, shape in {list(SHAPES)}, "
                         f"direction in {list(DIRECTIONS)}")
    for word, (slot, allowed) in zip(words, slots):
        if word not in allowed:
            raise ValueError(f"caption {caption!r}: {word!r} is not a valid {slot}; expected one of "
                             f"{sorted(allowed)} (grammar {GRAMMAR!r})")
    return words[1], words[2], words[4]


def captions(split: str = "train") -> list[str]:
    """All captions of a split: "train" (60), "heldout" (12) or "all" (72)."""
    combos = list(itertools.product(COLORS, SHAPES, DIRECTIONS))
    if split == "all":
        chosen = combos
    elif split == "train":
        chosen = [c for c in combos if c not in HELDOUT]
    elif split == "heldout":
        chosen = list(HELDOUT)
    else:
        raise ValueError(f"split={split!r}; choose 'train', 'heldout' or 'all'")
    return [caption_of(*c) for c in chosen]


# Each shape's area per unit radius squared, and its centroid's offset below the centre (in
# radii), as `shape_coverage` draws them: what a reader of shapes fits a template with.
AREA_PER_R2 = {"circle": np.pi, "square": 1.7**2, "triangle": 2.0}
CENTROID_DY = {"circle": 0.0, "square": 0.0, "triangle": 1.0 / 3.0}
# The inradius (the largest inscribed circle's radius) per unit radius: 1 for the circle,
# the square's half-side, and the triangle's area over its semi-perimeter, 2 / (1 + sqrt 5).
INRADIUS = {"circle": 1.0, "square": 0.85, "triangle": 2.0 / (1.0 + np.sqrt(5.0))}
OUTLINE = 0.6     # an outlined shape's band: this share of the inradius; the hole is the
                  # shape shrunk by 1 - OUTLINE about the inscribed circle's centre


def area_per_r2(shape: str, style: str = "solid") -> float:
    """A shape's area per unit radius squared, as `shape_coverage` draws it in a style: an
    outline is the shape less its hole, the shape scaled by 1 - OUTLINE."""
    return AREA_PER_R2[shape] * (1.0 if style == "solid" else 1.0 - (1.0 - OUTLINE) ** 2)


def centroid_dy(shape: str, style: str = "solid") -> float:
    """How far below the centre (in radii) a shape's centroid sits, in a style. The hole is
    scaled about the inscribed circle's centre, which sits 1 - INRADIUS below the centre."""
    if style == "solid":
        return CENTROID_DY[shape]
    keep = 1.0 - OUTLINE
    incentre = 1.0 - INRADIUS[shape] if shape == "triangle" else 0.0
    hole = incentre + keep * (CENTROID_DY[shape] - incentre)
    return (CENTROID_DY[shape] - keep**2 * hole) / (1.0 - keep**2)


def shape_coverage(shape: str, cx, cy, radius, size: int, style: str = "solid") -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape per frame.

    cx, cy, radius: arrays (T,) in pixels (pixel centres sit at i + 0.5). Returns (T, H, W).
    The coverage is 0.5 - signed distance (in pixels), clipped: a one-pixel soft edge. An
    outlined shape's coverage is the shape's minus that of the shape eroded by the band's
    width (the points more than that inside the edge).
    """
    if style not in STYLES:
        raise ValueError(f"style={style!r}; choose one of {list(STYLES)}")
    coords = np.arange(size) + 0.5
    x = coords[None, None, :] - np.asarray(cx, dtype=np.float64)[:, None, None]  # (T, 1, W)
    y = coords[None, :, None] - np.asarray(cy, dtype=np.float64)[:, None, None]  # (T, H, 1)
    r = np.asarray(radius, dtype=np.float64)[:, None, None]
    if shape == "circle":
        distance = np.sqrt(x**2 + y**2) - r
    elif shape == "square":
        distance = np.maximum(np.abs(x), np.abs(y)) - 0.85 * r
    elif shape == "triangle":
        distance = _triangle_distance(x, y, r)
    else:
        raise ValueError(f"shape={shape!r}; choose one of {list(SHAPES)}")
    coverage = np.clip(0.5 - distance, 0.0, 1.0)
    if style == "outlined":
        band = OUTLINE * INRADIUS[shape] * r
        coverage = coverage - np.clip(0.5 - distance - band, 0.0, 1.0)
    return coverage


def _triangle_distance(x, y, r):
    """Signed distance (exact inside, a bound outside) to an upward triangle with apex
    (0, -r), base corners (+-r, r): the max over its three edges' half-planes."""
    # Edges: base y = r (outward normal (0, 1)); sides through apex, outward normals (+-2, -1)/sqrt(5).
    base = y - r
    right = (2 * x - y - r) / np.sqrt(5)
    left = (-2 * x - y - r) / np.sqrt(5)
    return np.maximum(base, np.maximum(right, left))


def trajectory(direction: str, frames: int, rng: np.random.Generator):
    """A random straight path in [0, 1] units: (cx, cy) of shape (T,), and the radius.

    The shape stays inside the frame on every frame and travels between MIN_TRAVEL and
    the most the free space allows.
    """
    radius = rng.uniform(*RADIUS_RANGE)
    margin = radius + 0.02
    span = 1.0 - 2 * margin                       # where the centre may be
    travel = rng.uniform(MIN_TRAVEL, span)
    dx, dy = DIRECTIONS[direction]
    start_along = rng.uniform(margin, margin + span - travel)
    across = rng.uniform(margin, margin + span)
    progress = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    along = start_along + travel * progress        # increasing coordinate
    if dx + dy < 0:                                # left / up: run it backwards
        along = along[::-1]
    cx, cy = (along, np.full(frames, across)) if dx else (np.full(frames, across), along)
    return cx, cy, radius


def render_clip(caption: str, seed: int = 0, frames: int = 16, size: int = 32,
                grain: int = 0, background=BACKGROUND, style: str = "solid",
                only_frame: int | None = None) -> np.ndarray:
    """Render the clip a caption describes: (T, H, W, 3) uint8.

    Same caption, seed, frames and size: same clip. Position, size and speed vary by seed,
    not by style: an outlined clip has the solid one's path and size. only_frame=f renders
    frame f of that clip alone, (1, H, W, 3), the same pixels at 1/T of the cost (what a
    text-to-image model trains on).
    grain=g > 1 puts a static grain on the background whose g x g blocks average to the
    plain background (g must divide size); the shape and its path are the same as without.
    background: its RGB (the world's own by default; another shade keeps everything else).
    """
    color, shape, direction = parse_caption(caption)
    _check_int("size", size, MIN_SIZE, MAX_SIZE)
    _check_int("frames", frames, MIN_FRAMES, MAX_FRAMES)
    _check_int("seed", seed, 0, 2**63 - 1)
    _check_grain(grain, size)
    _check_rgb("background", background)
    rng = np.random.default_rng([_stable_hash(caption_of(color, shape, direction)), int(seed)])
    cx, cy, radius = trajectory(direction, frames, rng)
    if only_frame is not None:
        _check_int("only_frame", only_frame, 0, frames - 1)
        cx, cy = cx[only_frame:only_frame + 1], cy[only_frame:only_frame + 1]
    alpha = shape_coverage(shape, cx * size, cy * size, np.full(len(cx), radius * size), size, style)
    background = np.asarray(background, dtype=np.float64)
    if grain > 1:
        background = background + background_grain(size, grain, rng)[..., None]   # (H, W, 3)
    clip = _composite(alpha, COLORS[color], background)
    return np.round(clip).astype(np.uint8)


def background_grain(size: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) grain in 1/255: uniform noise minus its mean over each block x block tile."""
    noise = rng.uniform(-GRAIN_AMPLITUDE, GRAIN_AMPLITUDE, (size, size))
    tiles = noise.reshape(size // block, block, size // block, block)
    return (tiles - tiles.mean(axis=(1, 3), keepdims=True)).reshape(size, size)


def _check_grain(grain, size: int) -> None:
    _check_int("grain", grain, 0, size)
    if grain > 1 and size % grain:
        raise ValueError(f"grain={grain} must divide size={size} (blocks tile the frame), "
                         f"or be 0 for a plain background")


STILL_RADIUS = (0.07, 0.11)   # the cinemagraph's still second shape, as a share of the frame


def render_cinemagraph(caption: str, seed: int = 0, frames: int = 16,
                       size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A clip for cinemagraphs: the captioned shape moving as usual, plus a second, smaller
    shape of another color that never moves, placed outside the box the first one sweeps.

    Returns (clip (T, H, W, 3) uint8, region (H, W) bool): the region is that swept box,
    one pixel wider on every side, so everything outside it is still on every frame.
    """
    color, shape, direction = parse_caption(caption)
    _check_int("size", size, MIN_SIZE, MAX_SIZE)
    _check_int("frames", frames, MIN_FRAMES, MAX_FRAMES)
    _check_int("seed", seed, 0, 2**63 - 1)
    rng = np.random.default_rng([_stable_hash("still " + caption_of(color, shape, direction)),
                                 int(seed)])
    cx, cy, radius = trajectory(direction, frames, rng)
    moving = shape_coverage(shape, cx * size, cy * size, np.full(frames, radius * size), size)
    rows, cols = np.nonzero(moving.max(axis=0) > 0)          # every pixel the shape touches
    y0, y1 = max(rows.min() - 1, 0), min(rows.max() + 1, size - 1)
    x0, x1 = max(cols.min() - 1, 0), min(cols.max() + 1, size - 1)
    region = np.zeros((size, size), dtype=bool)
    region[y0:y1 + 1, x0:x1 + 1] = True
    pad = 1.0 / size
    box = (x0 / size, (x1 + 1) / size, y0 / size, (y1 + 1) / size)   # in [0, 1] units
    still_x, still_y, still_radius = _still_place(box, direction, rng, pad)
    still_color = rng.choice([c for c in COLORS if c != color])
    still_shape = SHAPES[rng.integers(len(SHAPES))]
    still = shape_coverage(still_shape, [still_x * size], [still_y * size],
                           [still_radius * size], size)[0]
    clip = _composite(np.broadcast_to(still, moving.shape), COLORS[still_color])
    clip = clip + moving[..., None] * (np.asarray(COLORS[color], dtype=np.float64) - clip)
    return np.round(clip).astype(np.uint8), region


def _still_place(box, direction: str, rng: np.random.Generator, pad: float):
    """Centre and radius of the still shape, in the wider free band beside the swept box."""
    horizontal = DIRECTIONS[direction][0] != 0
    low, high = (box[2], box[3]) if horizontal else (box[0], box[1])    # the box, across motion
    before, after = low, 1.0 - high                                     # free space either side
    band = max(before, after)
    radius = min(rng.uniform(*STILL_RADIUS), (band - pad) / 2)
    across = (low - pad / 2 - radius) if before >= after else (high + pad / 2 + radius)
    along = rng.uniform(radius + pad, 1.0 - radius - pad)
    return ((along, across) if horizontal else (across, along)) + (radius,)


def _composite(alpha: np.ndarray, color, background=BACKGROUND) -> np.ndarray:
    """Blend a color over the background (RGB, or (H, W, 3)) with coverage alpha (T, H, W)
    -> (T, H, W, 3) float."""
    background = np.asarray(background, dtype=np.float64)
    foreground = np.asarray(color, dtype=np.float64)
    return background + alpha[..., None] * (foreground - background)


def _check_rgb(name: str, rgb) -> None:
    values = np.asarray(rgb)
    if values.shape != (3,) or not np.issubdtype(values.dtype, np.integer) or not (
            (values >= 0) & (values <= 255)).all():
        raise ValueError(f"{name}={rgb!r} must be an RGB triple of ints from 0 to 255")


def _check_int(name: str, value, low: int, high: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is out of range; accepted: {low} to {high}")


def _stable_hash(text: str) -> int:
    """A 63-bit hash of the whole text that does not change between Python processes
    (unlike hash(), which is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def to_tensor(clip: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(clip).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(clip: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) float in [-1, 1] -> (T, H, W, 3) uint8 (values outside are clipped)."""
    x = (clip.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


class ToyVideos(Dataset):
    """Captioned toy clips rendered on the fly: item i -> (clip (3, T, H, W) in [-1, 1], caption).

    Item i uses caption `captions[i % len]` and a seed drawn from (seed, i), so a dataset is
    deterministic and any worker can render any item. `length=None` gives a practically
    endless dataset (2**62 items) for streaming training; `grain` and `style` as in
    `render_clip`.
    """

    def __init__(self, split: str = "train", frames: int = 16, size: int = 16,
                 seed: int = 0, length: int | None = None, grain: int = 0, style: str = "solid"):
        if style not in STYLES:
            raise ValueError(f"style={style!r}; choose one of {list(STYLES)}")
        self.captions, self.style = captions(split), style
        _check_int("seed", seed, 0, 2**63 - 1)
        _check_int("frames", frames, MIN_FRAMES, MAX_FRAMES)
        _check_int("size", size, MIN_SIZE, MAX_SIZE)
        _check_grain(grain, size)
        self.frames, self.size, self.seed, self.grain = frames, size, seed, grain
        self.length = 2**62 if length is None else length

    def __len__(self) -> int:
        return self.length

    def caption(self, index: int) -> str:
        return self.captions[index % len(self.captions)]

    def clip_seed(self, index: int) -> int:
        return int(np.random.default_rng([self.seed, index]).integers(2**31))

    def __getitem__(self, index: int):
        """(clip (3, T, H, W), caption)."""
        return self.render(index)

    def frame(self, index: int, frame: int):
        """(frame `frame` of item `index` alone (3, H, W), caption): for image models."""
        clip, caption = self.render(index, only_frame=frame)
        return clip[:, 0], caption

    def render(self, index: int, only_frame: int | None = None):
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} clips")
        caption = self.caption(index)
        clip = render_clip(caption, seed=self.clip_seed(index), frames=self.frames, size=self.size,
                           grain=self.grain, style=self.style, only_frame=only_frame)
        return to_tensor(clip), caption
