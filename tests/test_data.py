"""The toy world (render_clip, captions, ToyVideos) and the oracle (read_caption).

The oracle is how the book scores generated clips, so its tests check both halves of
"strict": right on ground truth, and None (never a guess) on clips it cannot read.
The 2,000-clips-per-size accuracy figure comes from `benchmarks/oracle.py`; here a
300-clip sample per size keeps the file fast.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from minilumiere.data import (BACKGROUND, COLORS, DIRECTIONS, SHAPES, STYLES, ToyVideos, captions,
                              parse_caption, read_caption, render_clip, to_tensor, to_uint8)
from minilumiere.data.toyvideos import trajectory

ATTRIBUTES = ("color", "shape", "direction")
FRAME_SHARE_TRAVEL = 0.25          # DESIGN.md: the shape travels at least a quarter of the frame


def truth_of(caption: str) -> dict:
    return dict(zip(ATTRIBUTES, parse_caption(caption)))


def coverage(clip: np.ndarray, color: str) -> np.ndarray:
    """How much of `color` each pixel holds: (T, H, W, 3) uint8 -> (T, H, W) in about [0, 1]."""
    background = np.asarray(BACKGROUND, dtype=np.float64)
    target = np.asarray(COLORS[color], dtype=np.float64) - background
    return (clip.astype(np.float64) - background) @ target / (target @ target)


def centroids(alpha: np.ndarray) -> np.ndarray:
    """Coverage-weighted centre (x, y) of every frame, in pixels: (T, H, W) -> (T, 2)."""
    _, height, width = alpha.shape
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    mass = alpha.sum(axis=(1, 2))
    return np.stack([(alpha * xs).sum(axis=(1, 2)), (alpha * ys).sum(axis=(1, 2))], axis=1) / mass[:, None]


def random_cases(count: int, seed: int):
    """`count` (caption, clip seed) pairs drawn from all 72 captions with a fixed RNG."""
    rng = np.random.default_rng(seed)
    every_caption = captions("all")
    return [(every_caption[rng.integers(len(every_caption))], int(rng.integers(2**31)))
            for _ in range(count)]


def round_to_uint8(x) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- render_clip

def test_render_clip_shape_and_dtype():
    clip = render_clip("a red circle moving left", seed=3, frames=12, size=24)
    assert clip.shape == (12, 24, 24, 3)
    assert clip.dtype == np.uint8


def test_render_clip_is_deterministic_by_seed():
    first = render_clip("a blue square moving up", seed=7)
    again = render_clip("a blue square moving up", seed=7)
    other = render_clip("a blue square moving up", seed=8)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_render_clip_is_the_same_in_another_process():
    """Determinism must not hang on Python's per-process string hashing."""
    code = ("import hashlib; from minilumiere.data import render_clip; "
            "print(hashlib.sha256(render_clip('a cyan triangle moving down', seed=5).tobytes()).hexdigest())")
    other_hash_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    there = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": other_hash_seed}).stdout.strip()
    here = hashlib.sha256(render_clip("a cyan triangle moving down", seed=5).tobytes()).hexdigest()
    assert there == here


def test_position_size_and_speed_vary_by_seed():
    alphas = [coverage(render_clip("a green circle moving right", seed=s, size=64), "green")
              for s in range(12)]
    areas = {round(a.sum(axis=(1, 2)).mean(), 1) for a in alphas}
    tracks = [centroids(a) for a in alphas]
    starts = {tuple(np.round(t[0], 1)) for t in tracks}
    travels = {round(t[-1, 0] - t[0, 0], 1) for t in tracks}
    assert len(areas) >= 10 and len(starts) >= 10 and len(travels) >= 10


