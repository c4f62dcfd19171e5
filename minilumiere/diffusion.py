"""The diffusion core: schedules, noising, eps/x0/v conversions, the loss, DDPM and DDIM
samplers, and classifier-free guidance.

Notation (Ho et al. 2020; Song et al. 2021; Salimans & Ho 2022):
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,   abar_t = alphas_cumprod[t]
    v   = sqrt(abar_t) eps - sqrt(1 - abar_t) x0
A `model_fn(x_t, t)` returns a prediction of eps, x0 or v; `t` (B,) holds integer indices
into `alphas_cumprod`. Every function works for images (B, C, H, W) and clips (B, C, T, H, W).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

PREDICTIONS = ("eps", "x0", "v")
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Schedule:
    """A noise schedule, fully described by alphas_cumprod (float64, decreasing in (0, 1))."""
    alphas_cumprod: torch.Tensor

    @classmethod
    def cosine(cls, num_steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999):
        """Nichol & Dhariwal (2021): abar(t) = cos^2(((t/T + s) / (1 + s)) pi/2), betas clipped."""
        _check_steps(num_steps)
        grid = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((grid + offset) / (1 + offset) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        return cls(torch.cumprod(1 - betas, dim=0))

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        """Ho et al. (2020): betas linear from beta_start to beta_end."""
        _check_steps(num_steps)
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        return cls(torch.cumprod(1 - betas, dim=0))

    @classmethod
    def named(cls, name: str, num_steps: int = 1000):
        if name not in ("cosine", "linear"):
            raise ValueError(f"schedule={name!r}; choose 'cosine' or 'linear'")
        return getattr(cls, name)(num_steps)

    @property
    def num_steps(self) -> int:
        return len(self.alphas_cumprod)

    @property
    def betas(self) -> torch.Tensor:
        previous = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        return 1 - self.alphas_cumprod / previous

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alphas_cumprod at t (B,), shaped to broadcast against `like` (B, ...); t < 0 gives 1."""
        values = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0).cpu()].to(t.device),
                             torch.ones((), dtype=torch.float64, device=t.device))
        return values.reshape(-1, *[1] * (like.ndim - 1)).to(like.dtype)


def _check_steps(num_steps: int) -> None:
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps={num_steps!r} must be an int >= 2")


def _check_prediction(value: str, name: str = "prediction") -> None:
    if value not in PREDICTIONS:
        raise ValueError(f"{name}={value!r}; choose one of {list(PREDICTIONS)}")


