"""What time compression buys: the STUNet against the same network without it, and against
diffusers' 3D U-Net of the same size. Prints one plain-text table per preset.

    python benchmarks/nets.py [--presets smoke toy full] [--repeats 3] [--device cpu]
    python -m minilumiere bench nets [same options]

Three models, side by side in one run, on the same clip shape:
  (a) STUNet         the preset's STUNet (temporal down/up-sampling as configured);
  (b) no time compr. the same STUNet with temporal_downsample all False (space shrinks,
                     time does not: every level sees every frame);
  (c) diffusers      diffusers' UNet3DConditionModel (ModelScope's text-to-video U-Net: a
                     temporal conv stack after every resnet, temporal attention after every
                     spatial attention, no time compression), with the STUNet's depth, blocks
                     per level, attention levels and norm groups, and its widths searched so
                     its parameter count is within 15% of the STUNet's.
Every model trains as the preset says: with freeze_spatial, (a) and (b) train only their
temporal layers and (c) only its temporal ones (transformer_in, temp_convs, temp_attentions),
so all three do the same kind of backward pass.

How each figure is measured:
  params      T2I part (spatial, inherited) / new temporal part / total / trainable.
  fwd+bwd     one training step without the optimizer: zero the grads, forward, MSE to a
              random target, backward. Median of --repeats runs after one warm-up, the
              three models taking turns (a, b, c, a, b, c, ...) so that load from other
              processes on a shared machine falls on all three alike. Wall clock, and this
              process's CPU time (time.process_time, all threads): on a loaded machine the
              wall clock mostly measures waiting, CPU time much less so.
  peak mem    on CPU, PyTorch's allocator reports every allocation and free to the profiler
              (torch.profiler, profile_memory=True); the running sum of those events in time
              order, at its maximum, is the peak of memory allocated during the step above
              what was live before it (weights and the input batch are not counted;
              activations, gradients and workspaces are). Checked against the resident-set
              peak (VmHWM, reset through /proc/self/clear_refs, glibc's malloc thresholds
              fixed) in a fresh process at the toy preset: the two agree within 1 MB. RSS
              alone (getrusage, VmHWM by default) also counts pages malloc keeps cached and
              is not used. (PyTorch warns once that frees of blocks allocated before the
              profiler started are not recorded: those blocks are not counted, as intended.)
              On CUDA: torch.cuda.max_memory_allocated minus memory_allocated before the step.
  GFLOP/clip  torch.utils.flop_counter.FlopCounterMode over one forward+backward, run on the
              meta device (shapes only, no arithmetic), attention through SDPA's math backend
              so its matmuls are counted. Counts matmuls, convolutions and attention
              (2 FLOPs per multiply-add); norms and activations are not counted.
  GFLOP/s     the batch's FLOPs / the median fwd+bwd time, and that as a share of the
              matmul peak, measured in the same run: the best fp32 2048x2048 matmul of 20 at
              the start and one in every timing round (machines differ: `bench training`
              prints the same peak; checkpoints/toy/EXPERIMENTS.md has the ones measured).

Clip shape: the preset's frames and size, batch = its training batch clipped to 8 on a CPU.
The full preset on a CPU uses a reduced clip (1, 16, 32) with the full architecture, and is
timed only if its estimated run time fits CPU_BUDGET_S (on a 2-thread CPU it does not);
otherwise the table shows parameters and FLOPs only. Where the clip is not the preset's own, FLOPs per clip at the preset's own
clip (e.g. 80 frames at 128x128 for full) are printed too: counting on the meta device
costs nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

os.environ.setdefault("KINETO_LOG_LEVEL", "6")   # the profiler's start/stop lines, off

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from minilumiere.config import Config, get_config
from minilumiere.nn import STUNet

CONTEXT_LENGTH = 8                # text tokens per caption
MAX_CPU_BATCH = 8                 # the preset's training batch, clipped to something CPU-sane
FULL_CPU_SHAPE = (1, 16, 32)      # (batch, frames, size) for the full preset on a CPU
CPU_BUDGET_S = 120.0              # time full on a CPU only if its estimated run time is shorter
ASSUMED_SHARE_OF_PEAK = 0.10      # for that estimate (a low share: small convolutions)
PARAMETER_TOLERANCE = 0.15        # (c) within 15% of (a)'s total parameter count
DIFFUSERS_TEMPORAL = {"transformer_in", "temp_convs", "temp_attentions"}   # module names


@dataclass
class Candidate:
    """A model to measure: how to build it, call it, and split its parameters."""
    name: str
    build: Callable[[], nn.Module]
    call: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    is_temporal: Callable[[str], bool]      # parameter name -> belongs to the new temporal part
    widths: tuple[int, ...] = ()            # (c) only: the searched block_out_channels


@dataclass
class Row:
    name: str
    t2i_params: int
    temporal_params: int
    trainable_params: int
    flops: int                              # for the whole batch, forward + backward
    seconds: float | None = None            # wall clock; None: not timed
    cpu_seconds: float | None = None        # this process's CPU time (all threads)
    peak_bytes: int | None = None


# --- the three models --------------------------------------------------------------------------


def stunet_candidate(cfg: Config, time_compression: bool) -> Candidate:
    stunet_cfg = cfg.stunet
    if not time_compression:
        stunet_cfg = dataclasses.replace(stunet_cfg, temporal_downsample=(False,) * len(stunet_cfg.temporal_downsample))
    return Candidate(
        name="(a) STUNet" if time_compression else "(b) no time compression",
        build=lambda: STUNet(cfg.unet, stunet_cfg),
        call=lambda model, x, t, context: model(x, t, context),
        is_temporal=lambda name: not name.startswith("unet2d."))


def diffusers_unet3d(cfg: Config, widths: tuple[int, ...]) -> nn.Module:
    """diffusers' UNet3DConditionModel laid out like the preset's U-Net, with other widths."""
    from diffusers import UNet3DConditionModel

    unet = cfg.unet
    down = tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in unet.attention_levels)
    up = tuple(name.replace("Down", "Up") for name in reversed(down))
    return UNet3DConditionModel(
        sample_size=cfg.size, in_channels=unet.image_channels, out_channels=unet.image_channels,
        down_block_types=down, up_block_types=up, block_out_channels=widths,
        layers_per_block=unet.blocks_per_level, norm_num_groups=unet.norm_groups,
        cross_attention_dim=unet.context_dim,
        attention_head_dim=diffusers_heads(cfg))   # diffusers reads this as the number of heads


def diffusers_heads(cfg: Config) -> int:
    """The STUNet's number of heads at its first attention level (one number for all levels)."""
    first = cfg.unet.attention_levels.index(True)
    return max(1, cfg.unet.channels[first] // cfg.unet.head_dim)


def matching_widths(cfg: Config, target: int) -> tuple[int, ...]:
    """Widths proportional to the preset's whose parameter count is closest to `target`
    (counted on the meta device: no memory, no initialisation)."""
    multiple = math.lcm(cfg.unet.norm_groups, diffusers_heads(cfg))
    best = None
    for step in range(10, 301):                        # scale factors 0.10 .. 3.00
        widths = tuple(multiple * max(1, round(step / 100 * c / multiple)) for c in cfg.unet.channels)
        if best is not None and widths == best[0]:
            continue
        with torch.device("meta"):
            count = parameter_count(diffusers_unet3d(cfg, widths))
        if best is None or abs(count - target) < abs(best[1] - target):
            best = (widths, count)
        if count > 2 * target:
            break
    widths, count = best
    if abs(count - target) > PARAMETER_TOLERANCE * target:
        raise RuntimeError(f"no widths give diffusers' UNet3DConditionModel {target:,} parameters "
                           f"within {PARAMETER_TOLERANCE:.0%}; closest {widths}: {count:,}")
    return widths


def diffusers_candidate(cfg: Config, widths: tuple[int, ...]) -> Candidate:
    def build():
        model = diffusers_unet3d(cfg, widths)
        if cfg.stunet.freeze_spatial:
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(is_diffusers_temporal(name))
        return model

    return Candidate(
        name="(c) diffusers UNet3DCondition", build=build,
        call=lambda model, x, t, context: model(x, t, context).sample,
        is_temporal=is_diffusers_temporal, widths=widths)


def is_diffusers_temporal(name: str) -> bool:
    """e.g. "down_blocks.1.temp_convs.0.conv1.2.weight" -> True."""
    return not DIFFUSERS_TEMPORAL.isdisjoint(name.split("."))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- measurements ------------------------------------------------------------------------------


def make_batch(cfg: Config, shape: tuple[int, int, int], device) -> tuple[torch.Tensor, ...]:
    """x_t (B, C, T, H, W), t (B,), context (B, L, D), target like x_t."""
    batch, frames, size = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.unet.image_channels, frames, size, size, generator=g)
    t = torch.randint(0, cfg.diffusion.num_steps, (batch,), generator=g)
    context = torch.randn(batch, CONTEXT_LENGTH, cfg.unet.context_dim, generator=g)
    target = torch.randn(x.shape, generator=g)
    return tuple(a.to(device) for a in (x, t, context, target))