def test_captions_sharing_a_seed_get_independent_layouts():
    """Same seed, different caption: the shape's size is drawn afresh per caption."""
    for shape in SHAPES:
        areas = set()
        for color, direction in itertools.product(COLORS, DIRECTIONS):
            clip = render_clip(f"a {color} {shape} moving {direction}", seed=0, size=64)
            areas.add(round(coverage(clip, color).sum(axis=(1, 2)).mean(), 2))
        assert len(areas) == len(COLORS) * len(DIRECTIONS), shape


@pytest.mark.parametrize("caption", captions("all"))
def test_every_caption_renders_what_it_says(caption):
    color, _, direction = parse_caption(caption)
    clip = render_clip(caption, seed=1, frames=8, size=16)
    assert clip.shape == (8, 16, 16, 3)
    track = centroids(coverage(clip, color))
    dx, dy = DIRECTIONS[direction]
    moved = track[-1] - track[0]
    assert moved @ np.array([dx, dy]) > 0            # it moves the way the caption says


@pytest.mark.parametrize("frames, size", [(2, 16), (128, 16), (2, 256), (16, 64), (3, 17)])
def test_accepted_frames_and_sizes(frames, size):
    clip = render_clip("a magenta square moving down", seed=2, frames=frames, size=size)
    assert clip.shape == (frames, size, size, 3)


def test_numpy_integer_arguments_are_accepted():
    clip = render_clip("a red circle moving up", seed=np.int64(4), frames=np.int32(4), size=np.int64(16))
    assert clip.shape == (4, 16, 16, 3)


@pytest.mark.parametrize("argument, value", [("size", 15), ("size", 257), ("size", 0),
                                             ("frames", 1), ("frames", 129), ("frames", -3)])
def test_out_of_range_arguments_raise_value_error_naming_them(argument, value):
    with pytest.raises(ValueError, match=argument):
        render_clip("a red circle moving left", **{argument: value})


@pytest.mark.parametrize("argument, value", [("size", 32.0), ("size", "32"), ("size", True),
                                             ("frames", 16.0), ("frames", None)])
def test_wrong_type_arguments_raise_type_error_naming_them(argument, value):
    with pytest.raises(TypeError, match=argument):
        render_clip("a red circle moving left", **{argument: value})


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError), ("3", TypeError)])
def test_bad_seed_raises_naming_seed(value, error):
    with pytest.raises(error, match="seed"):
        render_clip("a red circle moving left", seed=value)


@pytest.mark.parametrize("caption, bad_word", [
    ("a purple circle moving left", "purple"),
    ("a red hexagon moving left", "hexagon"),
    ("a red circle moving sideways", "sideways"),
    ("the red circle moving left", "the"),
    ("a red circle running left", "running"),
])
def test_bad_caption_names_the_bad_word_and_the_grammar(caption, bad_word):
    with pytest.raises(ValueError, match=bad_word) as error:
        render_clip(caption)
    assert "moving {direction}" in str(error.value)


@pytest.mark.parametrize("caption", ["", "a red circle", "a red circle moving left now"])
def test_caption_with_wrong_word_count_shows_the_grammar(caption):
    with pytest.raises(ValueError, match="grammar"):
        render_clip(caption)


def test_non_string_caption_raises_type_error():
    with pytest.raises(TypeError, match="caption"):
        render_clip(["a", "red", "circle", "moving", "left"])


# --------------------------------------------------------------- the world's invariants

@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("frames", [2, 16, 128])
def test_trajectory_keeps_the_shape_in_frame_and_travels_a_quarter(direction, frames):
    """Every shape fits in the box centre +- radius (the triangle's apex and base corners
    touch it), so that box must stay in [0, 1]; the path is straight, at constant speed."""
    dx, dy = DIRECTIONS[direction]
    for seed in range(500):
        cx, cy, radius = trajectory(direction, frames, np.random.default_rng(seed))
        for centre in (cx, cy):
            assert centre.min() - radius >= 0 and centre.max() + radius <= 1
        along, across = (cx, cy) if dx else (cy, cx)
        step = (dx + dy) * np.diff(along)
        assert np.all(step > 0) and np.allclose(step, step[0])
        assert np.ptp(across) == 0
        assert abs(along[-1] - along[0]) >= FRAME_SHARE_TRAVEL - 1e-12


