"""The exact mean-scale coder (mbt2018-mean, container coder 2): fixed-point means and
scales, symbols round(y - means), y_hat = symbols + means, round trips, refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from kdlic.codec import Codec, unpack
from kdlic.codec import format as fmt
from kdlic.codec.codec import MeanScaleCodec
from kdlic.codec.fixedpoint import (
    ACC_BITS,
    ACT_BITS,
    FRAC_BITS,
    SLOPE_BITS,
    FixedPointSequential,
    TableSelector,
    _LeakyReLU,
)
from kdlic.codec.synthesis import one_thread
from kdlic.codec.tables import SCALE_TABLE
from kdlic.data.sampling import padded_input
from kdlic.errors import KdlicError
from tests.test_codec import assert_thread_independent, make_model, smooth
from tests.test_fuzz_codec import FUZZ, check, mutated, mutation

DEAD = (3, 7)
DEAD_MEAN = 0.3


def make_mean_model(N: int = 8, M: int = 16, seed: int = 0, dead: tuple[int, ...] = DEAD):
    """A random-init mbt2018-mean with realistic latents: y spread over a few units,
    means of a few units, scales over tables 0..27 (negative ones too: table 0, escapes),
    and `dead` channels where y and the predicted mean are both 0.3, so their symbols are
    all zero (left out of the y stream) while their y_hat, the mean, is not."""
    from kdlic.models import build_model

    torch.manual_seed(seed)
    model = build_model("mbt2018-mean", N, M)
    with torch.no_grad():
        model.g_a[-1].weight.mul_(20)
        model.g_s[0].weight.div_(20)
        last = model.h_s[-1]  # conv(3M/2 -> 2M): scales, then means
        last.weight[:M].mul_(100)
        last.bias[:M].add_(1.0)
        last.weight[M:].mul_(200)
        for c in dead:
            model.g_a[-1].weight[c] = 0
            model.g_a[-1].bias[c] = DEAD_MEAN
            last.weight[M + c] = 0
            last.bias[M + c] = DEAD_MEAN
    return model.eval()


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(make_mean_model())


@pytest.fixture(scope="module")
def small_file(codec) -> bytes:
    return codec.encode(smooth(40, 56))


def encoder_side(codec: Codec, rgb: np.ndarray) -> dict[str, torch.Tensor]:
    """What the encoder computes, recomputed here step by step: y, the z symbols, the
    fixed-point h_s outputs (a separate FixedPointSequential) and the symbols."""
    model = codec.model
    x = padded_input(rgb)
    with torch.no_grad(), one_thread(torch.device("cpu")):  # the encoder's thread count
        y = model.g_a(x)
        z = model.h_a(y)
    z_sym = torch.round(z - model.entropy_bottleneck._get_medians().detach()).double()
    medians = model.entropy_bottleneck.quantiles[:, 0, 1].detach().double()
    fixed = z_sym * 2**FRAC_BITS + torch.round(medians * 2**FRAC_BITS).view(1, -1, 1, 1)
    params = FixedPointSequential(model.h_s)(fixed)
    M = model.M
    means = params[:, M:] * 2.0**-FRAC_BITS
    symbols = torch.round(y.double() - means)
    return {"y": y, "scales": params[:, :M], "means": means, "symbols": symbols}


def decoded_latents(codec: Codec, data: bytes, monkeypatch) -> torch.Tensor:
    seen = {}
    real = codec._synthesis.pixels

    def spy(y_hat, coded, *args):
        seen["y"], seen["coded"] = y_hat.clone(), coded
        return real(y_hat, coded, *args)

    monkeypatch.setattr(codec._synthesis, "pixels", spy)
    codec.decode(data)
    monkeypatch.undo()
    assert seen["coded"] is None  # g_s reads every channel: uncoded ones hold their means
    return seen["y"]


# ---------------------------------------------------------------------------------------
# Fixed point: LeakyReLU, means and scales


def test_leaky_relu_is_exact():
    """floor(a * k / 2**20 + 1/2) for every kind of integer a, against integer arithmetic
    (Python's >> floors), up to the activation bound and for slopes up to the limit."""
    a = np.concatenate([np.arange(-70000, 70001), -np.arange(2**ACT_BITS - 5000, 2**ACT_BITS),
                        np.random.default_rng(0).integers(-(2**ACT_BITS) + 1, 2**ACT_BITS,
                                                          100000)])
    x = torch.from_numpy(a).double()
    for slope in (0.01, 0.2, 1.0, 0.0, 1 / 3, 63.0):
        op = _LeakyReLU(slope)
        k = round(slope * 2**SLOPE_BITS)
        assert op.slope * 2**SLOPE_BITS == k
        expected = [v if v >= 0 else (v * k + 2 ** (SLOPE_BITS - 1)) >> SLOPE_BITS
                    for v in a.tolist()]
        assert op(x).to(torch.int64).tolist() == expected
    with pytest.raises(ValueError, match="too large"):
        _LeakyReLU(65.0)


def test_codec_picks_the_exact_mean_scale_coder(codec, small_file):
    assert type(codec) is MeanScaleCodec and codec.coder == 2
    assert small_file[4] == 2  # version 2: a coder byte
    header, streams = unpack(small_file)
    assert header.coder == 2 and fmt.CODERS[2] == "exact mean-scale" and len(streams) == 3
    assert type(Codec(make_model())) is Codec  # the scale hyperprior keeps its coder


def test_fixed_point_h_s_tracks_float_h_s(codec):
    """Scales and means from the fixed-point h_s (LeakyReLU included) differ from the
    float h_s by less than the 2**-12 rounding of the last layer's inputs times the L1
    norm of its weights for that output, plus one rounding; they pick the same tables
    almost everywhere (this model's last layer is 100-200x amplified, which amplifies
    that rounding too: a trained one picks the same tables nearly always)."""
    model = codec.model
    z = torch.round(torch.randn(1, 8, 6, 5) * 4)
    fixed = FixedPointSequential(model.h_s)(torch.round(z.double() * 2**FRAC_BITS))
    exact = fixed / 2**FRAC_BITS
    with torch.no_grad():
        ref = model.h_s(z).double()
    l1 = model.h_s[-1].weight.detach().double().abs().sum(dim=(1, 2, 3))
    error = (exact - ref).abs().amax(dim=(0, 2, 3))
    assert (error <= 2.0**-FRAC_BITS * (2 + l1)).all()
    assert (exact - ref).abs().max() < 2e-3 * (1 + ref.abs().max())
    M = model.M
    assert torch.equal(codec.means(z), exact[:, M:])
    assert torch.equal(codec.scale_indexes(z), TableSelector(SCALE_TABLE)(fixed[:, :M]))
    agree = codec.scale_indexes(z) == model.gaussian_conditional.build_indexes(
        ref[:, :M].float())
    assert agree.float().mean() > 0.98


def test_fixed_point_h_s_is_independent_of_summation_order(codec):
    """Permuting the first layer's input channels and the thread count give bit-identical
    scales and means (integers below 2**53, LeakyReLU element-wise)."""
    h_s = codec.model.h_s
    fp = FixedPointSequential(h_s)
    z = torch.round(torch.randn(1, 8, 4, 6) * 8 * 2**FRAC_BITS)
    ref = fp(z)
    perm = torch.randperm(8)
    fp.ops[0].weight = fp.ops[0].weight[perm]  # ConvTranspose2d weight: (in, out, kh, kw)
    assert torch.equal(fp(z[:, perm]), ref)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(FixedPointSequential(h_s)(z), ref)
        torch.set_num_threads(1)
        assert torch.equal(FixedPointSequential(h_s)(z), ref)
    finally:
        torch.set_num_threads(threads)
    channels = torch.tensor([20, 5, 31, 16])  # any subset, in any order
    assert torch.equal(FixedPointSequential(h_s)(z, channels), ref[:, channels])


def test_fixed_point_bounds_hold_for_a_teacher_size_h_s():
    """mbt2018-mean's h_s at quality 5+ (N=192, M=320): every sum stays below 2**53."""
    from kdlic.models import build_model

    fp = FixedPointSequential(build_model("mbt2018-mean", 192, 320).h_s)
    assert fp.out_channels == 640
    assert sum(isinstance(op, _LeakyReLU) for op in fp.ops) == 2
    for layer in (op for op in fp.ops if hasattr(op, "weight_bits")):
        terms = layer.weight[:, 0].numel() if layer.transposed else layer.weight[0].numel()
        assert layer.weight.abs().max() <= 2**layer.weight_bits
        assert terms * 2**ACT_BITS * 2**layer.weight_bits <= 2**ACC_BITS
        assert layer.weight_bits >= 12


def test_h_s_of_the_wrong_width_is_refused():
    with pytest.raises(KdlicError, match="h_s outputs 16 channels, the mbt2018-mean coder "
                                         "needs 2 x 16"):
        MeanScaleCodec(make_model())


# ---------------------------------------------------------------------------------------
# Round trips


def test_decoded_latents_are_symbols_plus_means(codec, monkeypatch):
    """The decoder's y_hat is the encoder's round(y - means) + means (float64, exact),
    in float32; channels whose symbols are all zero are not coded, and hold their means."""
    rgb = smooth(96, 128)
    data = codec.encode(rgb)
    header, streams = unpack(data)
    side = encoder_side(codec, rgb)
    symbols = side["symbols"][0]
    nonzero = [c for c in range(16) if symbols[c].abs().max() > 0]
    assert header.coded_channels() == nonzero and set(DEAD).isdisjoint(nonzero)
    assert streams[2], "this model should produce a few escapes"
    y_hat = decoded_latents(codec, data, monkeypatch)
    assert torch.equal(y_hat, (symbols + side["means"][0]).float()[None])
    for c in DEAD:  # not coded, yet not zero: the mean (0.3 in units of 2**-12)
        assert (y_hat[0, c] == np.float32(round(DEAD_MEAN * 2**FRAC_BITS) / 2**FRAC_BITS)).all()
    assert (y_hat - side["y"]).abs().max() <= 0.5 + 2**-FRAC_BITS  # quantisation error only


def test_a_file_without_coded_channels_decodes_to_the_means(monkeypatch):
    codec = Codec(make_mean_model(dead=tuple(range(16))))
    data = codec.encode(smooth(30, 30))
    header, streams = unpack(data)
    assert header.coded_channels() == [] and streams[1] == b""
    y_hat = decoded_latents(codec, data, monkeypatch)
    assert (y_hat == np.float32(round(DEAD_MEAN * 2**FRAC_BITS) / 2**FRAC_BITS)).all()


@pytest.mark.parametrize("h,w", [(1, 1), (70, 90), (17, 200), (64, 64)])
def test_any_size_round_trips(codec, h, w):
    rgb = smooth(h, w, seed=h * w)
    out = codec.decode(codec.encode(rgb))
    assert out.size == (w, h) and out.mode == "RGB"


def test_colour_modes_round_trip(codec):
    rgb = smooth(50, 70)
    alpha = (np.arange(50 * 70) % 256).reshape(50, 70).astype(np.uint8)
    out = codec.decode(codec.encode(Image.fromarray(np.dstack([rgb, alpha]), "RGBA")))
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)
    out = codec.decode(codec.encode(Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA")))
    assert out.mode == "LA" and np.array_equal(np.asarray(out)[..., 1], alpha)
    out = codec.decode(codec.encode(Image.fromarray(rgb[..., 0])))
    assert out.mode == "L" and out.size == (70, 50)


def test_same_file_same_pixels_for_any_thread_count(codec):
    """600 rows: 4 g_s stripes, shared by the workers; 1 and 2 threads, both ways."""
    rgb = smooth(600, 64)
    pa = assert_thread_independent(codec, rgb)
    with torch.no_grad():
        ref = codec.model(padded_input(rgb))["x_hat"][0, :, :600]
    ref = ref.clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy()
    assert np.abs(pa.astype(np.float64) - ref).mean() < 1  # the model's own reconstruction


def test_file_size_is_compressai_s():
    """Without dead channels (which the mask leaves out) the exact coder's streams are
    within 10% of the model's own CompressAI compress() on the same image."""
    codec = Codec(make_mean_model(dead=()))
    rgb = smooth(128, 192, seed=3)
    _, streams = unpack(codec.encode(rgb))
    with torch.no_grad(), one_thread(torch.device("cpu")):
        out = codec.model.compress(padded_input(rgb))
    theirs = sum(len(s[0]) for s in out["strings"])
    ours = sum(map(len, streams))
    assert abs(ours - theirs) <= 0.1 * theirs, (ours, theirs)


# ---------------------------------------------------------------------------------------
# Coders do not mix; hostile input


def test_coders_refuse_each_other_s_files(codec, small_file):
    from kdlic.models import build_model

    scale = Codec(make_model())
    v1 = scale.encode(smooth(40, 56))
    with pytest.raises(KdlicError, match=r"written by the exact mean-scale coder; "
                       r"'.*' \(scale-hyperprior\) uses the exact scale-hyperprior coder"):
        scale.decode(small_file)
    with pytest.raises(KdlicError, match=r"written by the exact scale-hyperprior coder; "
                       r"'.*' \(mbt2018-mean\) uses the exact mean-scale coder"):
        codec.decode(v1)
    torch.manual_seed(0)
    other = Codec(build_model("bmshj2018-factorized", 8, 16))
    with pytest.raises(KdlicError, match="written by the compressai coder"):
        codec.decode(other.encode(smooth(40, 56)))
    with pytest.raises(KdlicError, match="written by the exact mean-scale coder"):
        other.decode(small_file)
    # the same streams relabelled as coder 0 are refused too (by coder, before the id)
    header, streams = unpack(small_file)
    with pytest.raises(KdlicError, match="exact scale-hyperprior coder"):
        codec.decode(fmt.pack(dataclasses.replace(header, coder=0), streams))


def test_every_truncation_and_bit_flip_is_refused(codec, small_file):
    for n in range(len(small_file)):
        with pytest.raises(KdlicError):
            codec.decode(small_file[:n])
    for i in range(len(small_file)):
        for bit in range(8):
            bad = bytearray(small_file)
            bad[i] ^= 1 << bit
            with pytest.raises(KdlicError):
                codec.decode(bytes(bad))


@pytest.fixture()
def small_images(monkeypatch):
    """Cap declared images at 64 Kpx so a mutated size cannot make one example slow."""
    monkeypatch.setattr(fmt, "MAX_PIXELS", 1 << 16)


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=6))
def test_mutations_with_a_valid_checksum(codec, small_file, small_images, mutations):
    check(codec, mutated(small_file, mutations))


@FUZZ
@given(payloads=st.lists(st.binary(max_size=200), min_size=3, max_size=3))
def test_arbitrary_streams_behind_a_valid_header(codec, small_file, small_images, payloads):
    header, _ = unpack(small_file)
    check(codec, fmt.pack(header, payloads))
