"""Caption in, clip out: sampling a text-conditioned denoiser, and the `Pipeline` readers use.

    pipe = load_pipeline("toy")                      # the shipped weights, offline
    clip = pipe("a red circle moving left", seed=0)  # (T, H, W, 3) uint8
"""
from __future__ import annotations

import numbers
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoints, conditioning
from .data import parse_caption, to_tensor, to_uint8
from .diffusion import Schedule, add_noise, classifier_free_guidance, ddim_sample
from .model import TextConditionedDenoiser
from .ssr import downsample, super_resolve

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"


@torch.no_grad()
def sample(model: TextConditionedDenoiser, captions: list[str], seed: int | list[int] = 0,
           steps: int | None = None, guidance: float | None = None, eta: float = 0.0,
           progress: bool = False, trajectory: list | None = None,
           cond: torch.Tensor | None = None, keep_known: bool = False,
           still: torch.Tensor | None = None, init: torch.Tensor | None = None,
           t_start: int | None = None) -> list[np.ndarray]:
    """DDIM samples with classifier-free guidance, one per caption: (T, H, W, 3) uint8 each
    ((1, H, W, 3) for a T2I model). Item i starts from noise seeded by seeds[i]. cond
    (B, 4, T, H, W): <C, M> for a conditioning model (zeros, i.e. nothing known, if None);
    keep_known=True also overwrites the predicted x0 with C where M = 1 at every step.
    still (B, H, W) bool: pixels that must not move on any frame (a cinemagraph's outside);
    the clip starts from noise held still there, each frame's noise with frame 0's mean
    (`conditioning.hold_noise_still`; eta > 0 adds fresh noise at every step, not held still).
    init in [-1, 1], shaped like the noise, with t_start: SDEdit (Meng et al. 2022), i.e. start from
    init noised to step t_start with the seeded noise and take `steps` DDIM steps from t_start
    down to 0 (t_start = num_steps - 1: nearly pure noise).
    guidance=None: the config's `guidance`, or its `cond_guidance` when cond gives any pixel."""
    cfg = model.cfg
    steps = cfg.diffusion.sample_steps if steps is None else steps
    if guidance is None:
        given = cond is not None and bool(conditioning.split(cond)[1].any())
        guidance = cfg.diffusion.cond_guidance if given else cfg.diffusion.guidance
    seeds = [seed + i for i in range(len(captions))] if isinstance(seed, int) else list(seed)
    if len(seeds) != len(captions):
        raise ValueError(f"got {len(seeds)} seeds for {len(captions)} captions")
    for caption in captions:
        if caption:
            parse_caption(caption)
    device = next(model.parameters()).device
    shape = (3, cfg.size, cfg.size) if model.is_image_model else (3, cfg.frames, cfg.size, cfg.size)
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s))
                         for s in seeds]).to(device)
    context = model.encode(captions)
    null_context = model.encode([""] * len(captions))
    extra = {}
    if model.cond_channels:
        if cond is None:
            cond = torch.zeros(len(captions), model.cond_channels, *shape[1:])
        extra["cond"] = cond.to(device)
    elif cond is not None:
        raise ValueError(f"cond given, but this {model.stage!r} model takes no extra channels")
    if still is not None:
        noise = conditioning.hold_noise_still(noise, still)
    schedule = Schedule.named(cfg.diffusion.schedule, cfg.diffusion.num_steps)
    x_start, schedule = _start(noise, schedule, init, t_start)
    model_fn = classifier_free_guidance(model.net, context, null_context, guidance, **extra)
    if keep_known:
        if "cond" not in extra:
            raise ValueError("keep_known=True needs a conditioning model and its cond")
        model_fn = conditioning.keep_known(model_fn, extra["cond"], schedule,
                                           cfg.diffusion.prediction)
    x0 = ddim_sample(model_fn, noise.shape, schedule,
                     steps=steps, eta=eta, prediction=cfg.diffusion.prediction, x_T=x_start,
                     generator=torch.Generator(device).manual_seed(seeds[0]),    # for eta > 0
                     clip_x0=True, progress=progress, trajectory=trajectory)
    if model.is_image_model:
        x0 = x0[:, :, None]                                   # (B, 3, 1, H, W)
    return [to_uint8(clip) for clip in x0]


