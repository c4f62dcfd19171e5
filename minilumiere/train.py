"""One training loop for every stage and scale; data-parallel under torchrun.

    python -m minilumiere train --stage t2i   --config toy --out runs/toy/t2i
    python -m minilumiere train --stage video --config toy --out runs/toy/video \
                                --init runs/toy/t2i/checkpoint.safetensors
    torchrun --nproc_per_node=2 -m minilumiere train ...        # DDP (gloo on CPU, nccl on GPU)

Every random choice of a training example (its clip, the frame a T2I step sees, caption
dropout, t and the noise) is drawn from a generator seeded by (seed, example index), in the
DataLoader workers. So the data of step s is fixed whatever the number of ranks or restarts:
resuming at step s reproduces the uninterrupted run bit for bit on a CPU, and one step on 2
ranks with batch b equals one step on 1 rank with batch 2b.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from . import checkpoints, conditioning, ssr
from .config import Config
from .data import ToyVideos, render_cinemagraph, render_clip, to_tensor, to_uint8
from .diffusion import Schedule, add_noise, training_target
from .model import IMAGE_STAGES, STAGES, TextConditionedDenoiser
from .nn import inflate

CHECKPOINT = "checkpoint.safetensors"
COND_TASKS = conditioning.TASKS        # the conditioning stage's mixture (cond_task_parts)
METRICS = "metrics.jsonl"


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message says why and what is kept."""


# --- data -------------------------------------------------------------------------------------