@pytest.mark.parametrize("size", [128, 256])
def test_border_pixels_stay_background_at_large_sizes(size):
    """At 128 px and up the margin is over a pixel wide: no coverage may reach the border."""
    for caption, seed in random_cases(30, seed=size):
        clip = render_clip(caption, seed=seed, frames=4, size=size)
        border = np.concatenate([clip[:, 0], clip[:, -1], clip[:, :, 0], clip[:, :, -1]], axis=1)
        assert np.all(border == np.asarray(BACKGROUND, dtype=np.uint8)), caption


@pytest.mark.parametrize("size, tolerance", [(16, 0.06), (32, 0.03), (64, 0.015)])
def test_one_color_and_one_size_over_the_clip(size, tolerance):
    """Every pixel is a blend of the background and the caption's color; some pixel of every
    frame is the pure color; the covered area (the shape's size, and whether any of it left
    the frame) does not change beyond anti-aliasing noise."""
    for caption, seed in random_cases(60, seed=size):
        color = parse_caption(caption)[0]
        clip = render_clip(caption, seed=seed, size=size)
        alpha = coverage(clip, color)
        target = np.asarray(COLORS[color], dtype=np.float64) - np.asarray(BACKGROUND)
        model = np.asarray(BACKGROUND) + alpha[..., None] * target
        assert np.abs(clip - model).max() <= 1.0, caption           # uint8 rounding only
        pure = np.all(clip == np.asarray(COLORS[color], dtype=np.uint8), axis=-1)
        assert pure.any(axis=(1, 2)).all(), caption
        area = alpha.sum(axis=(1, 2))
        assert np.ptp(area) <= tolerance * area.mean(), caption


@pytest.mark.parametrize("size", [16, 32, 64])
def test_shape_travels_at_least_a_quarter_of_the_frame(size):
    for caption, seed in random_cases(100, seed=size + 1):
        color, _, direction = parse_caption(caption)
        track = centroids(coverage(render_clip(caption, seed=seed, size=size), color))
        moved = (track[-1] - track[0]) / size                        # share of the frame
        dx, dy = DIRECTIONS[direction]
        along, across = moved @ np.array([dx, dy]), moved @ np.array([dy, dx])
        assert along >= FRAME_SHARE_TRAVEL - 0.02, (caption, seed, along)
        assert abs(across) <= 0.02, (caption, seed, across)


# -------------------------------------------------------------------------- captions

def test_split_sizes_and_disjointness():
    train, heldout, every = captions("train"), captions("heldout"), captions("all")
    assert (len(train), len(heldout), len(every)) == (60, 12, 72)
    assert len(set(train)) == 60 and len(set(heldout)) == 12 and len(set(every)) == 72
    assert not set(train) & set(heldout)
    assert set(train) | set(heldout) == set(every)
    assert set(every) == {f"a {c} {s} moving {d}"
                          for c, s, d in itertools.product(COLORS, SHAPES, DIRECTIONS)}


def test_every_word_and_every_pair_of_a_heldout_caption_is_seen_in_training():
    """Compositional generalisation: a held-out caption is new only as a whole."""
    train = [parse_caption(c) for c in captions("train")]
    for position, words in enumerate((COLORS, SHAPES, DIRECTIONS)):
        assert {t[position] for t in train} == set(words)
    for color, shape, direction in map(parse_caption, captions("heldout")):
        assert any(t[:2] == (color, shape) for t in train)
        assert any((t[0], t[2]) == (color, direction) for t in train)
        assert any(t[1:] == (shape, direction) for t in train)


def test_unknown_split_raises_naming_it():
    with pytest.raises(ValueError, match="test"):
        captions("test")



# ---------------------------------------------------------------- background grain

