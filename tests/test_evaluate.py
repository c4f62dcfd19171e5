"""The evaluation module: each measure on clips whose answer is known.

Rendered clips are the reference (the world's own shapes and colours); hand-made clips
break one property at a time (a pinched square, a wrong colour, a flickering background)
and the matching measure must see it.
"""
import numpy as np
import pytest

from minilumiere import evaluate
from minilumiere.data import COLORS, SHAPES, captions, render_clip
from minilumiere.data.toyvideos import _composite, trajectory

CAPTIONS = ["a red circle moving left", "a green square moving up", "a blue triangle moving down",
            "a yellow square moving right", "a cyan triangle moving left", "a magenta circle moving up"]


def test_psnr_is_inf_at_zero_error_and_zero_db_at_full_scale_error():
    clip = render_clip(CAPTIONS[0], size=16)
    assert evaluate.psnr(clip, clip) == float("inf")
    black, white = np.zeros((2, 4, 3), np.uint8), np.full((2, 4, 3), 255, np.uint8)
    assert evaluate.psnr(black, white) == pytest.approx(0.0)
    assert evaluate.psnr(black, np.full_like(black, 1)) == pytest.approx(10 * np.log10(255**2))
    with pytest.raises(ValueError, match="one shape"):
        evaluate.psnr(clip, clip[1:])


def test_frame_differences_of_a_still_and_a_brightening_clip():
    still = np.repeat(render_clip(CAPTIONS[1], size=16)[:1], 5, axis=0)
    assert np.all(evaluate.frame_differences(still) == 0)
    brightening = np.stack([np.full((16, 16, 3), 10 * f, np.uint8) for f in range(5)])
    np.testing.assert_allclose(evaluate.frame_differences(brightening), 10.0)


def test_oracle_hits_and_table_follow_the_caption():
    clip = render_clip(CAPTIONS[0], seed=3, size=32)
    assert evaluate.oracle_hits(clip, CAPTIONS[0]) == {"color": True, "shape": True,
                                                       "direction": True, "all": True}
    wrong = evaluate.oracle_hits(clip, "a blue circle moving left")
    assert wrong["color"] is False and wrong["all"] is False and wrong["shape"] is True
    table = evaluate.oracle_table([clip, clip], [CAPTIONS[0], "a red circle moving right"])
    assert table == {"color": 100.0, "shape": 100.0, "direction": 50.0, "all": 50.0}


@pytest.mark.parametrize("size, floor", [(16, 0.85), (64, 0.97)])
def test_rendered_shapes_fit_their_own_template_best(size, floor):
    for caption in captions("all")[::12]:
        clip = render_clip(caption, seed=7, size=size)
        shape = evaluate.caption_truth(caption)["shape"]
        own = np.nanmean(evaluate.shape_iou(clip, shape))
        assert own >= floor, (caption, own)
        for other in SHAPES:
            if other != shape:
                assert np.nanmean(evaluate.shape_iou(clip, other)) < own - 0.05, (caption, other)


def pinched_square(size: int, frames: int = 8) -> np.ndarray:
    """A green square whose edges cave in and corners pull out: |x|^p + |y|^p <= r^p, p < 1."""
    rng = np.random.default_rng(0)
    cx, cy, radius = trajectory("right", frames, rng)
    coords = np.arange(size) + 0.5
    x = np.abs(coords[None, None, :] - cx[:, None, None] * size)
    y = np.abs(coords[None, :, None] - cy[:, None, None] * size)
    p, r = 0.8, 0.9 * radius * size
    alpha = (x**p + y**p <= r**p).astype(np.float64)
    return np.round(_composite(alpha, COLORS["green"])).astype(np.uint8)


def test_a_pinched_square_scores_below_a_rendered_one():
    rendered = np.nanmean(evaluate.shape_iou(render_clip("a green square moving right", size=64), "square"))
    pinched = np.nanmean(evaluate.shape_iou(pinched_square(64), "square"))
    assert rendered > 0.97 and pinched < 0.85, (rendered, pinched)


