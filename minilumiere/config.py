"""Configs as frozen dataclasses, and the three presets: "smoke", "toy", "full".

One config describes everything needed to rebuild a model from a checkpoint: the clip
shape, the text encoder, the U-Net, its inflation into a Space-Time U-Net, the diffusion
process and the training recipe. `Config.to_dict` / `Config.from_dict` round-trip it
through JSON (checkpoints keep it in their safetensors metadata).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TextConfig:
    """The text encoder: a small transformer over the toy vocabulary."""
    encoder: str = "toy"      # "toy", or "t5:<model name>" (optional, needs transformers + network)
    dim: int = 64             # embedding width D of the context (B, L, D)
    layers: int = 2
    heads: int = 4
    max_len: int = 8          # tokens per caption, <bos> included


@dataclass(frozen=True)
class UNetConfig:
    """The text-to-image U-Net (Section 3 of the paper starts from one)."""
    channels: tuple[int, ...] = (32, 64, 128)   # width per level; len(channels) - 1 down-samplings
    blocks_per_level: int = 1
    attention_levels: tuple[bool, ...] = (False, True, True)
    head_dim: int = 32
    norm_groups: int = 8
    context_dim: int = 64     # must equal TextConfig.dim
    image_channels: int = 3
    cond_channels: int = 0    # extra input channels (e.g. <C, M> = 4), weights start at zero
    dropout: float = 0.0


@dataclass(frozen=True)
class STUNetConfig:
    """How the U-Net is inflated into a Space-Time U-Net (Section 3.1)."""
    temporal_downsample: tuple[bool, ...] = (True, True)  # one flag per spatial down-sampling
    temporal_kernel: int = 3
    freeze_spatial: bool = True    # the paper's recipe: T2I weights frozen, new layers train
    cond_channels: int = 0         # 4 for <C, M> conditioning (masked clip + mask)
    emb_scale_shift: bool = False  # (2+1)D blocks: the embedding scales and shifts (FiLM), as the
                                   # presets set; False adds it (files saved without this field)
    text_pooling_zero_init: bool = True  # TextPooling's output projection starts at zero; False
                                   # (the toy and full presets) starts it random, so its
                                   # attention gets a gradient from step 0 (nn/layers.py)


@dataclass(frozen=True)
class SSRConfig:
    """Spatial super-resolution: an inflated U-Net of its own that denoises the clip at
    `Config.ssr_size` given the base clip (upsampled, 3 extra input channels) and the
    caption, over windows of `window` frames blended every step (MultiDiffusion). Narrow:
    it runs at 16x the base model's pixels, and its job (sharpen what the base clip shows)
    is local."""
    channels: tuple[int, ...] = (16, 32, 64)
    attention_levels: tuple[bool, ...] = (False, False, True)
    temporal_downsample: tuple[bool, ...] = (False, False)   # windows are short: keep every frame
    window: int = 8                # frames the SSR model sees at once
    overlap: int = 2               # frames shared by consecutive windows (the paper: 2)
    crop: int = 32                 # training crops (the model is convolutional in space)
    sample_steps: int = 20
    guidance: float = 1.0          # the base clip says nearly everything; no guidance needed
    cond_noise: float = 0.0        # > 0: training gives the base clip with Gaussian noise of a
                                   # std drawn from [0, cond_noise] ([-1, 1] units), noise
                                   # conditioning augmentation, so SSR leans on the caption
                                   # more than on a generated base clip's outline (off in the
                                   # shipped recipe: checkpoints/toy/EXPERIMENTS.md)
    grain: bool = True             # train on clips whose background has a static grain that
                                   # averages out at the base size (render_clip's grain): detail
                                   # the base clip leaves open, which SSR must invent alike on
                                   # every frame (and windows must agree on: MultiDiffusion)


@dataclass(frozen=True)
class DiffusionConfig:
    schedule: str = "cosine"       # "cosine" or "linear"
    num_steps: int = 1000
    prediction: str = "v"          # "eps", "x0" or "v"
    sample_steps: int = 50         # DDIM steps at sampling time
    guidance: float = 4.0          # classifier-free guidance scale at sampling time
    cond_guidance: float = 1.5     # ... when pixels are given (M = 1 anywhere): they already pin
                                   # colour, shape and place, and guidance overshoots on them too


@dataclass(frozen=True)
class TrainConfig:
    """The recipe. `batch_size`, `max_steps`, `minutes`, `ema_decay` are the video stage's;
    the T2I stage (single frames, so many more per batch) has its own four."""
    batch_size: int = 16
    t2i_batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995       # video stage: ~200-step window at the end of a 1,750-step run
    t2i_ema_decay: float = 0.999
    caption_dropout: float = 0.1   # share of empty captions, for classifier-free guidance
    high_noise_share: float = 0.9  # video stage: share of examples with t in the top 12%
    high_noise_from: float = 0.88  # (where the clip is barely visible and only the caption
                                   # can say which way the shape moves)
    max_steps: int = 1750          # a run ends at max_steps or after `minutes`, whichever is first
    minutes: float = 30.0
    t2i_max_steps: int = 2000
    t2i_minutes: float = 20.0
    style_max_steps: int = 800     # the style fine-tune of the T2I model (its batch, EMA: t2i's)
    style_minutes: float = 15.0
    style_lr: float = 3e-4         # a fine-tune from trained weights: lower than lr
    style: str = "outlined"        # the look the style stage learns (render_clip's style)
    ssr_batch_size: int = 8        # windows of ssr.window frames, ssr.crop pixels square
    ssr_max_steps: int = 3000
    ssr_minutes: float = 15.0
    cond_max_steps: int = 2000     # conditioning fine-tune of the base model (batch_size clips)
    cond_minutes: float = 15.0
    cond_high_noise_share: float = 0.3  # less than video: given pixels often tell the motion
    cond_task_parts: tuple[int, ...] = (1, 1, 1, 1)  # the mixture, in whole parts per task of
                                        # conditioning.TASKS: (2, 1, 0, 0) is 2/3 none, 1/3 i2v
    cond_train_spatial: bool = False    # the conditioning stage also trains the T2I U-Net's
                                        # weights (not the text encoder); else only the new layers
    cond_known_weight: float = 10.0     # loss weight on known pixels (M = 1) against 1 elsewhere:
                                        # insists that the model keep what it is given
    checkpoint_every: int = 250
    log_every: int = 25
    sample_every: int = 500
    workers: int = 1
    seed: int = 0
    bf16: bool = False
    compile: bool = False


@dataclass(frozen=True)
class Config:
    name: str = "toy"
    frames: int = 16          # base clip length T
    size: int = 16            # base clip height = width
    ssr_size: int = 64        # output resolution of spatial super-resolution
    text: TextConfig = field(default_factory=TextConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    stunet: STUNetConfig = field(default_factory=STUNetConfig)
    ssr: SSRConfig = field(default_factory=SSRConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return _build(cls, d)

    @classmethod
    def from_json(cls, s: str) -> "Config":
        return cls.from_dict(json.loads(s))

    def stage_budget(self, stage: str) -> tuple[int, int, float, float]:
        """(batch size, max steps, minutes, EMA decay) of a training stage."""
        t = self.train
        if stage == "t2i":
            return t.t2i_batch_size, t.t2i_max_steps, t.t2i_minutes, t.t2i_ema_decay
        if stage == "style":
            return t.t2i_batch_size, t.style_max_steps, t.style_minutes, t.t2i_ema_decay
        if stage == "ssr":
            return t.ssr_batch_size, t.ssr_max_steps, t.ssr_minutes, t.ema_decay
        if stage == "conditioning":
            return t.batch_size, t.cond_max_steps, t.cond_minutes, t.ema_decay
        return t.batch_size, t.max_steps, t.minutes, t.ema_decay

    def replace(self, **changes) -> "Config":
        """A copy with top-level fields changed, e.g. `cfg.replace(frames=8)`."""
        return dataclasses.replace(self, **changes)


def _build(cls, d: dict):
    """Rebuild a (nested) frozen dataclass from a dict; lists become tuples."""
    kwargs = {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(names)}")
    for key, value in d.items():
        sub = _DATACLASS_FIELDS.get((cls, key))
        if sub is not None:
            value = _build(sub, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


_DATACLASS_FIELDS = {
    (Config, "text"): TextConfig,
    (Config, "unet"): UNetConfig,
    (Config, "stunet"): STUNetConfig,
    (Config, "ssr"): SSRConfig,
    (Config, "diffusion"): DiffusionConfig,
    (Config, "train"): TrainConfig,
}


def _smoke() -> Config:
    """Seconds on a CPU: what the tests and the papermill runs use."""
    return Config(
        name="smoke", frames=8, size=16, ssr_size=32,
        text=TextConfig(dim=32, layers=1, heads=2),
        unet=UNetConfig(channels=(16, 32), attention_levels=(False, True), head_dim=16,
                        norm_groups=4, context_dim=32),
        stunet=STUNetConfig(temporal_downsample=(True,), emb_scale_shift=True),
        ssr=SSRConfig(channels=(16, 32), attention_levels=(False, True),
                      temporal_downsample=(False,), window=4, overlap=2, crop=16, sample_steps=4),
        diffusion=DiffusionConfig(sample_steps=10, guidance=2.0),
        train=TrainConfig(batch_size=4, t2i_batch_size=8, warmup_steps=5, max_steps=20,
                          minutes=2.0, t2i_max_steps=20, t2i_minutes=2.0, style_max_steps=20,
                          style_minutes=2.0, ssr_batch_size=2,
                          ssr_max_steps=20, ssr_minutes=2.0, cond_max_steps=20, cond_minutes=2.0,
                          checkpoint_every=10,
                          log_every=5, sample_every=10, workers=0),
    )


def _toy() -> Config:
    """Minutes on a laptop CPU: the shipped weights and what the book shows."""
    return Config(name="toy", stunet=STUNetConfig(emb_scale_shift=True, text_pooling_zero_init=False))


def _full() -> Config:
    """The paper's shapes: 80 frames at 128x128 (4 temporal down-samplings: 80 -> 5 frames)."""
    return Config(
        name="full", frames=80, size=128, ssr_size=1024,
        text=TextConfig(dim=512, layers=6, heads=8, max_len=64),
        unet=UNetConfig(channels=(128, 256, 512, 512, 1024), blocks_per_level=2,
                        attention_levels=(False, False, True, True, True), head_dim=64,
                        norm_groups=32, context_dim=512),
        stunet=STUNetConfig(temporal_downsample=(True, True, True, True), emb_scale_shift=True,
                            text_pooling_zero_init=False),
        ssr=SSRConfig(channels=(128, 256, 512, 512), attention_levels=(False, False, False, True),
                      temporal_downsample=(False, False, False), window=16, overlap=2, crop=256,
                      sample_steps=32),
        diffusion=DiffusionConfig(sample_steps=64, guidance=8.0),
        train=TrainConfig(batch_size=8, t2i_batch_size=256, lr=1e-4, warmup_steps=1000,
                          max_steps=500_000, minutes=float("inf"), t2i_max_steps=500_000,
                          t2i_minutes=float("inf"), style_max_steps=20_000, style_minutes=float("inf"),
                          style_lr=3e-5, ssr_max_steps=500_000, ssr_minutes=float("inf"),
                          cond_max_steps=100_000, cond_minutes=float("inf"), checkpoint_every=2000, log_every=50,
                          sample_every=5000, workers=8, bf16=True, compile=True),
    )


PRESETS = {"smoke": _smoke, "toy": _toy, "full": _full}


def get_config(name: str = "toy") -> Config:
    """One of the presets "smoke", "toy", "full"."""
    if name not in PRESETS:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
