"""The networks: every layer's shapes and identity-at-initialisation, the inflation property
(Lumiere, Section 3.1), freezing, and the errors on bad input.

The inflation property: a STUNet inflated from a text-to-image U-Net equals that U-Net run on
every frame when the clip is static, because every new temporal layer starts as the identity
on a static clip. The U-Net's weights are perturbed first, so its zero-initialised layers
(ResBlock output convs, attention output projections, extra input channels) are no longer
zero, as in a trained text-to-image model; otherwise most of the network would be trivial.
On a moving clip the two differ, and the stride of temporal down-sampling is why: without
it (and with the temporal layers at initialisation) nothing mixes frames.
"""
import dataclasses

import pytest
import torch
from einops import rearrange, repeat

from minilumiere.config import get_config
from minilumiere.data import render_clip, to_tensor
from minilumiere.nn import STUNet, UNet2D, inflate
from minilumiere.nn.layers import (CrossAttention, Downsample, FactorizedConv, ResBlock,
                                   SpatialSelfAttention, TemporalAttention, TemporalDownsample,
                                   TemporalUpsample, TextPooling, TimestepEmbedding, Upsample,
                                   identity_init, sinusoidal_embedding, temporal_conv1d)

TOLERANCE = 1e-5            # max abs difference, float32 (the bar)
CONTEXT_LENGTH = 5          # text tokens per caption in these tests


def generator(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=generator(seed))


def perturb(model: torch.nn.Module, scale: float = 0.02, seed: int = 0) -> torch.nn.Module:
    """Add scale * N(0, 1) to every parameter: zero-initialised layers stop being zero, as
    in a trained model."""
    g = generator(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=g))
    return model


def inputs(cfg, batch, seed=0):
    """t (B,) and context (B, L, D) for a config."""
    t = torch.randint(0, cfg.diffusion.num_steps, (batch,), generator=generator(seed))
    return t, randn(batch, CONTEXT_LENGTH, cfg.unet.context_dim, seed=seed + 1)


def static_clip(batch, frames, size, seed=0):
    """(B, 3, T, H, W): one random image repeated on every frame."""
    return repeat(randn(batch, 3, size, size, seed=seed), "b c h w -> b c t h w", t=frames).contiguous()


def moving_clip(batch, frames, size):
    """(B, 3, T, H, W) toy-world clips in [-1, 1]: a shape travelling across the frame."""
    clips = [to_tensor(render_clip(caption, seed=i, frames=frames, size=size))
             for i, caption in zip(range(batch), ["a red circle moving left", "a blue square moving up"])]
    return torch.stack(clips)


def unet2d_per_frame(unet2d, x, t, context, cond=None):
    """The text-to-image U-Net applied to every frame of x (B, C, T, H, W) on its own."""
    frames = x.shape[2]
    images = rearrange(x, "b c t h w -> (b t) c h w")
    cond = None if cond is None else rearrange(cond, "b c t h w -> (b t) c h w")
    out = unet2d(images, t.repeat_interleave(frames), context.repeat_interleave(frames, dim=0), cond)
    return rearrange(out, "(b t) c h w -> b c t h w", t=frames)


def max_abs(a, b):
    return (a - b).abs().max().item()


# --- layers ----------------------------------------------------------------------------------


def test_sinusoidal_embedding():
    emb = sinusoidal_embedding(torch.tensor([0, 3, 999]), 16)
    assert emb.shape == (3, 16)
    assert torch.equal(emb[0], torch.cat([torch.ones(8), torch.zeros(8)]))   # cos 0, sin 0
    assert emb.abs().max() <= 1


def test_timestep_embedding_shape():
    assert TimestepEmbedding(16, 64)(torch.tensor([1, 500])).shape == (2, 64)


def test_resblock_shape_and_init():
    block = ResBlock(16, 32, emb_dim=24, groups=4)
    x, emb = randn(2, 16, 8, 8), randn(2, 24, seed=1)
    out = block(x, emb)
    assert out.shape == (2, 32, 8, 8)
    torch.testing.assert_close(out, block.skip(x))      # output conv starts at zero
    perturb(block)
    assert max_abs(block(x, emb), block.skip(x)) > 1e-3