def area_mean(clip: np.ndarray, block: int) -> np.ndarray:
    """(T, H, W, 3) -> (T, H/block, W/block, 3): the mean of every block x block tile."""
    frames, size, _, channels = clip.shape
    tiles = clip.astype(np.float64).reshape(frames, size // block, block, size // block, block,
                                            channels)
    return tiles.mean(axis=(2, 4))


@pytest.mark.parametrize("caption, seed", random_cases(12, seed=5))
def test_grain_vanishes_at_the_base_resolution(caption, seed):
    plain = render_clip(caption, seed=seed, size=64)
    grainy = render_clip(caption, seed=seed, size=64, grain=4)
    assert np.abs(grainy.astype(int) - plain).max() >= 5              # the grain is there
    difference = np.abs(area_mean(grainy, 4) - area_mean(plain, 4))    # what 16 px sees
    background = area_mean(plain, 4) == np.asarray(BACKGROUND)          # tiles without the shape
    assert difference[background].max() <= 0.5                         # rounding alone
    assert difference.max() <= 2.5 and difference.mean() < 0.2          # shape edges cover some


def test_grain_is_static_and_leaves_the_shape_and_its_path_alone():
    caption, seed = "a green square moving down", 11
    plain = render_clip(caption, seed=seed, size=64)
    grainy = render_clip(caption, seed=seed, size=64, grain=4)
    shape = coverage(plain, "green") > 0.01                           # (T, H, W)
    inside = coverage(plain, "green") > 0.99                          # fully inside, per frame
    assert inside.sum(axis=(1, 2)).min() > 50                          # on every frame
    assert np.array_equal(grainy[inside], plain[inside])
    never_covered = ~shape.any(axis=0)                                 # background on every frame
    assert np.array_equal(grainy[:, never_covered].min(axis=0), grainy[:, never_covered].max(axis=0))
    assert read_caption(grainy) == truth_of(caption)
    assert np.array_equal(render_clip(caption, seed=seed, size=64, grain=4), grainy)


@pytest.mark.parametrize("grain, size, error", [(3, 64, ValueError), (-2, 64, ValueError),
                                                (65, 64, ValueError), (2.0, 64, TypeError)])
def test_bad_grain_raises_naming_grain(grain, size, error):
    with pytest.raises(error, match="grain"):
        render_clip("a red circle moving left", size=size, grain=grain)
    with pytest.raises(error, match="grain"):
        ToyVideos(size=size, grain=grain)


def test_dataset_renders_with_its_grain():
    dataset = ToyVideos(frames=4, size=32, seed=2, length=3, grain=2)
    clip, caption = dataset[1]
    expected = render_clip(caption, seed=dataset.clip_seed(1), frames=4, size=32, grain=2)
    assert np.array_equal(to_uint8(clip), expected)

# ------------------------------------------------------------------------ ToyVideos

def test_dataset_items_are_tensors_in_range_with_their_caption():
    dataset = ToyVideos("train", frames=8, size=16, seed=0, length=70)
    assert len(dataset) == 70
    seen = set()
    for index in range(len(dataset)):
        clip, caption = dataset[index]
        assert isinstance(clip, torch.Tensor) and clip.dtype == torch.float32
        assert clip.shape == (3, 8, 16, 16)
        assert clip.min() >= -1 and clip.max() <= 1
        assert caption in captions("train")
        seen.add(caption)
    assert seen == set(captions("train"))


def test_dataset_clip_shows_its_caption():
    dataset = ToyVideos("heldout", frames=16, size=16, seed=3, length=24)
    for index in range(len(dataset)):
        clip, caption = dataset[index]
        assert caption in captions("heldout")
        assert read_caption(to_uint8(clip)) == truth_of(caption)


