"""How fast does a training step run, against what this CPU can do?

    python -m minilumiere bench training [--config toy] [--repeats 5]

For each stage (T2I on single frames, video on clips with the T2I weights frozen): the batch,
FLOPs of one forward+backward (torch.utils.flop_counter), the median step time, the achieved
GFLOP/s, and the same run's fp32 matmul peak (2048x2048) for scale. Also how fast a
DataLoader worker renders training examples, to show the data is never the bottleneck.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from minilumiere.config import get_config
from minilumiere.diffusion import Schedule
from minilumiere.model import TextConditionedDenoiser
from minilumiere.nn import inflate
from minilumiere.train import Run, TrainingExamples, train_step


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Achieved GFLOP/s of an fp32 size x size matmul (the best of `repeats`)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def stage_model(cfg, stage: str) -> TextConditionedDenoiser:
    model = TextConditionedDenoiser(cfg, "t2i")
    if stage == "video":
        video = TextConditionedDenoiser(cfg, "video")
        video.text.load_state_dict(model.text.state_dict())
        video.net = inflate(model.net, cfg.stunet)
        model = video
    return model


def measure(cfg, stage: str, repeats: int) -> dict:
    batch_size, *_ = cfg.stage_budget(stage)
    examples = TrainingExamples(cfg, stage)
    started = time.perf_counter()
    items = [examples[i] for i in range(batch_size)]
    render_rate = batch_size / (time.perf_counter() - started)
    x0, captions, t, noise = (torch.stack([i[0] for i in items]), [i[1] for i in items],
                              torch.stack([i[2] for i in items]), torch.stack([i[3] for i in items]))
    model = stage_model(cfg, stage)
    trainable = [p for p in model.parameters() if p.requires_grad]
    run = Run(cfg, stage, None, model, torch.optim.AdamW(trainable, lr=1e-4),
              {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    schedule = Schedule.named(cfg.diffusion.schedule, cfg.diffusion.num_steps)
    step = lambda: train_step(run, model, schedule, x0, captions, t, noise, torch.device("cpu"))
    step()                                                          # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"stage": stage, "batch": batch_size, "gflop": counter.get_total_flops() / 1e9,
            "seconds": seconds, "samples_per_s": batch_size / seconds,
            "gflops": counter.get_total_flops() / 1e9 / seconds, "render_per_s": render_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="toy")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = get_config(args.config)
    peak = matmul_peak()
    print(f"config {cfg.name!r}, {torch.get_num_threads()} threads; fp32 2048x2048 matmul peak "
          f"this run: {peak:.0f} GFLOP/s")
    print(f"{'stage':<6} {'batch':>5} {'GFLOP/step':>11} {'s/step':>7} {'samples/s':>10} "
          f"{'GFLOP/s':>8} {'% peak':>7} {'render/s (1 worker)':>20}")
    for stage in ("t2i", "video"):
        r = measure(cfg, stage, args.repeats)
        print(f"{r['stage']:<6} {r['batch']:>5} {r['gflop']:>11.1f} {r['seconds']:>7.3f} "
              f"{r['samples_per_s']:>10.1f} {r['gflops']:>8.1f} {100 * r['gflops'] / peak:>6.1f}% "
              f"{r['render_per_s']:>20.0f}")


if __name__ == "__main__":
    main()
