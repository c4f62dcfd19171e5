"""Command line: python -m minilumiere {render,train,export,sample,edit,bench} ...

    python -m minilumiere render "a red circle moving left" --out outputs/clip.mp4
    python -m minilumiere train --stage t2i --config toy --out runs/toy/t2i
    python -m minilumiere sample "a red circle moving left" --out outputs/clip.mp4
    python -m minilumiere edit outputs/clip.mp4 "a blue circle moving left" --strength 0.6
    python -m minilumiere bench nets
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minilumiere", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="render ground-truth toy clips (no model)")
    render.add_argument("captions", nargs="+")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--frames", type=int, default=16)
    render.add_argument("--size", type=int, default=64)
    render.add_argument("--out", default="outputs/toy.mp4", help=".mp4 or .gif")

    train = commands.add_parser("train", help="train one stage (resumable; DDP under torchrun)")
    train.add_argument("--stage", required=True,
                       choices=["t2i", "style", "video", "conditioning", "ssr"])
    train.add_argument("--config", default="toy", help="smoke, toy or full")
    train.add_argument("--out", required=True, help="folder for checkpoint, metrics, samples")
    train.add_argument("--init", help="style: the T2I checkpoint to fine-tune; video: the T2I "
                                      "checkpoint to inflate; conditioning: the T2I checkpoint "
                                      "to inflate or video checkpoint to extend")
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    train.add_argument("--max-steps", type=int)
    train.add_argument("--minutes", type=float)

    export = commands.add_parser("export", help="write a checkpoint's EMA weights for shipping")
    export.add_argument("source")
    export.add_argument("destination")
    export.add_argument("--base", help="an exported T2I file the destination extends")

    sample = commands.add_parser("sample", help="generate a clip from a caption")
    sample.add_argument("caption")
    sample.add_argument("--guidance", type=float)
    _sampling_options(sample, default_out="outputs/clip.mp4")

    edit = commands.add_parser("edit", help="video-to-video: re-caption a clip from a file (SDEdit)")
    edit.add_argument("input", help=".mp4, .gif or .npy: a clip with the model's frame count "
                                    "and square frames, a multiple of the base size")
    edit.add_argument("caption", help="the new caption")
    edit.add_argument("--strength", type=float, default=0.6,
                      help="in (0, 1]: how far to noise the clip (small keeps it, 1 starts afresh)")
    _sampling_options(edit, default_out="outputs/edit.mp4")

    bench = commands.add_parser("bench", help="run a benchmark script from benchmarks/")
    bench.add_argument("name", help="e.g. nets, oracle, toy_quality")
    bench.add_argument("args", nargs=argparse.REMAINDER)

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _sampling_options(parser: argparse.ArgumentParser, default_out: str) -> None:
    """The options every command that samples the pipeline takes."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--ssr-steps", type=int, help="DDIM steps of the SSR model")
    parser.add_argument("--style", type=float, default=0.0,
                        help="0 to 1: the video model's spatial weights towards the style's")
    parser.add_argument("--weights", default="toy", help="'toy' or a folder of checkpoints")
    parser.add_argument("--out", default=default_out, help=".mp4 or .gif")


def _render(args) -> int:
    import numpy as np

    from .data import render_clip
    from .viz import save_frame_grid, write_video

    clips = [render_clip(c, args.seed, args.frames, args.size) for c in args.captions]
    video = write_video(args.out, np.concatenate(clips, axis=2))
    grid = save_frame_grid(clips, Path(args.out).with_suffix(".png"), titles=args.captions)
    print(f"video: {video}\nframe grid: {grid}")
    return 0


def _train(args) -> int:
    from .config import get_config
    from .train import train

    path = train(get_config(args.config), args.stage, args.out, resume=args.resume,
                 init=args.init, max_steps=args.max_steps, minutes=args.minutes)
    print(f"checkpoint: {path}")
    return 0


def _export(args) -> int:
    from .checkpoints import export

    print(f"exported: {export(args.source, args.destination, base=args.base)}")
    return 0


def _sample(args) -> int:
    from .pipeline import load_pipeline
    from .viz import save_frame_grid, write_video

    pipe = load_pipeline(args.weights)
    clip, base = pipe(args.caption, seed=args.seed, steps=args.steps, guidance=args.guidance,
                      return_base=True, ssr_steps=args.ssr_steps, style=args.style)
    video = write_video(args.out, clip)
    size = clip.shape[1]
    upscaled = base.repeat(size // base.shape[1], axis=1).repeat(size // base.shape[2], axis=2)
    grid = save_frame_grid([upscaled, clip], Path(args.out).with_suffix(".png"),
                           titles=[f"base {base.shape[1]}px", f"SSR {size}px"])
    print(f"video: {video}\nframe grid: {grid}")
    return 0


def _edit(args) -> int:
    from .pipeline import load_pipeline
    from .viz import read_video, save_frame_grid, upscale, write_video

    pipe = load_pipeline(args.weights)
    given = read_video(args.input, pipe.cfg.size)
    clip, base = pipe.video_to_video(given, args.caption, strength=args.strength, seed=args.seed,
                                     steps=args.steps, ssr_steps=args.ssr_steps, style=args.style,
                                     return_base=True)
    video = write_video(args.out, clip)
    factor = clip.shape[1] // base.shape[1]
    grid = save_frame_grid([upscale(given, factor), upscale(base, factor), clip],
                           Path(args.out).with_suffix(".png"),
                           titles=["given", f"edited {base.shape[1]}px", f"SSR {clip.shape[1]}px"])
    print(f"video: {video}\nframe grid: {grid}")
    return 0


def _bench(args) -> int:
    script = REPOSITORY / "benchmarks" / f"{args.name}.py"
    if not script.is_file():
        available = sorted(p.stem for p in (REPOSITORY / "benchmarks").glob("*.py"))
        raise FileNotFoundError(f"no benchmark {args.name!r}; available: {available}")
    sys.argv = [str(script), *args.args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


COMMANDS = {"render": _render, "train": _train, "export": _export, "sample": _sample,
            "edit": _edit, "bench": _bench}

if __name__ == "__main__":
    sys.exit(main())
