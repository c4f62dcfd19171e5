"""minilumiere.exercises: every check passes on the package's own pieces and on the chapters'
build-it code, and fails on a broken variant of that code with a message that says where."""
import ast
import json

import pytest
import torch
from torch import nn

from minilumiere import exercises, stamp, student
from minilumiere.diffusion import Schedule, ddim_step, ddpm_step
from minilumiere.multidiffusion import blend, temporal_windows
from minilumiere.nn import layers
from minilumiere.pipeline import Pipeline


def build_it_objects() -> dict[str, tuple[str, str, str]]:
    """{object name: (chapter, its definition, every definition of its cell)} over the chapters'
    build-it cells (a cell's definitions may use each other: TimestepEmbedding calls sinusoids)."""
    objects = {}
    for chapter in stamp.chapters():
        for cell in json.loads(chapter.read_text())["cells"]:
            if student.is_build_it(cell):
                source = "".join(cell["source"])
                segments = {node.name: ast.get_source_segment(source, node) for node in student.definitions(source)}
                objects.update({name: (chapter.name, segment, "\n\n".join(segments.values()))
                                for name, segment in segments.items()})
    return objects


BUILD_IT = build_it_objects()
CHAPTER_STATE = {}


def chapter_state(chapter: str) -> dict:
    """The names a chapter has after its parameters cell (at scale "smoke") and the import cell
    that follows it, run without IPython magics; made once per chapter."""
    if chapter not in CHAPTER_STATE:
        cells = [cell for cell in json.loads((stamp.REPOSITORY / "notebooks" / chapter).read_text())["cells"]
                 if cell["cell_type"] == "code"]
        first = next(i for i, cell in enumerate(cells) if "parameters" in cell["metadata"].get("tags", []))
        state = {}
        with torch.random.fork_rng():                           # the cells seed torch: keep ours
            for cell in cells[first:first + 2]:
                source = "".join(cell["source"])
                exec("\n".join(line for line in source.splitlines() if not line.startswith("%")), state)
                state["scale"] = "smoke"
        CHAPTER_STATE[chapter] = state
    return CHAPTER_STATE[chapter]


def defined(name: str, source: str = ""):
    """The chapter's build-it object `name` (or what `source` defines in its place), run in its
    chapter after the rest of its cell's definitions."""
    chapter, _, cell_definitions = BUILD_IT[name]
    namespace = dict(chapter_state(chapter))
    exec(cell_definitions + "\n\n" + source, namespace)
    return namespace[name]


def test_every_build_it_object_has_a_check():
    assert len(BUILD_IT) >= 12, sorted(BUILD_IT)
    missing = [name for name in BUILD_IT if not hasattr(exercises, student.check_name(name))]
    assert not missing, f"no check in minilumiere.exercises for {missing}"
    assert all(student.check_name(name) in exercises.__doc__ for name in BUILD_IT)


@pytest.mark.parametrize("name", sorted(BUILD_IT))
def test_check_passes_on_the_chapter_code(name, capsys):
    check = getattr(exercises, student.check_name(name))
    assert check(defined(name)) is True
    assert f"{name}: matches minilumiere." in capsys.readouterr().out


class ScaleShiftFactorizedConv(layers.FactorizedConv):
    """The package's block with the chapter's signature (scale and shift, as every preset)."""

    def __init__(self, channels, kernel, groups, emb_dim):
        super().__init__(channels, kernel, groups, emb_dim, scale_shift=True)


def two_step_schedule(abar, abar_prev):
    return Schedule(torch.stack([abar_prev, abar]))           # t = 1 -> t_prev = 0


def package_resampling(cls):
    def resample(x, weight, bias):
        module = cls(weight.shape[0], weight.shape[-1])
        module.load_state_dict({"conv.weight": weight, "conv.bias": bias})
        return module(x)
    return resample


PACKAGE = {
    "my_ddpm_step": lambda x0_hat, x_t, abar, abar_prev, z: ddpm_step(
        x0_hat, x_t, 1, 0, two_step_schedule(abar, abar_prev), "x0", noise=z),
    "my_ddim_step": lambda x0_hat, eps_hat, abar, abar_prev, eta, z: ddim_step(
        x0_hat, abar.sqrt() * x0_hat + (1 - abar).sqrt() * eps_hat, 1, 0,
        two_step_schedule(abar, abar_prev), "x0", eta=eta, noise=z),
    "sinusoids": layers.sinusoidal_embedding,
    "TimestepEmbedding": layers.TimestepEmbedding,
    "ResBlock": layers.ResBlock,
    "SpatialSelfAttention": layers.SpatialSelfAttention,
    "CrossAttention": layers.CrossAttention,
    "FactorizedConv": ScaleShiftFactorizedConv,
    "identity_kernel": lambda channels, kernel: layers.identity_init(nn.Conv1d(channels, channels, kernel)).weight,
    "downsample_time": package_resampling(layers.TemporalDownsample),
    "upsample_time": package_resampling(layers.TemporalUpsample),
    "TemporalAttention": layers.TemporalAttention,
    "my_windows": temporal_windows,
    "my_blend": blend,
    "interpolate": lambda base, style, a: {name: torch.lerp(w, style[name], float(a)) for name, w in base.items()},
    "sdedit": lambda model, clip, caption, strength, seed=0, steps=50: Pipeline(model).video_to_video(
        clip, caption, strength, seed=seed, steps=steps),
}


def test_the_package_stands_in_for_every_build_it_object():
    assert set(PACKAGE) == set(BUILD_IT)