@pytest.mark.parametrize("make", [lambda: SpatialSelfAttention(32, head_dim=16, groups=4),
                                  lambda: CrossAttention(32, context_dim=24, head_dim=16)],
                         ids=["self", "cross"])
def test_spatial_attention_shape_and_identity_at_init(make):
    layer = make()
    x, context = randn(2, 32, 4, 4), randn(2, 5, 24, seed=1)
    call = (lambda: layer(x)) if isinstance(layer, SpatialSelfAttention) else (lambda: layer(x, context))
    assert torch.equal(call(), x)                      # output projection starts at zero
    perturb(layer)
    out = call()
    assert out.shape == x.shape and max_abs(out, x) > 1e-3


def test_spatial_resampling_shapes():
    x = randn(2, 8, 8, 8)
    assert Downsample(8)(x).shape == (2, 8, 4, 4)
    assert Upsample(8)(x).shape == (2, 8, 16, 16)


def test_identity_init_conv_copies_its_input():
    conv = identity_init(torch.nn.Conv1d(6, 6, 3, padding=1))
    x = randn(2, 6, 7)
    assert torch.equal(conv(x), x)


def test_temporal_conv1d_runs_along_time_at_every_pixel():
    conv = torch.nn.Conv1d(4, 6, 3, padding=1)
    x = randn(2, 4, 5, 3, 3)
    out = temporal_conv1d(conv, x)
    assert out.shape == (2, 6, 5, 3, 3)
    torch.testing.assert_close(out[:, :, :, 1, 2], conv(x[:, :, :, 1, 2]))


def test_factorized_conv_is_identity_at_init_on_any_clip():
    layer = FactorizedConv(16, kernel=3, groups=4, emb_dim=24)
    x, emb = randn(2, 16, 6, 4, 4), randn(2, 24, seed=1)       # every frame different
    assert torch.equal(layer(x, emb), x)
    perturb(layer)
    out = layer(x, emb)
    assert out.shape == x.shape and max_abs(out, x) > 1e-3


def test_factorized_conv_scale_shift_is_identity_at_init_and_lets_the_embedding_gate():
    layer = FactorizedConv(16, kernel=3, groups=4, emb_dim=24, scale_shift=True)
    x, emb = randn(2, 16, 6, 4, 4), randn(2, 24, seed=1)
    assert torch.equal(layer(x, emb), x)
    perturb(layer)
    assert max_abs(layer(x, emb), x) > 1e-3
    with torch.no_grad():                       # an embedding that says scale -1, shift 0
        layer.emb_proj.weight.zero_()
        layer.emb_proj.bias.copy_(torch.cat([-torch.ones(16), torch.zeros(16)]))
    # every channel switched off: what is left of the branch is the temporal conv's bias
    bias = layer.temporal.bias[None, :, None, None, None].expand_as(x)
    torch.testing.assert_close(layer(x, emb) - x, bias)


def test_stunet_config_saved_without_emb_scale_shift_rebuilds_the_additive_block():
    cfg = get_config("smoke")
    stored = cfg.to_dict()
    del stored["stunet"]["emb_scale_shift"]     # a file written before the field existed
    old = type(cfg).from_dict(stored)
    assert cfg.stunet.emb_scale_shift and not old.stunet.emb_scale_shift
    channels = cfg.unet.channels[0]
    assert STUNet(cfg.unet, cfg.stunet).down_temporal[0][0].emb_proj.out_features == 2 * channels
    assert STUNet(old.unet, old.stunet).down_temporal[0][0].emb_proj.out_features == channels


def test_temporal_downsample_keeps_even_frames_at_init():
    x = randn(2, 8, 6, 4, 4)
    out = TemporalDownsample(8, kernel=3)(x)
    assert out.shape == (2, 8, 3, 4, 4)
    assert torch.equal(out, x[:, :, 0::2])            # frames 0, 2, 4


def test_temporal_upsample_duplicates_frames_at_init():
    x = randn(2, 8, 3, 4, 4)
    out = TemporalUpsample(8, kernel=3)(x)
    assert out.shape == (2, 8, 6, 4, 4)
    assert torch.equal(out[:, :, 0::2], x) and torch.equal(out[:, :, 1::2], x)