def test_dataset_is_deterministic_by_seed():
    first, again, other = (ToyVideos(frames=4, size=16, seed=s, length=5) for s in (0, 0, 1))
    for index in range(5):
        assert torch.equal(first[index][0], again[index][0])
        assert first[index][1] == again[index][1]
    assert not all(torch.equal(first[i][0], other[i][0]) for i in range(5))
    assert not torch.equal(first[0][0], first[1][0])


def test_dataset_index_out_of_range_raises_index_error():
    dataset = ToyVideos(frames=4, size=16, length=3)
    for index in (3, 10, -1):
        with pytest.raises(IndexError):
            dataset[index]


def test_endless_dataset_serves_far_indices():
    dataset = ToyVideos(frames=4, size=16)
    assert len(dataset) >= 2**62
    clip, caption = dataset[2**40]
    assert clip.shape == (3, 4, 16, 16) and caption in captions("train")


def test_tensor_round_trip_is_exact():
    clip = render_clip("a yellow triangle moving right", seed=9)
    assert np.array_equal(to_uint8(to_tensor(clip)), clip)


# ---------------------------------------------------------------- oracle: ground truth

@pytest.mark.parametrize("size", [16, 32, 64])
def test_oracle_reads_ground_truth(size):
    """>= 99.5 % per attribute on 300 random clips (None counts as wrong)."""
    cases = random_cases(300, seed=1000 + size)
    right = dict.fromkeys(ATTRIBUTES, 0)
    for caption, seed in cases:
        reading, truth = read_caption(render_clip(caption, seed=seed, size=size)), truth_of(caption)
        for attribute in ATTRIBUTES:
            right[attribute] += reading[attribute] == truth[attribute]
    for attribute in ATTRIBUTES:
        assert right[attribute] >= 0.995 * len(cases), (attribute, right[attribute])


@pytest.mark.parametrize("size", [16, 64])
def test_oracle_reads_outlined_ground_truth(size):
    """The style changes the look, not what the oracle reads: >= 99.5 % per attribute."""
    cases = random_cases(300, seed=2000 + size)
    right = dict.fromkeys(ATTRIBUTES, 0)
    for caption, seed in cases:
        reading = read_caption(render_clip(caption, seed=seed, size=size, style="outlined"))
        for attribute in ATTRIBUTES:
            right[attribute] += reading[attribute] == truth_of(caption)[attribute]
    for attribute in ATTRIBUTES:
        assert right[attribute] >= 0.995 * len(cases), (attribute, right[attribute])


@pytest.mark.parametrize("shape", SHAPES)
def test_an_outline_is_the_shape_less_its_hole_and_keeps_the_path(shape):
    caption = f"a cyan {shape} moving up"
    solid, outlined = (render_clip(caption, seed=5, size=64, style=style) for style in STYLES)
    background = np.asarray(BACKGROUND)
    lit = lambda clip: np.abs(clip.astype(int) - background).sum(-1) > 30     # (T, H, W)
    assert (lit(outlined) <= lit(solid)).all()             # the outline lies inside the shape
    assert 0.5 < lit(outlined).sum() / lit(solid).sum() < 0.95
    rows, cols = np.nonzero(lit(solid)[0])
    hole = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    if shape == "triangle":                                # its inscribed centre sits lower
        hole = (round(rows.min() + 0.69 * (rows.max() - rows.min())), hole[1])
    assert not lit(outlined)[0][hole] and lit(solid)[0][hole]
    for frame in (0, 15):                                   # same place and size on every frame
        box = lambda clip: [f(a) for a in np.nonzero(lit(clip)[frame]) for f in (np.min, np.max)]
        assert box(solid) == box(outlined)


def test_solid_is_the_default_style_and_a_bad_style_is_named():
    caption = "a red square moving left"
    assert np.array_equal(render_clip(caption, seed=3), render_clip(caption, seed=3, style="solid"))
    for call in (lambda: render_clip(caption, style="striped"),
                 lambda: ToyVideos(style="striped")):
        with pytest.raises(ValueError, match="style='striped'; choose one of .*solid.*outlined"):
            call()