def test_measures_do_not_depend_on_the_background_shade():
    clip = render_clip(CAPTIONS[2], seed=5, size=32)
    for shade in ((40, 40, 48), (4, 4, 4), (30, 20, 10)):
        other = render_clip(CAPTIONS[2], seed=5, size=32, background=shade)
        np.testing.assert_allclose(evaluate.shape_iou(other, "triangle"),
                                   evaluate.shape_iou(clip, "triangle"), atol=0.03)
        np.testing.assert_allclose(evaluate.tracked_path(other), evaluate.tracked_path(clip),
                                   atol=0.005)
        assert evaluate.background_flicker(other) == 0.0


def test_colour_error_is_small_for_the_captioned_colour_and_large_for_another():
    clip = render_clip(CAPTIONS[3], seed=1, size=64)
    assert evaluate.colour_error(clip, "yellow") < 3.0
    assert evaluate.colour_error(clip, "red") > 100.0
    with pytest.raises(ValueError, match="color='purple'"):
        evaluate.colour_error(clip, "purple")


def test_background_flicker_sees_the_background_only():
    clip = render_clip(CAPTIONS[4], seed=2, size=32)
    assert evaluate.background_flicker(clip) == 0.0           # the shape moves; that is not flicker
    noisy = clip.astype(np.int16) + np.random.default_rng(0).integers(0, 7, size=(len(clip), 1, 1, 3))
    flicker = evaluate.background_flicker(noisy.astype(np.uint8))
    assert 1.0 < flicker < 4.0, flicker                       # |a - b| of uniform 0..6: 2.22 expected


def test_tracked_path_follows_the_motion_and_path_error_compares_paths():
    clip = render_clip(CAPTIONS[0], seed=4, size=32)          # moving left
    path = evaluate.tracked_path(clip)                        # (T, 2)
    assert path.shape == (16, 2) and np.all(np.diff(path[:, 0]) < 0)
    assert np.ptp(path[:, 1]) < 0.01
    assert evaluate.path_error(clip, clip) == 0.0
    assert evaluate.path_error(clip, render_clip(CAPTIONS[0], seed=5, size=32)) > 0.02
    empty = np.full_like(clip, 16)
    assert np.isnan(evaluate.tracked_path(empty)).all() and np.isnan(evaluate.path_error(empty, clip))


def test_fidelity_of_a_rendered_clip():
    result = evaluate.fidelity(render_clip(CAPTIONS[5], seed=0, size=64), CAPTIONS[5])
    assert result["shape_iou"] > 0.97 and result["colour_error"] < 3 and result["background_flicker"] == 0


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_clips():
    rng = np.random.default_rng(0)
    few, many = rng.normal(size=10), rng.normal(size=1000)
    low, high = evaluate.bootstrap_interval(few)
    assert low < few.mean() < high
    low_many, high_many = evaluate.bootstrap_interval(many)
    assert high_many - low_many < (high - low) / 5
    assert evaluate.bootstrap_interval(few) == (low, high)    # seeded
    with pytest.raises(ValueError, match="at least 2"):
        evaluate.bootstrap_interval([1.0, np.nan])


@pytest.mark.parametrize("clip, error, match", [
    ([[1]], TypeError, "numpy array"),
    (np.zeros((4, 16, 16, 3), np.float32), TypeError, "dtype float32"),
    (np.zeros((4, 16, 12, 3), np.uint8), ValueError, r"shape \(4, 16, 12, 3\)"),
    (np.zeros((1, 16, 16, 3), np.uint8), ValueError, "T >= 2"),
])
def test_bad_clips_are_refused_with_what_is_accepted(clip, error, match):
    with pytest.raises(error, match=match):
        evaluate.shape_iou(clip, "circle")


def test_an_unknown_shape_is_refused_with_the_accepted_ones():
    with pytest.raises(ValueError, match=r"shape='hexagon'; accepted: \['circle'"):
        evaluate.shape_iou(render_clip(CAPTIONS[0], size=16), "hexagon")