def test_temporal_attention_is_identity_at_init_on_any_clip():
    layer = TemporalAttention(32, head_dim=16, emb_dim=24)
    x, emb = randn(2, 32, 6, 3, 3), randn(2, 24, seed=1)
    assert torch.equal(layer(x, emb), x)
    perturb(layer)
    out = layer(x, emb)
    assert out.shape == x.shape and max_abs(out, x) > 1e-3


def test_text_pooling_shape_and_zero_at_init():
    pooling = TextPooling(context_dim=32, emb_dim=24, head_dim=16)
    context = randn(2, 5, 32)
    assert torch.equal(pooling(context), torch.zeros(2, 24))   # output projection starts at zero
    perturb(pooling)
    assert pooling(context).shape == (2, 24) and pooling(context).abs().max() > 1e-3


def test_text_pooling_without_zero_out_reads_the_caption_from_the_start():
    pooling = TextPooling(context_dim=32, emb_dim=24, head_dim=16, zero_out=False)
    context, other = randn(2, 5, 32), randn(2, 5, 32, seed=1)
    assert pooling(context).shape == (2, 24)
    assert max_abs(pooling(context), pooling(other)) > 1e-3


# --- the two U-Nets --------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["smoke", "toy"])
def test_unet_shapes(preset):
    cfg = get_config(preset)
    t, context = inputs(cfg, 2)
    assert UNet2D(cfg.unet)(randn(2, 3, cfg.size, cfg.size), t, context).shape == (2, 3, cfg.size, cfg.size)
    clip = randn(2, 3, cfg.frames, cfg.size, cfg.size)
    with torch.no_grad():
        assert STUNet(cfg.unet, cfg.stunet)(clip, t, context).shape == clip.shape


def test_frames_by_level():
    cfg = get_config("toy")
    stunet = STUNet(cfg.unet, cfg.stunet)
    assert stunet.frames_by_level(16, 16) == [(16, 16), (8, 8), (4, 4)]
    assert stunet.frame_multiple == 4
    flat = STUNet(cfg.unet, dataclasses.replace(cfg.stunet, temporal_downsample=(False, False)))
    assert flat.frames_by_level(16, 16) == [(16, 16), (16, 8), (16, 4)]


def test_zero_init_cond_channels():
    """New <C, M> input channels start at zero: any cond gives the output of cond=None."""
    cfg = get_config("smoke")
    unet2d = perturb(UNet2D(dataclasses.replace(cfg.unet, cond_channels=4)))
    fresh = UNet2D(dataclasses.replace(cfg.unet, cond_channels=4))
    stunet = inflate(unet2d, dataclasses.replace(cfg.stunet, cond_channels=4))
    t, context = inputs(cfg, 2)
    image, clip = randn(2, 3, cfg.size, cfg.size), randn(2, 3, cfg.frames, cfg.size, cfg.size)
    with torch.no_grad():
        assert torch.equal(fresh(image, t, context, randn(2, 4, cfg.size, cfg.size, seed=2)),
                           fresh(image, t, context))
        # the STUNet's cond = the T2I model's own 4 channels (trained) + 4 new ones (at zero)
        cond = randn(2, 8, cfg.frames, cfg.size, cfg.size, seed=3)
        new_zeroed = torch.cat([cond[:, :4], torch.zeros_like(cond[:, 4:])], dim=1)
        assert torch.equal(stunet(clip, t, context, cond), stunet(clip, t, context, new_zeroed))
        assert max_abs(stunet(clip, t, context, cond), stunet(clip, t, context)) > 1e-3


# --- the inflation property ------------------------------------------------------------------


@pytest.mark.parametrize("text_pooling_zero_init", [True, False])
@pytest.mark.parametrize("cond_channels", [0, 4])
@pytest.mark.parametrize("preset", ["smoke", "toy"])
def test_inflated_equals_per_frame_on_static_clip(preset, cond_channels, text_pooling_zero_init):
    cfg = get_config(preset)
    unet2d = perturb(UNet2D(cfg.unet)).eval()
    stunet = inflate(unet2d, dataclasses.replace(cfg.stunet, cond_channels=cond_channels,
                                                 text_pooling_zero_init=text_pooling_zero_init)).eval()
    x = static_clip(2, cfg.frames, cfg.size)
    t, context = inputs(cfg, 2)
    cond = randn(2, cond_channels, cfg.frames, cfg.size, cfg.size, seed=4) if cond_channels else None
    with torch.no_grad():
        error = max_abs(stunet(x, t, context, cond), unet2d_per_frame(unet2d, x, t, context))
    assert error <= TOLERANCE


