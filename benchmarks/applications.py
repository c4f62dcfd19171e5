"""Stylized generation and video-to-video: does the look change while the motion stays?

    python -m minilumiere bench applications                    # the shipped weights, both parts
    python -m minilumiere bench applications --part style --clips 8 --steps 10 --ssr-steps 5
    python benchmarks/applications.py --weights FOLDER --out outputs/applications

The same cases in both parts: `--clips` (caption, seed) pairs, seeds 41000 on, three in four
captions of the training split and one in four held out. Every measure is `evaluate`'s; each
cell is the mean over clips with its 95% bootstrap interval.

1. Style sweep (the paper's stylized generation): the video model's spatial weights
   interpolated towards the T2I model fine-tuned on outlined frames, W = a * W_style +
   (1 - a) * W_base, a in A_VALUES (`pipe(caption, seed=, style=a)`). Per a, at the base size
   and at the SSR size: the style score (0 solid, 1 outlined), the oracle's reading of colour,
   shape, direction and all three as captioned, and the background flicker; beside rendered
   solid and rendered outlined clips of the same cases (the base size rendered directly, as
   the base models learn it; the SSR size with the SSR model's background grain). The claim
   to check: the temporal layers are untouched, so the direction survives the style change;
   the paired difference "direction at a = 1 minus a = 0" says by how much it does not.
2. Video-to-video (SDEdit): a rendered clip (at the base size, rendered directly) is noised to
   t = s * T_max and denoised with an edited caption, s in STRENGTHS (`pipe.video_to_video`).
   Three edits: a new colour, a new shape (the direction is kept), and a style edit (the same
   caption, style = 1). Per s: the oracle's reading of the edited caption (colour, shape,
   direction: did the edit take, and did the motion stay), the tracked path's error against
   the input's (the input rendered at the SSR size for the SSR output: the same path, by
   seed; a new shape's centroid sits elsewhere in its box, so that edit's error has a floor
   of a few hundredths even on a perfect path), and for the style edit the style score. The
   row s = 0 is the input itself.
With --out, the tables as applications.md and applications.json, and frame grids of the
first cases, a row per setting, the base clip enlarged (left) beside the SSR clip:
applications_style.png (every a, both references) and applications_v2v_<edit>.png (the
input, then every s).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from minilumiere import evaluate, load_pipeline
from minilumiere.data import COLORS, SHAPES, captions, parse_caption, render_clip
from minilumiere.data.toyvideos import caption_of
from minilumiere.ssr import grain_block
from minilumiere.viz import save_frame_grid, upscale

A_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)
STRENGTHS = (0.2, 0.4, 0.6, 0.8, 1.0)
EDITS = ("new colour", "new shape", "style edit")
PARTS = ("style", "v2v", "both")
SEED = 41000
GRID_CASES = 2                       # cases shown in each frame grid
PERCENT = {"color", "shape", "direction", "all three"}      # hit rates, shown in %


def chosen_cases(clips: int) -> list[tuple[str, int]]:
    """(caption, seed) pairs: every fourth caption held out, the rest from the training split."""
    train, heldout = captions("train"), captions("heldout")
    return [(heldout[(i // 4) % len(heldout)] if i % 4 == 3 else train[(7 * i) % len(train)],
             SEED + i) for i in range(clips)]


def edited_caption(caption: str, edit: str, index: int) -> str:
    """The caption video-to-video denoises with: another colour or shape (which one turns with
    the case's index), or the same caption for the style edit."""
    color, shape, direction = parse_caption(caption)
    if edit == "new colour":
        color = [c for c in COLORS if c != color][index % (len(COLORS) - 1)]
    elif edit == "new shape":
        shape = [s for s in SHAPES if s != shape][index % (len(SHAPES) - 1)]
    elif edit != "style edit":
        raise ValueError(f"edit={edit!r}; accepted: {list(EDITS)}")
    return caption_of(color, shape, direction)


def reading(clip: np.ndarray, caption: str) -> dict:
    """The oracle's verdicts on a clip, as 100 (read as captioned) or 0 per attribute."""
    hits = evaluate.oracle_hits(clip, caption)
    return {"color": 100.0 * hits["color"], "shape": 100.0 * hits["shape"],
            "direction": 100.0 * hits["direction"], "all three": 100.0 * hits["all"]}


def style_measures(clip: np.ndarray, caption: str) -> dict:
    """One clip of the style sweep: style score, the oracle's reading, background flicker."""
    return {"style score": evaluate.style_score(clip), **reading(clip, caption),
            "bg flicker": evaluate.background_flicker(clip)}


def v2v_measures(clip: np.ndarray, caption: str, source: np.ndarray, edit: str) -> dict:
    """One clip of video-to-video against its edited caption and the clip it was made from."""
    measures = {**reading(clip, caption), "path error": evaluate.path_error(clip, source)}
    if edit == "style edit":
        measures["style score"] = evaluate.style_score(clip)
    return measures


def style_clips(pipe, cases, steps, ssr_steps) -> dict:
    """{size label: {row label: [clip per case]}} for the style sweep and its references."""
    cfg = pipe.cfg
    sizes = clip_sizes(pipe)
    rows = {size: {"rendered solid": [], **{f"a = {a:.2f}": [] for a in A_VALUES},
                   "rendered outlined": []} for size in sizes}
    for caption, seed in tqdm(cases, desc="style sweep"):
        for a in A_VALUES:
            clip, base = pipe(caption, seed=seed, style=a, steps=steps, ssr_steps=ssr_steps,
                              return_base=True)
            rows["base"][f"a = {a:.2f}"].append(base)
            if "SSR" in rows:
                rows["SSR"][f"a = {a:.2f}"].append(clip)
        for size, pixels in sizes.items():
            grain = grain_block(cfg) if size == "SSR" else 0
            for style in ("solid", "outlined"):
                rows[size][f"rendered {style}"].append(
                    render_clip(caption, seed, cfg.frames, pixels, grain=grain, style=style))
    return rows


def v2v_clips(pipe, cases, steps, ssr_steps) -> dict:
    """{edit: {size label: {row label: [clip per case]}}}, and the inputs under "sources": the
    rendered clip at each size; row "s = 0.0" is the input itself."""
    cfg = pipe.cfg
    sources = {size: [render_clip(c, s, cfg.frames, pixels) for c, s in cases]
               for size, pixels in clip_sizes(pipe).items()}
    rows = {edit: {size: {"s = 0.0": list(clips), **{f"s = {s:.1f}": [] for s in STRENGTHS}}
                   for size, clips in sources.items()} for edit in EDITS}
    for index, (caption, seed) in enumerate(tqdm(cases, desc="video-to-video")):
        for edit in EDITS:
            style = {"style": 1.0} if edit == "style edit" else {}
            for strength in STRENGTHS:
                clip, base = pipe.video_to_video(
                    sources["base"][index], edited_caption(caption, edit, index),
                    strength=strength, seed=seed, steps=steps, ssr_steps=ssr_steps,
                    return_base=True, **style)
                rows[edit]["base"][f"s = {strength:.1f}"].append(base)
                if "SSR" in sources:
                    rows[edit]["SSR"][f"s = {strength:.1f}"].append(clip)
    return {"sources": sources, **rows}


def clip_sizes(pipe) -> dict[str, int]:
    """The sizes measured: the base clip's, and the SSR clip's unless SSR is off."""
    sizes = {"base": pipe.cfg.size}
    return sizes if pipe.ssr is None else {**sizes, "SSR": pipe.cfg.ssr_size}


def summarise(values) -> dict:
    """{"mean", "low", "high", "n"} of per-clip values (NaNs left out); the interval is None
    with fewer than two finite values."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low, high = evaluate.bootstrap_interval(finite) if len(finite) >= 2 else (None, None)
    return {"mean": float(finite.mean()) if len(finite) else None, "low": low, "high": high,
            "n": int(len(finite))}


def summarise_rows(measured: dict) -> dict:
    """{row: [measures per clip]} -> {row: {measure: summary}}."""
    return {row: {name: summarise([m[name] for m in per_clip]) for name in per_clip[0]}
            for row, per_clip in measured.items()}


def markdown_table(title: str, summary: dict) -> str:
    """One markdown table: a row per setting, a column per measure, "mean [low, high]"."""
    names = list(next(iter(summary.values())))
    lines = [f"**{title}**", "", "| | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for row, measures in summary.items():
        lines.append(f"| {row} | " + " | ".join(_cell(measures[n], n in PERCENT) for n in names)
                     + " |")
    return "\n".join(lines)


def _cell(summary: dict, percent: bool) -> str:
    if summary["mean"] is None:
        return "n/a"
    digits, unit = (1, "%") if percent else (3, "")
    text = f"{summary['mean']:.{digits}f}{unit}"
    if summary["low"] is not None:
        text += f" [{summary['low']:.{digits}f}, {summary['high']:.{digits}f}]"
    return text


def style_report(rows: dict, cases, sizes: dict) -> tuple[str, dict]:
    """The style sweep's tables (one per size), each followed by the paired change of the
    direction's hit rate from a = 0 to a = 1, as markdown and as figures for JSON."""
    case_captions = [caption for caption, _ in cases]
    first, last = f"a = {A_VALUES[0]:.2f}", f"a = {A_VALUES[-1]:.2f}"
    parts, figures = [], {}
    for size, by_row in rows.items():
        measured = {row: [style_measures(clip, c) for clip, c in zip(clips, case_captions)]
                    for row, clips in by_row.items()}
        summary = summarise_rows(measured)
        change = summarise([end["direction"] - start["direction"]
                            for start, end in zip(measured[first], measured[last])])
        figures[size] = {"rows": summary, "direction change": change}
        parts += [markdown_table(f"Style sweep at the {size} size ({sizes[size]} px)", summary),
                  "", f"Direction read as captioned, {last} against {first}, paired over "
                      f"clips: {_cell(change, percent=True)} (change of the hit rate)", ""]
    return "\n".join(parts), figures


def v2v_report(rows: dict, cases, sizes: dict) -> tuple[str, dict]:
    """The video-to-video tables (one per edit and size), as markdown and for JSON."""
    parts, figures = [], {}
    for edit in EDITS:
        edited = [edited_caption(c, edit, i) for i, (c, _) in enumerate(cases)]
        figures[edit] = {}
        for size, by_row in rows[edit].items():
            sources = rows["sources"][size]
            measured = {row: [v2v_measures(clip, c, source, edit)
                              for clip, c, source in zip(clips, edited, sources)]
                        for row, clips in by_row.items()}
            figures[edit][size] = summarise_rows(measured)
            parts += [markdown_table(f"Video-to-video, {edit}, at the {size} size "
                                     f"({sizes[size]} px)", figures[edit][size]), ""]
    parts.append("(oracle columns: read as the edited caption says; direction is the input's. "
                 "path error: mean distance of the tracked path from the input's, share of "
                 "the frame.)")
    return "\n".join(parts), figures


def save_grids(clips: dict, cases, factor: int, out: Path) -> list[Path]:
    """Frame grids of the first GRID_CASES cases, a row per setting: the base clip enlarged by
    `factor` beside the SSR clip. clips: `run`'s, by part."""
    paths = []
    if "style" in clips:
        shown = [caption for caption, _ in cases]
        paths.append(_grid(clips["style"], shown, factor, out / "applications_style.png"))
    for edit in EDITS if "v2v" in clips else ():
        name = edit.replace(" ", "_")
        shown = [f"{caption} -> {edited_caption(caption, edit, index).removeprefix('a ')}"
                 for index, (caption, _) in enumerate(cases)]
        paths.append(_grid(clips["v2v"][edit], shown, factor, out / f"applications_v2v_{name}.png"))
    return paths


def _grid(rows: dict, shown: list[str], factor: int, path: Path) -> Path:
    """A frame grid of the first GRID_CASES cases, each titled by its line of `shown`."""
    clips, titles = [], []
    for index, caption in enumerate(shown[:GRID_CASES]):
        for row in rows["base"]:
            shown = [upscale(rows["base"][row][index], factor)]
            shown += [rows["SSR"][row][index]] if "SSR" in rows else []
            clips.append(np.concatenate(shown, axis=2))
            titles.append(f"{row}\n{caption.removeprefix('a ')}")
    return save_frame_grid(clips, path, titles=titles)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="toy",
                        help="'toy' or a folder of checkpoints (with style.safetensors)")
    parser.add_argument("--clips", type=int, default=16,
                        help="cases (caption, seed), at least 2 for an interval")
    parser.add_argument("--part", choices=PARTS, default="both")
    parser.add_argument("--steps", type=int, help="DDIM steps of the base model (its config's "
                                                  "default if not given)")
    parser.add_argument("--ssr-steps", type=int, help="DDIM steps of the SSR model")
    parser.add_argument("--base-only", action="store_true",
                        help="measure the base clips alone (no SSR: about a tenth of the time)")
    parser.add_argument("--out", help="folder for applications.md, .json and the frame grids")
    args = parser.parse_args(argv)
    if args.clips < 2:
        raise ValueError(f"--clips={args.clips} must be at least 2 (an interval needs two clips)")
    return args


