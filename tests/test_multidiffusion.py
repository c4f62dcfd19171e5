"""MultiDiffusion over time: windows, weights, blending, and the sampler built on them."""
import pytest
import torch

from minilumiere.diffusion import Schedule, ddim_sample
from minilumiere.multidiffusion import (blend, frame_weights, multidiffusion, stitch,
                                        temporal_windows, window_borders)


VALID = [(frames, window, overlap) for frames in (8, 9, 16, 17, 33) for window in (1, 2, 3, 5, 8)
         for overlap in (0, 1, 2, 4) if overlap < window <= frames]


@pytest.mark.parametrize("frames, window, overlap", VALID)
def test_windows_cover_every_frame_and_weights_sum_to_one(frames, window, overlap):
    windows = temporal_windows(frames, window, overlap)
    assert all(stop - start == window for start, stop in windows)
    assert windows[0][0] == 0 and windows[-1][1] == frames          # last aligned to the end
    for (_, stop), (start, _) in zip(windows, windows[1:]):
        assert stop - start >= overlap                               # at least `overlap` shared
        assert start > windows[0][0]                                 # each window is new
    weights = frame_weights(frames, windows)
    torch.testing.assert_close(weights.sum(0), torch.ones(frames))
    assert (weights.sum(0) > 0).all()


def test_paper_layout_16_frames_windows_of_8_overlap_2():
    assert temporal_windows(16, 8, 2) == [(0, 8), (6, 14), (8, 16)]
    assert temporal_windows(14, 8, 2) == [(0, 8), (6, 14)]
    assert window_borders([(0, 8), (6, 14)]) == [8]


@pytest.mark.parametrize("args, word", [((16, 17, 2), "window=17"), ((16, 8, 8), "overlap=8"),
                                        ((16, 8, -1), "overlap=-1"), ((16, 0, 0), "window=0"),
                                        ((16, 8.0, 2), "window=8.0")])
def test_bad_windows_name_the_argument(args, word):
    with pytest.raises(ValueError, match=word):
        temporal_windows(*args)


def test_uncovered_frames_are_an_error():
    with pytest.raises(ValueError, match="uncovered"):
        frame_weights(10, [(0, 4), (6, 10)])


def test_blend_is_the_per_frame_mean():
    windows = temporal_windows(10, 4, 2)                 # (0,4) (2,6) (4,8) (6,10)
    predictions = [torch.full((1, 1, 4, 2, 2), float(i)) for i in range(len(windows))]
    out = blend(predictions, windows, 10)
    expected = torch.tensor([0, 0, 0.5, 0.5, 1.5, 1.5, 2.5, 2.5, 3, 3])
    torch.testing.assert_close(out[0, 0, :, 0, 0], expected)


def test_blend_of_agreeing_windows_is_the_clip():
    clip = torch.randn(2, 3, 11, 4, 4)
    windows = temporal_windows(11, 5, 2)
    out = blend([clip[:, :, a:b] for a, b in windows], windows, 11)
    torch.testing.assert_close(out, clip)


def test_stitch_takes_each_frame_from_the_first_window_covering_it():
    windows = temporal_windows(10, 4, 1)                 # (0,4) (3,7) (6,10)
    clips = [torch.full((1, 1, 4, 1, 1), float(i)) for i in range(len(windows))]
    out = stitch(clips, windows, 10)
    assert out.flatten().tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert window_borders(windows) == [4, 7]


def _toy_model(x_t, t):
    """A model whose output depends on the frames it sees (a temporal mean): windowing matters."""
    return 0.5 * x_t + 0.5 * x_t.mean(dim=2, keepdim=True)


def test_one_window_covering_the_clip_is_exactly_the_unwindowed_sampler():
    schedule = Schedule.named("cosine", 1000)
    noise = torch.randn(2, 3, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    windowed = multidiffusion(lambda x, t, _: _toy_model(x, t), temporal_windows(8, 8, 2))
    plain = ddim_sample(_toy_model, noise.shape, schedule, steps=10, x_T=noise)
    blended = ddim_sample(windowed, noise.shape, schedule, steps=10, x_T=noise)
    assert torch.equal(plain, blended)


def test_windows_are_called_with_their_frames():
    seen = []

    def window_fn(x, t, window):
        seen.append((window, x.shape[2]))
        return x
    multidiffusion(window_fn, temporal_windows(16, 8, 2))(torch.zeros(1, 3, 16, 2, 2), torch.zeros(1))
    assert seen == [((0, 8), 8), ((6, 14), 8), ((8, 16), 8)]


def test_smaller_windows_change_a_model_that_looks_across_time():
    schedule = Schedule.named("cosine", 1000)
    noise = torch.randn(1, 3, 8, 4, 4, generator=torch.Generator().manual_seed(1))
    windowed = multidiffusion(lambda x, t, _: _toy_model(x, t), temporal_windows(8, 4, 2))
    plain = ddim_sample(_toy_model, noise.shape, schedule, steps=5, x_T=noise)
    assert not torch.allclose(plain, ddim_sample(windowed, noise.shape, schedule, steps=5, x_T=noise))
