"""The diffusion core: schedules, noising, eps/x0/v conversions, the loss, DDPM and DDIM steps
and samplers, and classifier-free guidance.

The steps are checked against an outside reference, `diffusers`' DDIMScheduler and
DDPMScheduler (a test-only dependency), given the same alphas_cumprod.
"""
import math

import pytest
import torch

from minilumiere.diffusion import (PREDICTIONS, Schedule, add_noise, classifier_free_guidance,
                                   ddim_sample, ddim_step, ddpm_sample, ddpm_step, diffusion_loss,
                                   from_x0_eps, sampling_timesteps, to_x0_eps, training_target)

SCHEDULES = ("cosine", "linear")
SHAPES = {"image": (3, 3, 8, 8), "clip": (2, 3, 4, 8, 8)}    # (B, C, H, W) and (B, C, T, H, W)
DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
DIVISORS_OF_1000 = (1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1000)


def randn(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def random_t(schedule, batch, seed=0):
    return torch.randint(0, schedule.num_steps, (batch,), generator=torch.Generator().manual_seed(seed))


def perfect_predictor(x0_true, schedule, kind):
    """A model_fn that knows the clean sample: from x_t and the true x0 it returns the exact
    eps, x0 or v prediction (for x_t made from x0_true and *any* noise)."""
    def model_fn(x_t, t):
        abar = schedule.abar(t, x_t)
        eps = (x_t - abar.sqrt() * x0_true) / (1 - abar).sqrt()
        return from_x0_eps(x0_true, eps, abar, kind)
    return model_fn


# --- schedules -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SCHEDULES)
def test_alphas_cumprod_is_float64_strictly_decreasing_in_open_unit_interval(name):
    schedule = Schedule.named(name)
    abar = schedule.alphas_cumprod
    assert abar.dtype == torch.float64
    assert abar.shape == (1000,) and schedule.num_steps == 1000
    assert torch.all(abar > 0) and torch.all(abar < 1)
    assert torch.all(abar[1:] < abar[:-1])
    assert abar[0] > 0.999 and abar[-1] < 1e-3          # nearly clean at t=0, nearly noise at T-1


@pytest.mark.parametrize("name", SCHEDULES)
def test_named_schedule_equals_its_constructor(name):
    assert torch.equal(Schedule.named(name, 50).alphas_cumprod,
                       getattr(Schedule, name)(50).alphas_cumprod)


@pytest.mark.parametrize("name", SCHEDULES)
def test_betas_rebuild_alphas_cumprod(name):
    schedule = Schedule.named(name)
    betas = schedule.betas
    assert betas.dtype == torch.float64 and torch.all(betas > 0) and torch.all(betas < 1)
    torch.testing.assert_close(torch.cumprod(1 - betas, 0), schedule.alphas_cumprod,
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("name, diffusers_name", [("cosine", "squaredcos_cap_v2"),
                                                  ("linear", "linear")])
def test_schedules_match_diffusers_beta_schedules(name, diffusers_name):
    from diffusers import DDPMScheduler

    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name)
    # diffusers keeps betas in float32: agreement to float32 accuracy over a 1000-step product.
    torch.testing.assert_close(reference.alphas_cumprod.double(), Schedule.named(name).alphas_cumprod,
                               rtol=1e-4, atol=1e-7)


def test_abar_broadcasts_and_t_minus_one_is_clean():
    schedule = Schedule.cosine()
    clip = torch.zeros(3, 3, 4, 8, 8)
    abar = schedule.abar(torch.tensor([-1, 0, 999]), clip)
    assert abar.shape == (3, 1, 1, 1, 1) and abar.dtype == torch.float32
    assert abar[0].item() == 1.0
    assert abar[1].item() == pytest.approx(schedule.alphas_cumprod[0].item())
    assert abar[2].item() == pytest.approx(schedule.alphas_cumprod[999].item())


# --- noising and the three parametrizations --------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_add_noise_is_the_forward_formula(shape):
    schedule = Schedule.cosine()
    x0, noise = randn(shape, 0), randn(shape, 1)
    t = torch.tensor([0, 500, 999][: shape[0]])
    abar = schedule.alphas_cumprod[t].reshape(-1, *[1] * (len(shape) - 1))
    torch.testing.assert_close(add_noise(schedule, x0, t, noise),
                               abar.sqrt() * x0 + (1 - abar).sqrt() * noise, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("t", [0, 250, 600, 999])
def test_add_noise_statistics(name, t):
    """Over many noise draws, x_t has mean sqrt(abar) x0 and std sqrt(1 - abar) per element;
    and for data of unit variance the process is variance preserving."""
    schedule = Schedule.named(name)
    abar = schedule.alphas_cumprod[t].item()
    draws = 20_000
    x0 = torch.linspace(-1, 1, 16, dtype=torch.float64).expand(draws, 16)
    x_t = add_noise(schedule, x0, torch.full((draws,), t), randn((draws, 16), seed=t))
    standard_error = math.sqrt((1 - abar) / draws)
    torch.testing.assert_close(x_t.mean(0), math.sqrt(abar) * x0[0], rtol=0, atol=5 * standard_error)
    torch.testing.assert_close(x_t.std(0), torch.full((16,), math.sqrt(1 - abar), dtype=torch.float64),
                               rtol=0.05, atol=0)
    unit_data = randn((draws, 16), seed=1000 + t)
    x_t = add_noise(schedule, unit_data, torch.full((draws,), t), randn((draws, 16), seed=2000 + t))
    assert x_t.var().item() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("name", SCHEDULES)
def test_conversions_round_trip(shape, name):
    """(x0, eps) -> any parametrization -> (x0, eps), and across parametrizations, for random
    tensors at random t (the extremes t=0 and t=T-1 included)."""
    schedule = Schedule.named(name)
    for trial in range(5):
        x0, eps = randn(shape, 2 * trial), randn(shape, 2 * trial + 1)
        t = random_t(schedule, shape[0], seed=trial)
        t[0] = 0 if trial % 2 == 0 else schedule.num_steps - 1
        abar = schedule.abar(t, x0)
        x_t = add_noise(schedule, x0, t, eps)
        for kind in PREDICTIONS:
            prediction = from_x0_eps(x0, eps, abar, kind)
            x0_back, eps_back = to_x0_eps(prediction, x_t, abar, kind)
            torch.testing.assert_close(x0_back, x0, rtol=0, atol=1e-9)
            torch.testing.assert_close(eps_back, eps, rtol=0, atol=1e-9)
            for other in PREDICTIONS:
                converted = from_x0_eps(*to_x0_eps(prediction, x_t, abar, kind), abar, other)
                torch.testing.assert_close(converted, from_x0_eps(x0, eps, abar, other),
                                           rtol=0, atol=1e-9)


def test_parametrization_definitions():
    """Round trips alone would accept a consistent but wrong convention (e.g. v with the
    opposite sign); pin the definitions of Salimans & Ho (2022)."""
    schedule = Schedule.linear()
    x0, eps = randn((4, 3, 8, 8), 0), randn((4, 3, 8, 8), 1)
    abar = schedule.abar(torch.tensor([10, 200, 500, 900]), x0)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    torch.testing.assert_close(from_x0_eps(x0, eps, abar, "eps"), eps, rtol=0, atol=0)
    torch.testing.assert_close(from_x0_eps(x0, eps, abar, "x0"), x0, rtol=0, atol=0)
    torch.testing.assert_close(from_x0_eps(x0, eps, abar, "v"), a * eps - s * x0, rtol=0, atol=1e-15)
    for kind in PREDICTIONS:
        assert torch.equal(training_target(x0, eps, abar, kind), from_x0_eps(x0, eps, abar, kind))


# --- the loss --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_diffusion_loss_zero_for_perfect_predictor_positive_otherwise(kind, shape):
    schedule = Schedule.cosine()
    x0 = randn(shape, 0)
    perfect = perfect_predictor(x0, schedule, kind)
    generator = torch.Generator().manual_seed(3)
    assert diffusion_loss(perfect, x0, schedule, kind, generator=generator).item() < 1e-20
    # A constant error of 0.1 costs exactly 0.1^2.
    off = diffusion_loss(lambda x_t, t: perfect(x_t, t) + 0.1, x0, schedule, kind,
                         generator=torch.Generator().manual_seed(3))
    assert off.item() == pytest.approx(0.01, rel=1e-9)
    # The perfect predictor of another parametrization is wrong for this one.
    other = PREDICTIONS[(PREDICTIONS.index(kind) + 1) % 3]
    assert diffusion_loss(perfect_predictor(x0, schedule, other), x0, schedule, kind,
                          generator=torch.Generator().manual_seed(3)).item() > 1e-3


@pytest.mark.parametrize("kind", PREDICTIONS)
def test_diffusion_loss_regresses_the_right_target(kind):
    schedule = Schedule.cosine()
    x0, noise = randn((4, 3, 4, 8, 8), 0), randn((4, 3, 4, 8, 8), 1)
    t = torch.tensor([0, 100, 500, 999])
    abar = schedule.abar(t, x0)
    expected = {"eps": noise, "x0": x0, "v": abar.sqrt() * noise - (1 - abar).sqrt() * x0}[kind]
    loss = diffusion_loss(lambda x_t, t: torch.zeros_like(x_t), x0, schedule, kind, t=t, noise=noise)
    assert loss.item() == pytest.approx(torch.mean(expected**2).item(), rel=1e-12)


def test_diffusion_loss_draws_t_and_noise_from_the_generator():
    schedule = Schedule.cosine()
    x0 = randn((8, 3, 8, 8))
    seen = []

    def model_fn(x_t, t):
        seen.append(t.clone())
        return x_t

    losses = [diffusion_loss(model_fn, x0, schedule, "eps", generator=torch.Generator().manual_seed(s))
              for s in (5, 5, 6)]
    assert losses[0].item() == losses[1].item() != losses[2].item()
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])
    assert all(t.dtype == torch.long and t.min() >= 0 and t.max() < 1000 for t in seen)


