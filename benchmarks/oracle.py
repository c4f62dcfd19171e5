"""How well does the oracle read captions back? Prints plain-text tables.

    python benchmarks/oracle.py [--clips 2000] [--seed 0]

1. Accuracy on ground truth: `--clips` random clips per size (16, 32, 64 px; random
   captions from captions("all"), random seeds, 16 frames), over the world's background and
   over random other dark shades (0-48 per channel). A None counts as wrong.
2. Strictness: how often it says None on clips it must not read: pure noise, blank or
   constant frames, and a static shape (whose direction it must not guess).
3. For information: ground truth with Gaussian pixel noise, to show how close to the
   world's exact pixels a clip must be before the oracle reads it.
"""
from __future__ import annotations

import argparse

import numpy as np

from minilumiere.data import BACKGROUND, COLORS, captions, read_caption, render_clip
from minilumiere.evaluate import ATTRIBUTES, caption_truth

SIZES = (16, 32, 64)
FRAMES = 16


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def random_case(rng: np.random.Generator):
    """A random caption from all 72 and a random clip seed."""
    every_caption = captions("all")
    return every_caption[rng.integers(len(every_caption))], int(rng.integers(2**31))


def score(readings: list[dict], truths: list[dict]) -> dict:
    """Per attribute and for all three at once: (accuracy %, None %)."""
    table = {}
    for attribute in ATTRIBUTES:
        right = np.mean([r[attribute] == t[attribute] for r, t in zip(readings, truths)])
        unsure = np.mean([r[attribute] is None for r in readings])
        table[attribute] = (100 * right, 100 * unsure)
    all_right = np.mean([r == t for r, t in zip(readings, truths)])
    any_unsure = np.mean([any(v is None for v in r.values()) for r in readings])
    table["all three"] = (100 * all_right, 100 * any_unsure)
    return table


def ground_truth_table(clips: int, rng: np.random.Generator, noise: float = 0.0,
                       sizes=SIZES, shaded: bool = False, style: str = "solid") -> dict:
    """size -> score of the oracle on `clips` random ground-truth clips in `style` (plus pixel
    noise; shaded: each over a random dark background instead of the world's)."""
    rows = {}
    for size in sizes:
        readings, truths = [], []
        for _ in range(clips):
            caption, seed = random_case(rng)
            background = tuple(rng.integers(0, 49, 3)) if shaded else BACKGROUND
            clip = render_clip(caption, seed=seed, frames=FRAMES, size=size, background=background,
                               style=style)
            if noise:
                clip = to_uint8(clip + noise * rng.standard_normal(clip.shape))
            readings.append(read_caption(clip))
            truths.append(caption_truth(caption))
        rows[size] = score(readings, truths)
    return rows


def noise_clip(rng: np.random.Generator, size: int) -> np.ndarray:
    """Pure noise, one of three kinds in turn: uniform bytes, a sampler's N(0, I) start
    mapped from [-1, 1], or the dark background with strong grain."""
    shape = (FRAMES, size, size, 3)
    kind = rng.integers(3)
    if kind == 0:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == 1:
        return to_uint8((rng.standard_normal(shape) + 1) * 127.5)
    return to_uint8(np.asarray(BACKGROUND) + 60 * rng.standard_normal(shape))


def constant_clip(rng: np.random.Generator, size: int) -> np.ndarray:
    """Every pixel of every frame one color: the background, a palette color, or any RGB."""
    palette = [BACKGROUND, *COLORS.values()]
    pick = rng.integers(len(palette) + 1)
    rgb = palette[pick] if pick < len(palette) else tuple(rng.integers(0, 256, 3))
    clip = np.empty((FRAMES, size, size, 3), dtype=np.uint8)
    clip[...] = rgb
    return clip


def static_clip(rng: np.random.Generator, size: int) -> np.ndarray:
    """The first frame of a random ground-truth clip, repeated: a shape that does not move."""
    caption, seed = random_case(rng)
    return np.repeat(render_clip(caption, seed=seed, frames=FRAMES, size=size)[:1], FRAMES, axis=0)


def none_rates(clips: int, rng: np.random.Generator) -> dict:
    """kind -> % of clips with None for each attribute (sizes cycle through 16, 32, 64)."""
    rows = {}
    for name, make in (("pure noise", noise_clip), ("blank / constant", constant_clip),
                       ("static shape", static_clip)):
        readings = [read_caption(make(rng, SIZES[i % len(SIZES)])) for i in range(clips)]
        rows[name] = {a: 100 * np.mean([r[a] is None for r in readings]) for a in ATTRIBUTES}
    return rows


def format_accuracy(rows: dict, title: str) -> str:
    columns = (*ATTRIBUTES, "all three")
    head = "size  | " + " | ".join(f"{c:^17}" for c in columns)
    sub = "      | " + " | ".join(f"{'acc %':>8} {'None %':>8}" for _ in columns)
    lines = [title, head, sub, "-" * len(head)]
    for size, row in rows.items():
        cells = " | ".join(f"{row[c][0]:8.2f} {row[c][1]:8.2f}" for c in columns)
        lines.append(f"{size:>2} px | {cells}")
    return "\n".join(lines)


def format_none(rows: dict, title: str) -> str:
    head = f"{'clips':<17} | " + " | ".join(f"{a:>9}" for a in ATTRIBUTES)
    lines = [title, head, "-" * len(head)]
    for name, row in rows.items():
        lines.append(f"{name:<17} | " + " | ".join(f"{row[a]:9.1f}" for a in ATTRIBUTES))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000, help="ground-truth clips per size")
    parser.add_argument("--strict-clips", type=int, default=200,
                        help="clips per kind for the None rates")
    parser.add_argument("--seed", type=int, default=0, help="seed of the benchmark's RNG")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    print(format_accuracy(ground_truth_table(args.clips, rng),
                          f"Oracle on ground truth: {args.clips} random clips per size, "
                          f"{FRAMES} frames (None counts as wrong)"))
    print()
    print(format_accuracy(ground_truth_table(args.clips, rng, style="outlined"),
                          f"Oracle on outlined ground truth (the style of chapter 9): "
                          f"{args.clips} random clips per size"))
    print()
    print(format_accuracy(ground_truth_table(args.strict_clips, rng, shaded=True),
                          f"Oracle on ground truth over other dark backgrounds (each clip a "
                          f"random shade, 0-48 per channel): {args.strict_clips} clips per size"))
    print()
    print(format_none(none_rates(args.strict_clips, rng),
                      f"None rate (%) on clips it must not read: {args.strict_clips} of each "
                      f"kind, sizes 16/32/64 in turn (static: only direction must be None)"))
    for sigma in (2, 4, 8):
        print()
        print(format_accuracy(ground_truth_table(args.strict_clips, rng, noise=sigma,
                                                 sizes=(16, 64)),
                              f"For information: ground truth + Gaussian pixel noise, "
                              f"sigma={sigma}/255, {args.strict_clips} clips per size"))


if __name__ == "__main__":
    main()