def training_step(candidate: Candidate, model: nn.Module, batch) -> None:
    """Zero the grads, forward, MSE to the target, backward (no optimizer step)."""
    x, t, context, target = batch
    model.zero_grad(set_to_none=True)
    F.mse_loss(candidate.call(model, x, t, context), target).backward()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_seconds(steps: list[Callable[[], None]], repeats: int,
                        device: torch.device) -> list[list[tuple[float, float]]]:
    """(wall, CPU) seconds of each step in each of `repeats` rounds, after one warm-up each.
    Each round runs every step once, in turn, so load from other processes on a shared
    machine falls on all of them alike."""
    for step in steps:
        step()                                                 # warm-up
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, step_times in zip(steps, times):
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            synchronize(device)
            step_times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak memory allocated by one call of `step` above what was live before (see above)."""
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in profiler.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def count_on_meta(candidate: Candidate, cfg: Config, shape) -> Row:
    """Parameters, and FLOPs of one forward+backward on the batch, on the meta device (shapes
    only: no memory, no arithmetic)."""
    with torch.device("meta"):
        model = candidate.build()
    named = list(model.named_parameters())
    temporal = sum(p.numel() for name, p in named if candidate.is_temporal(name))
    trainable = sum(p.numel() for _, p in named if p.requires_grad)
    batch = make_batch(cfg, shape, "meta")
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        training_step(candidate, model, batch)
    return Row(candidate.name, parameter_count(model) - temporal, temporal, trainable,
               counter.get_total_flops())


class MatmulPeak:
    """The fp32 matmul peak in GFLOP/s: the best 2048x2048 matmul seen so far in this run.
    Sampled at the start and once in every timing round, beside the models, so that a burst
    of load from other processes at one moment does not set it."""

    size = 2048

    def __init__(self, device: torch.device, repeats: int = 20):
        self.a = torch.randn(self.size, self.size, device=device)
        self.best_seconds = float("inf")
        self.record([wall for wall, _ in interleaved_seconds([self.step], repeats, device)[0]])

    def step(self) -> None:
        self.a @ self.a

    def record(self, seconds: list[float]) -> None:
        self.best_seconds = min(self.best_seconds, *seconds)

    @property
    def gflops(self) -> float:
        return 2 * self.size**3 / self.best_seconds / 1e9


def measure(candidates: list[Candidate], rows: list[Row], cfg: Config, shape, repeats: int,
            device: torch.device, peak: MatmulPeak) -> None:
    """Build the models, time them side by side (and the matmul peak beside them), then
    measure each one's peak memory; fill in the rows' times and peak_bytes."""
    models = [candidate.build().to(device) for candidate in candidates]
    batch = make_batch(cfg, shape, device)
    steps = [lambda c=c, m=m: training_step(c, m, batch) for c, m in zip(candidates, models)]
    *model_times, matmul_times = interleaved_seconds(steps + [peak.step], repeats, device)
    peak.record([wall for wall, _ in matmul_times])
    for row, times in zip(rows, model_times):
        row.seconds, row.cpu_seconds = (statistics.median(column) for column in zip(*times))
    for row, model, step in zip(rows, models, steps):
        model.zero_grad(set_to_none=True)
        row.peak_bytes = peak_bytes(step, device)
        model.zero_grad(set_to_none=True)


# --- one preset --------------------------------------------------------------------------------


def clip_shape(cfg: Config, device: torch.device) -> tuple[tuple[int, int, int], str]:
    """(batch, frames, size) to benchmark, and a note when it is not the preset's own."""
    batch = min(cfg.train.batch_size, MAX_CPU_BATCH) if device.type == "cpu" else cfg.train.batch_size
    shape = (batch, cfg.frames, cfg.size)
    if cfg.name == "full" and device.type == "cpu":
        return FULL_CPU_SHAPE, (f"reduced for a CPU from the preset's {shape} "
                                f"(the architecture is the full preset's)")
    note = f"training batch {cfg.train.batch_size} clipped to {batch}" if batch != cfg.train.batch_size else ""
    return shape, note