def _start(noise: torch.Tensor, schedule: Schedule, init: torch.Tensor | None,
           t_start: int | None) -> tuple[torch.Tensor, Schedule]:
    """Where DDIM starts, and the schedule it runs over: the noise itself at the last step, or
    (SDEdit) `init` noised to t_start with the schedule cut after t_start, so that DDIM's
    timesteps run from t_start down (the cut keeps every kept step's alphas_cumprod)."""
    if (init is None) != (t_start is None):
        raise ValueError("init and t_start go together: the clip to edit and the step to noise "
                         "it to")
    if init is None:
        return noise, schedule
    if init.shape != noise.shape:
        raise ValueError(f"init has shape {tuple(init.shape)}; it must be {tuple(noise.shape)}")
    if not isinstance(t_start, int) or not 0 <= t_start < schedule.num_steps:
        raise ValueError(f"t_start={t_start!r} must be an int from 0 to {schedule.num_steps - 1}")
    t = torch.full((len(noise),), t_start, device=noise.device)
    x_t = add_noise(schedule, init.to(noise.device), t, noise)
    return x_t, Schedule(schedule.alphas_cumprod[: t_start + 1])


@contextmanager
def interpolated(module: nn.Module, towards: dict[str, torch.Tensor] | None, weight: float):
    """Within the block, every weight W of `module` is weight * towards[name] + (1 - weight) * W
    (exactly towards[name] at weight 1); W comes back on leaving it, even on an error.
    weight = 0 leaves the module untouched (towards may then be None)."""
    if weight == 0:
        yield
        return
    base = {name: value.clone() for name, value in module.state_dict().items()}
    module.load_state_dict({name: torch.lerp(value, towards[name], float(weight))
                            for name, value in base.items()})
    try:
        yield
    finally:
        module.load_state_dict(base)


