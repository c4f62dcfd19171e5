"""The training loop: smoke runs of each stage, checkpoints, resume after SIGKILL, DDP."""
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from minilumiere import checkpoints
from minilumiere.config import get_config
from minilumiere.model import TextConditionedDenoiser
from minilumiere.train import CHECKPOINT, TrainingError, read_metrics, train

SMOKE = get_config("smoke")
ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, **kwargs):
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "minilumiere", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


@pytest.fixture(scope="module")
def t2i_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("t2i")
    return train(SMOKE, "t2i", out, max_steps=6, progress=False)


def test_t2i_stage_trains_and_logs(t2i_checkpoint):
    metrics = read_metrics(t2i_checkpoint.parent / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [5, 6]
    assert all(m["loss"] > 0 and m["samples_per_s"] > 0 for m in metrics)
    model = checkpoints.load(t2i_checkpoint)
    assert model.stage == "t2i" and model.cfg == SMOKE
    grids = sorted(p.name for p in (t2i_checkpoint.parent / "samples").iterdir())
    assert grids == ["step_000006.png"], "the last step draws a grid (sample_every is 10)"


def test_video_stage_trains_only_new_layers(t2i_checkpoint, tmp_path):
    path = train(SMOKE, "video", tmp_path, init=t2i_checkpoint, max_steps=10, progress=False)
    t2i, video = checkpoints.load(t2i_checkpoint), checkpoints.load(path)
    for name, value in t2i.net.state_dict().items():
        assert torch.equal(video.net.unet2d.state_dict()[name], value), name
    for name, value in t2i.text.state_dict().items():
        assert torch.equal(video.text.state_dict()[name], value), name
    fresh = checkpoints.load(path, ema=False)
    assert any(not torch.equal(a, b) for a, b in
               zip(fresh.net.temporal_parameters(), video.net.temporal_parameters()))
    assert list((tmp_path / "samples").glob("*.gif")), "periodic sample clips are written"


def test_load_rebuilds_the_model_from_the_file_alone(t2i_checkpoint):
    model = checkpoints.load(t2i_checkpoint)
    again = checkpoints.load(t2i_checkpoint)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 900])
    context = model.encode(["a red circle moving left", ""])
    assert torch.equal(model.net(x, t, context), again.net(x, t, context))


def test_export_with_base_keeps_only_the_new_layers(t2i_checkpoint, tmp_path):
    video_ckpt = train(SMOKE, "video", tmp_path / "run", init=t2i_checkpoint, max_steps=2,
                       progress=False)
    base = checkpoints.export(t2i_checkpoint, tmp_path / "ship" / "t2i.safetensors")
    delta = checkpoints.export(video_ckpt, tmp_path / "ship" / "video.safetensors", base=base)
    stored = load_file(delta)
    assert all("unet2d" not in k and not k.startswith("ema.text.") for k in stored)
    shipped, trained = checkpoints.load(delta), checkpoints.load(video_ckpt)
    for (name, a), b in zip(shipped.state_dict().items(), trained.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), name   # half precision
    save_file({"x": torch.zeros(1)}, base, metadata={"format": "minilumiere/1", "config": "{}"})
    with pytest.raises(ValueError, match="sha256"):
        checkpoints.load(delta)


def test_corrupt_and_foreign_files_get_clear_errors(t2i_checkpoint, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(t2i_checkpoint.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt"):
        checkpoints.load(corrupt)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a minilumiere checkpoint"):
        checkpoints.load(foreign)


def test_a_failed_write_leaves_the_previous_checkpoint(t2i_checkpoint, tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT
    path.write_bytes(t2i_checkpoint.read_bytes())

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        checkpoints.save_atomic({"x": torch.ones(3)}, path, {"config": "{}", "stage": "t2i"})
    assert checkpoints.load(path).stage == "t2i"


def test_refuses_to_overwrite_or_mix_runs(t2i_checkpoint, tmp_path):
    with pytest.raises(TrainingError, match="--resume"):
        train(SMOKE, "t2i", t2i_checkpoint.parent, max_steps=1, progress=False)
    with pytest.raises(TrainingError, match="another --out"):
        train(get_config("toy"), "t2i", t2i_checkpoint.parent, resume=True, progress=False)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(SMOKE, "t2i", tmp_path / "empty", resume=True, progress=False)
    with pytest.raises(TrainingError, match="--init"):
        train(SMOKE, "video", tmp_path / "video", progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    train(SMOKE, "t2i", tmp_path, max_steps=10, progress=False)    # checkpoint at step 10
    before = (tmp_path / CHECKPOINT).read_bytes()
    import minilumiere.train as training

    monkeypatch.setattr(training, "training_target", lambda *a: torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match="at step 11"):
        train(SMOKE, "t2i", tmp_path, resume=True, max_steps=20, progress=False)
    assert (tmp_path / CHECKPOINT).read_bytes() == before


def test_resume_after_sigkill_reaches_the_same_weights(tmp_path):
    """Kill a run with SIGKILL after its first checkpoint, resume it, and compare with an
    uninterrupted run: every weight, EMA weight and optimizer tensor is bitwise equal."""
    args = ["train", "--stage", "t2i", "--config", "smoke", "--max-steps", "30"]
    straight = run_cli(*args, "--out", str(tmp_path / "straight"))
    killed = run_cli(*args, "--out", str(tmp_path / "killed"))
    checkpoint = tmp_path / "killed" / CHECKPOINT
    deadline = time.time() + 300
    while not checkpoint.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    step = int(checkpoints.read_metadata(checkpoint)["step"])
    assert 0 < step < 30
    resumed = run_cli(*args, "--out", str(tmp_path / "killed"), "--resume")
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    assert straight.wait() == 0, straight.stderr.read().decode()
    a = load_file(tmp_path / "straight" / CHECKPOINT)
    b = load_file(checkpoint)
    assert a.keys() == b.keys()
    different = [k for k in a if not k.startswith("rng.") and not torch.equal(a[k], b[k])]
    assert not different
    steps = [m["step"] for m in read_metrics(tmp_path / "killed" / "metrics.jsonl")]
    assert steps == sorted(set(steps)), "the log has no duplicated steps after resume"


DDP_SCRIPT = textwrap.dedent("""
    import dataclasses, sys
    from minilumiere.config import get_config
    from minilumiere.train import train
    cfg = get_config("smoke")
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, t2i_batch_size=int(sys.argv[2]),
                                                warmup_steps=1, sample_every=1000))
    train(cfg, "t2i", sys.argv[1], max_steps=1, progress=False)
""")


def test_one_step_on_two_ranks_equals_one_step_on_one_rank_with_twice_the_batch(tmp_path):
    script = tmp_path / "one_step.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    subprocess.run([*launch, "--nproc_per_node=2", str(script), str(tmp_path / "ddp"), "4"],
                   check=True, env=env, cwd=ROOT, capture_output=True)
    subprocess.run([sys.executable, str(script), str(tmp_path / "single"), "8"],
                   check=True, env=env, cwd=ROOT, capture_output=True)
    ddp, single = (load_file(tmp_path / d / CHECKPOINT) for d in ("ddp", "single"))
    for key in single:
        if key.startswith("model."):
            assert torch.allclose(ddp[key], single[key], atol=1e-6, rtol=1e-5), key
    torch.manual_seed(SMOKE.train.seed)                    # the weights both runs started from
    start = TextConditionedDenoiser(SMOKE, "t2i").state_dict()
    assert any(not torch.equal(start[k[6:]], single[k]) for k in single if k.startswith("model.")), \
        "the step changed the weights (so the comparison above means something)"