# --- sampling timesteps ----------------------------------------------------------------------

@pytest.mark.parametrize("steps", DIVISORS_OF_1000)
def test_sampling_timesteps_match_diffusers_trailing(steps):
    from diffusers import DDIMScheduler

    schedule = Schedule.cosine()
    reference = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    reference.set_timesteps(steps)
    timesteps = sampling_timesteps(schedule, steps)
    assert timesteps == reference.timesteps.tolist()
    assert timesteps[0] == 999 and len(timesteps) == steps and len(set(timesteps)) == steps


# --- single steps against diffusers ----------------------------------------------------------

def diffusers_scheduler(cls, schedule, steps, kind, **extra):
    """A diffusers scheduler on our schedule: built from our betas, then given our float64
    alphas_cumprod (diffusers keeps betas in float32), so both sides do float64 arithmetic."""
    scheduler = cls(num_train_timesteps=schedule.num_steps, trained_betas=schedule.betas.numpy(),
                    timestep_spacing="trailing", clip_sample=False,
                    prediction_type=DIFFUSERS_PREDICTION[kind], **extra)
    torch.testing.assert_close(scheduler.alphas_cumprod.double(), schedule.alphas_cumprod,
                               rtol=1e-4, atol=1e-7)
    scheduler.alphas_cumprod = schedule.alphas_cumprod.clone()
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps.tolist() == sampling_timesteps(schedule, steps)
    return scheduler