class Pipeline:
    """The shipped models behind one call each. Every method takes and returns uint8 arrays
    ((T, H, W, 3) clips, (H, W, 3) images, bool masks) and is deterministic per seed on CPU.

        pipe(caption, seed=0)                       text -> base clip -> SSR clip
        pipe(caption, style=0.5)                    halfway to the style model's look
        pipe.upsample(base_clip, caption)           SSR alone
        pipe.image(caption, style=0.0)              a still from the T2I model
        pipe.image_to_video(image, caption)         first frame given
        pipe.inpaint(clip, known, caption)          fill where known is False
        pipe.cinemagraph(image, region, caption)    animate only the region
        pipe.video_to_video(clip, caption, strength)  re-caption a clip (SDEdit)
        with pipe.styled(a): ...                    the video model's spatial weights interpolated

    `style` is a T2I model fine-tuned on one look (stage "style"), for stylized generation.
    """

    def __init__(self, video: TextConditionedDenoiser, t2i: TextConditionedDenoiser | None = None,
                 ssr: TextConditionedDenoiser | None = None,
                 conditioned: TextConditionedDenoiser | None = None,
                 style: TextConditionedDenoiser | None = None):
        if style is not None and not _fine_tuned_from(style, video):
            raise ValueError(f"the style model (stage {style.stage!r}) was not fine-tuned from the "
                             f"video model's T2I model (its U-Net is shaped otherwise or its text "
                             f"encoder differs): use a style file made with `train --stage style "
                             f"--init` the T2I file the video model extends")
        self.video, self.t2i, self.ssr, self.conditioned, self.style = (
            None if m is None else m.eval() for m in (video, t2i, ssr, conditioned, style))
        self.cfg = video.cfg

    def __call__(self, caption: str, seed: int = 0, steps: int | None = None,
                 guidance: float | None = None, return_base: bool = False,
                 ssr_steps: int | None = None, style: float = 0.0):
        """A clip at the SSR resolution (the base resolution if no SSR model is loaded);
        with return_base=True, (clip, base clip). `steps` and `guidance` are the base
        model's; `ssr_steps` the SSR model's (its config's default if None). style in [0, 1]:
        the base clip is sampled `with self.styled(style)`; SSR is not styled."""
        _check_sampling_args(steps, guidance, self.cfg.diffusion.num_steps, ssr_steps)
        with self.styled(style):
            base = sample(self.video, [caption], seed, steps, guidance)[0]
        return self._finish(base, caption, seed, return_base, ssr_steps)

    def styled(self, style: float):
        """A context manager: within it the video model's spatial weights (`net.unet2d`, the
        ones inflated from the T2I U-Net) are style * W_style + (1 - style) * W_base, the style
        model's U-Net weights against the base ones (stylized generation, Lumiere Sec. 4.1);
        the temporal layers and the text encoder stay as they are. The base weights come back
        on leaving it, even on an error; style = 0 leaves them untouched.

            with pipe.styled(0.5):
                base_clip = sample(pipe.video, [caption], seed=0)[0]
        """
        return interpolated(self.video.net.unet2d, self._style_weights(style), style)

    def _style_weights(self, style) -> dict[str, torch.Tensor] | None:
        """The style model's U-Net weights (None for style = 0); ValueError for a bad style."""
        if not _is_number(style) or not 0 <= style <= 1:
            raise ValueError(f"style={style!r} must be a number from 0 (the base model's look) "
                             f"to 1 (the style model's)")
        if style == 0:
            return None
        if self.style is None:
            raise ValueError(f"style={style!r} needs a style model, and this pipeline was loaded "
                             f"without one ({MODEL_FILES['style']}); only style=0 works")
        return self.style.net.state_dict()

    def upsample(self, base_clip: np.ndarray, caption: str, seed: int = 0,
                 steps: int | None = None, still: np.ndarray | None = None) -> np.ndarray:
        """SSR alone: (T, size, size, 3) uint8 -> (T, ssr_size, ssr_size, 3) uint8. still
        (ssr_size, ssr_size) bool: pixels that must not move (a cinemagraph's outside), whose
        noise is held still."""
        if self.ssr is None:
            raise ValueError("this pipeline was loaded without an SSR model (ssr.safetensors)")
        _check_sampling_args(steps, None, self.cfg.diffusion.num_steps)
        parse_caption(caption)
        low = _clip_tensor("base_clip", base_clip, (self.cfg.size,))
        frames = low.shape[1]
        if frames < self.cfg.ssr.window:
            raise ValueError(f"base_clip has {frames} frames; SSR needs at least its window of "
                             f"{self.cfg.ssr.window}")
        if still is not None:
            size = self.cfg.ssr_size
            still = _mask_tensor("still", still, (size, size))[None]
        high = super_resolve(self.ssr, low[None], [caption], [seed], steps=steps, still=still)
        return to_uint8(high[0])

    def image(self, caption: str, seed: int = 0, steps: int | None = None,
              guidance: float | None = None, style: float = 0.0) -> np.ndarray:
        """A still from the T2I model the video model was inflated from: (H, W, 3) uint8.
        style in [0, 1]: its U-Net weights interpolated towards the style model's, as
        `styled` does for the video model (style = 1 is the style model itself)."""
        if self.t2i is None:
            raise ValueError("this pipeline was loaded without its T2I model")
        _check_sampling_args(steps, guidance, self.cfg.diffusion.num_steps)
        with interpolated(self.t2i.net, self._style_weights(style), style):
            return sample(self.t2i, [caption], seed, steps, guidance)[0][0]

    def image_to_video(self, image: np.ndarray, caption: str, seed: int = 0,
                       steps: int | None = None, guidance: float | None = None,
                       return_base: bool = False, keep_known: bool = False,
                       ssr_steps: int | None = None):
        """Animate an image (H, W, 3) uint8 at the base or SSR resolution: it becomes frame 0.
        keep_known=True pastes the known pixels into every step's prediction (exact frame 0
        at the base resolution) instead of trusting the model to copy them."""
        first = self._to_base(_image_tensor("image", image, self._sizes()))
        return self._conditioned(conditioning.image_to_video(first, self.cfg.frames), caption,
                                 seed, steps, guidance, return_base, keep_known, ssr_steps)

    def inpaint(self, clip: np.ndarray, known: np.ndarray, caption: str, seed: int = 0,
                steps: int | None = None, guidance: float | None = None,
                return_base: bool = False, keep_known: bool = False,
                ssr_steps: int | None = None):
        """Fill a clip (T, H, W, 3) uint8 where `known` (T, H, W) bool is False."""
        video = _clip_tensor("clip", clip, self._sizes(), self.cfg.frames)
        mask = _mask_tensor("known", known, video.shape[1:])
        factor = video.shape[-1] // self.cfg.size
        # a base pixel is known only when all the pixels it averages are
        base_mask = -F.max_pool3d(-mask[None].float(), (1, factor, factor))[0] > 0.5
        return self._conditioned(conditioning.inpainting(self._to_base(video), base_mask),
                                 caption, seed, steps, guidance, return_base, keep_known,
                                 ssr_steps)

    def cinemagraph(self, image: np.ndarray, region: np.ndarray, caption: str, seed: int = 0,
                    steps: int | None = None, guidance: float | None = None,
                    return_base: bool = False, keep_known: bool = False,
                    ssr_steps: int | None = None):
        """Animate only `region` (H, W) bool of a still image (H, W, 3) uint8. Outside the
        region, both models start from noise held still (`conditioning.hold_noise_still`)."""
        picture = _image_tensor("image", image, self._sizes())
        mask = _mask_tensor("region", region, picture.shape[1:])
        factor = picture.shape[-1] // self.cfg.size
        # a base pixel may move when any pixel it averages may
        base_region = F.max_pool2d(mask[None].float(), factor)[0] > 0.5
        return self._conditioned(conditioning.cinemagraph(self._to_base(picture), base_region,
                                                          self.cfg.frames),
                                 caption, seed, steps, guidance, return_base, keep_known,
                                 ssr_steps, still=~base_region)

    def video_to_video(self, clip: np.ndarray, caption: str, strength: float, seed: int = 0,
                       steps: int | None = None, guidance: float | None = None,
                       return_base: bool = False, ssr_steps: int | None = None,
                       style: float = 0.0):
        """Re-caption a clip (T, H, W, 3) uint8 at the base or SSR resolution (SDEdit, Meng et
        al. 2022): noise it, at the base resolution, part of the way, to step
        t_start = round(strength * (num_steps - 1)), then denoise it from there with the video
        model and the new caption, then SSR. strength in (0, 1]: small keeps the clip close,
        1 starts from (nearly) pure noise, i.e. text-to-video. About strength * steps DDIM
        steps run (at least 1). `style` as in `__call__`."""
        if not _is_number(strength) or not 0 < strength <= 1:
            raise ValueError(f"strength={strength!r} must be a number in (0, 1]: how far to noise "
                             f"the clip (near 0: keep it, 1: from pure noise)")
        diffusion = self.cfg.diffusion
        _check_sampling_args(steps, guidance, diffusion.num_steps, ssr_steps)
        parse_caption(caption)
        video = self._to_base(_clip_tensor("clip", clip, self._sizes(), self.cfg.frames))
        t_start = int(round(strength * (diffusion.num_steps - 1)))
        steps = diffusion.sample_steps if steps is None else steps
        edit_steps = min(t_start + 1, max(1, int(round(strength * steps))))
        with self.styled(style):
            base = sample(self.video, [caption], seed, edit_steps, guidance, init=video[None],
                          t_start=t_start)[0]
        return self._finish(base, caption, seed, return_base, ssr_steps)

    def _conditioned(self, cond, caption, seed, steps, guidance, return_base, keep_known,
                     ssr_steps, still: torch.Tensor | None = None):
        """Sample the conditioning model, then SSR. still (H, W) bool at the base size: pixels
        that must not move, whose noise both models hold still."""
        if self.conditioned is None:
            raise ValueError("this pipeline was loaded without its conditioning model "
                             "(conditioning.safetensors)")
        _check_sampling_args(steps, guidance, self.cfg.diffusion.num_steps, ssr_steps)
        base = sample(self.conditioned, [caption], seed, steps, guidance, cond=cond[None],
                      keep_known=keep_known, still=None if still is None else still[None])[0]
        if still is not None:                           # each base pixel's block at SSR size
            factor = self.cfg.ssr_size // self.cfg.size
            still = still.repeat_interleave(factor, 0).repeat_interleave(factor, 1).numpy()
        return self._finish(base, caption, seed, return_base, ssr_steps, still)

    def _finish(self, base: np.ndarray, caption: str, seed: int, return_base: bool,
                ssr_steps: int | None, still: np.ndarray | None = None):
        clip = base if self.ssr is None else self.upsample(base, caption, seed, ssr_steps, still)
        return (clip, base) if return_base else clip

    def _sizes(self) -> tuple[int, ...]:
        return (self.cfg.size,) if self.ssr is None else (self.cfg.size, self.cfg.ssr_size)

    def _to_base(self, x: torch.Tensor) -> torch.Tensor:
        """An image (3, H, W) or clip (3, T, H, W) at either resolution -> base resolution."""
        factor = x.shape[-1] // self.cfg.size
        return downsample(x[:, None], factor)[:, 0] if x.ndim == 3 else downsample(x, factor)


