"""Do the toy models really work? Oracle accuracy of generated clips, and its trade-offs.

    python -m minilumiere bench toy_quality                 # the shipped text-to-video models
    python benchmarks/toy_quality.py --weights runs/toy/video/checkpoint.safetensors

96 clips with fixed seeds: 72 with captions of the training split (each of the 60 captions,
then the first 12 again with new seeds) and 24 of the held-out split (each of the 12, twice).
A clip counts as right when the oracle reads all three attributes as captioned. By default
the two shipped models that can make a clip from a caption alone, side by side: the base
video model (what `pipe(caption)` samples) and the conditioning model with nothing known
(M = 0). Then, for the first model only, the same on a subset against the guidance scale and
against the number of DDIM steps.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from minilumiere import checkpoints
from minilumiere.data import captions
from minilumiere.evaluate import ATTRIBUTES, oracle_hits
from minilumiere.pipeline import SHIPPED, sample


def evaluation_set(train_clips: int = 72, heldout_clips: int = 24) -> list[tuple[str, str, int]]:
    """(split, caption, seed) triples, fixed."""
    train, heldout = captions("train"), captions("heldout")
    cases = [("train", train[i % len(train)], 1000 + i) for i in range(train_clips)]
    cases += [("heldout", heldout[i % len(heldout)], 2000 + i) for i in range(heldout_clips)]
    return cases


def score(model, cases, steps=None, guidance=None, batch: int = 24) -> dict:
    """Share of clips with each attribute right, and all three right, per split."""
    right = {split: {a: 0 for a in (*ATTRIBUTES, "all")} for split in ("train", "heldout")}
    counts = {"train": 0, "heldout": 0}
    for start in range(0, len(cases), batch):
        chunk = cases[start:start + batch]
        clips = sample(model, [c for _, c, _ in chunk], [s for _, _, s in chunk], steps, guidance)
        for (split, caption, _), clip in zip(chunk, clips):
            for key, hit in oracle_hits(clip, caption).items():
                right[split][key] += hit
            counts[split] += 1
    return {split: {a: 100 * n / max(1, counts[split]) for a, n in r.items()}
            for split, r in right.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shipped = SHIPPED / "toy"
    parser.add_argument("--weights", nargs="+",
                        default=[str(shipped / "video.safetensors"),
                                 str(shipped / "conditioning.safetensors")],
                        help="video or conditioning checkpoints (exported or training)")
    parser.add_argument("--sweep-clips", type=int, default=48,
                        help="clips per setting in the guidance and steps sweeps (0: skip)")
    args = parser.parse_args()
    cases = evaluation_set()
    models = {path: checkpoints.load(Path(path)) for path in args.weights}
    for path, model in models.items():
        headline(path, model, cases)
    if args.sweep_clips:
        sweeps(args.weights[0], models[args.weights[0]], cases, args.sweep_clips)


def headline(path: str, model, cases) -> None:
    """Seconds per clip, then the 96-clip table, for one model."""
    torch.manual_seed(0)
    cfg = model.cfg
    started = time.perf_counter()
    with torch.no_grad():
        sample(model, ["a red circle moving left"], 0)
    one_clip = time.perf_counter() - started
    print(f"\nweights: {path}  ({model.stage} model, config {cfg.name!r}, step "
          f"{checkpoints.read_metadata(path)['step']}"
          f"{', nothing known (M = 0)' if model.cond_channels else ''})")
    print(f"seconds to sample one clip ({cfg.frames} frames {cfg.size}x{cfg.size}, "
          f"{cfg.diffusion.sample_steps} DDIM steps, guidance {cfg.diffusion.guidance}): "
          f"{one_clip:.2f}")
    result = score(model, cases)
    print(f"{len(cases)} clips, DDIM {cfg.diffusion.sample_steps} steps, "
          f"guidance {cfg.diffusion.guidance}")
    print(f"{'split':<9}" + "".join(f"{a:>11}" for a in (*ATTRIBUTES, "all three")))
    for split in ("train", "heldout"):
        print(f"{split:<9}" + "".join(f"{result[split][a]:>10.1f}%" for a in (*ATTRIBUTES, "all")))


def sweeps(path: str, model, cases, clips: int) -> None:
    """All three right against the guidance scale and the number of DDIM steps."""
    subset = cases[: clips * 3 // 4] + cases[72: 72 + clips // 4]
    print(f"\n{path}: all three right (%) on {len(subset)} clips "
          f"({len(subset) * 3 // 4} train / {len(subset) // 4} held-out captions)")
    defaults = model.cfg.diffusion
    results = {}                                     # (steps, guidance) -> score, each run once

    def row(label, steps, guidance):
        if (steps, guidance) not in results:
            results[steps, guidance] = score(model, subset, steps=steps, guidance=guidance)
        r = results[steps, guidance]
        print(f"{label:>9g} {r['train']['all']:>6.1f}% {r['heldout']['all']:>7.1f}%")

    print(f"{'guidance':>9} {'train':>7} {'heldout':>8}")
    for guidance in (1.0, 2.0, 4.0, 8.0):
        row(guidance, defaults.sample_steps, guidance)
    print(f"{'steps':>9} {'train':>7} {'heldout':>8}")
    for steps in (5, 10, 25, 50):
        row(steps, steps, defaults.guidance)


if __name__ == "__main__":
    main()