def run_preset(name: str, repeats: int, device: torch.device, peak: MatmulPeak) -> None:
    cfg = get_config(name)
    shape, note = clip_shape(cfg, device)
    a, b = stunet_candidate(cfg, True), stunet_candidate(cfg, False)
    with torch.device("meta"):
        target = parameter_count(a.build())
    c = diffusers_candidate(cfg, matching_widths(cfg, target))
    candidates = [a, b, c]
    rows = [count_on_meta(candidate, cfg, shape) for candidate in candidates]

    print(f"\n== preset {name}: clip (batch, frames, size) = {shape}"
          f"{'; ' + note if note else ''}; freeze_spatial={cfg.stunet.freeze_spatial}")
    estimate = (repeats + 2) * sum(r.flops for r in rows) / (ASSUMED_SHARE_OF_PEAK * peak.gflops * 1e9)
    if name == "full" and device.type == "cpu" and estimate > CPU_BUDGET_S:
        print(f"not timed: {sum(r.flops for r in rows) / 1e9:,.0f} GFLOP per step for the three "
              f"models, about {estimate:,.0f} s at {ASSUMED_SHARE_OF_PEAK:.0%} of the matmul peak "
              f"(budget {CPU_BUDGET_S:.0f} s); use a GPU (--device cuda). Parameters and FLOPs:")
    else:
        measure(candidates, rows, cfg, shape, repeats, device, peak)
    print_table(rows, shape[0], peak.gflops)
    total = [r.t2i_params + r.temporal_params for r in rows]
    print(f"(c) block_out_channels {c.widths}: {total[2] / total[0] - 1:+.1%} parameters against "
          f"(a) (searched to within {PARAMETER_TOLERANCE:.0%}); 'a faster' = the model's time / (a)'s")
    own_shape = (cfg.train.batch_size, cfg.frames, cfg.size)
    if shape != own_shape:
        per_clip = [count_on_meta(candidate, cfg, own_shape).flops / own_shape[0] / 1e9
                    for candidate in candidates]
        print(f"at the preset's own clip {own_shape}, GFLOP/clip (fwd+bwd, counted on the meta "
              f"device): " + ", ".join(f"{r.name.split()[0]} {f:,.1f}" for r, f in zip(rows, per_clip)))
    if name == "toy" and rows[0].seconds is not None:
        print_target(rows)


