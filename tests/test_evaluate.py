"""The evaluation module: each measure on clips whose answer is known.

Rendered clips are the reference (the world's own shapes and colours, solid or outlined);
hand-made clips break one property at a time (a pinched square, a wrong colour, a flickering
background, a half-filled hole) and the matching measure must see it.
"""
import numpy as np
import pytest

from minilumiere import evaluate
from minilumiere.data import COLORS, SHAPES, STYLES, captions, render_clip
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


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("size, floor, margin", [(16, 0.85, 0.0), (64, 0.97, 0.05)])
def test_rendered_shapes_fit_their_own_template_best(size, floor, margin, style):
    """At 16 px a small solid square's mask (pixels at least half covered) can be a circle's
    too: some clips fit both at IoU 1.0, so only 64 px must tell the shapes apart by a margin."""
    for caption in captions("all")[::7]:                      # every colour, shape, direction
        clip = render_clip(caption, seed=7, size=size, frames=4, style=style)
        shape = evaluate.caption_truth(caption)["shape"]
        own = np.nanmean(evaluate.shape_iou(clip, shape, style))
        assert own >= floor, (caption, own)
        for other in SHAPES:
            if other != shape:
                assert np.nanmean(evaluate.shape_iou(clip, other, style)) <= own - margin, (
                    caption, other)


def test_an_outline_fits_the_outlined_template_better_than_the_solid_one():
    for shape in SHAPES:
        caption = f"a cyan {shape} moving right"
        clip = render_clip(caption, seed=2, size=64, frames=4, style="outlined")
        assert (np.nanmean(evaluate.shape_iou(clip, shape, "outlined"))
                > np.nanmean(evaluate.shape_iou(clip, shape)) + 0.1), shape
        assert evaluate.fidelity(clip, caption, "outlined")["shape_iou"] > 0.97


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


STYLE_CAPTIONS = {shape: [c for c in captions("all") if f" {shape} " in c][::5] for shape in SHAPES}


@pytest.mark.parametrize("size, frames, solid_below, outlined_above", [(16, 16, 0.1, 0.85),
                                                                       (64, 4, 0.05, 0.95)])
@pytest.mark.parametrize("shape", SHAPES)
def test_style_score_tells_solid_from_outlined_on_every_shape(shape, size, frames, solid_below,
                                                             outlined_above):
    """Several captions and seeds, over the world's background and a lighter one. The
    thresholds sit beyond the extremes measured on 32 rendered clips per shape, style and
    size (16 px: solid at most 0.044, outlined at least 0.899, the triangle's hole being a
    few partial pixels; 64 px: 0.020 and 0.980)."""
    for index, caption in enumerate(STYLE_CAPTIONS[shape]):
        seed, background = 11 + index, ((16, 16, 24), (40, 40, 48))[index % 2]
        scores = {style: evaluate.style_score(render_clip(caption, seed, frames, size,
                                                          background=background, style=style))
                  for style in STYLES}
        assert scores["solid"] < solid_below and scores["outlined"] > outlined_above, (caption, scores)


@pytest.mark.parametrize("size, frames", [(16, 16), (64, 4)])
def test_a_half_filled_hole_scores_in_between(size, frames):
    """A render blended w of the way from solid to outlined holds 1 - w of the colour in the
    hole, so its score is about w."""
    for shape in SHAPES:
        caption = f"a yellow {shape} moving down"
        solid, outlined = (render_clip(caption, 3, frames, size, style=style).astype(np.float64)
                           for style in STYLES)
        scores = [evaluate.style_score(np.round((1 - w) * solid + w * outlined).astype(np.uint8))
                  for w in (0.25, 0.5, 0.75)]
        np.testing.assert_allclose(scores, [0.25, 0.5, 0.75], atol=0.06, err_msg=shape)


def test_style_score_is_per_frame_and_nan_without_a_shape():
    clip = render_clip(CAPTIONS[1], seed=0, size=16, frames=4, style="outlined")
    clip[2] = clip[0, 0, 0]                                     # frame 2: background only
    scores = evaluate.frame_style_scores(clip)
    assert scores.shape == (4,) and np.isnan(scores[2]) and np.all(scores[[0, 1, 3]] > 0.85)
    assert evaluate.style_score(clip) == pytest.approx(np.mean(scores[[0, 1, 3]]))
    assert np.isnan(evaluate.style_score(np.full((4, 16, 16, 3), 16, np.uint8)))
    noise = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    assert np.isnan(evaluate.frame_style_scores(noise)).all()  # no template explains noise


@pytest.mark.parametrize("measure", [lambda clip: evaluate.shape_iou(clip, "circle"),
                                     evaluate.style_score, evaluate.frame_style_scores])
@pytest.mark.parametrize("clip, error, match", [
    ([[1]], TypeError, "numpy array"),
    (np.zeros((4, 16, 16, 3), np.float32), TypeError, "dtype float32"),
    (np.zeros((4, 16, 12, 3), np.uint8), ValueError, r"shape \(4, 16, 12, 3\)"),
    (np.zeros((1, 16, 16, 3), np.uint8), ValueError, "T >= 2"),
])
def test_bad_clips_are_refused_with_what_is_accepted(measure, clip, error, match):
    with pytest.raises(error, match=match):
        measure(clip)


def test_an_unknown_shape_or_style_is_refused_with_the_accepted_ones():
    clip = render_clip(CAPTIONS[0], size=16)
    with pytest.raises(ValueError, match=r"shape='hexagon'; accepted: \['circle'"):
        evaluate.shape_iou(clip, "hexagon")
    with pytest.raises(ValueError, match=r"style='wavy'; accepted: \['solid', 'outlined'\]"):
        evaluate.shape_iou(clip, "circle", style="wavy")
    with pytest.raises(ValueError, match=r"style='wavy'; accepted"):
        evaluate.fidelity(clip, CAPTIONS[0], style="wavy")