class TrainingExamples(Dataset):
    """Item i -> (x0, caption, t, noise, cond), all drawn from a generator seeded by (seed, i):
    - t2i: one frame of a clip (cond has 0 channels);
    - video: a clip (cond has 0 channels);
    - conditioning: a clip and its <C, M> for a task drawn from `COND_TASKS`;
    - ssr: a window of `ssr.window` frames and a `ssr.crop`-pixel square of a clip rendered
      at `ssr_size` (with a background grain if `ssr.grain`), with the clip area-downsampled
      to `size` and upsampled back as cond.
    The caption is dropped to "" with probability caption_dropout."""

    def __init__(self, cfg: Config, stage: str):
        size, grain = (cfg.ssr_size, ssr.grain_block(cfg)) if stage == "ssr" else (cfg.size, 0)
        style = cfg.train.style if stage == "style" else "solid"
        self.videos = ToyVideos("train", cfg.frames, size, seed=cfg.train.seed, grain=grain,
                                style=style)
        self.stage, self.cfg = stage, cfg
        parts = cfg.train.cond_task_parts
        if stage == "conditioning" and (len(parts) != len(COND_TASKS) or min(parts) < 0
                                        or sum(parts) == 0):
            raise ValueError(f"cond_task_parts={parts}: give {len(COND_TASKS)} whole numbers "
                             f">= 0, not all 0, one per task of {COND_TASKS}")

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, index: int):
        generator = torch.Generator().manual_seed(example_seed(self.cfg.train.seed, index))
        if self.stage in IMAGE_STAGES:                          # one frame, rendered alone
            frame = int(torch.randint(self.cfg.frames, (1,), generator=generator))
            clip, caption = self.videos.frame(index, frame)    # (3, H, W)
        else:
            clip, caption = self.videos[index]                  # (3, T, H, W)
        cond = clip.new_zeros(0, *clip.shape[1:])
        if torch.rand((), generator=generator) < self.cfg.train.caption_dropout:
            caption = ""
        t = self.draw_timestep(generator)
        still = None
        if self.stage == "conditioning":
            clip, cond, still = self.conditioned(clip, index, generator)
        elif self.stage == "ssr":
            clip, cond = self.ssr_pair(clip, generator)
        noise = torch.randn(clip.shape, generator=generator)
        if still is not None:              # a cinemagraph starts from such noise when sampled
            noise = conditioning.hold_noise_still(noise[None], still[None])[0]
        return clip, caption, t, noise, cond

    def draw_timestep(self, generator: torch.Generator) -> torch.Tensor:
        """Uniform over [0, T), except that in the video stages a share of the examples come
        from the top of the schedule (t >= high_noise_from * T). Sixteen frames of one shape
        show their path through a lot of noise, so the direction of a sampled clip is
        decided in the first few steps, where x_t shows almost nothing and only the caption
        can tell; with uniform t that band gets too little of the training signal and the
        model never learns to read the direction word (checkpoints/toy/EXPERIMENTS.md)."""
        steps, train = self.cfg.diffusion.num_steps, self.cfg.train
        share = {"video": train.high_noise_share,
                 "conditioning": train.cond_high_noise_share}.get(self.stage, 0.0)
        if share and torch.rand((), generator=generator) < share:
            low = int(train.high_noise_from * steps)
            return torch.randint(low, steps, (), generator=generator)
        return torch.randint(steps, (), generator=generator)

    def conditioned(self, clip, index: int, generator):
        """(clip, <C, M>, still) for one task of the mixture; a cinemagraph gets its own clip,
        and `still` (H, W) bool is its outside (None for the other tasks)."""
        parts = self.cfg.train.cond_task_parts
        slots = [task for task, count in zip(COND_TASKS, parts) for _ in range(count)]
        task = slots[int(torch.randint(len(slots), (), generator=generator))]
        frames = clip.shape[1]
        if task == "image_to_video":
            return clip, conditioning.image_to_video(clip[:, 0], frames), None
        if task == "inpainting":
            hole = conditioning.random_hole(frames, clip.shape[-1], generator)
            return clip, conditioning.inpainting(clip, hole), None
        if task == "cinemagraph":
            rendered, region = render_cinemagraph(self.videos.caption(index),
                                                  self.videos.clip_seed(index), frames,
                                                  clip.shape[-1])
            clip, region = to_tensor(rendered), torch.from_numpy(region)
            return clip, conditioning.cinemagraph(clip[:, 0], region, frames), ~region
        return clip, conditioning.unconditioned(*clip.shape[1:]), None

    def ssr_pair(self, clip, generator):
        """A random window and crop of the high-res clip, and of its low-res version (with
        noise of a random std up to `ssr.cond_noise`) upsampled."""
        window, crop = self.cfg.ssr.window, self.cfg.ssr.crop
        factor = self.cfg.ssr_size // self.cfg.size
        start = int(torch.randint(clip.shape[1] - window + 1, (), generator=generator))
        top, left = (factor * int(torch.randint((clip.shape[-1] - crop) // factor + 1, (),
                                                generator=generator)) for _ in range(2))
        low = ssr.downsample(clip, factor)                                  # (3, T, h, w)
        if self.cfg.ssr.cond_noise > 0:       # drawn last: the crop is the same without it
            std = self.cfg.ssr.cond_noise * torch.rand((), generator=generator)
            low = low + std * torch.randn(low.shape, generator=generator)
        upsampled = ssr.upsample(low, clip.shape[-1])
        pick = (slice(None), slice(start, start + window), slice(top, top + crop),
                slice(left, left + crop))
        return clip[pick], upsampled[pick]