def print_table(rows: list[Row], batch: int, peak_gflops: float) -> None:
    header = (f"{'model':<30} {'T2I params':>11} {'temporal':>10} {'total':>11} {'trainable':>10} "
              f"{'GFLOP/clip':>10} {'fwd+bwd s':>9} {'a faster':>8} {'CPU s':>7} {'a faster':>8} {'peak MB':>8} "
              f"{'GFLOP/s':>8} {'% peak':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        line = (f"{r.name:<30} {r.t2i_params:>11,} {r.temporal_params:>10,} "
                f"{r.t2i_params + r.temporal_params:>11,} {r.trainable_params:>10,} "
                f"{r.flops / batch / 1e9:>10.3f}")
        if r.seconds is not None:
            gflops_per_s = r.flops / r.seconds / 1e9
            line += (f" {r.seconds:>9.3f} {r.seconds / rows[0].seconds:>7.2f}x "
                     f"{r.cpu_seconds:>7.2f} {r.cpu_seconds / rows[0].cpu_seconds:>7.2f}x "
                     f"{r.peak_bytes / 2**20:>8.1f} {gflops_per_s:>8.1f} "
                     f"{100 * gflops_per_s / peak_gflops:>5.1f}%")
        print(line)


def print_target(rows: list[Row]) -> None:
    """The issue's target at the toy preset: (a) at least 1.5x faster than (b) and (c), with
    lower peak memory."""
    a, others = rows[0], rows[1:]
    for label, seconds in (("wall clock", lambda r: r.seconds), ("CPU time", lambda r: r.cpu_seconds),
                           ("FLOPs", lambda r: r.flops)):
        speedups = [seconds(r) / seconds(a) for r in others]
        verdict = "met" if all(s >= 1.5 for s in speedups) else "NOT met"
        print(f"target (toy): (a) >= 1.5x faster than (b) and (c), by {label}: "
              f"{', '.join(f'{s:.2f}x' for s in speedups)} -> {verdict}")
    leaner = all(a.peak_bytes < r.peak_bytes for r in others)
    print(f"target (toy): (a) lower peak memory than (b) and (c): {'met' if leaner else 'NOT met'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "toy", "full"],
                        choices=["smoke", "toy", "full"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model, after a warm-up")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    peak = MatmulPeak(device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"fp32 2048x2048 matmul: {peak.gflops:.1f} GFLOP/s (best of 20); "
          f"load average {os.getloadavg()[0]:.1f}")
    for name in args.presets:
        run_preset(name, args.repeats, device, peak)
    print(f"\nfp32 matmul peak, best seen in this run: {peak.gflops:.1f} GFLOP/s ('% peak' in each "
          f"table uses the best seen by then); load average at the end {os.getloadavg()[0]:.1f} "
          f"(timings on a shared machine vary with it; FLOPs and parameter counts do not)")


if __name__ == "__main__":
    main()