def test_inflated_equals_per_frame_on_static_clip_through_t2i_cond_channels():
    """A T2I model with its own (trained) cond channels: the STUNet routes them through it."""
    cfg = get_config("smoke")
    unet2d = perturb(UNet2D(dataclasses.replace(cfg.unet, cond_channels=4))).eval()
    stunet = inflate(unet2d, dataclasses.replace(cfg.stunet, cond_channels=4)).eval()
    x, t_cond = static_clip(2, cfg.frames, cfg.size), static_clip(2, cfg.frames, cfg.size, seed=5)
    t_cond = torch.cat([t_cond, t_cond[:, :1]], dim=1)                 # (B, 4, T, H, W), static
    new_cond = randn(2, 4, cfg.frames, cfg.size, cfg.size, seed=6)       # anything: starts at zero
    t, context = inputs(cfg, 2)
    with torch.no_grad():
        out = stunet(x, t, context, torch.cat([t_cond, new_cond], dim=1))
        error = max_abs(out, unet2d_per_frame(unet2d, x, t, context, t_cond))
    assert error <= TOLERANCE


def test_inflated_equals_per_frame_on_static_clip_full_preset():
    """The paper's architecture (4 temporal down-samplings) on a small clip: 16 frames, 16x16.
    One model with the 4 <C, M> channels, run with cond=None (the path of a model without them:
    the input layer returns before cond_in) and with a random cond."""
    cfg = get_config("full")
    unet2d = perturb(UNet2D(cfg.unet)).eval()
    stunet = inflate(unet2d, dataclasses.replace(cfg.stunet, cond_channels=4)).eval()
    frames, size = 16, 16
    x = static_clip(1, frames, size)
    t, context = inputs(cfg, 1)
    with torch.no_grad():
        # a static clip: every frame is the same image, so the per-frame output is one image's
        reference = repeat(unet2d(x[:, :, 0], t, context), "b c h w -> b c t h w", t=frames)
        errors = [max_abs(stunet(x, t, context, cond), reference)
                  for cond in (None, randn(1, 4, frames, size, size, seed=4))]
    assert max(errors) <= TOLERANCE, f"max abs errors {errors}, output max {reference.abs().max():.3g}"


@pytest.mark.parametrize("preset", ["smoke", "toy"])
def test_inflated_differs_from_per_frame_on_moving_clip(preset):
    """The stride of temporal down-sampling drops every other frame: the paper notes that the
    inflated model cannot equal the T2I model at initialisation."""
    cfg = get_config(preset)
    unet2d = perturb(UNet2D(cfg.unet)).eval()
    stunet = inflate(unet2d, cfg.stunet).eval()
    x = moving_clip(2, cfg.frames, cfg.size)
    t, context = inputs(cfg, 2)
    with torch.no_grad():
        assert max_abs(stunet(x, t, context), unet2d_per_frame(unet2d, x, t, context)) > 1e-3


@pytest.mark.parametrize("preset", ["smoke", "toy"])
def test_without_temporal_downsampling_equals_per_frame_on_moving_clip(preset):
    """No stride, temporal layers at initialisation: nothing mixes frames, so the STUNet is
    the T2I model on every frame even when the clip moves. The stride makes the difference."""
    cfg = get_config(preset)
    unet2d = perturb(UNet2D(cfg.unet)).eval()
    no_stride = (False,) * len(cfg.stunet.temporal_downsample)
    stunet = inflate(unet2d, dataclasses.replace(cfg.stunet, temporal_downsample=no_stride)).eval()
    x = moving_clip(2, cfg.frames, cfg.size)
    t, context = inputs(cfg, 2)
    with torch.no_grad():
        assert max_abs(stunet(x, t, context), unet2d_per_frame(unet2d, x, t, context)) <= TOLERANCE