def example_seed(seed: int, index: int) -> int:
    """A 63-bit seed for example `index` of a run seeded `seed` (same in every process)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


class StepSampler(Sampler):
    """Indices of the examples of rank `rank` for steps start, start+1, ...: step s uses
    examples [s*B*W, (s+1)*B*W) split in W contiguous shards of B."""

    def __init__(self, start_step: int, batch_size: int, rank: int, world: int, steps: int):
        self.start, self.batch, self.rank, self.world, self.steps = (
            start_step, batch_size, rank, world, steps)

    def __iter__(self):
        for step in range(self.start, self.steps):
            first = (step * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)

    def __len__(self):
        return max(0, self.steps - self.start) * self.batch


# --- state ------------------------------------------------------------------------------------


@dataclass
class Run:
    cfg: Config
    stage: str
    out: Path
    model: TextConditionedDenoiser
    optimizer: torch.optim.Optimizer
    ema: dict[str, torch.Tensor]
    step: int = 0


def build_run(cfg: Config, stage: str, out: Path, resume: bool, init: Path | None) -> Run:
    """A fresh run, or the one saved in `out` (with resume). Refuses to overwrite anything."""
    if stage not in STAGES:
        raise TrainingError(f"--stage {stage!r}; choose one of {list(STAGES)}")
    path = out / CHECKPOINT
    if path.exists():
        saved_cfg, saved_stage = checkpoints.config_of(path)
        if (saved_cfg, saved_stage) != (cfg, stage):
            raise TrainingError(f"{out} holds a checkpoint of config {saved_cfg.name!r}, stage "
                                f"{saved_stage!r} (or other settings); choose another --out")
        if not resume:
            raise TrainingError(f"{out} already holds a checkpoint at step "
                                f"{checkpoints.read_metadata(path)['step']}; pass --resume to "
                                f"continue it or choose another --out")
    elif resume:
        raise TrainingError(f"--resume: nothing to resume in {out} (no {CHECKPOINT})")

    torch.manual_seed(cfg.train.seed)
    model = TextConditionedDenoiser(cfg, stage)
    if stage == "style" and not resume:
        model = styled_from(cfg, init)
    if stage == "video" and not resume:
        model = inflated_from(cfg, init)
    if stage == "conditioning" and not resume:
        model = conditioned_from(cfg, init)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=base_lr(cfg, stage),
                                  weight_decay=cfg.train.weight_decay)
    ema = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    run = Run(cfg, stage, out, model, optimizer, ema)
    if resume:
        restore(run, path)
    return run


def styled_from(cfg: Config, init: Path | None) -> TextConditionedDenoiser:
    """The T2I model to fine-tune on one style: its weights, its text encoder frozen."""
    t2i = t2i_checkpoint(cfg, init, "style")
    model = TextConditionedDenoiser(cfg, "style")
    model.load_state_dict(t2i.state_dict())
    return model


def t2i_checkpoint(cfg: Config, init: Path | None, stage: str) -> TextConditionedDenoiser:
    """The T2I model `--init` names, checked to fit `cfg`."""
    if init is None:
        raise TrainingError(f"--stage {stage} needs --init: the T2I checkpoint to start from")
    t2i = checkpoints.load(init)
    if t2i.stage != "t2i" or t2i.cfg.unet != cfg.unet or t2i.cfg.text != cfg.text:
        raise TrainingError(f"--init {init} is stage {t2i.stage!r} with another U-Net or text "
                            f"config; it must be a T2I checkpoint of config {cfg.name!r}")
    return t2i


def inflated_from(cfg: Config, init: Path | None) -> TextConditionedDenoiser:
    """A video model whose text encoder and spatial weights come from a T2I checkpoint."""
    t2i = t2i_checkpoint(cfg, init, "video")
    model = TextConditionedDenoiser(cfg, "video")
    model.text.load_state_dict(t2i.text.state_dict())
    model.net = inflate(t2i.net, cfg.stunet)
    return model


def conditioned_from(cfg: Config, init: Path | None) -> TextConditionedDenoiser:
    """The video model with <C, M> input channels added at zero: at step 0 it is the model
    it starts from, whatever C and M hold. `init` is a video checkpoint (fine-tune it: the
    shipped recipe), or a T2I checkpoint (inflate it and train the temporal layers on the
    task mixture at once, which learns the direction words worse: EXPERIMENTS.md)."""
    if init is None:
        raise TrainingError("--stage conditioning needs --init: the T2I checkpoint to inflate "
                            "or the video checkpoint to extend")
    if checkpoints.config_of(init)[1] == "t2i":
        start = inflated_from(cfg, init)
    else:
        start = checkpoints.load(init)
        if start.stage != "video" or start.cfg.unet != cfg.unet or start.cfg.stunet != cfg.stunet:
            raise TrainingError(f"--init {init} is stage {start.stage!r} with other network "
                                f"settings; it must be a T2I or video checkpoint of config "
                                f"{cfg.name!r}")
    model = TextConditionedDenoiser(cfg, "conditioning")
    missing, unexpected = model.load_state_dict(start.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("net.cond_in.") for name in missing), missing
    return model


def save(run: Run) -> Path:
    """Weights, EMA, optimizer and RNG states in one atomic safetensors file."""
    tensors = {f"model.{k}": v for k, v in run.model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in run.ema.items()})   # trained parameters only
    optimizer_state = run.optimizer.state_dict()
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {"config": run.cfg.to_json(), "stage": run.stage, "step": str(run.step),
                "optimizer": json.dumps(optimizer_state["param_groups"])}
    return checkpoints.save_atomic(tensors, run.out / CHECKPOINT, metadata)


def restore(run: Run, path: Path) -> None:
    metadata = checkpoints.read_metadata(path)
    tensors = checkpoints.read_tensors(path)
    run.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    run.ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.") and k[4:] in run.ema}
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    run.optimizer.load_state_dict({"state": state,
                                   "param_groups": json.loads(metadata["optimizer"])})
    torch.set_rng_state(tensors["rng.torch"])
    run.step = int(metadata["step"])


def ema_state_dict(run: Run) -> dict[str, torch.Tensor]:
    """The model's state dict with EMA values for the trained parameters."""
    return {k: run.ema.get(k, v) for k, v in run.model.state_dict().items()}


