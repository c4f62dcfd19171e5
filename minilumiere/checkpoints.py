"""Checkpoints: safetensors files with the config in the metadata; never pickle.

One file holds a whole training checkpoint: the weights ("model.*"), the EMA of the trained
ones ("ema.*"),
the optimizer's tensors ("optim.*"), the RNG states ("rng.*"), and in the metadata the
config, the stage, the step and the optimizer's hyper-parameters. `load(path)` rebuilds the
model from the file alone (EMA weights when present). Writes are atomic: a temporary file
in the same folder, then `os.replace`, so a kill mid-write leaves the previous file intact.

A shipped file can be *based* on another: a video model stores only the layers inflation
added and names the T2I file (in the same folder) that holds the frozen rest; a style model
(the T2I model fine-tuned on one look) stores only the U-Net weights the fine-tune changed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .config import Config
from .model import IMAGE_STAGES, TextConditionedDenoiser

FORMAT = "minilumiere/1"


def save_atomic(tensors: dict[str, torch.Tensor], path, metadata: dict[str, str]) -> Path:
    """Write a safetensors file so that readers only ever see a complete file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, temporary, metadata={"format": FORMAT, **metadata})
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)             # a normal file, not a private temp file
    os.replace(temporary, path)
    return path


def read_metadata(path) -> dict[str, str]:
    """The metadata of a minilumiere checkpoint; ValueError if missing, corrupt or foreign."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"checkpoint {path} is corrupt or not a safetensors file ({error})") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a minilumiere checkpoint "
                         f"(metadata format={metadata.get('format')!r}, expected {FORMAT!r})")
    return metadata


def read_tensors(path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"checkpoint {path} is corrupt ({error})") from None


def config_of(path) -> tuple[Config, str]:
    """(config, stage) stored in a checkpoint."""
    metadata = read_metadata(path)
    return Config.from_json(metadata["config"]), metadata["stage"]


def load(path, ema: bool = True, device="cpu") -> TextConditionedDenoiser:
    """Rebuild the model a checkpoint describes, with its EMA weights (or raw with ema=False)."""
    path = Path(path)
    cfg, stage = config_of(path)
    model = TextConditionedDenoiser(cfg, stage)
    weights = model_weights(path, ema)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not match its config: missing "
                         f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return model.float().eval().to(device)


def model_weights(path, ema: bool = True) -> dict[str, torch.Tensor]:
    """The model's state dict from a file, following its `base` file if it has one."""
    path = Path(path)
    metadata = read_metadata(path)
    tensors = read_tensors(path)
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if ema:   # EMA values of the trained parameters (all of them in an exported file)
        weights.update({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    if "base" in metadata:
        base_path = path.parent / metadata["base"]
        if sha256(base_path) != metadata["base_sha256"]:
            raise ValueError(f"{path} extends {base_path}, but that file has changed "
                             f"(sha256 mismatch); re-export both together")
        base = _as_weights_of(metadata["stage"], model_weights(base_path, ema))
        weights = {**base, **weights}
    return {k: v.float() for k, v in weights.items()}


def _as_weights_of(stage: str, t2i_weights: dict) -> dict:
    """T2I model keys -> the same weights' keys in a model of `stage`: the same for an image
    model, under `net.unet2d.` inside an inflated one."""
    if stage in IMAGE_STAGES:
        return t2i_weights
    return {(k.replace("net.", "net.unet2d.", 1) if k.startswith("net.") else k): v
            for k, v in t2i_weights.items()}


def export(source, destination, base=None, dtype=torch.float16) -> Path:
    """Write the EMA weights of a training checkpoint for shipping (half precision by default).

    With `base` (an exported T2I file in the same folder as `destination`), keep only the
    tensors the base does not hold: for a video model, the layers inflation added.
    """
    source, destination = Path(source), Path(destination)
    metadata = read_metadata(source)
    weights = model_weights(source, ema=True)
    extra = {}
    if base is not None:
        base = Path(base)
        if base.parent.resolve() != destination.parent.resolve():
            raise ValueError(f"base {base} must sit in the same folder as {destination}")
        frozen = _as_weights_of(metadata["stage"], model_weights(base))
        weights = {k: v for k, v in weights.items()
                   if k not in frozen or not torch.equal(frozen[k], v.to(dtype).float())}
        extra = {"base": base.name, "base_sha256": sha256(base)}
    tensors = {f"ema.{k}": v.to(dtype) for k, v in weights.items()}
    keep = {k: metadata[k] for k in ("config", "stage", "step")}
    return save_atomic(tensors, destination, {**keep, **extra})


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