def test_one_frame_rendered_alone_is_that_frame_of_the_clip():
    caption = "a magenta triangle moving down"
    clip = render_clip(caption, seed=9, frames=12, size=32, grain=4, style="outlined")
    for frame in (0, 5, 11):
        alone = render_clip(caption, seed=9, frames=12, size=32, grain=4, style="outlined",
                            only_frame=frame)
        assert alone.shape == (1, 32, 32, 3) and np.array_equal(alone[0], clip[frame])
    videos = ToyVideos(frames=12, length=2)
    assert torch.equal(videos.frame(1, 7)[0], videos[1][0][:, 7])
    with pytest.raises(ValueError, match="only_frame=12 is out of range; accepted: 0 to 11"):
        render_clip(caption, frames=12, only_frame=12)


def test_dataset_renders_in_its_style():
    clip, caption = ToyVideos(frames=4, size=16, style="outlined", length=3)[1]
    assert np.array_equal(to_uint8(clip), render_clip(caption, seed=ToyVideos(length=3).clip_seed(1),
                                                       frames=4, size=16, style="outlined"))


@pytest.mark.parametrize("frames", [2, 5, 128])
def test_oracle_reads_short_and_long_clips(frames):
    for caption, seed in random_cases(10, seed=frames):
        assert read_caption(render_clip(caption, seed=seed, frames=frames, size=32)) == truth_of(caption)


def test_oracle_reads_ground_truth_downsampled_to_the_base_resolution():
    """The base model trains on 64 px ground truth averaged down to 16 px (DESIGN.md)."""
    for caption, seed in random_cases(60, seed=64):
        fine = render_clip(caption, seed=seed, size=64).astype(np.float64)
        coarse = fine.reshape(16, 16, 4, 16, 4, 3).mean(axis=(2, 4))
        assert read_caption(round_to_uint8(coarse)) == truth_of(caption), caption


def test_oracle_tolerates_one_level_of_dither():
    """Strict, but not exact-match: +-1 grey level of noise on ground truth still reads."""
    rng = np.random.default_rng(0)
    for caption, seed in random_cases(40, seed=5):
        clip = render_clip(caption, seed=seed, size=32).astype(np.float64)
        dithered = round_to_uint8(clip + rng.integers(-1, 2, clip.shape))
        assert read_caption(dithered) == truth_of(caption), caption


# ------------------------------------------------------------ oracle: None, not a guess

NOTHING = dict.fromkeys(ATTRIBUTES)


def noise_clip(kind: str, seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (16, size, size, 3)
    if kind == "uniform":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "diffusion":                       # x_T ~ N(0, I) in [-1, 1] units, as a sampler starts
        return round_to_uint8((rng.standard_normal(shape) + 1) * 127.5)
    if kind == "dark":                            # the background, with strong grain
        return round_to_uint8(np.asarray(BACKGROUND) + 60 * rng.standard_normal(shape))
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["uniform", "diffusion", "dark"])
@pytest.mark.parametrize("size", [16, 32, 64])
def test_oracle_says_none_on_pure_noise(kind, size):
    for seed in range(5):
        assert read_caption(noise_clip(kind, seed, size)) == NOTHING, (kind, seed)


@pytest.mark.parametrize("rgb", [BACKGROUND, (0, 0, 0), (255, 255, 255), (128, 128, 128),
                                 *COLORS.values()])
@pytest.mark.parametrize("size", [16, 64])
def test_oracle_says_none_on_blank_and_constant_clips(rgb, size):
    clip = np.empty((8, size, size, 3), dtype=np.uint8)
    clip[...] = rgb
    assert read_caption(clip) == NOTHING


@pytest.mark.parametrize("size", [16, 32, 64])
def test_oracle_says_none_for_the_direction_of_a_static_shape(size):
    """It still reads the color and the shape: the None is about motion only."""
    for caption, seed in random_cases(24, seed=size + 2):
        still = np.repeat(render_clip(caption, seed=seed, size=size)[:1], 16, axis=0)
        truth = truth_of(caption)
        assert read_caption(still) == {**truth, "direction": None}, caption