def update_ema(run: Run) -> None:
    """ema <- decay * ema + (1 - decay) * weights, decay warming up as (1 + s) / (10 + s)."""
    decay = min(run.cfg.stage_budget(run.stage)[3], (1 + run.step) / (10 + run.step))
    with torch.no_grad():
        for name, p in run.model.named_parameters():
            if name in run.ema:
                run.ema[name].lerp_(p.detach(), 1 - decay)


def learning_rate(cfg: Config, stage: str, step: int) -> float:
    """Linear warm-up, then constant (runs end by time; the EMA does the averaging)."""
    return base_lr(cfg, stage) * min(1.0, (step + 1) / max(1, cfg.train.warmup_steps))


def base_lr(cfg: Config, stage: str) -> float:
    return cfg.train.style_lr if stage == "style" else cfg.train.lr


# --- the loop ---------------------------------------------------------------------------------


def train(cfg: Config, stage: str, out, resume: bool = False, init=None,
          max_steps: int | None = None, minutes: float | None = None,
          progress: bool = True) -> Path:
    """Train one stage; returns the checkpoint path. Stops at max_steps or after `minutes`."""
    rank, world = _distributed_setup()
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available()
                          else "cpu")
    out = Path(out)
    run = build_run(cfg, stage, out, resume, Path(init) if init else None)
    run.model.to(device)
    run.ema = {k: v.to(device) for k, v in run.ema.items()}
    _move_optimizer_state(run.optimizer, device)
    batch_size, default_steps, default_minutes, _ = cfg.stage_budget(stage)
    steps = max_steps if max_steps is not None else default_steps
    budget = 60 * (minutes if minutes is not None else default_minutes)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _truncate_metrics(out / METRICS, run.step)

    network = run.model
    if world > 1:
        network = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile and device.type == "cuda":
        network = torch.compile(network)
    schedule = Schedule.named(cfg.diffusion.schedule, cfg.diffusion.num_steps)
    loader = DataLoader(TrainingExamples(cfg, stage), batch_size=batch_size,
                        sampler=StepSampler(run.step, batch_size, rank, world, steps),
                        num_workers=cfg.train.workers, persistent_workers=False,
                        prefetch_factor=4 if cfg.train.workers else None)
    bar = tqdm(total=steps, initial=run.step, disable=quiet(progress) or rank != 0,
               desc=f"train {stage} ({cfg.name})", dynamic_ncols=True)
    started = time.perf_counter()
    window_start, window_samples, waiting = started, 0, 0.0
    fetch_start = time.perf_counter()
    for x0, captions, t, noise, cond in loader:
        waiting += time.perf_counter() - fetch_start
        loss = train_step(run, network, schedule, x0.to(device), list(captions), t.to(device),
                          noise.to(device), device, cond.to(device))
        window_samples += x0.shape[0] * world
        if run.step % cfg.train.log_every == 0 or run.step == steps:
            now = time.perf_counter()
            rate = window_samples / (now - window_start)
            if rank == 0:
                _log(out / METRICS, {"step": run.step, "loss": loss, "lr": learning_rate(cfg, run.stage, run.step - 1),
                                     "samples_per_s": round(rate, 2),
                                     "data_wait": round(waiting / (now - window_start), 3),
                                     "elapsed_s": round(now - started, 1)})
            bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.1f}")
            window_start, window_samples, waiting = now, 0, 0.0
        bar.update(1)
        out_of_time = time.perf_counter() - started > budget
        last = run.step == steps or out_of_time
        if rank == 0 and (run.step % cfg.train.checkpoint_every == 0 or last):
            save(run)
        if rank == 0 and (run.step % cfg.train.sample_every == 0 or last):
            save_samples(run, device)         # the last step's grid shows what the run ends with
        if out_of_time:
            break
        fetch_start = time.perf_counter()
    bar.close()
    if rank == 0:
        save(run)
    if world > 1:
        dist.barrier()
    return out / CHECKPOINT


