"""The later stages: SSR (trained from scratch on windows and crops) and conditioning (the
video model with <C, M> channels), at smoke scale, through the same training loop."""
import dataclasses

import pytest
import torch
from torch.utils.data import default_collate

from minilumiere import checkpoints, conditioning
from minilumiere.config import get_config
from minilumiere.model import TextConditionedDenoiser
from minilumiere.ssr import downsample, super_resolve, upsample
from minilumiere.diffusion import Schedule, add_noise, training_target
from minilumiere.train import (TrainingError, TrainingExamples, build_run, example_seed,
                               read_metrics, train, train_step)

SMOKE = get_config("smoke")


@pytest.fixture(scope="module")
def t2i_checkpoint(tmp_path_factory):
    return train(SMOKE, "t2i", tmp_path_factory.mktemp("t2i"), max_steps=4, progress=False)


@pytest.fixture(scope="module")
def video_checkpoint(tmp_path_factory, t2i_checkpoint):
    return train(SMOKE, "video", tmp_path_factory.mktemp("video"), init=t2i_checkpoint,
                 max_steps=4, progress=False)


@pytest.fixture(scope="module")
def ssr_checkpoint(tmp_path_factory):
    return train(SMOKE, "ssr", tmp_path_factory.mktemp("ssr"), max_steps=6, progress=False)


CLEAN_SSR, NOISY_SSR = (SMOKE.replace(ssr=dataclasses.replace(SMOKE.ssr, cond_noise=noise))
                        for noise in (0.0, 0.3))


def test_ssr_examples_are_aligned_windows_and_crops():
    examples = TrainingExamples(CLEAN_SSR, "ssr")
    x0, caption, t, noise, cond = examples[3]
    window, crop = SMOKE.ssr.window, SMOKE.ssr.crop
    assert x0.shape == cond.shape == noise.shape == (3, window, crop, crop)
    factor = SMOKE.ssr_size // SMOKE.size
    # the condition is the clip's own low-res version, upsampled: blurrier, same content
    again = upsample(downsample(x0, factor), crop)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))    # away from crop borders
    torch.testing.assert_close(cond[inner], again[inner], atol=1e-5, rtol=0)
    assert caption == "" or caption.startswith("a ")


def test_ssr_examples_give_the_base_clip_with_noise_of_a_random_strength():
    """Noise conditioning augmentation: the same window and crop, its condition noisier."""
    noisy, clean = TrainingExamples(NOISY_SSR, "ssr"), TrainingExamples(CLEAN_SSR, "ssr")
    strengths = []
    for i in range(12):
        (x0, caption, t, _, cond), (x0_clean, caption_clean, t_clean, _, cond_clean) = noisy[i], clean[i]
        assert torch.equal(x0, x0_clean) and caption == caption_clean and t == t_clean
        strengths.append(float((cond - cond_clean).std()))
    assert max(strengths) <= NOISY_SSR.ssr.cond_noise and max(strengths) > 3 * min(strengths) > 0


def test_ssr_examples_hold_a_grain_their_condition_cannot_show():
    plain_cfg = CLEAN_SSR.replace(ssr=dataclasses.replace(CLEAN_SSR.ssr, grain=False))
    grainy, plain = TrainingExamples(CLEAN_SSR, "ssr")[3], TrainingExamples(plain_cfg, "ssr")[3]
    assert (grainy[0] - plain[0]).abs().max() > 4 / 127.5                # the clip has grain
    torch.testing.assert_close(grainy[4], plain[4], atol=2.5 / 127.5, rtol=0)  # its cond not


def test_conditioning_examples_cover_every_task():
    examples = TrainingExamples(SMOKE, "conditioning")
    seen = set()
    for i in range(60):
        x0, _, _, _, cond = examples[i]
        assert cond.shape == (4, *x0.shape[1:])
        known = cond[3].bool()
        torch.testing.assert_close(cond[:3][:, known], x0[:, known])   # C is the clip where known
        if not known.any():
            seen.add("none")
        elif known[0].all() and not known[1:].any():
            seen.add("image_to_video")
        elif known[0].all() and torch.equal(known[1:], known[1:2].expand_as(known[1:])):
            seen.add("cinemagraph")
        else:
            seen.add("inpainting")
    assert seen == set(conditioning.TASKS)