def run(pipe, args: argparse.Namespace) -> tuple[str, dict, dict]:
    """Generate and measure the chosen parts: (markdown, figures for JSON, clips by part)."""
    cases = chosen_cases(args.clips)
    if args.base_only:
        pipe.ssr = None
    sizes = clip_sizes(pipe)
    texts, figures, clips = [], {}, {}
    if args.part in ("style", "both"):
        clips["style"] = style_clips(pipe, cases, args.steps, args.ssr_steps)
        text, figures["style"] = style_report(clips["style"], cases, sizes)
        texts.append(text)
    if args.part in ("v2v", "both"):
        clips["v2v"] = v2v_clips(pipe, cases, args.steps, args.ssr_steps)
        text, figures["v2v"] = v2v_report(clips["v2v"], cases, sizes)
        texts.append(text)
    header = (f"{args.clips} cases (caption, seed), seeds {SEED}..{SEED + args.clips - 1}, "
              f"base DDIM steps {args.steps or pipe.cfg.diffusion.sample_steps}, SSR steps "
              f"{args.ssr_steps or 'default'}; mean [95% bootstrap interval] over clips")
    figures["settings"] = {"cases": cases, "steps": args.steps, "ssr_steps": args.ssr_steps,
                           "a": A_VALUES, "strengths": STRENGTHS}
    return "\n\n".join([header, *texts]), figures, clips


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    pipe = load_pipeline(args.weights)
    started = time.perf_counter()
    text, figures, clips = run(pipe, args)
    print(text)
    print(f"\n{time.perf_counter() - started:.0f} s to generate and measure")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "applications.md").write_text(text + "\n")
        (out / "applications.json").write_text(json.dumps(figures, indent=1) + "\n")
        factor = pipe.cfg.ssr_size // pipe.cfg.size
        for path in save_grids(clips, chosen_cases(args.clips), factor, out):
            print(f"frame grid: {path}")


if __name__ == "__main__":
    main()