def _image_tensor(name: str, image, sizes: tuple[int, ...]) -> torch.Tensor:
    """(H, W, 3) uint8 at one of `sizes` -> (3, H, W) float in [-1, 1]."""
    _check_array(name, image, 3, sizes, "(H, W, 3)")
    return to_tensor(image[None])[:, 0]


def _clip_tensor(name: str, clip, sizes: tuple[int, ...], frames: int | None = None) -> torch.Tensor:
    """(T, H, W, 3) uint8 at one of `sizes` -> (3, T, H, W) float in [-1, 1]."""
    _check_array(name, clip, 4, sizes, "(T, H, W, 3)")
    if frames is not None and clip.shape[0] != frames:
        raise ValueError(f"{name} has {clip.shape[0]} frames; this model makes {frames}")
    return to_tensor(clip)


def _check_array(name: str, array, ndim: int, sizes: tuple[int, ...], layout: str) -> None:
    accepted = " or ".join(f"{s}x{s}" for s in sizes)
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array {layout} uint8, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise TypeError(f"{name} has dtype {array.dtype}; it must be uint8 (0-255), {layout}")
    if array.ndim != ndim or array.shape[-1] != 3:
        raise ValueError(f"{name} has shape {array.shape}; it must be {layout} with 3 color "
                         f"channels (RGB)")
    height, width = array.shape[-3], array.shape[-2]
    if height != width or height not in sizes:
        raise ValueError(f"{name} is {height}x{width} pixels; accepted: {accepted}")