@pytest.mark.parametrize("parts", [(0, 0, 0, 1), (0, 1, 1, 0)])
def test_cinemagraph_examples_start_from_noise_held_still_outside_the_region(parts):
    """As `pipe.cinemagraph` samples them: frame 0's noise outside, each frame's mean frame
    0's; the other tasks keep fresh noise everywhere."""
    cfg = SMOKE.replace(train=dataclasses.replace(SMOKE.train, cond_task_parts=parts))
    examples = TrainingExamples(cfg, "conditioning")
    for i in range(4):
        _, _, _, noise, cond = examples[i]
        means = noise.mean(dim=(-1, -2))                       # (3, T)
        same_means = torch.allclose(means, means[:, :1].expand_as(means), atol=1e-6)
        if parts == (0, 0, 0, 1):
            outside = cond[3, 1].bool()                        # known after frame 0
            assert outside.any() and not outside.all()
            assert torch.equal(noise[:, :, outside],
                               noise[:, :1, outside].expand_as(noise[:, :, outside]))
            assert same_means
        else:
            assert (noise[:, 1:] != noise[:, :1]).float().mean() > 0.99 and not same_means


def test_conditioning_model_starts_as_the_video_model(video_checkpoint, tmp_path):
    path = train(SMOKE, "conditioning", tmp_path, init=video_checkpoint, max_steps=0,
                 progress=False)
    video, conditioned = checkpoints.load(video_checkpoint), checkpoints.load(path)
    x, t = torch.randn(2, 3, 8, 16, 16), torch.tensor([5, 700])
    context = video.encode(["a red circle moving left", ""])
    cond = torch.randn(2, 4, 8, 16, 16)
    torch.testing.assert_close(conditioned.net(x, t, context, cond), video.net(x, t, context))


def test_conditioning_stage_trains_temporal_layers_and_the_new_input(video_checkpoint, tmp_path):
    path = train(SMOKE, "conditioning", tmp_path, init=video_checkpoint, max_steps=6,
                 progress=False)
    video, conditioned = checkpoints.load(video_checkpoint), checkpoints.load(path)
    for name, value in video.net.unet2d.state_dict().items():
        assert torch.equal(conditioned.net.unet2d.state_dict()[name], value), name
    assert conditioned.net.cond_in.weight.abs().sum() > 0
    assert [m["step"] for m in read_metrics(tmp_path / "metrics.jsonl")][-1] == 6


def test_conditioning_stage_can_train_the_spatial_layers_too(t2i_checkpoint, video_checkpoint,
                                                            tmp_path):
    cfg = SMOKE.replace(train=dataclasses.replace(SMOKE.train, cond_train_spatial=True))
    path = train(cfg, "conditioning", tmp_path / "run", init=video_checkpoint, max_steps=3,
                 progress=False)
    video, conditioned = checkpoints.load(video_checkpoint), checkpoints.load(path)
    before, after = video.net.unet2d.state_dict(), conditioned.net.unet2d.state_dict()
    assert [name for name in before if not torch.equal(before[name], after[name])]
    for name, value in video.text.state_dict().items():          # the text encoder stays
        assert torch.equal(conditioned.text.state_dict()[name], value), name
    # shipped as a file extending the T2I file: the changed T2I weights travel with it
    ship = tmp_path / "ship"
    checkpoints.export(t2i_checkpoint, ship / "t2i.safetensors")
    checkpoints.export(path, ship / "conditioning.safetensors", base=ship / "t2i.safetensors")
    shipped = checkpoints.load(ship / "conditioning.safetensors").state_dict()
    for name, value in conditioned.state_dict().items():
        torch.testing.assert_close(shipped[name], value.half().float(), atol=0, rtol=0)


def _task_of(cond: torch.Tensor) -> str:
    known = cond[3].bool()                                               # (T, H, W)
    if not known.any():
        return "none"
    return "image_to_video" if known[0].all() and not known[1:].any() else "other"


@pytest.mark.parametrize("parts, expected", [((1, 1, 1, 1), {"none", "image_to_video", "other"}),
                                             ((2, 1, 0, 0), {"none", "image_to_video"})])
def test_conditioning_mixture_follows_the_task_parts(parts, expected):
    cfg = SMOKE.replace(train=dataclasses.replace(SMOKE.train, cond_task_parts=parts))
    examples = TrainingExamples(cfg, "conditioning")
    tasks = [_task_of(examples[i][4]) for i in range(60)]
    assert set(tasks) == expected
    if parts == (2, 1, 0, 0):
        assert 0.5 < tasks.count("none") / len(tasks) < 0.85