def step_pairs(timesteps):
    """(t, t_prev) for every step of the loop, t_prev = -1 for the last."""
    return list(zip(timesteps, timesteps[1:] + [-1]))


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_step_matches_diffusers(kind, name, eta):
    from diffusers import DDIMScheduler

    schedule, steps = Schedule.named(name), 10
    scheduler = diffusers_scheduler(DDIMScheduler, schedule, steps, kind, set_alpha_to_one=True)
    for i, (t, t_prev) in enumerate(step_pairs(sampling_timesteps(schedule, steps))):
        x_t, prediction, noise = (randn((2, 3, 4, 8, 8), 3 * i + k) for k in range(3))
        ours = ddim_step(prediction, x_t, t, t_prev, schedule, kind, eta=eta, noise=noise)
        reference = scheduler.step(prediction, t, x_t, eta=eta,
                                   variance_noise=noise if eta > 0 else None).prev_sample
        assert ours.dtype == reference.dtype == torch.float64
        torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-9)
        if eta > 0 and t_prev >= 0:   # the noise is really used: without it the step differs
            without = ddim_step(prediction, x_t, t, t_prev, schedule, kind, eta=0.0)
            assert (without - reference).abs().max() > 1e-3


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("steps", [1000, 10])
def test_ddpm_step_matches_diffusers(kind, name, steps):
    from diffusers import DDPMScheduler

    schedule = Schedule.named(name)
    scheduler = diffusers_scheduler(DDPMScheduler, schedule, steps, kind, variance_type="fixed_small")
    pairs = step_pairs(sampling_timesteps(schedule, steps))
    for i, (t, t_prev) in enumerate(pairs if steps <= 10 else pairs[::97] + pairs[-3:]):
        x_t, prediction = randn((2, 3, 4, 8, 8), 2 * i), randn((2, 3, 4, 8, 8), 2 * i + 1)
        seed = 1000 + i
        # diffusers draws its noise from the generator; draw the same noise for ours.
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(seed), dtype=x_t.dtype)
        ours = ddpm_step(prediction, x_t, t, t_prev, schedule, kind, noise=noise)
        reference = scheduler.step(prediction, t, x_t,
                                   generator=torch.Generator().manual_seed(seed)).prev_sample
        assert ours.dtype == reference.dtype == torch.float64
        torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-9)
        if t_prev >= 0:
            mean = ddpm_step(prediction, x_t, t, t_prev, schedule, kind, noise=torch.zeros_like(x_t))
            assert (mean - reference).abs().max() > 1e-4