def _mask_tensor(name: str, mask, shape) -> torch.Tensor:
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        kind = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
        raise TypeError(f"{name} must be a numpy bool array of shape {tuple(shape)}, got {kind}")
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} has shape {mask.shape}; it must be {tuple(shape)} to match")
    return torch.from_numpy(mask.copy())


def _fine_tuned_from(style: TextConditionedDenoiser, video: TextConditionedDenoiser) -> bool:
    """Whether a style model comes from the T2I model a video model was inflated from: the
    same U-Net shape, and the same (frozen) text encoder."""
    if style.stage != "style" or style.net.cfg != video.net.unet_cfg:
        return False
    theirs = video.text.state_dict()
    return all(torch.equal(value, theirs[name]) for name, value in style.text.state_dict().items())


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_sampling_args(steps, guidance, num_steps: int, ssr_steps=None) -> None:
    for name, value in (("steps", steps), ("ssr_steps", ssr_steps)):
        if value is not None and (not isinstance(value, int) or not 1 <= value <= num_steps):
            raise ValueError(f"{name}={value!r} must be an int from 1 to {num_steps}")
    if guidance is not None and not (isinstance(guidance, (int, float)) and 0 <= guidance <= 50):
        raise ValueError(f"guidance={guidance!r} must be a number from 0 to 50 (1 = no guidance)")


MODEL_FILES = {"video": "video.safetensors", "t2i": "t2i.safetensors", "ssr": "ssr.safetensors",
               "conditioned": "conditioning.safetensors", "style": "style.safetensors"}


def load_pipeline(source: str | Path = "toy", device: str = "cpu") -> Pipeline:
    """"toy" (the shipped weights in checkpoints/toy/) or a folder holding video.safetensors
    and, optionally, t2i, ssr, conditioning and style .safetensors files."""
    folder = SHIPPED / source if str(source) in ("toy",) else Path(source)
    if not (folder / MODEL_FILES["video"]).is_file():
        raise FileNotFoundError(f"no video.safetensors in {folder}; pass 'toy' or a folder "
                                f"with video.safetensors (and t2i, ssr, conditioning, style files)")
    models = {role: checkpoints.load(folder / name, device=device)
              for role, name in MODEL_FILES.items() if (folder / name).is_file()}
    return Pipeline(**models)