# --- freezing and copying --------------------------------------------------------------------


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_spatial(freeze):
    cfg = get_config("smoke")
    stunet = inflate(perturb(UNet2D(cfg.unet)), dataclasses.replace(cfg.stunet, freeze_spatial=freeze))
    x = randn(2, 3, cfg.frames, cfg.size, cfg.size)
    t, context = inputs(cfg, 2)
    stunet(x, t, context).square().mean().backward()
    spatial_grads = [p.grad for p in stunet.unet2d.parameters()]
    if freeze:
        assert all(g is None for g in spatial_grads)
    else:
        assert all(g is not None for g in spatial_grads)
    temporal = stunet.temporal_parameters()
    assert temporal and all(p.grad is not None for p in temporal)
    # zero-initialised output projections get a gradient: the temporal layers can start learning
    assert stunet.down_temporal[0][0].temporal.weight.grad.abs().sum() > 0
    assert stunet.mid_temporal[0].out.weight.grad.abs().sum() > 0


def test_inflate_copies_weights():
    cfg = get_config("smoke")
    unet2d = perturb(UNet2D(cfg.unet))
    before = {name: p.clone() for name, p in unet2d.state_dict().items()}
    stunet = inflate(unet2d, cfg.stunet)
    for name, p in stunet.unet2d.state_dict().items():
        assert torch.equal(p, before[name])
    with torch.no_grad():
        for p in stunet.unet2d.parameters():
            p.add_(1.0)
    for name, p in unet2d.state_dict().items():
        assert torch.equal(p, before[name]), name


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_models():
    cfg = get_config("toy")                      # 2 spatial and 2 temporal down-samplings: x4
    return cfg, UNet2D(cfg.unet), STUNet(cfg.unet, cfg.stunet)


def good_inputs(cfg, model, batch=2):
    """A valid (x_t, t, context) for the model (8 frames for the STUNet)."""
    shape = (batch, 3, cfg.size, cfg.size) if isinstance(model, UNet2D) else (batch, 3, 8, cfg.size, cfg.size)
    t, context = inputs(cfg, batch)
    return randn(*shape), t, context


def test_frames_not_divisible_lists_allowed_frames(toy_models):
    cfg, _, stunet = toy_models
    t, context = inputs(cfg, 1)
    with pytest.raises(ValueError, match=r"frames=6 must be divisible by 4.*try 4 or 8"):
        stunet(randn(1, 3, 6, cfg.size, cfg.size), t, context)


@pytest.mark.parametrize("model_index", [1, 2], ids=["unet2d", "stunet"])
def test_size_not_divisible_lists_allowed_sizes(toy_models, model_index):
    cfg, model = toy_models[0], toy_models[model_index]
    x, t, context = good_inputs(cfg, model)
    x = x[..., :14, :14]
    with pytest.raises(ValueError, match=r"size 14x14 must be divisible by 4.*try 12"):
        model(x, t, context)


@pytest.mark.parametrize("model_index", [1, 2], ids=["unet2d", "stunet"])
@pytest.mark.parametrize("bad", ["channels", "context_width", "t_shape", "cond_shape", "cond_without_channels"])
def test_bad_input_names_the_argument(toy_models, model_index, bad):
    cfg, model = toy_models[0], toy_models[model_index]
    x, t, context = good_inputs(cfg, model)
    cond = None
    if bad == "channels":
        x, pattern = torch.cat([x, x[:, :1]], dim=1), r"^x_t must be .* C=3; got \(2, 4,"
    elif bad == "context_width":
        context, pattern = context[..., :-1], r"^context must be \(B, L, D\) = \(2, L, 64\)"
    elif bad == "t_shape":
        t, pattern = t[:, None], r"^t must have shape \(B,\) = \(2,\); got \(2, 1\)"
    elif bad == "cond_shape":
        cond_cfg = dataclasses.replace(cfg.unet, cond_channels=4)
        model = UNet2D(cond_cfg) if isinstance(model, UNet2D) else STUNet(
            cfg.unet, dataclasses.replace(cfg.stunet, cond_channels=4))
        cond, pattern = torch.zeros(2, 3, *x.shape[2:]), r"^cond must have shape \(2, 4,"
    else:
        cond, pattern = torch.zeros(2, 4, *x.shape[2:]), r"^cond was given .*\(cond_channels=0\)"
    with pytest.raises(ValueError, match=pattern):
        model(x, t, context, cond)
