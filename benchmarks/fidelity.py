"""Shape fidelity: do the shipped models draw the world's shapes, or only shapes the oracle names?

    python -m minilumiere bench fidelity                   # the shipped weights, 24 captions
    python benchmarks/fidelity.py --clips 48 --out outputs/fidelity

The same captions (each shape class equally often, seeds fixed) through every stage, each
row beside rendered clips of the same captions, so a stage's loss shows where it happens:
- 16 px: rendered clips; the T2I model's stills (the spatial layers come from it); the base
  video model's clips (what `pipe(caption)` upsamples);
- 64 px: rendered clips; SSR of the rendered clips area-downsampled to 16 px (SSR alone);
  SSR of the base clips (the pipeline's output).
Per shape class: mean shape IoU against the best-fitting template (`evaluate.shape_iou`) with
its 95% bootstrap interval over clips; then per row colour error, background flicker and the
oracle's all-three share. Writes a frame grid per shape class (rendered beside generated, at
both sizes) to --out.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from minilumiere import evaluate, load_pipeline
from minilumiere.data import SHAPES, captions, render_clip, to_tensor, to_uint8
from minilumiere.pipeline import sample
from minilumiere.ssr import downsample, super_resolve
from minilumiere.viz import save_frame_grid, upscale

SEED = 31000


def chosen_captions(clips: int) -> list[str]:
    """`clips` captions of all 72, the shape classes taking turns."""
    by_shape = {shape: [c for c in captions("all") if f" {shape} " in c] for shape in SHAPES}
    return [by_shape[SHAPES[i % 3]][(7 * (i // 3)) % 24] for i in range(clips)]


def generate(pipe, chosen: list[str], seeds: list[int], batch: int) -> dict:
    """Every row's clips, by name: (T, H, W, 3) uint8 each."""
    cfg = pipe.cfg
    factor = cfg.ssr_size // cfg.size
    rows = {"16 px rendered": [render_clip(c, s, cfg.frames, cfg.size) for c, s in zip(chosen, seeds)],
            "64 px rendered": [render_clip(c, s, cfg.frames, cfg.ssr_size) for c, s in zip(chosen, seeds)]}
    stills = [pipe.image(c, seed=s) for c, s in tqdm(list(zip(chosen, seeds)), desc="T2I stills")]
    rows["16 px T2I stills"] = [np.repeat(image[None], 2, axis=0) for image in stills]
    rows["16 px base video"], rows["64 px SSR of rendered"], rows["64 px pipeline"] = [], [], []
    for start in tqdm(range(0, len(chosen), batch), desc="clips"):
        part, part_seeds = chosen[start:start + batch], seeds[start:start + batch]
        rows["16 px base video"] += sample(pipe.video, part, part_seeds)
        high = torch.stack([to_tensor(c) for c in rows["64 px rendered"][start:start + batch]])
        upsampled = super_resolve(pipe.ssr, downsample(high, factor), part, part_seeds)
        rows["64 px SSR of rendered"] += [to_uint8(c) for c in upsampled]
        low = torch.stack([to_tensor(c) for c in rows["16 px base video"][start:start + batch]])
        rows["64 px pipeline"] += [to_uint8(c) for c in super_resolve(pipe.ssr, low, part, part_seeds)]
    return {name: rows[name] for name in ORDER}


ORDER = ("16 px rendered", "16 px T2I stills", "16 px base video",
         "64 px rendered", "64 px SSR of rendered", "64 px pipeline")


def report(rows: dict, chosen: list[str]) -> str:
    """The tables, as text."""
    shapes = [evaluate.caption_truth(c)["shape"] for c in chosen]
    scores = {name: [evaluate.fidelity(clip, c) for clip, c in zip(clips, chosen)]
              for name, clips in rows.items()}
    lines = [f"shape IoU against the best-fitting template, mean [95% interval] over clips "
             f"({len(chosen) // 3} per shape)",
             f"{'':24s}" + "".join(f"{shape:>22s}" for shape in SHAPES)]
    for name, results in scores.items():
        cells = []
        for shape in SHAPES:
            values = [r["shape_iou"] for r, s in zip(results, shapes) if s == shape]
            low, high = evaluate.bootstrap_interval(values)
            cells.append(f"{np.mean(values):6.3f} [{low:.3f}, {high:.3f}]")
        lines.append(f"{name:24s}" + "".join(f"{cell:>22s}" for cell in cells))
    lines += ["", f"{'':24s}{'colour error':>14s}{'bg flicker':>12s}{'oracle all 3':>14s}"]
    for name, results in scores.items():
        colour = np.nanmean([r["colour_error"] for r in results])
        flicker = np.nanmean([r["background_flicker"] for r in results])
        oracle = evaluate.oracle_table(rows[name], chosen)["all"] if "stills" not in name else np.nan
        lines.append(f"{name:24s}{colour:14.1f}{flicker:12.2f}{oracle:13.1f}%")
    lines.append("(colour error: mean RGB distance of the shape's core to the captioned colour, "
                 "0-255; bg flicker: 1/255; stills have no motion to read)")
    return "\n".join(lines)


def save_grids(rows: dict, chosen: list[str], out: Path) -> list[Path]:
    """One PNG per shape class: its first clips, rendered above generated, at both sizes."""
    paths = []
    for shape in SHAPES:
        picks = [i for i, c in enumerate(chosen) if f" {shape} " in c][:3]
        clips, titles = [], []
        for i in picks:
            for name in ("16 px rendered", "16 px base video", "64 px rendered", "64 px pipeline"):
                clip = rows[name][i]
                clips.append(upscale(clip, rows["64 px rendered"][i].shape[1] // clip.shape[1]))
                titles.append(f"{name}\n{chosen[i].removeprefix('a ')}")
        paths.append(save_frame_grid(clips, out / f"fidelity_{shape}.png", titles=titles))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="toy", help="'toy' or a folder of checkpoints")
    parser.add_argument("--clips", type=int, default=24, help="a multiple of 3 (one per shape in turn)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default="outputs/fidelity", help="folder for the frame grids")
    args = parser.parse_args()
    if args.clips < 6 or args.clips % 3:
        raise ValueError(f"--clips={args.clips} must be a multiple of 3, at least 6 (two clips "
                         f"per shape for an interval)")
    torch.manual_seed(0)
    pipe = load_pipeline(args.weights)
    chosen = chosen_captions(args.clips)
    seeds = [SEED + i for i in range(args.clips)]
    started = time.perf_counter()
    rows = generate(pipe, chosen, seeds, args.batch)
    print(f"{args.clips} captions, seeds {SEED}..{SEED + args.clips - 1}, "
          f"{time.perf_counter() - started:.0f} s to generate\n")
    print(report(rows, chosen))
    for path in save_grids(rows, chosen, Path(args.out)):
        print(f"frame grid: {path}")


if __name__ == "__main__":
    main()