def test_oracle_says_none_for_paths_that_are_not_a_straight_constant_motion():
    clip = render_clip("a red circle moving right", seed=1, size=32)
    there_and_back = np.concatenate([clip[::2], clip[::-2]])
    shuffled = clip[np.random.default_rng(0).permutation(len(clip))]
    for bad in (there_and_back, shuffled):
        assert read_caption(bad) == {"color": "red", "shape": "circle", "direction": None}


@pytest.mark.parametrize("shade", [(0, 0, 0), (40, 40, 48), (30, 22, 10), (8, 24, 16), (56, 56, 56)])
def test_oracle_reads_clips_over_other_dark_backgrounds(shade):
    for caption, seed in random_cases(12, seed=sum(shade)):
        clip = render_clip(caption, seed=seed, size=32, background=shade)
        assert read_caption(clip) == truth_of(caption), (caption, shade)


def test_another_background_changes_only_the_background():
    plain = render_clip("a red circle moving right", seed=1, size=32)
    other = render_clip("a red circle moving right", seed=1, size=32, background=(40, 0, 0))
    background = np.all(plain == np.asarray(BACKGROUND, np.uint8), axis=-1)
    assert np.all(other[background] == (40, 0, 0))
    assert np.all(other[np.all(plain == COLORS["red"], axis=-1)] == COLORS["red"])
    with pytest.raises(ValueError, match="background=.*RGB triple"):
        render_clip("a red circle moving right", background=(0, 0, 300))


def test_oracle_says_none_over_a_bright_background():
    clip = render_clip("a red circle moving right", seed=1, size=32)
    clip[np.all(clip == np.asarray(BACKGROUND, np.uint8), axis=-1)] = (200, 200, 200)
    assert read_caption(clip) == NOTHING


def test_oracle_says_none_when_the_color_changes_halfway():
    red = render_clip("a red circle moving right", seed=1, size=32)
    blue = render_clip("a blue circle moving right", seed=1, size=32)
    assert read_caption(np.concatenate([red[:8], blue[8:]]))["color"] is None


def test_oracle_says_none_when_the_shape_changes_halfway():
    circle = render_clip("a red circle moving right", seed=1, size=32)
    square = render_clip("a red square moving right", seed=1, size=32)
    assert read_caption(np.concatenate([circle[:8], square[8:]]))["shape"] is None


# ------------------------------------------------------------------- oracle: bad input

@pytest.mark.parametrize("clip", [
    np.zeros((4, 16, 16, 3), dtype=np.float32),
    np.zeros((4, 16, 16, 3), dtype=np.int64),
    np.zeros((4, 16, 16, 3), dtype=np.uint8).tolist(),
    torch.zeros(4, 16, 16, 3, dtype=torch.uint8),
])
def test_oracle_rejects_wrong_types(clip):
    with pytest.raises(TypeError, match="clip"):
        read_caption(clip)


@pytest.mark.parametrize("shape", [(16, 16, 3), (4, 16, 16), (4, 16, 16, 4), (4, 3, 16, 16),
                                   (1, 16, 16, 3), (4, 4, 4, 3), (2, 4, 16, 16, 3)])
def test_oracle_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match="clip"):
        read_caption(np.zeros(shape, dtype=np.uint8))


def test_oracle_rejects_or_reads_non_square_clips():
    clip = np.empty((16, 32, 48, 3), dtype=np.uint8)
    clip[...] = BACKGROUND
    clip[:, :, 8:40] = render_clip("a red circle moving up", seed=0, size=32)
    try:
        reading = read_caption(clip)
    except ValueError as error:
        assert "clip" in str(error) and "operands" not in str(error)
    else:
        assert reading == truth_of("a red circle moving up")
