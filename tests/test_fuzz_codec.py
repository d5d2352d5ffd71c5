"""Fuzzing the parser and decoder: only clean errors, no crash, no hang.

The header's model name is fuzzed too: whatever it says (a path, a ``compressai:``
spec with a file, 255 bytes), decompressing without ``--model`` must refuse it in one
line without opening any file but the input (and the zoo's, for a zoo name).

Random bytes mostly stop at the magic or the checksum, so the mutation tests also
recompute the CRC: the mutated header fields, streams, escapes and alpha then reach
the real decoder (rANS included). Each example must either decode to an image of the
declared size or raise :class:`KdlicError`; anything else (another exception, a
segfault, a hang past the deadline) fails the test.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kdlic.codec import Codec, unpack
from kdlic.codec import format as fmt
from kdlic.codec.files import decompress_files
from kdlic.errors import KdlicError
from kdlic.zoo import WEIGHTS_DIR
from tests.test_codec import make_model, smooth

FUZZ = settings(max_examples=150, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def codec():
    return Codec(make_model())


@pytest.fixture(scope="module")
def seeds(codec):
    rgb = smooth(40, 70, 5)
    alpha = (np.arange(40 * 70) % 7 * 30).reshape(40, 70).astype(np.uint8)
    return [codec.encode(rgb),
            codec.encode(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))]


@pytest.fixture(autouse=True)
def small_images(monkeypatch):
    """Cap declared images at 64 Kpx so a mutated size cannot make one example slow."""
    monkeypatch.setattr(fmt, "MAX_PIXELS", 1 << 16)


def check(codec: Codec, data: bytes) -> None:
    try:
        image = codec.decode(data)
    except KdlicError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    header, _ = unpack(data)
    assert image.size == (header.width, header.height)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


mutation = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "stream"]),
    st.integers(min_value=0, max_value=1 << 30),
    st.integers(min_value=0, max_value=255),
)


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes(codec, data):
    check(codec, data)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_behind_a_valid_prefix(codec, data):
    check(codec, b"KDLC\x01" + data)
    check(codec, with_crc(b"KDLC\x01" + data))


def mutated(data: bytes, mutations) -> bytes:
    """``data`` with the mutations applied to everything before its checksum, which is
    then recomputed (so the decoder's checks past the CRC are what gets exercised)."""
    body = bytearray(data[:-4])
    _, streams = unpack(data)
    stream_start = len(body) - sum(map(len, streams))
    for kind, pos, value in mutations:
        if not body:
            break
        i = pos % len(body)
        if kind == "flip":
            body[i] ^= 1 << (value % 8)
        elif kind == "set":
            body[i] = value
        elif kind == "insert":
            body.insert(i, value)
        elif kind == "delete":
            del body[i]
        elif len(body) > stream_start:  # garbage inside the entropy-coded streams
            body[stream_start + pos % (len(body) - stream_start)] = value
    return with_crc(bytes(body))


@FUZZ
@given(which=st.integers(0, 1), mutations=st.lists(mutation, min_size=1, max_size=6))
def test_mutations_with_a_valid_checksum(codec, seeds, which, mutations):
    check(codec, mutated(seeds[which], mutations))


@FUZZ
@given(payloads=st.lists(st.binary(max_size=200), min_size=3, max_size=3))
def test_arbitrary_streams_behind_a_valid_header(codec, seeds, payloads):
    """Any z / y / escape payloads (rANS garbage), with a correct header and checksum."""
    header, _ = unpack(seeds[0])
    check(codec, fmt.pack(header, payloads))


SPEC_PREFIXES = ["compressai:bmshj2018-hyperprior:3:", "compressai:bmshj2018-hyperprior:",
                 "compressai:", "random:", "random:N=8,M=16", "/", "../", "./", "~/", "file://",
                 "\\\\server\\share\\", "student-n16-l1", "a.pt"]
header_names = st.one_of(
    st.text(max_size=300),
    st.builds(str.__add__, st.sampled_from(SPEC_PREFIXES), st.text(max_size=280)),
    st.builds(str.__mul__, st.sampled_from(["x", "é", "/", "../", "€"]),
              st.integers(1, 300)),
    st.sampled_from(["compressai:bmshj2018-hyperprior:3:/etc/passwd", "/dev/zero",
                     "/proc/self/environ", "student-n16-l1", "teacher-q5/../teacher-q5"]),
)


@FUZZ
@given(name=header_names)
def test_header_names_never_reach_the_file_system(seeds, tmp_path, opened_files, name):
    header, streams = unpack(seeds[0])
    source, out = tmp_path / "in.kdl", tmp_path / "out.png"
    source.write_bytes(fmt.pack(dataclasses.replace(header, model_name=name), streams))
    opened_files.clear()
    with pytest.raises(KdlicError) as info:
        decompress_files([str(source)], str(out), progress=False)
    assert str(info.value) and "\n" not in str(info.value)
    foreign = {p for p in opened_files
               if p != str(source) and not p.startswith(str(WEIGHTS_DIR))
               and not p.endswith((".py", ".pyc", ".so"))}  # lazy imports
    assert not foreign
    assert not out.exists()