@pytest.mark.parametrize("name", sorted(PACKAGE))
def test_check_passes_on_the_package(name):
    assert getattr(exercises, student.check_name(name))(PACKAGE[name]) is True


# (object, text in the chapter's code, what a student might write instead, the message expected)
BROKEN = [
    ("my_ddpm_step", "alpha.sqrt() * (1 - abar_prev) * x_t", "alpha * (1 - abar_prev) * x_t",
     r"my_ddpm_step at t=500 -> t_prev=480: \d+ of 384 output entries differ by more than 1e-08 \(max abs error"),
    ("my_ddim_step", "(1 - abar_prev - sigma**2).sqrt()", "(1 - abar_prev).sqrt()",
     r"my_ddim_step at t=500 -> t_prev=480, eta=0.5: \d+ of 384 output entries differ"),
    ("sinusoids", "[angles.cos(), angles.sin()]", "[angles.sin(), angles.cos()]",
     r"sinusoids\(t, dim=8\) for t = \[0, 1, 7, 250, 999\]: .* first at index \(0, 0\): expected 1, got 0"),
    ("TimestepEmbedding", "self.mlp", "self.layers",
     r"TimestepEmbedding\(8, 32\): its parameters do not line up with the package's TimestepEmbedding: "
     r"missing mlp.0.weight \(32, 8\);.* extra layers.0.weight \(32, 8\)"),
    ("ResBlock", "return self.skip(x) + h", "return h",
     r"ResBlock\(8, 16, 32, 4\) forward: \d+ of 960 output entries differ"),
    ("SpatialSelfAttention", "/ math.sqrt(q.shape[-1])", "/ q.shape[-1]",
     r"SpatialSelfAttention\(16, 8, 4\) forward: \d+ of 384 output entries differ"),
    ("CrossAttention", "nn.LayerNorm(channels)", "nn.LayerNorm(context_dim)",
     r"CrossAttention\(16, 12, 8\): .* norm.weight has shape \(12,\), expected \(16,\)"),
    ("FactorizedConv", "* (1 + scale) + shift", "* scale + shift",
     r"FactorizedConv\(8, 3, 4, 32\) forward: \d+ of 1152 output entries differ"),
    ("identity_kernel", "kernel // 2] = 1.0", "0] = 1.0",
     r"identity_kernel\(4, 3\): 8 of 48 output entries differ by more than 0 .* first at index \(0, 0, 0\): "
     r"expected 0, got 1"),
    ("downsample_time", "stride=2", "stride=1",
     r"downsample_time\(x, weight, bias\) for x of shape \(2, 8, 8, 3, 2\): output shape \(2, 8, 8, 3, 2\), "
     r"expected \(2, 8, 4, 3, 2\)"),
    ("upsample_time", "x.repeat_interleave(2, dim=2)", "x.repeat(1, 1, 2, 1, 1)",
     r"upsample_time\(x, weight, bias\) for x of shape \(2, 8, 4, 3, 2\): \d+ of 768 output entries differ"),
    ("TemporalAttention", "tokens = tokens + layers.sinusoidal_embedding(", "tokens = tokens + 0 * layers.sinusoidal_embedding(",
     r"TemporalAttention\(16, 8, 32\) forward: \d+ of 768 output entries differ"),
    ("my_windows", "starts.append(frames - window)", "starts.append(starts[-1] + window - overlap)",
     r"my_windows\(16, 8, 2\): got \[\(0, 8\), \(6, 14\), \(12, 20\)\], expected \[\(0, 8\), \(6, 14\), \(8, 16\)\]"),
    ("my_blend", "return total / cover.view(1, 1, -1, 1, 1)", "return total",
     r"my_blend for windows \[\(0, 8\), \(6, 14\), \(8, 16\)\]: \d+ of 576 output entries differ"),
    ("interpolate", "a * style[name] + (1 - a) * weight", "a * weight + (1 - a) * style[name]",
     r"interpolate\(base, style, a=0\)\['norm1.weight'\]: 4 of 4 output entries differ"),
    ("sdedit", "ddim_sample(model_fn, x_t.shape, cut,", "ddim_sample(model_fn, x_t.shape, schedule,",
     r"sdedit\(model, clip, caption, strength=0.3, seed=3, steps=8\): \d+ of 6144 output entries differ"),
]


def test_every_check_is_tried_on_a_broken_variant():
    assert {name for name, *_ in BROKEN} == set(BUILD_IT)


@pytest.mark.parametrize("name, right, wrong, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_check_names_the_difference(name, right, wrong, message):
    source = BUILD_IT[name][1]
    assert right in source, f"the chapter's {name} changed: update this variant"
    broken = defined(name, source.replace(right, wrong))
    with pytest.raises(exercises.ExerciseError, match=message):
        getattr(exercises, student.check_name(name))(broken)


def test_a_module_check_takes_an_instance_too(capsys):
    assert exercises.check_ResBlock(layers.ResBlock(4, 4, 8, 2)) is True
    assert "ResBlock: matches" in capsys.readouterr().out


def test_a_wrong_return_type_is_named():
    with pytest.raises(exercises.ExerciseError, match=r"sinusoids\(t, dim=8\).*returned a list, expected a tensor"):
        exercises.check_sinusoids(lambda t, dim: [0.0] * dim)


def test_nan_counts_as_a_difference():
    with pytest.raises(exercises.ExerciseError, match=r"1 of 40 output entries differ .* got nan"):
        exercises.check_sinusoids(lambda t, dim: layers.sinusoidal_embedding(t, dim).index_put_(
            (torch.tensor([0]), torch.tensor([0])), torch.tensor(float("nan"))))
