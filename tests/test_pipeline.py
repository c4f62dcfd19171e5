"""The pipeline readers use: caption -> base clip -> SSR clip, SSR alone, the three
conditioned tasks, stylized generation and video-to-video, on smoke-trained models exported
the way the shipped ones are."""
import numpy as np
import pytest
import torch

from minilumiere import checkpoints, conditioning, load_pipeline
from minilumiere.__main__ import main
from minilumiere.config import get_config
from minilumiere.data import render_clip, to_tensor
from minilumiere.pipeline import Pipeline, sample
from minilumiere.train import train
from minilumiere.viz import read_video, upscale, write_video

SMOKE = get_config("smoke")
CAPTION = "a red circle moving left"
T, BASE, HIGH = SMOKE.frames, SMOKE.size, SMOKE.ssr_size


@pytest.fixture(scope="module")
def ship(tmp_path_factory):
    """A folder of smoke-trained models, exported as the shipped ones are."""
    runs, ship = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("ship")
    t2i = train(SMOKE, "t2i", runs / "t2i", max_steps=3, progress=False)
    style = train(SMOKE, "style", runs / "style", init=t2i, max_steps=3, progress=False)
    video = train(SMOKE, "video", runs / "video", init=t2i, max_steps=3, progress=False)
    cond = train(SMOKE, "conditioning", runs / "cond", init=video, max_steps=3, progress=False)
    ssr = train(SMOKE, "ssr", runs / "ssr", max_steps=3, progress=False)
    base = checkpoints.export(t2i, ship / "t2i.safetensors")
    checkpoints.export(video, ship / "video.safetensors", base=base)
    checkpoints.export(style, ship / "style.safetensors", base=base)
    checkpoints.export(cond, ship / "conditioning.safetensors", base=base)
    checkpoints.export(ssr, ship / "ssr.safetensors")
    return ship


@pytest.fixture(scope="module")
def pipe(ship):
    return load_pipeline(ship)


def test_caption_to_clip_at_ssr_resolution_same_seed_same_clip(pipe):
    clip, base = pipe(CAPTION, seed=0, steps=2, return_base=True)
    assert clip.shape == (T, HIGH, HIGH, 3) and clip.dtype == np.uint8
    assert base.shape == (T, BASE, BASE, 3)
    assert np.array_equal(clip, pipe(CAPTION, seed=0, steps=2))
    assert not np.array_equal(clip, pipe(CAPTION, seed=1, steps=2))


def test_text_to_video_is_the_base_video_model(pipe):
    _, base = pipe(CAPTION, seed=3, steps=2, return_base=True)
    assert np.array_equal(base, sample(pipe.video, [CAPTION], 3, steps=2)[0])
    assert not np.array_equal(base, sample(pipe.conditioned, [CAPTION], 3, steps=2)[0])


def test_ssr_steps_reach_the_ssr_model(pipe):
    clip, base = pipe(CAPTION, seed=0, steps=2, ssr_steps=1, return_base=True)
    assert np.array_equal(clip, pipe.upsample(base, CAPTION, seed=0, steps=1))
    assert not np.array_equal(clip, pipe.upsample(base, CAPTION, seed=0, steps=3))