def train_step(run: Run, network, schedule, x0, captions, t, noise, device,
               cond: torch.Tensor | None = None) -> float:
    """One optimisation step on a batch; raises TrainingError on a non-finite loss."""
    cfg = run.cfg
    ids, mask = run.model.text.tokenizer(captions)
    x_t = add_noise(schedule, x0, t, noise)
    target = training_target(x0, noise, schedule.abar(t, x0), cfg.diffusion.prediction)
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(cfg, run.stage, run.step)
    with torch.autocast(device.type, dtype=torch.bfloat16,
                        enabled=cfg.train.bf16 and device.type == "cuda"):
        prediction = network(x_t, t, ids.to(device), mask.to(device),
                             cond if cond is not None and cond.shape[1] else None)
    squared_error = (prediction.float() - target) ** 2
    if run.stage == "conditioning":                 # weight 1 gives the plain mean exactly
        weights = conditioning.known_pixel_weights(cond, cfg.train.cond_known_weight)
        loss = torch.mean(weights * squared_error) / torch.mean(weights)
    else:
        loss = torch.mean(squared_error)
    if not torch.isfinite(loss):
        raise TrainingError(f"loss is {loss.item()} at step {run.step + 1}; stopped. The last "
                            f"good checkpoint (step <= {run.step}) is kept in {run.out}")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in run.model.parameters() if p.requires_grad],
                                   cfg.train.grad_clip)
    run.optimizer.step()
    run.step += 1
    update_ema(run)
    return loss.item()


@torch.no_grad()
def save_samples(run: Run, device, captions=None) -> Path:
    """A PNG frame grid (and a GIF for video stages) of EMA samples, for watching training.
    The conditioning stage shows image-to-video from a rendered first frame; SSR upsamples
    rendered base clips."""
    from .pipeline import sample
    from .viz import save_frame_grid, write_video

    cfg = run.cfg
    with torch.random.fork_rng(devices=[]):     # building the copy must not move the run's RNG
        model = TextConditionedDenoiser(cfg, run.stage).to(device)
    model.load_state_dict(ema_state_dict(run))
    model.eval()
    captions = captions or ["a red circle moving right", "a blue square moving up",
                            "a yellow triangle moving left", "a green circle moving down"]
    real = [to_tensor(render_clip(c, seed=0, frames=cfg.frames, size=cfg.size)) for c in captions]
    if run.stage == "ssr":
        high = ssr.super_resolve(model, torch.stack(real), captions, [0] * len(captions), steps=10)
        clips = [to_uint8(clip) for clip in high]
    elif run.stage == "conditioning":
        cond = torch.stack([conditioning.image_to_video(clip[:, 0], cfg.frames) for clip in real])
        clips = sample(model, captions, seed=0, steps=20, cond=cond)
    else:
        clips = sample(model, captions, seed=0, steps=20)
    folder = run.out / "samples"
    if run.stage not in IMAGE_STAGES:
        write_video(folder / f"step_{run.step:06d}.gif", np.concatenate(clips, axis=2))
    return save_frame_grid(clips, folder / f"step_{run.step:06d}.png", titles=captions)


def quiet(progress: bool) -> bool:
    """No progress bars when asked, or when TQDM_DISABLE is set (CI, papermill)."""
    return not progress or bool(os.environ.get("TQDM_DISABLE"))


def _move_optimizer_state(optimizer, device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                state[key] = value.to(device)


def _log(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, forget log lines written after the checkpoint we restart from."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines()
             if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))


def _distributed_setup() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank() if world > 1 else 0), world


def read_metrics(path) -> list[dict]:
    """The JSONL metrics log as a list of dicts (for plotting)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
