"""benchmarks/applications.py's own logic (cases, edits, tables, intervals, files, arguments),
on a fake pipeline that renders the answer instead of sampling it, so every figure is known."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from minilumiere.config import get_config
from minilumiere.data import COLORS, parse_caption, render_clip
from minilumiere.data.toyvideos import _composite, _stable_hash, shape_coverage, trajectory

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "applications.py"
spec = importlib.util.spec_from_file_location("applications", SCRIPT)
applications = importlib.util.module_from_spec(spec)
spec.loader.exec_module(applications)


def draw(caption: str, seed: int, look: str, frames: int, size: int, style: float) -> np.ndarray:
    """The colour and shape of caption `look` along the path `render_clip(caption, seed)`
    takes, `style` of the way from solid to outlined (so its style score is about `style`);
    look = caption gives the render itself."""
    color, shape, direction = parse_caption(look)
    rng = np.random.default_rng([_stable_hash(caption), seed])
    cx, cy, radius = trajectory(direction, frames, rng)
    place = (cx * size, cy * size, np.full(frames, radius * size), size)
    alpha = ((1 - style) * shape_coverage(shape, *place)
             + style * shape_coverage(shape, *place, style="outlined"))
    return np.round(_composite(alpha, COLORS[color])).astype(np.uint8)


class FakePipeline:
    """The pipeline's API on the smoke config (8 frames, 16 -> 32 px), drawing the answer:
    `pipe(caption, style=a)` draws the caption a of the way to outlined; `video_to_video`
    draws the edited caption along the path of the input (one of `cases`, rendered)."""

    def __init__(self, cases):
        self.cfg = get_config("smoke")
        self.inputs = {render_clip(c, s, self.cfg.frames, self.cfg.size).tobytes(): (c, s)
                       for c, s in cases}
        self.calls = []
        self.ssr = "an SSR model"                    # None: base clips alone (--base-only)

    def __call__(self, caption, seed=0, style=0.0, steps=None, ssr_steps=None, return_base=False):
        self.calls.append(("generate", caption, seed, style, steps, ssr_steps))
        return self._clips(caption, seed, caption, style)

    def video_to_video(self, clip, caption, strength, seed=0, steps=None, ssr_steps=None,
                       return_base=False, style=0.0):
        source, source_seed = self.inputs[clip.tobytes()]
        self.calls.append(("v2v", caption, seed, strength, style))
        return self._clips(source, source_seed, caption, style)

    def _clips(self, caption, seed, look, style):
        frames, sizes = self.cfg.frames, (self.cfg.ssr_size, self.cfg.size)
        return tuple(draw(caption, seed, look, frames, size, style) for size in sizes)


def test_base_only_measures_the_base_clips_alone(tmp_path):
    pipe = FakePipeline(applications.chosen_cases(2))
    args = applications.parse_args(["--clips", "2", "--steps", "3", "--base-only"])
    text, figures, clips = applications.run(pipe, args)
    assert pipe.ssr is None and "SSR size" not in text and "base size (16 px)" in text
    assert set(figures["style"]) == {"base"} and set(clips["v2v"]["new colour"]) == {"base"}
    assert applications.save_grids(clips, applications.chosen_cases(2), 2, tmp_path)


def test_cases_mix_training_and_held_out_captions_and_edits_change_one_word():
    cases = applications.chosen_cases(8)
    assert [seed for _, seed in cases] == list(range(41000, 41008))
    heldout = [caption for caption, _ in cases[3::4]]
    assert heldout == ["a red circle moving left", "a green square moving right"]
    for index, (caption, _) in enumerate(cases):
        color, shape, direction = parse_caption(caption)
        new = parse_caption(applications.edited_caption(caption, "new colour", index))
        assert new[0] != color and new[1:] == (shape, direction)
        new = parse_caption(applications.edited_caption(caption, "new shape", index))
        assert new[1] != shape and (new[0], new[2]) == (color, direction)
        assert applications.edited_caption(caption, "style edit", index) == caption
    with pytest.raises(ValueError, match=r"edit='recolour'; accepted: \['new colour'"):
        applications.edited_caption(cases[0][0], "recolour", 0)


def test_summaries_give_means_intervals_and_say_when_there_is_none():
    summary = applications.summarise([0.0, 1.0, np.nan, 1.0])
    assert summary["mean"] == pytest.approx(2 / 3) and summary["n"] == 3
    assert summary["low"] <= summary["mean"] <= summary["high"]
    assert applications.summarise([1.0, np.nan])["low"] is None
    assert applications._cell(applications.summarise([np.nan, np.nan]), percent=False) == "n/a"
    assert applications._cell(applications.summarise([100.0, 100.0]), percent=True) == (
        "100.0% [100.0, 100.0]")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """The whole benchmark, both parts, 2 cases, on the fake pipeline, writing to a folder."""
    out = tmp_path_factory.mktemp("applications")
    pipe = FakePipeline(applications.chosen_cases(2))
    applications.load_pipeline = lambda weights: pipe
    applications.main(["--clips", "2", "--steps", "3", "--ssr-steps", "2", "--out", str(out)])
    return pipe, out, json.loads((out / "applications.json").read_text())


def test_the_style_sweep_on_known_clips(fake_run):
    pipe, _, figures = fake_run
    assert [call[3] for call in pipe.calls if call[0] == "generate"] == [0.0, 0.25, 0.5, 0.75, 1.0] * 2
    assert {call[4:] for call in pipe.calls if call[0] == "generate"} == {(3, 2)}
    for size in ("base", "SSR"):
        rows = figures["style"][size]["rows"]
        scores = [rows[f"a = {a:.2f}"]["style score"]["mean"] for a in applications.A_VALUES]
        np.testing.assert_allclose(scores, applications.A_VALUES, atol=0.08)
        assert rows["rendered solid"]["style score"]["mean"] < 0.1
        assert rows["rendered outlined"]["style score"]["mean"] > 0.85
        assert all(row["direction"]["mean"] == 100.0 for row in rows.values())
        assert all(row["bg flicker"]["mean"] == 0.0 for row in rows.values())
        assert figures["style"][size]["direction change"]["mean"] == 0.0


def test_video_to_video_on_known_clips(fake_run):
    pipe, _, figures = fake_run
    v2v = [call for call in pipe.calls if call[0] == "v2v"]
    assert len(v2v) == 2 * len(applications.EDITS) * len(applications.STRENGTHS)
    assert [call[4] for call in v2v] == ([0.0] * 10 + [1.0] * 5) * 2    # style only when editing it
    for size in ("base", "SSR"):
        colour = figures["v2v"]["new colour"][size]
        assert colour["s = 0.0"]["color"]["mean"] == 0.0                 # the input: old colour
        assert colour["s = 0.0"]["path error"]["mean"] == 0.0
        for strength in applications.STRENGTHS:
            row = colour[f"s = {strength:.1f}"]
            assert row["all three"]["mean"] == 100.0 and row["path error"]["mean"] < 0.005
        shape = figures["v2v"]["new shape"][size]
        assert shape["s = 0.0"]["shape"]["mean"] == 0.0 and shape["s = 1.0"]["shape"]["mean"] == 100.0
        assert shape["s = 1.0"]["direction"]["mean"] == 100.0
        assert shape["s = 1.0"]["path error"]["mean"] < 0.05               # other shape, same path
        styled = figures["v2v"]["style edit"][size]
        assert styled["s = 0.0"]["style score"]["mean"] < 0.1
        assert styled["s = 1.0"]["style score"]["mean"] > 0.85


def test_the_tables_and_grids_are_written(fake_run):
    _, out, _ = fake_run
    text = (out / "applications.md").read_text()
    assert "**Style sweep at the base size (16 px)**" in text and "| a = 0.50 |" in text
    assert "**Video-to-video, new shape, at the SSR size (32 px)**" in text
    assert "seeds 41000..41001, base DDIM steps 3, SSR steps 2" in text
    names = {path.name for path in out.glob("*.png")}
    assert names == {"applications_style.png", "applications_v2v_new_colour.png",
                     "applications_v2v_new_shape.png", "applications_v2v_style_edit.png"}


@pytest.mark.parametrize("argv, error, match", [
    (["--clips", "1"], ValueError, r"--clips=1 must be at least 2"),
    (["--part", "cinemagraph"], SystemExit, "2"),
])
def test_bad_arguments_are_refused(argv, error, match):
    with pytest.raises(error, match=match):
        applications.parse_args(argv)
