"""Spatial super-resolution: seams with and without MultiDiffusion, fidelity, and agreement.

    python -m minilumiere bench ssr                 # the shipped weights
    python benchmarks/ssr.py --weights FOLDER --clips 32

1. Seams. 32 base clips sampled from captions by the pipeline's text-to-video model,
   upsampled by SSR over windows (a) blended at every step and (b) sampled on their own and
   stitched. The mean absolute frame-to-frame difference (in 1/255) at the frames where the
   stitched clip changes window, against the same between all other consecutive frames.
   The shapes move at constant speed, so without seams both numbers are about the same; (c),
   the base clip enlarged bilinearly, gives the ratio of the clips' own motion. What
   windows can disagree on is what the base clip leaves open: the background grain SSR was
   trained on (`SSRConfig.grain`), which it has to invent; windows sampled apart invent
   different grain. Per clip, the jump at the borders beyond the base clip's own (mean and
   standard error over clips) says how much of a seam is left.
2. Fidelity. Real clips rendered at the SSR size (with that grain), area-downsampled to the
   base size, then upsampled by SSR (blended) and by bicubic / bilinear interpolation: PSNR
   against the real clip.
3. Agreement. The oracle reads the base clip and its SSR output: share with all three
   attributes read the same and none unreadable; beside it, the share read the same where
   "unreadable" counts as a reading (SSR kept what the base clip shows, even a clip whose
   direction the oracle cannot read), and the share read as captioned.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from minilumiere import load_pipeline
from minilumiere.data import captions, read_caption, render_clip, to_tensor, to_uint8
from minilumiere.evaluate import caption_truth, frame_differences, psnr
from minilumiere.multidiffusion import temporal_windows, window_borders
from minilumiere.pipeline import sample
from minilumiere.ssr import downsample, grain_block, super_resolve, upsample


def seam_ratio(diffs: np.ndarray, borders: list[int]) -> tuple[float, float]:
    """Mean of per-pair differences (N, T - 1) at window borders and inside windows."""
    at_border = np.zeros(diffs.shape[1], dtype=bool)
    at_border[[b - 1 for b in borders]] = True                        # pair (b - 1, b)
    return diffs[:, at_border].mean(), diffs[:, ~at_border].mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="toy", help="'toy' or a folder of checkpoints")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = load_pipeline(args.weights)
    cfg, model = pipe.cfg, pipe.ssr
    chosen = [captions("all")[(7 * i) % 72] for i in range(args.clips)]
    seeds = [3000 + i for i in range(args.clips)]
    windows = temporal_windows(cfg.frames, cfg.ssr.window, cfg.ssr.overlap)
    borders = window_borders(windows)
    print(f"SSR {cfg.size} -> {cfg.ssr_size} px, {cfg.frames} frames, windows {windows} "
          f"(stitched borders at frames {borders}), {cfg.ssr.sample_steps} DDIM steps")

    started = time.perf_counter()
    base = sample(pipe.video, chosen, seeds)
    base_seconds = time.perf_counter() - started
    blended, stitched, seconds = [], [], {True: 0.0, False: 0.0}
    for start in range(0, args.clips, args.batch):
        low = torch.stack([to_tensor(c) for c in base[start:start + args.batch]])
        part = (chosen[start:start + args.batch], seeds[start:start + args.batch])
        for mode, out in ((True, blended), (False, stitched)):
            tick = time.perf_counter()
            out += [to_uint8(c) for c in super_resolve(model, low, *part, blended=mode)]
            seconds[mode] += time.perf_counter() - tick
    print(f"\n1. Seams on {args.clips} sampled clips: mean |frame f+1 - frame f| (1/255)")
    print(f"   {'':28s}{'at borders':>12s}{'inside':>10s}{'ratio':>8s}{'s/clip':>8s}")
    motion = [to_uint8(upsample(to_tensor(c)[None], cfg.ssr_size)[0]) for c in base]
    excess = {}
    for name, clips, mode in (("(a) blended every step", blended, True),
                              ("(b) independent + stitched", stitched, False),
                              ("(c) base clip, bilinear", motion, None)):
        diffs = np.stack([frame_differences(c) for c in clips])
        border, inside = seam_ratio(diffs, borders)
        excess[mode] = np.array([np.subtract(*seam_ratio(d[None], borders)) for d in diffs])
        time_text = f"{seconds[mode] / args.clips:8.1f}" if mode is not None else ""
        print(f"   {name:28s}{border:12.2f}{inside:10.2f}{border / inside:8.2f}{time_text}")
    print(f"   ((c) is the base clip's own motion, no SSR: the ratio without any seam on these\n"
          f"   clips; base clip: {base_seconds / args.clips:.1f} s/clip)")
    for mode, name in ((False, "stitched"), (True, "blended")):
        gap = excess[mode] - excess[None]         # per clip: border jump beyond the base clip's
        print(f"   {name}: border jump beyond the base clip's, per clip: {gap.mean():+.2f} "
              f"+- {gap.std(ddof=1) / np.sqrt(len(gap)):.2f} (mean +- standard error)")

    factor = cfg.ssr_size // cfg.size
    real = [render_clip(c, seed=s, frames=cfg.frames, size=cfg.ssr_size, grain=grain_block(cfg))
            for c, s in zip(chosen, seeds)]
    scores = {"SSR (blended)": [], "bicubic": [], "bilinear": []}
    for start in range(0, args.clips, args.batch):
        high = torch.stack([to_tensor(c) for c in real[start:start + args.batch]])
        low = downsample(high, factor)
        outs = {"SSR (blended)": super_resolve(model, low, chosen[start:start + args.batch],
                                               seeds[start:start + args.batch]),
                "bicubic": upsample(low, cfg.ssr_size, "bicubic"),
                "bilinear": upsample(low, cfg.ssr_size, "bilinear")}
        for name, out in outs.items():
            scores[name] += [psnr(to_uint8(o), r) for o, r in zip(out, real[start:])]
    print(f"\n2. Fidelity on {args.clips} real clips, {cfg.size} -> {cfg.ssr_size} px: PSNR (dB)")
    for name, values in scores.items():
        print(f"   {name:16s}{np.mean(values):7.2f}  (min {np.min(values):.2f})")

    same = same_or_unreadable = right_base = right_ssr = 0
    for caption, low, high in zip(chosen, base, blended):
        a, b = read_caption(low), read_caption(high)
        same += a == b and None not in a.values()
        same_or_unreadable += a == b
        truth = caption_truth(caption)
        right_base += a == truth
        right_ssr += b == truth
    n = args.clips
    print(f"\n3. Oracle agreement, base clip vs its SSR output: {100 * same / n:.1f}% "
          f"(all three attributes read the same, none unreadable)")
    print(f"   read the same where an unreadable attribute (e.g. a base clip that hardly moves) "
          f"counts as a reading: {100 * same_or_unreadable / n:.1f}%")
    print(f"   as captioned: base {100 * right_base / n:.1f}%, SSR {100 * right_ssr / n:.1f}%")


if __name__ == "__main__":
    main()
