"""Checks for the build-it exercises: the chapters' code cells tagged `build-it`, in which a
chapter builds a piece of the package inline. Each check runs your piece and the package's
on small random inputs (for a module: built with the same arguments, the package's weights,
randomised so that no zero-initialised layer hides a path, copied into yours). On a match it
prints one line and returns True; otherwise it raises `ExerciseError` saying where the two
differ: a parameter, an output shape, or which entries and by how much.

    from minilumiere import exercises
    exercises.check_sinusoids(sinusoids)

Chapter 2, diffusion:   check_ddpm_step(my_ddpm_step), check_ddim_step(my_ddim_step)
Chapter 3, T2I U-Net:   check_sinusoids, check_TimestepEmbedding, check_ResBlock,
                        check_SpatialSelfAttention, check_CrossAttention
Chapter 4, inflation:   check_FactorizedConv, check_identity_kernel, check_downsample_time,
                        check_upsample_time, check_TemporalAttention
Chapter 7, windows:     check_windows(my_windows), check_blend(my_blend)
Chapter 9, applications: check_interpolate(interpolate), check_sdedit(sdedit)

A module check takes your class (or an instance, whose class it builds afresh). The student
notebooks in student/ (`python -m minilumiere.student`) name the check under each exercise.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import get_config
from .data import render_clip
from .diffusion import Schedule, ddim_step, ddpm_step
from .model import TextConditionedDenoiser
from .multidiffusion import blend, temporal_windows
from .nn import layers
from .pipeline import Pipeline, interpolated


class ExerciseError(AssertionError):
    """Your piece differs from the package's; the message says where."""


def _passed(name: str, reference: str, cases: int) -> bool:
    print(f"{name}: matches {reference} on {cases} random case{'s' * (cases > 1)}")
    return True


