"""Image-to-video, inpainting and cinemagraphs: do they keep what is given and follow the caption?

    python -m minilumiere bench conditioning            # the shipped weights
    python benchmarks/conditioning.py --weights FOLDER --cases 48 --mode model
    python benchmarks/conditioning.py --start 48 --mode model   # other cases, for choosing settings

48 cases per task with fixed seeds (captions cycle through all 72; the held-out ones are in),
measured on the base clip (16x16) the conditioning model makes, DDIM with guidance (the
config's `cond_guidance` unless --guidance is given), in two modes side by side: the model
alone (what it learned) and with the known pixels pasted into every step's prediction
(`keep_known`, a sampler-side guarantee). Cinemagraphs start, as `pipe.cinemagraph` starts
them, from noise held still outside the region (`conditioning.hold_noise_still`; the model's
predictions untouched); --iid-noise gives every frame its own noise there too:
- image-to-video: frame 0 of a real clip is given. PSNR of frame 0; oracle direction and all
  three attributes as captioned.
- inpainting: a real clip with a box hidden (over all frames or a run of frames). PSNR on the
  known pixels; oracle all three as captioned.
- cinemagraph: frame 0 of a clip with a second, still shape outside the moving one's region.
  Mean |frame f+1 - frame f| outside the region (1/255; 0 is perfectly still), and the PSNR
  of the outside against the image; oracle on the region alone (outside painted background)
  as captioned.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from minilumiere import conditioning, load_pipeline
from minilumiere.data import BACKGROUND, captions, render_cinemagraph, render_clip, to_tensor
from minilumiere.evaluate import ATTRIBUTES, oracle_hits, psnr
from minilumiere.pipeline import sample

TASKS = ("image_to_video", "inpainting", "cinemagraph")
MODES = {"model": (False,), "keep_known": (True,), "both": (False, True)}   # keep_known values
CASES_PER_TASK = 100                     # seeds 4000 + 100 * task + case number


def cases(task: str, count: int, frames: int, size: int, start: int = 0):
    """(caption, seed, real clip uint8, cond (4, T, H, W), known mask or region) per case,
    for case numbers start .. start + count - 1 (the benchmark's are 0 .. 47)."""
    if start < 0 or start + count > CASES_PER_TASK:
        raise ValueError(f"cases {start}..{start + count - 1}: each task has case numbers "
                         f"0..{CASES_PER_TASK - 1} (their seeds would overlap the next task's)")
    out = []
    for i in range(start, start + count):
        offset = TASKS.index(task)                      # each task its own captions and seeds
        caption, seed = captions("all")[(5 * i + offset) % 72], 4000 + 100 * offset + i
        if task == "cinemagraph":
            clip, region = render_cinemagraph(caption, seed, frames, size)
            cond = conditioning.cinemagraph(to_tensor(clip)[:, 0], torch.from_numpy(region), frames)
            out.append((caption, seed, clip, cond, region))
            continue
        clip = render_clip(caption, seed, frames, size)
        if task == "image_to_video":
            cond = conditioning.image_to_video(to_tensor(clip)[:, 0], frames)
            out.append((caption, seed, clip, cond, None))
        else:
            known = conditioning.random_hole(frames, size, torch.Generator().manual_seed(seed))
            out.append((caption, seed, clip, conditioning.inpainting(to_tensor(clip), known),
                        known.numpy()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="toy", help="'toy' or a folder of checkpoints")
    parser.add_argument("--cases", type=int, default=48)
    parser.add_argument("--start", type=int, default=0,
                        help="first case number: 0 is the benchmark; 48 gives 48 other cases "
                             "(other seeds and captions), to choose settings on")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--mode", choices=list(MODES), default="both",
                        help="the model alone, known pixels overwritten at every step "
                             "(conditioning.keep_known), or both side by side")
    parser.add_argument("--task", choices=TASKS, help="one task only (default: all three)")
    parser.add_argument("--iid-noise", action="store_true",
                        help="cinemagraphs: every frame its own noise outside the region too "
                             "(the default holds it still there, as pipe.cinemagraph does)")
    args = parser.parse_args()
    pipe = load_pipeline(args.weights)
    model = pipe.conditioned
    cfg = model.cfg
    print(f"conditioning model, {cfg.frames} frames at {cfg.size}x{cfg.size}, "
          f"{cfg.diffusion.sample_steps} DDIM steps, guidance "
          f"{args.guidance or cfg.diffusion.cond_guidance}, cases {args.start}.."
          f"{args.start + args.cases - 1} per task"
          f"{'; cinemagraphs with every frame its own noise' if args.iid_noise else ''}")
    for task in [args.task] if args.task else TASKS:
        for keep_known in MODES[args.mode]:
            torch.manual_seed(0)
            run_task(model, cfg, task, args.start, args.cases, args.batch, args.guidance,
                     keep_known, hold_still=not args.iid_noise)


def run_task(model, cfg, task: str, first: int, count: int, batch: int, guidance,
             keep_known: bool, hold_still: bool = True) -> None:
    """Sample cases first .. first + count - 1 of one task and print what was kept and what
    the oracle reads."""
    started = time.perf_counter()
    chosen = cases(task, count, cfg.frames, cfg.size, first)
    made = []
    for start in range(0, len(chosen), batch):
        part = chosen[start:start + batch]
        still = (torch.stack([~torch.from_numpy(c[4]) for c in part])
                 if task == "cinemagraph" and hold_still else None)     # outside the region
        made += sample(model, [c[0] for c in part], [c[1] for c in part],
                       guidance=guidance, cond=torch.stack([c[3] for c in part]),
                       keep_known=keep_known, still=still)
    seconds = (time.perf_counter() - started) / len(chosen)
    hits = {key: 0 for key in (*ATTRIBUTES, "all")}
    kept, faithful = [], []                     # faithful: cinemagraph outside vs the image
    for (caption, _, real, _, mask), out in zip(chosen, made):
        if task == "image_to_video":
            kept.append(psnr(out[0], real[0]))
            judged = out
        elif task == "inpainting":
            kept.append(psnr(out[mask], real[mask]))
            judged = out
        else:
            outside = out[:, ~mask]                                      # (T, pixels, 3)
            kept.append(np.abs(np.diff(outside.astype(np.float64), axis=0)).mean())
            faithful.append(psnr(outside, np.broadcast_to(real[0][~mask], outside.shape)))
            judged = out.copy()
            judged[:, ~mask] = BACKGROUND
        for key, value in oracle_hits(judged, caption).items():
            hits[key] += value
    n = len(chosen)
    kept_name = {"image_to_video": "PSNR frame 0", "inpainting": "PSNR known pixels",
                 "cinemagraph": "frame diff outside (1/255)"}[task]
    rates = "  ".join(f"{k} {100 * v / n:5.1f}%" for k, v in hits.items())
    mode = "keep_known" if keep_known else "model alone"
    if task == "cinemagraph":
        mode += ", noise held still outside" if hold_still else ", every frame its own noise"
    print(f"\n{task} ({mode}): {kept_name} mean {np.mean(kept):.2f} (worst "
          f"{(np.max if task == 'cinemagraph' else np.min)(kept):.2f}); {seconds:.1f} s/case")
    if faithful:
        print(f"   PSNR outside vs the image: mean {np.mean(faithful):.2f} dB "
              f"(worst {np.min(faithful):.2f})")
    print(f"   oracle as captioned: {rates}")


if __name__ == "__main__":
    main()