# --- samplers --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_samplers_with_a_perfect_predictor_return_its_x0(kind, name, shape):
    schedule = Schedule.named(name)
    x0 = randn(shape, 0).clamp(-1, 1)
    model_fn = perfect_predictor(x0, schedule, kind)
    x_T = randn(shape, 1)
    samples = {
        "ddim 1 step": ddim_sample(model_fn, shape, schedule, steps=1, prediction=kind, x_T=x_T),
        "ddim 20 steps": ddim_sample(model_fn, shape, schedule, steps=20, prediction=kind, x_T=x_T),
        "ddim eta=1": ddim_sample(model_fn, shape, schedule, steps=20, eta=1.0, prediction=kind,
                                  x_T=x_T, generator=torch.Generator().manual_seed(0)),
        "ddpm 25 steps": ddpm_sample(model_fn, shape, schedule, steps=25, prediction=kind, x_T=x_T,
                                     generator=torch.Generator().manual_seed(0)),
    }
    if shape == SHAPES["image"]:
        samples["ddpm 1000 steps"] = ddpm_sample(model_fn, shape, schedule, prediction=kind, x_T=x_T,
                                                 generator=torch.Generator().manual_seed(0))
    for label, sample in samples.items():
        assert sample.shape == shape and sample.dtype == torch.float64, label
        torch.testing.assert_close(sample, x0, rtol=0, atol=1e-6, msg=label)


def test_ddim_eta0_is_deterministic_ddpm_is_not():
    schedule = Schedule.cosine()
    model_fn = lambda x_t, t: 0.5 * x_t            # any fixed model      # noqa: E731
    shape = (2, 3, 4, 8, 8)
    ddim = [ddim_sample(model_fn, shape, schedule, steps=10, generator=torch.Generator().manual_seed(0),
                        x_T=randn(shape, 9).float()) for _ in range(2)]
    assert torch.equal(*ddim)
    ddpm = [ddpm_sample(model_fn, shape, schedule, steps=10, generator=torch.Generator().manual_seed(s),
                        x_T=randn(shape, 9).float()) for s in (0, 1)]
    assert not torch.allclose(*ddpm)


def test_sampler_calls_model_at_sampling_timesteps_and_records_trajectory():
    schedule = Schedule.linear()
    calls = []

    def model_fn(x_t, t):
        calls.append(t.clone())
        return torch.zeros_like(x_t)

    trajectory = []
    shape = (2, 3, 4, 8, 8)
    sample = ddim_sample(model_fn, shape, schedule, steps=8, prediction="x0",
                         generator=torch.Generator().manual_seed(0), trajectory=trajectory)
    expected = sampling_timesteps(schedule, 8)
    assert [c.tolist() for c in calls] == [[t, t] for t in expected]
    assert all(c.dtype == torch.long for c in calls)
    assert [t for t, _, _ in trajectory] == expected
    assert all(x.shape == shape and x0.shape == shape for _, x, x0 in trajectory)
    assert torch.equal(trajectory[-1][1], sample)
    assert all(torch.equal(x0, torch.zeros(shape)) for _, _, x0 in trajectory)   # the predicted x0
    assert torch.equal(sample, torch.zeros(shape))


# --- classifier-free guidance ----------------------------------------------------------------

class RecordingDenoiser:
    """An elementwise toy denoiser (batch entries do not interact) that records its calls."""

    def __init__(self):
        self.batches = []

    def __call__(self, x_t, t, context, cond=None, offset=0.0):
        self.batches.append(x_t.shape[0])
        out = x_t * context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1, 1) + t.reshape(-1, 1, 1, 1, 1) / 100
        if cond is not None:
            out = out + cond
        return out + offset