@pytest.mark.parametrize("parts", [(1, 1, 1), (0, 0, 0, 0), (1, -1, 1, 1)])
def test_bad_task_parts_are_named(parts):
    cfg = SMOKE.replace(train=dataclasses.replace(SMOKE.train, cond_task_parts=parts))
    with pytest.raises(ValueError, match="cond_task_parts"):
        TrainingExamples(cfg, "conditioning")


def test_conditioning_loss_can_insist_on_the_known_pixels(video_checkpoint, tmp_path):
    """cond_known_weight = k: the squared error counts k times where M = 1, once elsewhere."""
    cfg = SMOKE.replace(train=dataclasses.replace(SMOKE.train, cond_known_weight=5.0))
    run = build_run(cfg, "conditioning", tmp_path, resume=False, init=video_checkpoint)
    examples = TrainingExamples(cfg, "conditioning")
    x0, captions, t, noise, cond = default_collate([examples[i] for i in range(8)])
    known = cond[:, 3]                                                  # (B, T, H, W)
    assert 0 < known.mean() < 1
    schedule = Schedule.named(cfg.diffusion.schedule, cfg.diffusion.num_steps)
    ids, mask = run.model.text.tokenizer(list(captions))
    with torch.no_grad():
        prediction = run.model(add_noise(schedule, x0, t, noise), t, ids, mask, cond)
    error = ((prediction - training_target(x0, noise, schedule.abar(t, x0),
                                           cfg.diffusion.prediction)) ** 2).mean(1)
    weights = torch.where(known == 1, 5.0, 1.0)
    expected = (weights * error).sum() / weights.sum()
    assert abs(expected - error.mean()) > 1e-3 * error.mean()          # the weighting matters
    loss = train_step(run, run.model, schedule, x0, list(captions), t, noise,
                      torch.device("cpu"), cond)
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_conditioning_model_inflated_straight_from_t2i(t2i_checkpoint, tmp_path):
    """Inflate the T2I model and add <C, M> in one go. At step 0 it is the T2I model on
    every frame of a static clip (identity temporal layers, cond_in zero)."""
    path = train(SMOKE, "conditioning", tmp_path, init=t2i_checkpoint, max_steps=0,
                 progress=False)
    t2i, conditioned = checkpoints.load(t2i_checkpoint), checkpoints.load(path)
    frame, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 700])
    static = frame[:, :, None].expand(-1, -1, 8, -1, -1)                # (B, 3, T, H, W)
    context = t2i.encode(["a red circle moving left", ""])
    out = conditioned.net(static, t, context, torch.randn(2, 4, 8, 16, 16))
    torch.testing.assert_close(out, t2i.net(frame, t, context)[:, :, None].expand_as(out),
                               atol=1e-5, rtol=1e-5)
    for name, value in t2i.net.state_dict().items():
        assert torch.equal(conditioned.net.unet2d.state_dict()[name], value), name


def test_conditioning_needs_a_t2i_or_video_checkpoint(tmp_path, ssr_checkpoint):
    with pytest.raises(TrainingError, match="--init"):
        train(SMOKE, "conditioning", tmp_path, max_steps=1, progress=False)
    with pytest.raises(TrainingError, match="T2I or video checkpoint"):
        train(SMOKE, "conditioning", tmp_path, init=ssr_checkpoint, max_steps=1, progress=False)


def test_ssr_stage_trains_and_upsamples(ssr_checkpoint):
    model = checkpoints.load(ssr_checkpoint)
    assert model.stage == "ssr" and model.cond_channels == 3
    low = torch.rand(2, 3, 8, SMOKE.size, SMOKE.size) * 2 - 1
    high = super_resolve(model, low, ["a red circle moving left", ""], [0, 1], steps=2)
    assert high.shape == (2, 3, 8, SMOKE.ssr_size, SMOKE.ssr_size)
    assert high.abs().max() <= 1
    again = super_resolve(model, low, ["a red circle moving left", ""], [0, 1], steps=2)
    assert torch.equal(high, again)