def add_noise(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor,
              noise: torch.Tensor) -> torch.Tensor:
    """Forward process q(x_t | x0): sqrt(abar) x0 + sqrt(1 - abar) noise."""
    abar = schedule.abar(t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def to_x0_eps(prediction: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor,
              kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Any parametrization -> (x0, eps), given x_t and abar (broadcastable)."""
    _check_prediction(kind, "kind")
    a, s = abar.sqrt(), (1 - abar).sqrt()
    if kind == "eps":
        eps = prediction
        return (x_t - s * eps) / a, eps
    if kind == "x0":
        x0 = prediction
        return x0, (x_t - a * x0) / s
    x0 = a * x_t - s * prediction      # kind == "v"
    eps = s * x_t + a * prediction
    return x0, eps


def from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor, kind: str) -> torch.Tensor:
    """(x0, eps) -> the parametrization `kind` ("eps", "x0" or "v")."""
    _check_prediction(kind, "kind")
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    return abar.sqrt() * eps - (1 - abar).sqrt() * x0


def training_target(x0, noise, abar, kind: str) -> torch.Tensor:
    """What a model of parametrization `kind` should output for x_t made from (x0, noise)."""
    return from_x0_eps(x0, noise, abar, kind)


def diffusion_loss(model_fn: ModelFn, x0: torch.Tensor, schedule: Schedule, kind: str = "v",
                   t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean squared error between model_fn(x_t, t) and the target of its parametrization.

    t is drawn uniformly and noise from N(0, I) unless given.
    """
    if t is None:
        t = torch.randint(0, schedule.num_steps, (x0.shape[0],), generator=generator,
                          device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = add_noise(schedule, x0, t, noise)
    target = training_target(x0, noise, schedule.abar(t, x0), kind)
    return torch.mean((model_fn(x_t, t) - target) ** 2)


def sampling_timesteps(schedule: Schedule, steps: int) -> list[int]:
    """`steps` timesteps from T-1 down, evenly spaced ("trailing": the first is pure noise)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= schedule.num_steps:
        raise ValueError(f"steps={steps!r} must be an int from 1 to {schedule.num_steps}")
    stride = schedule.num_steps / steps
    return [int(round(schedule.num_steps - i * stride)) - 1 for i in range(steps)]


def ddim_step(prediction, x_t, t: int, t_prev: int, schedule: Schedule, kind: str,
              eta: float = 0.0, noise: torch.Tensor | None = None,
              clip_x0: bool = False) -> torch.Tensor:
    """One DDIM update x_t -> x_{t_prev} (Song et al. 2021, Eq. 12); t_prev = -1 means x0."""
    if not eta >= 0:
        raise ValueError(f"eta={eta!r} must be >= 0 (0: deterministic DDIM, 1: DDPM-like)")
    if eta > 0 and t_prev >= 0 and noise is None:
        raise ValueError("eta > 0 needs `noise` (a tensor shaped like x_t)")
    batch = x_t.shape[0]
    abar = schedule.abar(torch.full((batch,), t, device=x_t.device), x_t)
    abar_prev = schedule.abar(torch.full((batch,), t_prev, device=x_t.device), x_t)
    x0, eps = to_x0_eps(prediction, x_t, abar, kind)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0 and t_prev >= 0:
        x_prev = x_prev + sigma * noise
    return x_prev


def ddpm_step(prediction, x_t, t: int, t_prev: int, schedule: Schedule, kind: str,
              noise: torch.Tensor | None = None, clip_x0: bool = False) -> torch.Tensor:
    """One ancestral step from the posterior q(x_{t_prev} | x_t, x0) (Ho et al. 2020, Eq. 7),
    with x0 predicted and the "fixed small" variance; t_prev = -1 means x0."""
    batch = x_t.shape[0]
    abar = schedule.abar(torch.full((batch,), t, device=x_t.device), x_t)
    abar_prev = schedule.abar(torch.full((batch,), t_prev, device=x_t.device), x_t)
    alpha = abar / abar_prev                       # one-step alpha between t_prev and t
    x0, _ = to_x0_eps(prediction, x_t, abar, kind)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    mean = (abar_prev.sqrt() * (1 - alpha) * x0 + alpha.sqrt() * (1 - abar_prev) * x_t) / (1 - abar)
    if t_prev < 0:
        return mean
    variance = (1 - abar_prev) / (1 - abar) * (1 - alpha)
    return mean + variance.sqrt() * noise


def ddim_sample(model_fn: ModelFn, shape, schedule: Schedule, steps: int = 50, eta: float = 0.0,
                prediction: str = "v", generator: torch.Generator | None = None,
                x_T: torch.Tensor | None = None, clip_x0: bool = False, device=None,
                progress: bool = False, trajectory: list | None = None) -> torch.Tensor:
    """Sample with DDIM from pure noise (or `x_T`). eta=0: deterministic; eta=1: DDPM-like.

    `trajectory`, if a list, receives (t, x_t, predicted x0) after every step.
    """
    return _sample(model_fn, shape, schedule, steps, prediction, generator, x_T, device,
                   progress, trajectory, clip_x0,
                   lambda p, x, t, tp, noise: ddim_step(p, x, t, tp, schedule, prediction, eta,
                                                        noise, clip_x0),
                   needs_noise=eta > 0)


def ddpm_sample(model_fn: ModelFn, shape, schedule: Schedule, steps: int | None = None,
                prediction: str = "v", generator: torch.Generator | None = None,
                x_T: torch.Tensor | None = None, clip_x0: bool = False, device=None,
                progress: bool = False, trajectory: list | None = None) -> torch.Tensor:
    """Ancestral DDPM sampling; all training steps by default, or `steps` evenly spaced."""
    steps = schedule.num_steps if steps is None else steps
    return _sample(model_fn, shape, schedule, steps, prediction, generator, x_T, device,
                   progress, trajectory, clip_x0,
                   lambda p, x, t, tp, noise: ddpm_step(p, x, t, tp, schedule, prediction,
                                                        noise, clip_x0),
                   needs_noise=True)


def _sample(model_fn, shape, schedule, steps, prediction, generator, x_T, device, progress,
            trajectory, clip_x0, step_fn, needs_noise) -> torch.Tensor:
    """The loop both samplers share: x_T -> model prediction -> step, from t = T-1 to 0."""
    _check_prediction(prediction)
    timesteps = sampling_timesteps(schedule, steps)
    x = torch.randn(shape, generator=generator, device=device) if x_T is None else x_T
    bar = tqdm(timesteps, disable=not progress or bool(os.environ.get("TQDM_DISABLE")),
               desc="denoising", leave=False)
    for i, t in enumerate(bar):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        batch_t = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        pred = model_fn(x, batch_t)
        noise = (torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                 if needs_noise and t_prev >= 0 else None)
        x_new = step_fn(pred, x, t, t_prev, noise)
        if trajectory is not None:
            x0, _ = to_x0_eps(pred, x, schedule.abar(batch_t, x), prediction)
            trajectory.append((t, x_new.detach().clone(), (x0.clamp(-1, 1) if clip_x0 else x0).detach().clone()))
        x = x_new
    return x


def classifier_free_guidance(denoiser: Callable, context: torch.Tensor,
                             null_context: torch.Tensor, scale: float, **kwargs) -> ModelFn:
    """Turn a conditional denoiser(x_t, t, context, **kwargs) into model_fn(x_t, t) that
    returns uncond + scale * (cond - uncond) (Ho & Salimans 2022). scale = 1: no guidance.

    Both halves run in one batched call. Extra tensor kwargs (e.g. `cond`) are batched too.
    """
    if not scale >= 0:
        raise ValueError(f"guidance scale={scale!r} must be >= 0")
    if scale == 1.0:
        return lambda x_t, t: denoiser(x_t, t, context, **kwargs)

    def model_fn(x_t, t):
        doubled = {k: torch.cat([v, v]) if torch.is_tensor(v) else v for k, v in kwargs.items()}
        both = denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]),
                        torch.cat([context, null_context]), **doubled)
        conditional, unconditional = both.chunk(2)
        return unconditional + scale * (conditional - unconditional)

    return model_fn