def _randn(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _compare(what: str, got, expected: torch.Tensor, atol: float = 1e-5) -> None:
    """Raise ExerciseError unless `got` has `expected`'s shape and values (to `atol`), naming
    how many entries differ, the largest error, and the first entry that is off."""
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{what}: returned a {type(got).__name__}, expected a tensor")
    if got.shape != expected.shape:
        raise ExerciseError(f"{what}: output shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    error = (got.detach().double() - expected.detach().double()).abs()
    wrong = ~(error <= atol)                                   # NaN counts as wrong
    if wrong.any():
        first = tuple(torch.nonzero(wrong)[0].tolist())
        raise ExerciseError(
            f"{what}: {int(wrong.sum())} of {wrong.numel()} output entries differ by more than "
            f"{atol:g} (max abs error {error.nan_to_num(float('inf')).max():.3g}); first at index "
            f"{first}: expected {expected[first].item():.5g}, got {got[first].item():.5g}")


def _randomized(module: nn.Module, seed: int = 0) -> nn.Module:
    """The module with noise added to every weight, as training would: zero-initialised
    output layers stop being zero, so a check exercises every path."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return module.eval()


def _build_with_weights(student, args: tuple, package: nn.Module) -> nn.Module:
    """Your class (or your instance's class) built with `args`, holding `package`'s weights."""
    cls = student if isinstance(student, type) else type(student)
    name = f"{cls.__name__}{args}"
    module = cls(*args)
    ours, theirs = module.state_dict(), package.state_dict()
    problems = [f"missing {k} {tuple(v.shape)}" for k, v in theirs.items() if k not in ours]
    problems += [f"extra {k} {tuple(v.shape)}" for k, v in ours.items() if k not in theirs]
    problems += [f"{k} has shape {tuple(ours[k].shape)}, expected {tuple(v.shape)}"
                 for k, v in theirs.items() if k in ours and ours[k].shape != v.shape]
    if problems:
        raise ExerciseError(f"{name}: its parameters do not line up with the package's "
                            f"{type(package).__name__}: " + "; ".join(problems))
    module.load_state_dict(theirs)
    return module.eval()


def _check_module(name: str, student, cases: list[tuple[tuple, nn.Module, tuple]]) -> bool:
    """cases: (constructor args, the package's module, forward inputs)."""
    for args, package, inputs in cases:
        package = _randomized(package)
        ours = _build_with_weights(student, args, package)
        with torch.no_grad():
            _compare(f"{name}{args} forward", ours(*inputs), package(*inputs))
    return _passed(name, f"minilumiere.nn.layers.{type(package).__name__}", len(cases))


# --- chapter 2: one sampling step -----------------------------------------------------------

STEPS = [(500, 480), (999, 949), (40, 0), (20, -1)]     # (t, t_prev); -1 is the end: abar = 1


def _step_state(t: int, t_prev: int, schedule: Schedule):
    """x0_hat, eps_hat, x_t, abar, abar_prev and z, as the chapter makes them (float64)."""
    abar = schedule.alphas_cumprod[t]
    abar_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.ones((), dtype=torch.float64)
    x0_hat = _randn(2, 3, 4, 4, 4, seed=1, dtype=torch.float64).clamp(-1, 1)
    eps = _randn(2, 3, 4, 4, 4, seed=2, dtype=torch.float64)
    x_t = abar.sqrt() * x0_hat + (1 - abar).sqrt() * eps
    return x0_hat, eps, x_t, abar, abar_prev, _randn(2, 3, 4, 4, 4, seed=3, dtype=torch.float64)


def check_ddpm_step(my_ddpm_step) -> bool:
    """my_ddpm_step(x0_hat, x_t, abar, abar_prev, z) against diffusion.ddpm_step (chapter 2)."""
    schedule = Schedule.cosine()
    for t, t_prev in STEPS:
        x0_hat, _, x_t, abar, abar_prev, z = _step_state(t, t_prev, schedule)
        _compare(f"my_ddpm_step at t={t} -> t_prev={t_prev}", my_ddpm_step(x0_hat, x_t, abar, abar_prev, z),
                ddpm_step(x0_hat, x_t, t, t_prev, schedule, "x0", noise=z), atol=1e-8)
    return _passed("my_ddpm_step", "minilumiere.diffusion.ddpm_step", len(STEPS))


def check_ddim_step(my_ddim_step) -> bool:
    """my_ddim_step(x0_hat, eps_hat, abar, abar_prev, eta, z) against diffusion.ddim_step."""
    schedule = Schedule.cosine()
    for t, t_prev in STEPS:
        x0_hat, eps_hat, x_t, abar, abar_prev, z = _step_state(t, t_prev, schedule)
        for eta in (0.0, 0.5, 1.0):
            _compare(f"my_ddim_step at t={t} -> t_prev={t_prev}, eta={eta}",
                    my_ddim_step(x0_hat, eps_hat, abar, abar_prev, eta, z),
                    ddim_step(x0_hat, x_t, t, t_prev, schedule, "x0", eta=eta, noise=z), atol=1e-8)
    return _passed("my_ddim_step", "minilumiere.diffusion.ddim_step", 3 * len(STEPS))


# --- chapter 3: the T2I U-Net's layers ------------------------------------------------------

TIMESTEPS = torch.tensor([0, 1, 7, 250, 999])


def check_sinusoids(sinusoids) -> bool:
    """sinusoids(t, dim) against layers.sinusoidal_embedding (chapter 3.2)."""
    for dim in (8, 32):
        _compare(f"sinusoids(t, dim={dim}) for t = {TIMESTEPS.tolist()}", sinusoids(TIMESTEPS, dim),
                layers.sinusoidal_embedding(TIMESTEPS, dim), atol=1e-4)
    return _passed("sinusoids", "minilumiere.nn.layers.sinusoidal_embedding", 2)


def check_TimestepEmbedding(TimestepEmbedding) -> bool:
    """TimestepEmbedding(base_dim, dim) against layers.TimestepEmbedding (chapter 3.2)."""
    return _check_module("TimestepEmbedding", TimestepEmbedding,
                         [((8, 32), layers.TimestepEmbedding(8, 32), (TIMESTEPS,))])


def check_ResBlock(ResBlock) -> bool:
    """ResBlock(in_channels, out_channels, emb_dim, groups), widening and not (chapter 3.3)."""
    emb = _randn(2, 32, seed=1)
    return _check_module("ResBlock", ResBlock, [
        ((c_in, c_out, 32, 4), layers.ResBlock(c_in, c_out, 32, 4), (_randn(2, c_in, 6, 5), emb))
        for c_in, c_out in ((8, 16), (8, 8))])


def check_SpatialSelfAttention(SpatialSelfAttention) -> bool:
    """SpatialSelfAttention(channels, head_dim, groups), 2 heads (chapter 3.4)."""
    return _check_module("SpatialSelfAttention", SpatialSelfAttention,
                         [((16, 8, 4), layers.SpatialSelfAttention(16, 8, 4), (_randn(2, 16, 4, 3),))])


def check_CrossAttention(CrossAttention) -> bool:
    """CrossAttention(channels, context_dim, head_dim), 2 heads, 5 tokens (chapter 3.5)."""
    inputs = (_randn(2, 16, 3, 4), _randn(2, 5, 12, seed=1))
    return _check_module("CrossAttention", CrossAttention,
                         [((16, 12, 8), layers.CrossAttention(16, 12, 8), inputs)])


# --- chapter 4: the layers inflation adds ---------------------------------------------------

def check_FactorizedConv(FactorizedConv) -> bool:
    """FactorizedConv(channels, kernel, groups, emb_dim) against the package's with
    scale_shift=True, as in every preset (chapter 4.2)."""
    inputs = (_randn(2, 8, 6, 3, 4), _randn(2, 32, seed=1))
    return _check_module("FactorizedConv", FactorizedConv,
                         [((8, 3, 4, 32), layers.FactorizedConv(8, 3, 4, 32, scale_shift=True), inputs)])


def check_identity_kernel(identity_kernel) -> bool:
    """identity_kernel(channels, kernel) against layers.identity_init's weight (chapter 4.3)."""
    for channels, kernel in ((4, 3), (3, 5)):
        expected = layers.identity_init(nn.Conv1d(channels, channels, kernel)).weight.detach()
        _compare(f"identity_kernel({channels}, {kernel})", identity_kernel(channels, kernel), expected, atol=0)
    return _passed("identity_kernel", "minilumiere.nn.layers.identity_init", 2)


def _check_resampling(name: str, function, package: nn.Module, x: torch.Tensor) -> bool:
    package = _randomized(package)
    with torch.no_grad():
        _compare(f"{name}(x, weight, bias) for x of shape {tuple(x.shape)}",
                function(x, package.conv.weight, package.conv.bias), package(x))
    return _passed(name, f"minilumiere.nn.layers.{type(package).__name__}", 1)


def check_downsample_time(downsample_time) -> bool:
    """downsample_time(x, weight, bias) against layers.TemporalDownsample (chapter 4.3)."""
    return _check_resampling("downsample_time", downsample_time, layers.TemporalDownsample(8, 3),
                             _randn(2, 8, 8, 3, 2))


def check_upsample_time(upsample_time) -> bool:
    """upsample_time(x, weight, bias) against layers.TemporalUpsample (chapter 4.4)."""
    return _check_resampling("upsample_time", upsample_time, layers.TemporalUpsample(8, 3),
                             _randn(2, 8, 4, 3, 2))


def check_TemporalAttention(TemporalAttention) -> bool:
    """TemporalAttention(channels, head_dim, emb_dim), 2 heads over 4 frames (chapter 4.5)."""
    inputs = (_randn(2, 16, 4, 3, 2), _randn(2, 32, seed=1))
    return _check_module("TemporalAttention", TemporalAttention,
                         [((16, 8, 32), layers.TemporalAttention(16, 8, 32), inputs)])


# --- chapter 7: MultiDiffusion's windows ----------------------------------------------------

LAYOUTS = [(16, 8, 2), (16, 8, 0), (16, 8, 4), (80, 16, 2), (17, 5, 1), (8, 8, 0)]  # frames, window, overlap


def check_windows(my_windows) -> bool:
    """my_windows(frames, window, overlap) against multidiffusion.temporal_windows (chapter 7.2)."""
    for layout in LAYOUTS:
        got, expected = my_windows(*layout), temporal_windows(*layout)
        if list(got) != expected:
            raise ExerciseError(f"my_windows{layout}: got {list(got)}, expected {expected}")
    return _passed("my_windows", "minilumiere.multidiffusion.temporal_windows", len(LAYOUTS))


def check_blend(my_blend) -> bool:
    """my_blend(predictions, windows, frames) against multidiffusion.blend (chapter 7.3)."""
    for layout in LAYOUTS[:4]:
        windows = temporal_windows(*layout)
        predictions = [_randn(2, 3, layout[1], 3, 2, seed=i) for i in range(len(windows))]
        _compare(f"my_blend for windows {windows}", my_blend(predictions, windows, layout[0]),
                blend(predictions, windows, layout[0]))
    return _passed("my_blend", "minilumiere.multidiffusion.blend", 4)


# --- chapter 9: stylized generation and video-to-video ---------------------------------------

STYLE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)   # 1.5: beyond the style model (an extrapolation)


def check_interpolate(interpolate) -> bool:
    """interpolate(base, style, a) -> {name: a * style[name] + (1 - a) * base[name]} against
    pipeline.interpolated (chapter 9.3), on two state dicts of a small U-Net block."""
    module = _randomized(layers.ResBlock(4, 8, 16, 2))
    base = {name: weight.clone() for name, weight in module.state_dict().items()}
    style = {name: weight.clone() for name, weight in _randomized(layers.ResBlock(4, 8, 16, 2), seed=1)
             .state_dict().items()}
    for a in STYLE_WEIGHTS:
        with interpolated(module, style, a):
            expected = {name: weight.clone() for name, weight in module.state_dict().items()}
        got = interpolate(base, style, a)
        what = f"interpolate(base, style, a={a:g})"
        if not isinstance(got, dict):
            raise ExerciseError(f"{what}: returned a {type(got).__name__}, expected a dict of tensors")
        if set(got) != set(expected):
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
            raise ExerciseError(f"{what}: its names differ from the state dict's: missing {missing}, "
                                f"extra {extra}")
        for name, weight in expected.items():
            _compare(f"{what}[{name!r}]", got[name], weight)
    return _passed("interpolate", "minilumiere.pipeline.interpolated", len(STYLE_WEIGHTS))


SDEDIT_STRENGTHS = (0.3, 0.6, 1.0)


def check_sdedit(sdedit) -> bool:
    """sdedit(model, clip, caption, strength, seed, steps) -> (T, H, W, 3) uint8 against
    Pipeline.video_to_video's base clip (chapter 9.5), on a small random video model (the
    smoke preset's, its weights randomised) at three strengths. Values may differ by one grey
    level (float rounding)."""
    cfg = get_config("smoke")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _randomized(TextConditionedDenoiser(cfg, "video"))
    clip = render_clip("a red circle moving right", seed=1, frames=cfg.frames, size=cfg.size)
    caption, seed, steps = "a blue square moving right", 3, 8
    for strength in SDEDIT_STRENGTHS:
        what = f"sdedit(model, clip, caption, strength={strength:g}, seed={seed}, steps={steps})"
        got = sdedit(model, clip, caption, strength, seed, steps)
        if not isinstance(got, np.ndarray):
            raise ExerciseError(f"{what}: returned a {type(got).__name__}, expected a numpy array "
                                f"(T, H, W, 3) uint8")
        if got.dtype != np.uint8:
            raise ExerciseError(f"{what}: returned dtype {got.dtype}, expected uint8 (to_uint8)")
        expected = Pipeline(model).video_to_video(clip, caption, strength, seed=seed, steps=steps)
        _compare(what, torch.from_numpy(got).double(), torch.from_numpy(expected).double(), atol=1)
    return _passed("sdedit", "minilumiere.pipeline.Pipeline.video_to_video", len(SDEDIT_STRENGTHS))