def test_one_window_over_the_whole_clip_is_plain_sampling(ssr_checkpoint):
    model = checkpoints.load(ssr_checkpoint)
    low = torch.rand(1, 3, 4, SMOKE.size, SMOKE.size) * 2 - 1        # 4 frames = one window
    blended = super_resolve(model, low, ["a red circle moving left"], [0], steps=2)
    stitched = super_resolve(model, low, ["a red circle moving left"], [0], steps=2,
                             blended=False)
    assert torch.equal(blended, stitched)
    longer = torch.rand(1, 3, 8, SMOKE.size, SMOKE.size) * 2 - 1
    assert not torch.equal(super_resolve(model, longer, [""], [0], steps=2),
                           super_resolve(model, longer, [""], [0], steps=2, blended=False))


def test_ssr_rejects_clips_of_the_wrong_size(ssr_checkpoint):
    model = checkpoints.load(ssr_checkpoint)
    with pytest.raises(ValueError, match="low-res"):
        super_resolve(model, torch.zeros(1, 3, 8, 32, 32), [""], [0])
    with pytest.raises(ValueError, match="window"):
        super_resolve(model, torch.zeros(1, 3, 8, 16, 16), [""], [0], window=9)


def test_downsample_is_an_area_average():
    clip = torch.arange(16.0).reshape(1, 1, 4, 4).expand(3, 2, 4, 4)
    low = downsample(clip, 2)
    assert low.shape == (3, 2, 2, 2)
    assert low[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4
    with pytest.raises(ValueError, match="divisible"):
        downsample(torch.zeros(3, 2, 6, 6), 4)


def test_stage_networks_name_bad_stages():
    with pytest.raises(ValueError, match="stage='audio'"):
        TextConditionedDenoiser(SMOKE, "audio")


# ---------------------------------------------------------------- style (stylized generation)

@pytest.mark.parametrize("stage", ["t2i", "style"])
def test_image_examples_are_one_frame_of_the_clip_rendered_alone(stage):
    """An image stage renders only the frame it trains on: the same pixels as that frame of
    the whole clip, and the same frame as drawing it from the whole clip would pick."""
    examples = TrainingExamples(SMOKE, stage)
    assert examples.videos.style == ("outlined" if stage == "style" else "solid")
    for index in range(4):
        frame, caption, _, _, cond = examples[index]
        clip, same_caption = examples.videos[index]                   # (3, T, H, W)
        generator = torch.Generator().manual_seed(example_seed(SMOKE.train.seed, index))
        drawn = int(torch.randint(clip.shape[1], (1,), generator=generator))
        assert frame.shape == (3, SMOKE.size, SMOKE.size) and cond.shape == (0, SMOKE.size, SMOKE.size)
        assert torch.equal(frame, clip[:, drawn]) and caption in (same_caption, "")


def test_style_stage_fine_tunes_the_unet_and_ships_only_what_changed(t2i_checkpoint, tmp_path):
    """The fine-tune starts from the T2I weights, trains the U-Net with the text encoder
    frozen, and its exported file extends the exported T2I file with the U-Net alone."""
    start = build_run(SMOKE, "style", tmp_path / "fresh", False, t2i_checkpoint).model
    t2i = checkpoints.load(t2i_checkpoint)                # its EMA weights, as exported
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), t2i.state_dict().values()))
    assert not any(p.requires_grad for p in start.text.parameters())
    path = train(SMOKE, "style", tmp_path / "style", init=t2i_checkpoint, max_steps=3, progress=False)
    base = checkpoints.export(t2i_checkpoint, tmp_path / "ship" / "t2i.safetensors")
    shipped = checkpoints.export(path, tmp_path / "ship" / "style.safetensors", base=base)
    keys = checkpoints.read_tensors(shipped).keys()
    assert keys and all(key.startswith("ema.net.") for key in keys)
    styled, plain = checkpoints.load(shipped), checkpoints.load(base)
    assert styled.stage == "style" and styled.is_image_model
    assert all(torch.equal(a, b) for a, b in zip(styled.text.state_dict().values(),
                                                 plain.text.state_dict().values()))
    assert not torch.equal(styled.net.conv_out.weight, plain.net.conv_out.weight)


def test_style_stage_needs_a_t2i_checkpoint(tmp_path, video_checkpoint):
    for init in (None, video_checkpoint):
        with pytest.raises(TrainingError, match="style.*T2I checkpoint|must be a T2I checkpoint"):
            build_run(SMOKE, "style", tmp_path / "run", False, init)
