"""The codec: container format, deterministic tables, fixed-point h_s, safe rANS, round trips."""

from __future__ import annotations

import base64
import hashlib
import io
import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from kdlic.codec import Codec, decode, encode, peek_model, rans
from kdlic.codec.fixedpoint import (
    ACC_BITS,
    ACT_BITS,
    FRAC_BITS,
    FixedPointSequential,
    TableSelector,
    to_fixed,
)
from kdlic.codec.format import MAX_PIXELS, Header, mask_bytes, pack, unpack
from kdlic.codec.tables import (
    SCALE_TABLE,
    TOTAL,
    bottleneck_tables,
    det_erfc,
    det_exp,
    det_log1p,
    det_sigmoid,
    det_tanh,
    gaussian_tables,
)
from kdlic.errors import KdlicError
from kdlic.evaluation.metrics import psnr
from kdlic.models import load_model
from kdlic.utils.device import fast_bf16

# SHA-256 of the Gaussian tables. They are computed with basic IEEE operations only, so
# every platform must produce exactly these; a different value means files made here
# would not decode there (and vice versa).
GAUSSIAN_TABLES_SHA256 = "f3410f3396e73b2e4f7b85cc72a426995337fe8bfddf441723740207a307d24b"


def make_model(N: int = 8, M: int = 16, seed: int = 0, dead: tuple[int, ...] = (3, 7)):
    """A random-init model with realistic latents: y spread over several units, scales
    over tables ~6..17, a few escapes, and `dead` latent channels that are always zero.
    (A plain random init quantises every latent to 0, which tests nothing.)"""
    from kdlic.models import build_model

    torch.manual_seed(seed)
    model = build_model("scale-hyperprior", N, M)
    with torch.no_grad():
        model.g_a[-1].weight.mul_(20)
        model.g_s[0].weight.div_(20)
        model.h_s[-2].weight.mul_(10)
        model.h_s[-2].bias.add_(0.5)
        for c in dead:
            model.g_a[-1].weight[c] = 0
            model.g_a[-1].bias[c] = 0
    return model.eval()


def smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = (rng.random((max(2, h // 8), max(2, w // 8), 3)) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.float64)
    return np.clip(big + rng.normal(0, 3, big.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(make_model())


@pytest.fixture(scope="module")
def small_file(codec) -> bytes:
    return codec.encode(smooth(40, 56))


def recrc(data: bytes) -> bytes:
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


# ---------------------------------------------------------------------------------------
# Container



def decoded_latents(codec, data, monkeypatch):
    """The y_hat a decode hands to g_s (spied on the synthesis)."""
    seen = {}
    real = codec._synthesis.pixels

    def spy(y_hat, *args):
        seen["y"] = y_hat.clone()
        return real(y_hat, *args)

    with monkeypatch.context() as m:
        m.setattr(codec._synthesis, "pixels", spy)
        codec.decode(data)
    return seen["y"]

def test_header_round_trip():
    h = Header("RGBA", b"12345678", 70, 130, (3, 2), 20, 8, mask_bytes([True, False] * 10),
               "student-n16.pt")
    got, streams = unpack(pack(h, [b"z", b"yy", b"", b"alpha"]))
    assert got == h and streams == [b"z", b"yy", b"", b"alpha"]
    assert got.coded_channels() == list(range(0, 20, 2)) and got.y_shape == (12, 8)


def test_long_model_names_are_cut_on_a_character_boundary():
    h = Header("RGB", bytes(8), 1, 1, (1, 1), 1, 1, b"\x01", "é" * 200)
    got, _ = unpack(pack(h, [b"", b"", b""]))
    assert got.model_name == "é" * 127


@pytest.mark.parametrize("data,message", [
    (b"", "empty file"),
    (b"KD", "truncated"),
    (b"PNG\x89" + bytes(60), "wrong magic"),
    (b"KDLC\x07" + bytes(60), "unsupported format version 7"),
    (b"KDLC\x01", "truncated"),
])
def test_unpack_refuses(data, message):
    with pytest.raises(KdlicError, match=message):
        unpack(data)


def test_every_truncation_is_refused(small_file, codec):
    for n in range(len(small_file)):
        with pytest.raises(KdlicError):
            codec.decode(small_file[:n])


def test_every_bit_flip_is_refused(small_file, codec):
    for i in range(len(small_file)):
        for bit in range(8):
            bad = bytearray(small_file)
            bad[i] ^= 1 << bit
            with pytest.raises(KdlicError):
                codec.decode(bytes(bad))


def test_trailing_bytes_are_refused(small_file):
    with pytest.raises(KdlicError, match="unexpected bytes"):
        unpack(small_file + b"\0")


def _with_size(data: bytes, width: int, height: int, zh: int, zw: int) -> bytes:
    """``data`` with another declared size (and a correct checksum)."""
    pos = 15 + data[14]
    raw = bytearray(data)
    struct.pack_into("<II", raw, pos, width, height)
    struct.pack_into("<HH", raw, pos + 12, zh, zw)
    return recrc(bytes(raw))


def test_huge_declared_image_is_refused_before_allocating(small_file, codec):
    huge = _with_size(small_file, 100000, 100000, 1563, 1563)
    tracemalloc.start()
    try:
        with pytest.raises(KdlicError, match="100000x100000 is out of range"):
            codec.decode(huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    side = int(math.isqrt(MAX_PIXELS)) + 64
    with pytest.raises(KdlicError, match="out of range"):
        unpack(_with_size(small_file, side, side, side // 64 + 1, side // 64 + 1))
    with pytest.raises(KdlicError, match="latent shape"):
        unpack(_with_size(small_file, 640, 640, 3, 3))


def test_mask_bits_beyond_the_channel_count_are_refused():
    h = Header("RGB", bytes(8), 1, 1, (1, 1), 3, 1, b"\x08", "m")
    with pytest.raises(KdlicError, match="channel mask"):
        unpack(pack(h, [b"", b"", b""]))


def test_wrong_model_is_refused_with_both_names(small_file):
    other = Codec(make_model(seed=1))
    other.name = "other.pt"
    with pytest.raises(KdlicError, match=r"encoded with model 'lively.pt' \(id [0-9a-f]{16}\), "
                       r"not with 'other.pt'"):
        other.decode(_renamed(small_file))


def _renamed(data: bytes) -> bytes:
    """``data`` re-packed with the model name 'lively.pt'."""
    header, streams = unpack(data)
    header = Header(header.mode, header.model_id, header.width, header.height, header.z_shape,
                    header.y_channels, header.z_channels, header.y_mask, "lively.pt")
    return pack(header, streams)


def test_peek_model(small_file, codec):
    assert peek_model(small_file) == (codec.id, codec.name)


# A version-1 (exact scale-hyperprior) file written before the mean-scale coder existed:
# make_model() and smooth(40, 56). Version-1 files must stay readable, decode to the
# same latents (machine-independent: SHA-256 of the float32 y_hat), and be written
# byte for byte the same. The re-encoding checks also depend on g_a's float rounding,
# identical here; the decoding check holds on any machine.
V1_FILE = base64.b64decode(
    "S0RMQwEA6zq1qp+VEnUpc2NhbGUtaHlwZXJwcmlvcihOPTgsIE09MTYsIHpfY2hhbm5lbHM9OCk4AAAAKAAAABAA"
    "CAABAAEAA3f/DAAAAIAAAAAAAAAA1D7pPsgFAACMP8cgpB5VAhkAAAB6Z0JqiNNde3zkS2X5/1bc/f/9/43+tf/6"
    "/57sm8PboaDhLUrw/yGi/f/+/2T9WT29//ZDuePRw+//OaN2vxexZv0gWwodf+YN1+GHid8Aev3/9f+mSSzMO8kN"
    "R4J3XmT33VI7pbHi30BUsu1z8QA6ZVUIOPwY+rPJxZGz")
V1_LATENTS_SHA256 = "4c3b6a71995d63feabd7f8b672203dfa53149178f21d92566cbf1e55fba493fa"
V1_FILES_SHA256 = {  # larger files of the same model: one with escapes, one with alpha
    "96x128": "98faeef302618d466e269d7aec5e30f83794967bab5f42cb39db0c045e78e703",
    "rgba": "56fce20ac11fd84e0a7029206854cab0360f5a9e144b58444da48cd3f6279b87",
}


def test_version_1_files_are_unchanged(codec, monkeypatch):
    assert V1_FILE[4] == 1 and unpack(V1_FILE)[0].coder == 0
    y = decoded_latents(codec, V1_FILE, monkeypatch)
    assert hashlib.sha256(y.numpy().tobytes()).hexdigest() == V1_LATENTS_SHA256
    assert codec.encode(smooth(40, 56)) == V1_FILE
    rgba = np.dstack([smooth(50, 60), (np.arange(50 * 60) % 256).reshape(50, 60)]).astype(
        np.uint8)
    made = {"96x128": codec.encode(smooth(96, 128)),
            "rgba": codec.encode(Image.fromarray(rgba, "RGBA"))}
    assert {k: hashlib.sha256(v).hexdigest() for k, v in made.items()} == V1_FILES_SHA256


# ---------------------------------------------------------------------------------------
# Deterministic tables


def test_gaussian_tables_are_pinned():
    tables = gaussian_tables()
    assert tables.digest() == GAUSSIAN_TABLES_SHA256
    for cdf, lo, hi in zip(tables.cdfs, tables.lo, tables.hi, strict=True):
        c = np.asarray(cdf)
        assert c[0] == 0 and c[-1] == TOTAL and (np.diff(c) >= 1).all()
        assert len(c) == hi - lo + 3  # values lo..hi, escape, and the leading 0


def test_deterministic_functions_are_accurate():
    x = np.linspace(-40, 40, 10001)
    assert np.allclose(det_exp(x), np.exp(x), rtol=1e-14, atol=0)
    u = np.linspace(0, 1, 1001)
    assert np.allclose(det_log1p(u), np.log1p(u), rtol=1e-14, atol=1e-300)
    assert np.allclose(det_tanh(x), np.tanh(x), rtol=1e-12, atol=1e-15)
    assert np.allclose(det_sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-13, atol=0)
    import scipy.special

    z = np.linspace(-6, 9, 3001)
    assert np.allclose(det_erfc(z), scipy.special.erfc(z), rtol=2e-7, atol=0)


def test_bottleneck_tables_follow_the_learned_density():
    model = make_model()
    tables, medians = bottleneck_tables(model.entropy_bottleneck)
    again, _ = bottleneck_tables(model.entropy_bottleneck)
    assert tables.digest() == again.digest()
    model.update(force=True)  # CompressAI's tables: same ranges
    eb = model.entropy_bottleneck
    assert (tables.lo == eb._offset.numpy()).all()
    assert (tables.hi - tables.lo + 3 == eb._cdf_length.numpy()).all()
    assert np.array_equal(medians, eb.quantiles[:, 0, 1].detach().double().numpy())


# ---------------------------------------------------------------------------------------
# Fixed-point hyper-synthesis


def test_table_selector_is_exact_everywhere():
    select = TableSelector(SCALE_TABLE)
    q = torch.arange(0, 2**21, dtype=torch.float64)
    thresholds = torch.tensor([math.floor(s * 2**FRAC_BITS) for s in SCALE_TABLE[:-1]],
                              dtype=torch.float64)
    expected = (q[:, None] > thresholds[None]).sum(1)
    assert torch.equal(select(q), expected)


def test_fixed_point_tracks_float_h_s():
    model = make_model()
    fp = FixedPointSequential(model.h_s)
    z = torch.round(torch.randn(1, 8, 6, 5) * 4)
    exact = fp(to_fixed(z)) / 2**FRAC_BITS
    with torch.no_grad():
        ref = model.h_s(z).double()
    assert (exact - ref).abs().max() < 2e-3 * (1 + ref.abs().max())
    gc = model.gaussian_conditional
    model.update(force=True)
    agree = (TableSelector(SCALE_TABLE)(exact * 2**FRAC_BITS) == gc.build_indexes(ref.float()))
    assert agree.float().mean() > 0.99


def test_fixed_point_is_independent_of_summation_order():
    """Integers below 2**53 make float64 sums exact: permuting the input channels (a
    different summation order) and the thread count give bit-identical results."""
    model = make_model(N=16)
    fp = FixedPointSequential(model.h_s)
    z = to_fixed(torch.round(torch.randn(1, 16, 4, 6) * 8))
    ref = fp(z)
    perm = torch.randperm(16)
    first = fp.ops[0]
    first.weight = first.weight[perm]  # ConvTranspose2d weight is (in, out, kh, kw)
    assert torch.equal(fp(z[:, perm]), ref)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(FixedPointSequential(model.h_s)(z), ref)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("after", [torch.nn.ReLU(), torch.nn.LeakyReLU(0.2)])
def test_fixed_point_last_layer_in_parts_equals_the_whole(after):
    """head once, then tail for two sets of channels written into one result (what a
    decoder's workers do): the whole h_s's output, whatever follows the last layer."""
    h_s = torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 8, 5, 2, 2, 1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 12, 3, 1, 1), after)
    fp = FixedPointSequential(h_s)
    z = to_fixed(torch.randn(1, 8, 3, 4) * 4)
    channels = torch.tensor([5, 0, 11, 3, 7])
    head = fp.head(z)
    out = torch.full(fp.out_shape(head, len(channels)), float("nan"), dtype=torch.float64)
    fp.tail(head, channels[:2], out[:, :2])
    fp.tail(head, channels[2:], out[:, 2:])
    assert torch.equal(out, fp(z, channels)) and (out < 0).any() == isinstance(
        after, torch.nn.LeakyReLU)


@pytest.mark.parametrize("N", [16, 128, 192, 320])
def test_fixed_point_bounds_hold_for_wide_layers(N):
    from compressai.models.utils import conv, deconv

    h_s = torch.nn.Sequential(deconv(N, N), torch.nn.ReLU(), deconv(N, N), torch.nn.ReLU(),
                              conv(N, 192, stride=1, kernel_size=3), torch.nn.ReLU())
    fp = FixedPointSequential(h_s)
    for layer in (op for op in fp.ops if op != "relu"):
        terms = layer.weight[0].numel() if not layer.transposed else \
            layer.weight[:, 0].numel()
        assert layer.weight.abs().max() <= 2**layer.weight_bits
        assert terms * 2**ACT_BITS * 2**layer.weight_bits <= 2**ACC_BITS
        assert layer.weight_bits >= 12
        assert (layer.weight == layer.weight.round()).all()


# ---------------------------------------------------------------------------------------
# rANS with escapes


def test_rans_round_trip_with_escapes():
    tables = rans.PreparedTables(gaussian_tables())
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 64, 5000)
    sym = np.round(rng.normal(0, 1, 5000) * np.asarray(SCALE_TABLE)[idx] * 3).astype(np.int64)
    sym[::500] = 10**6  # far outside every table
    stream, escaped = rans.encode(sym, idx, tables)
    assert len(escaped) >= 10
    reader = rans.EscapeReader(rans.pack_escapes(escaped))
    assert np.array_equal(rans.decode(stream, idx, tables, reader), sym)
    reader.finish()


def _c_decode(stream, keys, lut, tables, n, **changed):
    """kdlic.codec._rans.decode on ``tables``' arrays (``changed``: some replaced):
    (values, escaped elements)."""
    from kdlic.codec import _rans

    values, escaped = np.empty(n, np.int32), np.empty(n, np.int32)
    args = dict(cdfs=tables.flat_cdfs, starts=tables.cdf_starts,
                lengths=tables.cdf_lengths, bases=tables.value_starts,
                to_value=tables.to_value, fast_length=rans.FAST_SIZE - 1) | changed
    k = _rans.decode(stream, keys, lut, *args.values(), values, escaped)
    return values, escaped[:k]


def test_array_decoder_reads_what_compressai_reads():
    """kdlic's decoder gives CompressAI's RansDecoder symbols on its streams, garbage
    streams included (the bypass symbol is unreachable with the guarded tables), in
    kdlic's stream order (tables above FAST_SIZE last), mapped to values."""
    from compressai import ans

    tables = rans.PreparedTables(gaussian_tables())
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 64, 4000)
    order = rans.stream_order(idx, tables)
    assert order is not None  # some tables are large: the order matters
    sym = np.round(rng.normal(0, 1, idx.size) * np.asarray(SCALE_TABLE)[idx] * 2)
    good, _ = rans.encode(sym.astype(np.int64), idx, tables)
    for stream in (good, rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()):
        padded = stream + bytes(8 + 4 * idx.size)  # CompressAI reads past short streams
        decoder = ans.RansDecoder()
        decoder.set_stream(padded)
        positions = np.empty(idx.size, np.int64)
        positions[order] = decoder.decode_stream(
            idx[order].tolist(), tables.cdfs, tables.sizes.tolist(), [0] * len(tables.cdfs))
        values, escaped = _c_decode(stream, idx.astype(np.int32), b"", tables, idx.size)
        is_escape = positions == tables.escape[idx]
        assert values.tolist() == np.where(
            is_escape, 0, tables.to_value[tables.base[idx] + positions]).tolist()
        assert escaped.tolist() == [i for i in order.tolist() if is_escape[i]]


def test_decoding_by_scale_equals_decoding_by_table():
    """decode_scaled (tables picked inside the C loop) gives decode's values on the
    selector's tables, escapes included; scales past either end, NaN included, are
    clamped as TableSelector clamps them."""
    tables = rans.PreparedTables(gaussian_tables())
    select = TableSelector(SCALE_TABLE)
    rng = np.random.default_rng(5)
    scales = np.floor(rng.uniform(-1000, 1.2 * select.top, 6000))
    scales[:3] = [-5.0, select.top + 10.0, float(select.top)]
    idx = select.indexes_of(scales)
    sym = np.round(rng.normal(0, 1, idx.size) * np.asarray(SCALE_TABLE)[idx] * 2).astype(np.int64)
    sym[::700] = -(10**5)
    stream, escaped = rans.encode(sym, idx, tables)
    packed = rans.pack_escapes(escaped)
    by_table = rans.decode(stream, idx, tables, rans.EscapeReader(packed))
    by_scale = rans.decode_scaled(stream, scales, select, tables, rans.EscapeReader(packed))
    assert np.array_equal(by_table, sym) and np.array_equal(by_scale, sym)
    nan, zero = (_c_decode(stream, np.array([first, 0.0]), select.lut_bytes, tables, 2)[0]
                 for first in (np.nan, 0.0))
    assert nan.tolist() == zero.tolist()  # NaN reads as table 0, like scale 0


def test_array_decoder_refuses_bad_arguments():
    tables = rans.PreparedTables(gaussian_tables())

    def call(keys, lut=b"", **changed):
        _c_decode(b"\0" * 20, keys, lut, tables, 3, **changed)

    with pytest.raises(ValueError, match="table index"):
        call(np.array([0, 64, 1], np.int32))
    with pytest.raises(ValueError, match="differ in length"):
        call(np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="outside cdfs"):
        call(np.zeros(3, np.int32), cdfs=tables.flat_cdfs[:100])
    with pytest.raises(ValueError, match="outside to_value"):
        call(np.zeros(3, np.int32), bases=tables.value_starts + 10**6)
    with pytest.raises(ValueError, match="differ in length"):
        call(np.zeros(3, np.int32), bases=tables.value_starts[:5])
    with pytest.raises(ValueError, match="4-byte items"):
        call(np.zeros(3, np.int32).tobytes()[:-1])
    with pytest.raises(ValueError, match="8-byte items"):
        call(np.zeros(3, np.int32), lut=bytes(10))
    with pytest.raises(ValueError, match="lut names a table"):
        call(np.zeros(3), lut=bytes([0, 64]))


def test_rans_decodes_any_garbage_within_bounds():
    tables = rans.PreparedTables(gaussian_tables())
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 64, 3000)
    for n in (0, 1, 3, 7, 100, 20000):
        stream = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        try:
            values = rans.decode(stream, idx, tables, rans.EscapeReader(b""))
        except KdlicError as exc:
            assert "escape" in str(exc)
        else:
            assert ((values >= tables.lo[idx]) & (values <= tables.tables.hi[idx])).all()


@pytest.mark.parametrize("data,message", [
    (b"\x80", "ends inside"), (b"\xff\xff\xff\xff\x01", "too large"),
    (b"\xff\xff\xff\x7f", "too large"),
])
def test_escape_stream_checks(data, message):
    with pytest.raises(KdlicError, match=message):
        rans.EscapeReader(data)


def test_escape_reader_counts():
    reader = rans.EscapeReader(rans.pack_escapes(np.array([5, -300, 70000])))
    assert reader.take(2).tolist() == [5, -300]
    with pytest.raises(KdlicError, match="unused"):
        reader.finish()
    with pytest.raises(KdlicError, match="fewer"):
        reader.take(2)


# ---------------------------------------------------------------------------------------
# Round trips


def latents(codec: Codec, rgb: np.ndarray) -> torch.Tensor:
    from kdlic.data.images import padded_size

    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.pad(x, (0, padded_size(w) - w, 0, padded_size(h) - h),
                                mode="replicate")
    with torch.no_grad():
        return torch.round(codec.model.g_a(x))


def test_decoder_recovers_the_encoder_latents(codec, monkeypatch):
    rgb = smooth(96, 128)
    data = codec.encode(rgb)
    header, streams = unpack(data)
    assert header.coded_channels() == [c for c in range(16) if c not in (3, 7)]
    assert streams[2], "this model should produce a few escapes"
    assert torch.equal(decoded_latents(codec, data, monkeypatch), latents(codec, rgb))


@pytest.mark.parametrize("h,w", [(1, 1), (1, 65), (65, 1), (70, 90), (64, 64), (17, 200)])
def test_any_size_round_trips(codec, h, w):
    rgb = smooth(h, w, seed=h * w)
    out = codec.decode(codec.encode(rgb))
    assert out.size == (w, h) and out.mode == "RGB"


@pytest.mark.parametrize("workers", [1, 2])
def test_fast_synthesis_equals_the_model(codec, workers):
    """Channels-last, coded channels only, sub-pixel last layer, frozen GDN, stripes (this
    image has 4 of 16 rows: 1000 px, padded to 1024 = 64 latent rows, which would be 3 of
    at most 24 if stripes did not come in even numbers): the same image as g_s, whatever
    the workers."""
    y = latents(codec, smooth(1000, 64))
    coded = torch.tensor([c for c in range(16) if c not in (3, 7)])
    synthesis = codec._synthesis
    assert [b - a for a, b, *_ in synthesis.stripes(y.shape[2])] == [16, 16, 16, 16]
    assert synthesis.margin == 2
    with torch.no_grad():
        ref = codec.model.g_s(y)[0].clamp(0, 1).mul(255).round().to(torch.uint8)[:, :1000]
        fast = synthesis.pixels(y, coded, workers)[:1000, :, :3].permute(2, 0, 1)
        one_stripe = synthesis._pixels(y, coded)[:1000, :, :3].permute(2, 0, 1)
        serial = synthesis.pixels(y, coded, 1)[:1000, :, :3].permute(2, 0, 1)
    assert fast.shape == (3, 1000, 64)
    for other in (ref, one_stripe):  # the margins hold the receptive field
        assert (fast.int() - other.int()).abs().max() <= 1
        assert (fast != other).float().mean() < 1e-3
    assert torch.equal(fast, serial)


def assert_thread_independent(codec, rgb):
    """Encoding and decoding ``rgb`` with 2 then 1 torch threads: the same file and
    pixels; returns the decoded pixels."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = codec.encode(rgb)
        pa = np.asarray(codec.decode(a))
        torch.set_num_threads(1)
        b = codec.encode(rgb)
        pb = np.asarray(codec.decode(b))
    finally:
        torch.set_num_threads(threads)
    assert a == b and np.array_equal(pa, pb)
    return pa


def test_encoding_is_reproducible_and_thread_independent(codec):
    threads = torch.get_num_threads()
    assert_thread_independent(codec, smooth(80, 100))
    assert torch.get_num_threads() == threads


@pytest.mark.skipif(not fast_bf16(torch.device("cpu")), reason="no native bf16 on this CPU")
def test_bf16_synthesis_is_close_to_fp32_and_thread_independent():
    """The opt-in bf16 g_s (a shipped student, 4 stripes): the same file, pixels within a
    few levels of the fp32 decode, and the same pixels for any worker count."""
    model = load_model("student-n16-l1")
    fp32, bf16 = Codec(model), Codec(model, bf16_synthesis=True)
    rgb = smooth(600, 200)
    data = fp32.encode(rgb)
    assert bf16.encode(rgb) == data
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = np.asarray(bf16.decode(data))
        torch.set_num_threads(1)
        one = np.asarray(bf16.decode(data))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one, two)
    reference = np.asarray(fp32.decode(data))
    assert not np.array_equal(one, reference)  # it did run in bf16
    assert psnr(reference, one) > 40


def test_bf16_synthesis_is_refused_without_native_kernels(monkeypatch):
    import kdlic.codec.codec as codec_module

    monkeypatch.setattr(codec_module, "fast_bf16", lambda device: False)
    with pytest.raises(KdlicError, match="no native bf16"):
        Codec(make_model(), bf16_synthesis=True)


def test_grayscale_stays_grayscale(codec):
    gray = Image.fromarray(smooth(50, 60)[..., 0])
    out = codec.decode(codec.encode(gray))
    assert out.mode == "L" and out.size == (60, 50)


def test_alpha_is_lossless(codec):
    rgba = np.dstack([smooth(50, 60), (np.arange(50 * 60) % 256).reshape(50, 60)]).astype(
        np.uint8)
    out = codec.decode(codec.encode(Image.fromarray(rgba, "RGBA")))
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    out = codec.decode(codec.encode(la))
    assert out.mode == "LA" and np.array_equal(np.asarray(out)[..., 1], rgba[..., 3])


def test_palette_with_transparency_keeps_alpha(codec):
    img = Image.fromarray(smooth(30, 40)).convert("P")
    img.info["transparency"] = 0
    assert codec.decode(codec.encode(img)).mode == "RGBA"


def test_sixteen_bit_grayscale_is_rounded_to_eight_bits(codec, tmp_path):
    values = (np.arange(40 * 30, dtype=np.uint16) * 53).reshape(30, 40)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)  # mode I;16
    from kdlic.data.images import open_image, split_channels

    mode, rgb, alpha = split_channels(open_image(path))
    assert mode == "L" and alpha is None
    assert np.array_equal(rgb[..., 0], np.round(values / 257).astype(np.uint8))
    assert codec.decode(codec.encode(path)).mode == "L"


def test_exif_orientation_is_applied(codec, tmp_path):
    img = Image.fromarray(smooth(20, 50))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert codec.decode(codec.encode(path)).size == (20, 50)


def test_api_accepts_a_model_spec(tmp_path):
    from kdlic.utils.checkpoint import save_checkpoint

    model = make_model()
    path = tmp_path / "lively.pt"
    save_checkpoint(path, model, {"lmbda": 0.01})
    rgb = smooth(30, 30)
    data = encode(rgb, str(path))
    assert peek_model(data)[1] == "lively.pt"
    assert np.array_equal(np.asarray(decode(data, path)), np.asarray(decode(data, model)))


def test_unreadable_inputs_raise_clean_errors(codec, tmp_path):
    with pytest.raises(KdlicError, match="is a directory"):
        codec.encode(tmp_path)
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(KdlicError, match="cannot read image"):
        codec.encode(tmp_path / "x.png")
    with pytest.raises(KdlicError, match="cannot read image"):
        codec.encode(tmp_path / "missing.png")


def test_alpha_stream_must_inflate_to_the_image_size(codec):
    data = codec.encode(Image.fromarray(np.dstack([smooth(10, 10), smooth(10, 10)[..., :1]]),
                                        "RGBA"))
    header, streams = unpack(data)
    for bad in (zlib.compress(bytes(99)), zlib.compress(bytes(101)), b"junk"):
        with pytest.raises(KdlicError, match="alpha"):
            codec.decode(pack(header, [*streams[:3], bad]))


def test_png_bytes_are_not_a_kdl_file(codec):
    buf = io.BytesIO()
    Image.fromarray(smooth(8, 8)).save(buf, format="PNG")
    with pytest.raises(KdlicError, match="wrong magic"):
        codec.decode(buf.getvalue())