def guidance_inputs():
    x_t = randn((2, 3, 4, 8, 8), 0)
    t = torch.tensor([10, 500])
    context, null_context = randn((2, 5, 16), 1) + 1.0, torch.zeros(2, 5, 16, dtype=torch.float64)
    cond = randn((2, 3, 4, 8, 8), 2)
    return x_t, t, context, null_context, cond


def test_guidance_scale_one_is_the_conditional_call():
    x_t, t, context, null_context, cond = guidance_inputs()
    denoiser = RecordingDenoiser()
    guided = classifier_free_guidance(denoiser, context, null_context, 1.0, cond=cond)(x_t, t)
    assert torch.equal(guided, RecordingDenoiser()(x_t, t, context, cond=cond))
    assert denoiser.batches == [2]


@pytest.mark.parametrize("scale", [0.0, 0.5, 3.0, 7.5])
def test_guidance_extrapolates_in_one_batched_call(scale):
    x_t, t, context, null_context, cond = guidance_inputs()
    denoiser = RecordingDenoiser()
    guided = classifier_free_guidance(denoiser, context, null_context, scale,
                                      cond=cond, offset=0.25)(x_t, t)
    assert denoiser.batches == [4]                    # one call on the doubled batch
    reference = RecordingDenoiser()
    conditional = reference(x_t, t, context, cond=cond, offset=0.25)
    unconditional = reference(x_t, t, null_context, cond=cond, offset=0.25)
    assert not torch.allclose(conditional, unconditional)
    assert torch.equal(guided, unconditional + scale * (conditional - unconditional))
    if scale == 0.0:
        assert torch.equal(guided, unconditional)


def test_guided_model_fn_drives_a_sampler():
    """With a conditional denoiser that predicts x0 = context-dependent constant, guidance at
    scale s lands DDIM on uncond + s * (cond - uncond)."""
    def denoiser(x_t, t, context):
        return context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1, 1).expand_as(x_t)

    shape = (2, 3, 4, 8, 8)
    context, null_context = torch.full((2, 1, 4), 0.3), torch.full((2, 1, 4), -0.1)
    model_fn = classifier_free_guidance(denoiser, context, null_context, 2.0)
    sample = ddim_sample(model_fn, shape, Schedule.cosine(), steps=10, prediction="x0",
                         generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample, torch.full(shape, -0.1 + 2.0 * 0.4), rtol=0, atol=1e-5)


# --- bad input -------------------------------------------------------------------------------

def test_bad_inputs_raise_value_errors_naming_the_argument():
    schedule = Schedule.cosine()
    x = torch.zeros(1, 3, 8, 8)
    t = torch.zeros(1, dtype=torch.long)
    model_fn = lambda x_t, t: x_t                                  # noqa: E731
    with pytest.raises(ValueError, match=r"schedule='quadratic'.*cosine.*linear"):
        Schedule.named("quadratic")
    with pytest.raises(ValueError, match=r"num_steps=1"):
        Schedule.cosine(num_steps=1)
    with pytest.raises(ValueError, match=r"num_steps=1"):
        Schedule.linear(num_steps=1)
    for call in (lambda: to_x0_eps(x, x, schedule.abar(t, x), "score"),
                 lambda: from_x0_eps(x, x, schedule.abar(t, x), "score"),
                 lambda: diffusion_loss(model_fn, x, schedule, "score"),
                 lambda: ddim_step(x, x, 999, 0, schedule, "score"),
                 lambda: ddim_sample(model_fn, x.shape, schedule, steps=2, prediction="score"),
                 lambda: ddpm_sample(model_fn, x.shape, schedule, steps=2, prediction="score")):
        with pytest.raises(ValueError, match=r"(prediction|kind)='score'.*'eps', 'x0', 'v'"):
            call()
    for steps in (0, -3, 1001):
        for call in (lambda: sampling_timesteps(schedule, steps),
                     lambda: ddim_sample(model_fn, x.shape, schedule, steps=steps),
                     lambda: ddpm_sample(model_fn, x.shape, schedule, steps=steps)):
            with pytest.raises(ValueError, match=rf"steps={steps}\b.*1 to 1000"):
                call()
    with pytest.raises(ValueError, match=r"steps=2\.5"):
        sampling_timesteps(schedule, 2.5)
    context = torch.zeros(1, 2, 4)
    for scale in (-1.0, -0.01, float("nan")):
        with pytest.raises(ValueError, match=r"scale=.*>= 0"):
            classifier_free_guidance(lambda x_t, t, c: x_t, context, context, scale)
