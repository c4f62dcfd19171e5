"""<C, M> builders and the cinemagraph clips of the toy world."""
import numpy as np
import pytest
import torch

from minilumiere import conditioning
from minilumiere.data import captions, parse_caption, read_caption, render_cinemagraph, to_tensor
from minilumiere.data.toyvideos import BACKGROUND

CLIP = torch.rand(3, 8, 16, 16) * 2 - 1


def test_image_to_video_gives_frame_zero_only():
    cond = conditioning.image_to_video(CLIP[:, 0], 8)
    assert cond.shape == (4, 8, 16, 16)
    torch.testing.assert_close(cond[:3, 0], CLIP[:, 0])
    assert cond[3, 0].eq(1).all() and cond[3, 1:].eq(0).all() and cond[:3, 1:].eq(0).all()


def test_inpainting_keeps_known_pixels_and_zeros_the_rest():
    known = conditioning.random_hole(8, 16, torch.Generator().manual_seed(0))
    cond = conditioning.inpainting(CLIP, known)
    assert torch.equal(cond[3].bool(), known)
    torch.testing.assert_close(cond[:3][:, known], CLIP[:, known])
    assert cond[:3][:, ~known].eq(0).all()


def test_cinemagraph_knows_frame_zero_and_everything_outside_the_region():
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[4:10, 2:12] = True
    cond = conditioning.cinemagraph(CLIP[:, 0], region, 8)
    mask = cond[3].bool()
    assert mask[0].all()
    assert torch.equal(mask[1:], (~region).expand(7, -1, -1))
    for frame in range(8):
        torch.testing.assert_close(cond[:3, frame][:, ~region], CLIP[:, 0][:, ~region])


def test_unconditioned_is_all_zero():
    assert conditioning.unconditioned(8, 16, 16).abs().sum() == 0


@pytest.mark.parametrize("seed", range(20))
def test_random_holes_hide_a_box_of_30_to_70_percent_of_the_side(seed):
    known = conditioning.random_hole(16, 16, torch.Generator().manual_seed(seed))
    hidden = ~known
    frames = hidden.any(dim=(1, 2)).nonzero().flatten()
    assert len(frames) >= 4 and (frames.diff() == 1).all()          # one run of frames
    rows, cols = hidden[frames[0]].any(1).nonzero(), hidden[frames[0]].any(0).nonzero()
    assert 4 <= len(rows) <= 11 and 4 <= len(cols) <= 11


@pytest.mark.parametrize("bad, word", [
    (lambda: conditioning.image_to_video(torch.zeros(4, 16, 16), 8), "image"),
    (lambda: conditioning.inpainting(torch.zeros(3, 16, 16), torch.ones(16, 16)), "clip"),
    (lambda: conditioning.inpainting(CLIP, torch.ones(8, 8, 8, dtype=torch.bool)), "mask"),
    (lambda: conditioning.cinemagraph(CLIP[:, 0], torch.ones(8, 8, dtype=torch.bool), 8), "region"),
])
def test_bad_shapes_name_the_argument(bad, word):
    with pytest.raises(ValueError, match=word):
        bad()


@pytest.mark.parametrize("size", [16, 64])
def test_cinemagraph_clips_are_still_outside_the_region(size):
    for i, caption in enumerate(captions("all")[::5]):
        clip, region = render_cinemagraph(caption, seed=i, frames=16, size=size)
        assert clip.shape == (16, size, size, 3) and clip.dtype == np.uint8
        assert region.shape == (size, size) and 0 < region.mean() < 1
        outside = clip[:, ~region].astype(int)
        assert np.abs(np.diff(outside, axis=0)).max() == 0, caption
        still = (np.abs(clip[0].astype(int) - BACKGROUND).sum(-1) > 30) & ~region
        assert still.sum() > 0, "the still second shape is visible outside the region"
        inside = clip.copy()
        inside[:, ~region] = BACKGROUND
        assert tuple(read_caption(inside).values()) == parse_caption(caption)


def test_cinemagraph_clips_are_deterministic_by_seed():
    a, region_a = render_cinemagraph("a red circle moving left", seed=3, size=32)
    b, region_b = render_cinemagraph("a red circle moving left", seed=3, size=32)
    c, _ = render_cinemagraph("a red circle moving left", seed=4, size=32)
    assert np.array_equal(a, b) and np.array_equal(region_a, region_b) and not np.array_equal(a, c)
    assert to_tensor(a).shape == (3, 16, 32, 32)


def test_hold_noise_still_holds_still_pixels_and_every_frames_mean():
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[4:10, 2:12] = True
    noise = torch.randn(2, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    held = conditioning.hold_noise_still(noise, torch.stack([~region, torch.zeros_like(region)]))
    assert torch.equal(held[0][:, :, ~region], noise[0][:, :1, ~region].expand(-1, 8, -1))
    frame_means = held[0].mean(dim=(-1, -2))                            # (3, T)
    torch.testing.assert_close(frame_means, frame_means[:, :1].expand(-1, 8))
    assert (noise[0].mean(dim=(-1, -2)) - noise[0].mean(dim=(-1, -2))[:, :1]).abs().max() > 0.05
    shift = held[0][:, :, region] - noise[0][:, :, region]              # one number per frame
    torch.testing.assert_close(shift, shift[..., :1].expand_as(shift))  # and channel
    assert torch.equal(held[0][:, 0], noise[0][:, 0])
    assert torch.equal(held[1], noise[1])                               # nothing still: as it was
    with pytest.raises(ValueError, match="still"):
        conditioning.hold_noise_still(noise, region)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_keep_known_lands_exactly_on_the_known_pixels(prediction):
    from minilumiere.diffusion import Schedule, ddim_sample

    schedule = Schedule.named("cosine", 1000)
    clip = CLIP[None]
    known = conditioning.random_hole(8, 16, torch.Generator().manual_seed(1))
    cond = conditioning.inpainting(CLIP, known)[None]
    model_fn = lambda x, t: 0.3 * x                             # any model: it knows nothing
    wrapped = conditioning.keep_known(model_fn, cond, schedule, prediction)
    out = ddim_sample(wrapped, clip.shape, schedule, steps=10, prediction=prediction,
                      generator=torch.Generator().manual_seed(0), clip_x0=True)
    torch.testing.assert_close(out[0][:, known], CLIP[:, known], atol=1e-4, rtol=0)
    plain = ddim_sample(model_fn, clip.shape, schedule, steps=10, prediction=prediction,
                        generator=torch.Generator().manual_seed(0), clip_x0=True)
    assert not torch.allclose(plain[0][:, known], CLIP[:, known], atol=1e-2)