def test_sample_command_writes_the_video_and_its_frame_grid(ship, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    assert main(["sample", CAPTION, "--weights", str(ship), "--out", str(out), "--steps", "2",
                 "--ssr-steps", "1"]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size > 0 and out.with_suffix(".png").stat().st_size > 0
    assert str(out) in printed and str(out.with_suffix(".png")) in printed
    assert main(["sample", "a red blob moving left", "--weights", str(ship)]) == 1
    assert "blob" in capsys.readouterr().err
    assert main(["sample", CAPTION, "--weights", str(ship), "--style", "1.5"]) == 1
    assert "style=1.5 must be a number from 0" in capsys.readouterr().err


def test_edit_command_re_captions_a_clip_from_a_file(ship, tmp_path, capsys):
    """`edit` reads a clip as `render` writes it (enlarged, mp4), brings it to the base size
    and writes the edited clip and a grid of given, edited and SSR frames."""
    cfg = get_config("smoke")
    given = tmp_path / "given.mp4"
    assert main(["render", CAPTION, "--frames", str(cfg.frames), "--size", str(cfg.size),
                 "--out", str(given)]) == 0
    out = tmp_path / "edited.gif"
    assert main(["edit", str(given), "a blue circle moving left", "--strength", "0.5",
                 "--weights", str(ship), "--steps", "2", "--ssr-steps", "1", "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and out.with_suffix(".png").stat().st_size > 0
    capsys.readouterr()
    for argv, message in [(["--strength", "0"], "strength=0.0 must be a number in"),
                          (["--style", "2"], "style=2.0 must be a number from 0")]:
        assert main(["edit", str(given), CAPTION, "--weights", str(ship), *argv]) == 1
        assert message in capsys.readouterr().err
    assert main(["edit", str(tmp_path / "missing.mp4"), CAPTION, "--weights", str(ship)]) == 1
    assert "no video at" in capsys.readouterr().err


def test_read_video_brings_a_written_clip_back_to_its_size(tmp_path):
    clip = render_clip(CAPTION, seed=2, frames=8, size=16)
    np.save(tmp_path / "clip.npy", upscale(clip, 4))
    assert np.array_equal(read_video(tmp_path / "clip.npy", 16), clip)
    write_video(tmp_path / "clip.gif", clip)                   # enlarged to 256 px, palette
    assert np.abs(read_video(tmp_path / "clip.gif", 16).astype(int) - clip).mean() < 3
    np.save(tmp_path / "odd.npy", clip[:, :, :15])
    with pytest.raises(ValueError, match="accepted: square frames whose side is a multiple of 16"):
        read_video(tmp_path / "odd.npy", 16)


def test_upsample_alone(pipe):
    low = render_clip(CAPTION, seed=0, frames=T, size=BASE)
    high = pipe.upsample(low, CAPTION, seed=0, steps=2)
    assert high.shape == (T, HIGH, HIGH, 3)
    assert np.array_equal(high, pipe.upsample(low, CAPTION, seed=0, steps=2))


@pytest.mark.parametrize("size", [BASE, HIGH])
def test_conditioned_tasks_take_base_or_ssr_resolution(pipe, size):
    clip = render_clip(CAPTION, seed=0, frames=T, size=size)
    known = np.ones((T, size, size), dtype=bool)
    known[:, : size // 2] = False
    region = np.zeros((size, size), dtype=bool)
    region[size // 4:, :] = True
    for out in (pipe.image_to_video(clip[0], CAPTION, steps=2),
                pipe.inpaint(clip, known, CAPTION, steps=2),
                pipe.cinemagraph(clip[0], region, CAPTION, steps=2)):
        assert out.shape == (T, HIGH, HIGH, 3) and out.dtype == np.uint8
    first, base = pipe.image_to_video(clip[0], CAPTION, steps=2, return_base=True)
    assert base.shape == (T, BASE, BASE, 3)


def test_keep_known_keeps_the_given_frame_exactly(pipe):
    clip = render_clip(CAPTION, seed=0, frames=T, size=BASE)
    _, base = pipe.image_to_video(clip[0], CAPTION, steps=2, return_base=True, keep_known=True)
    assert np.abs(base[0].astype(int) - clip[0]).max() <= 1          # uint8 rounding only
    _, loose = pipe.image_to_video(clip[0], CAPTION, steps=2, return_base=True)
    assert np.abs(loose[0].astype(int) - clip[0]).max() > 1          # 3 smoke steps: no copy


def test_a_cinemagraph_starts_from_noise_held_still_outside_the_region(pipe, monkeypatch):
    clip = render_clip(CAPTION, seed=0, frames=T, size=HIGH)
    region = np.zeros((HIGH, HIGH), dtype=bool)
    region[HIGH // 4:, :] = True
    seen = {}                                     # model name -> the first x_t it is given

    def recorder(name, forward):
        def record(x, *args, **kwargs):
            seen.setdefault(name, x)
            return forward(x, *args, **kwargs)
        return record

    for name in ("conditioned", "ssr"):
        net = getattr(pipe, name).net
        monkeypatch.setattr(net, "forward", recorder(name, net.forward))
    pipe.cinemagraph(clip[0], region, CAPTION, steps=1, ssr_steps=1)
    for name, size in (("conditioned", BASE), ("ssr", HIGH)):
        x_T = seen[name]                          # its first input: (2, 3, frames, size, size)
        outside = torch.ones(size, size, dtype=torch.bool)
        outside[size // 4:] = False
        assert torch.equal(x_T[..., outside], x_T[:, :, :1, outside].expand_as(x_T[..., outside]))
        assert not torch.equal(x_T[:, :, 1, ~outside], x_T[:, :, 0, ~outside])
    seen.clear()
    pipe.inpaint(clip, np.ones((T, HIGH, HIGH), dtype=bool), CAPTION, steps=1, ssr_steps=1)
    for name in ("conditioned", "ssr"):                # other tasks: fresh noise everywhere
        assert (seen[name][:, :, 1] != seen[name][:, :, 0]).float().mean() > 0.99


def test_given_pixels_are_sampled_at_the_conditioning_guidance(pipe):
    clip = render_clip(CAPTION, seed=0, frames=T, size=BASE)
    diffusion = pipe.conditioned.cfg.diffusion
    assert diffusion.cond_guidance != diffusion.guidance
    _, base = pipe.image_to_video(clip[0], CAPTION, steps=2, return_base=True)
    cond = conditioning.image_to_video(to_tensor(clip)[:, 0], T)[None]
    at = {g: sample(pipe.conditioned, [CAPTION], 0, steps=2, guidance=g, cond=cond)[0]
          for g in (diffusion.cond_guidance, diffusion.guidance)}
    assert np.array_equal(base, at[diffusion.cond_guidance])
    assert not np.array_equal(base, at[diffusion.guidance])
    nothing_given = sample(pipe.conditioned, [CAPTION], 0, steps=2, cond=torch.zeros_like(cond))[0]
    assert np.array_equal(nothing_given, sample(pipe.conditioned, [CAPTION], 0, steps=2,
                                                guidance=diffusion.guidance)[0])


@pytest.mark.parametrize("call, word", [
    (lambda p, c: p.image_to_video(c[0].astype(np.float32), CAPTION), "uint8"),
    (lambda p, c: p.image_to_video(c[0, :, :, :2], CAPTION), "3 color"),
    (lambda p, c: p.image_to_video(c[0, :12, :12], CAPTION), "accepted: 16x16 or 32x32"),
    (lambda p, c: p.image_to_video(list(c[0]), CAPTION), "numpy"),
    (lambda p, c: p.inpaint(c, np.ones((T, 8, 8), dtype=bool), CAPTION), "known"),
    (lambda p, c: p.inpaint(c, np.ones((T, BASE, BASE)), CAPTION), "bool"),
    (lambda p, c: p.inpaint(c[:4], np.ones((4, BASE, BASE), dtype=bool), CAPTION), "frames"),
    (lambda p, c: p.cinemagraph(c[0], np.ones((8, 8), dtype=bool), CAPTION), "region"),
    (lambda p, c: p(CAPTION, steps=0), "steps=0"),
    (lambda p, c: p(CAPTION, guidance=-1), "guidance=-1"),
    (lambda p, c: p(CAPTION, ssr_steps=0), "ssr_steps=0"),
    (lambda p, c: p.image_to_video(c[0], CAPTION, ssr_steps=2.5), "ssr_steps=2.5"),
    (lambda p, c: p("a red blob moving left"), "blob"),
    (lambda p, c: p.upsample(c[:2], CAPTION), "window"),
    (lambda p, c: p.upsample(c, CAPTION, still=np.ones((BASE, BASE), dtype=bool)), "still"),
    (lambda p, c: p(CAPTION, style=1.5), r"style=1\.5 must be a number from 0"),
    (lambda p, c: p(CAPTION, style="0.5"), "style='0.5' must be a number"),
    (lambda p, c: p.image(CAPTION, style=-0.1), "style=-0.1"),
    (lambda p, c: Pipeline(p.video)(CAPTION, style=0.5), "style=0.5 .*style.safetensors"),
    (lambda p, c: p.video_to_video(c, CAPTION, 0), r"strength=0 must be a number in \(0, 1\]"),
    (lambda p, c: p.video_to_video(c, CAPTION, 1.5), "strength=1.5"),
    (lambda p, c: p.video_to_video(c, CAPTION, True), "strength=True"),
    (lambda p, c: p.video_to_video(c, CAPTION, "0.5"), "strength='0.5'"),
    (lambda p, c: p.video_to_video(c[:4], CAPTION, 0.5), "clip has 4 frames"),
    (lambda p, c: p.video_to_video(c[..., :2], CAPTION, 0.5), "clip has shape"),
    (lambda p, c: p.video_to_video(list(c), CAPTION, 0.5), "clip must be a numpy"),
    (lambda p, c: p.video_to_video(c, "a red blob moving left", 0.5), "blob"),
    (lambda p, c: p.video_to_video(c, None, 0.5), "caption must be a str"),
    (lambda p, c: p.video_to_video(c, CAPTION, 0.5, style=2), "style=2"),
])
def test_bad_input_names_the_argument(pipe, call, word):
    clip = render_clip(CAPTION, seed=0, frames=T, size=BASE)
    with pytest.raises((ValueError, TypeError), match=word):
        call(pipe, clip)


def test_a_folder_without_a_video_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="video.safetensors"):
        load_pipeline(tmp_path)



def test_the_style_model_is_loaded_from_style_safetensors(pipe, ship):
    assert pipe.style.stage == "style"
    saved = checkpoints.load(ship / "style.safetensors").state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in pipe.style.state_dict().items())
    assert Pipeline(pipe.video).style is None
    with pytest.raises(ValueError, match="style model .* was not fine-tuned from the video"):
        Pipeline(pipe.video, style=pipe.video)
    foreign = checkpoints.load(ship / "style.safetensors")       # a style model of another T2I
    with torch.no_grad():
        next(foreign.text.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="its text encoder differs"):
        Pipeline(pipe.video, style=foreign)


@pytest.fixture(scope="module")
def styled(pipe, ship):
    """The pipeline with a style model far from the base one, so that sampling shows it: the
    smoke-trained style model (3 steps barely move it) plus seeded noise on its U-Net."""
    style = checkpoints.load(ship / "style.safetensors")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in style.net.parameters():
            weight.add_(0.05 * torch.randn(weight.shape, generator=generator))
    return Pipeline(pipe.video, pipe.t2i, pipe.ssr, pipe.conditioned, style=style)


def video_state(pipe):
    """(spatial, rest): copies of the video model's T2I U-Net weights (keys without the
    `net.unet2d.` prefix) and of all its other weights (temporal layers, text encoder)."""
    state = {k: v.clone() for k, v in pipe.video.state_dict().items()}
    prefix = "net.unet2d."
    spatial = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return spatial, {k: v for k, v in state.items() if not k.startswith(prefix)}


def equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_style_zero_is_the_plain_clip_and_the_weights_come_back(styled):
    clip, base = styled(CAPTION, seed=0, steps=2, ssr_steps=1, return_base=True)
    zero = styled(CAPTION, seed=0, steps=2, ssr_steps=1, style=0.0, return_base=True)
    _, full = styled(CAPTION, seed=0, steps=2, ssr_steps=1, style=1.0, return_base=True)
    after = styled(CAPTION, seed=0, steps=2, ssr_steps=1, return_base=True)
    assert np.array_equal(clip, zero[0]) and np.array_equal(base, zero[1])
    assert np.array_equal(clip, after[0]) and np.array_equal(base, after[1])
    assert np.abs(full.astype(int) - base).mean() > 1                # the style shows


def test_styled_sets_the_spatial_weights_only(styled):
    spatial, rest = video_state(styled)
    style = styled.style.net.state_dict()
    with styled.styled(1.0):
        now, now_rest = video_state(styled)
        assert equal_states(now, style) and equal_states(now_rest, rest)
    with styled.styled(0.5):
        now, now_rest = video_state(styled)
        assert all(torch.allclose(now[k], (spatial[k] + style[k]) / 2, atol=1e-6) for k in now)
        assert not torch.equal(now["conv_in.weight"], spatial["conv_in.weight"])
        assert equal_states(now_rest, rest)
    with pytest.raises(RuntimeError, match="inside"):
        with styled.styled(0.3):
            raise RuntimeError("inside the block")
    assert equal_states(video_state(styled)[0], spatial)
    assert equal_states(video_state(styled)[1], rest)


def test_a_styled_clip_is_the_video_model_sampled_with_styled_weights(styled):
    _, base = styled(CAPTION, seed=2, steps=2, ssr_steps=1, style=0.7, return_base=True)
    with styled.styled(0.7):
        assert np.array_equal(base, sample(styled.video, [CAPTION], 2, steps=2)[0])
    clip = render_clip(CAPTION, seed=0, frames=T, size=BASE)
    _, edited = styled.video_to_video(clip, CAPTION, 0.5, steps=2, ssr_steps=1, style=0.7,
                                      return_base=True)
    with styled.styled(0.7):
        _, same = styled.video_to_video(clip, CAPTION, 0.5, steps=2, ssr_steps=1,
                                        return_base=True)
    assert np.array_equal(edited, same)


def test_a_styled_image_interpolates_the_t2i_model(styled):
    t2i = {k: v.clone() for k, v in styled.t2i.state_dict().items()}
    image = styled.image(CAPTION, seed=0, steps=2)
    assert np.array_equal(image, styled.image(CAPTION, seed=0, steps=2, style=0))
    at_one = styled.image(CAPTION, seed=0, steps=2, style=1)
    assert np.array_equal(at_one, sample(styled.style, [CAPTION], 0, steps=2)[0][0])
    assert not np.array_equal(at_one, image)
    assert equal_states(styled.t2i.state_dict(), t2i)


@pytest.mark.parametrize("size", [BASE, HIGH])
def test_video_to_video_takes_either_resolution_and_is_seeded(pipe, size):
    clip = render_clip("a blue square moving up", seed=0, frames=T, size=size)
    edited, base = pipe.video_to_video(clip, CAPTION, 0.5, seed=0, steps=4, ssr_steps=1,
                                       return_base=True)
    assert edited.shape == (T, HIGH, HIGH, 3) and edited.dtype == np.uint8
    assert base.shape == (T, BASE, BASE, 3)
    again = pipe.video_to_video(clip, CAPTION, 0.5, seed=0, steps=4, ssr_steps=1)
    assert np.array_equal(edited, again)
    other = pipe.video_to_video(clip, CAPTION, 0.5, seed=1, steps=4, ssr_steps=1)
    assert not np.array_equal(edited, other)


def test_video_to_video_strength_sets_how_far_from_the_clip(pipe):
    clip = render_clip("a blue square moving up", seed=0, frames=T, size=BASE)
    distance = {}
    for strength in (1e-4, 0.05, 1.0):              # 1e-4: one DDIM step, from t = 0
        _, base = pipe.video_to_video(clip, CAPTION, strength, steps=10, ssr_steps=1,
                                      return_base=True)
        distance[strength] = np.abs(base.astype(int) - clip).mean()
    assert distance[1e-4] < 1 and distance[0.05] < 0.2 * distance[1.0]
    _, plain = pipe(CAPTION, seed=0, steps=10, ssr_steps=1, return_base=True)
    _, full = pipe.video_to_video(clip, CAPTION, 1.0, steps=10, ssr_steps=1, return_base=True)
    assert np.abs(full.astype(int) - plain).max() <= 2   # strength 1: (nearly) text-to-video
