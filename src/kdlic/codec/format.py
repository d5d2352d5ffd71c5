"""The ``.kdl`` container: a checked header around the entropy-coded streams.

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic b"KDLC"
    4       1     format version (1)
    5       1     colour mode: 0 = RGB, 1 = grayscale (L), 2 = RGBA (alpha in a stream)
    6       8     model id: first 8 bytes of SHA-256 over the model's parameters
    14      4     image width in pixels (1..65535)
    18      4     image height in pixels (1..65535)
    22      2     z height (latent grid of the padded image / 64)
    24      2     z width
    26      1     number of streams S (2 or 3)
    27      4*S   stream lengths in bytes
    ...           streams, in order: z (hyper-latent), y (latent), [alpha: zlib]
    end-4   4     CRC-32 of every byte before it

Everything is validated before any tensor is allocated: a declared size beyond
``MAX_PIXELS``, latent shapes that don't match the image size, stream lengths that
don't add up to the file size, and a wrong checksum are refused with a
:class:`~kdlic.errors.KdlicError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from kdlic.errors import KdlicError

MAGIC = b"KDLC"
VERSION = 1
COLOUR_MODES = {0: "RGB", 1: "L", 2: "RGBA"}
MAX_SIDE = 65535
MAX_PIXELS = 2**28  # 268 Mpx: refuse larger declared images before allocating anything
_FIXED = struct.Struct("<4sBB8sIIHHB")
_CRC = struct.Struct("<I")


def padded_size(side: int) -> int:
    """Image side padded to the model's 64-pixel grid."""
    return (side + 63) // 64 * 64


@dataclass(frozen=True)
class Header:
    mode: str  # "RGB", "L" or "RGBA"
    model_id: bytes  # 8 bytes
    width: int
    height: int
    z_shape: tuple[int, int]


def pack(header: Header, streams: list[bytes]) -> bytes:
    """Header, streams and checksum as one byte string."""
    mode = {v: k for k, v in COLOUR_MODES.items()}[header.mode]
    head = _FIXED.pack(MAGIC, VERSION, mode, header.model_id, header.width, header.height,
                       *header.z_shape, len(streams))
    body = head + struct.pack(f"<{len(streams)}I", *map(len, streams)) + b"".join(streams)
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """Parse and check a container; :class:`KdlicError` names the first problem found."""
    if len(data) == 0:
        raise KdlicError("empty file")
    if len(data) < len(MAGIC) or data[:4] != MAGIC:
        raise KdlicError("not a kdlic file (wrong magic bytes)")
    if len(data) < _FIXED.size + _CRC.size:
        raise KdlicError("truncated file (header incomplete)")
    magic, version, mode, model_id, width, height, zh, zw, n = _FIXED.unpack_from(data)
    if version != VERSION:
        raise KdlicError(f"unsupported format version {version} (this kdlic reads {VERSION})")
    body, (crc,) = data[:-4], _CRC.unpack_from(data, len(data) - 4)
    if zlib.crc32(body) != crc:
        raise KdlicError("checksum mismatch: the file is corrupt or truncated")
    if mode not in COLOUR_MODES:
        raise KdlicError(f"unknown colour mode {mode}")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise KdlicError(f"declared image size {width}x{height} is out of range")
    if (zh, zw) != (padded_size(height) // 64, padded_size(width) // 64):
        raise KdlicError(f"latent shape {zh}x{zw} does not match image size {width}x{height}")
    expected_streams = 3 if COLOUR_MODES[mode] == "RGBA" else 2
    if n != expected_streams:
        raise KdlicError(f"{n} streams where {expected_streams} are expected")
    offset = _FIXED.size + 4 * n
    if len(body) < offset:
        raise KdlicError("truncated file (stream table incomplete)")
    lengths = struct.unpack_from(f"<{n}I", body, _FIXED.size)
    if offset + sum(lengths) != len(body):
        raise KdlicError("stream lengths do not add up to the file size")
    streams = []
    for length in lengths:
        streams.append(body[offset : offset + length])
        offset += length
    return Header(COLOUR_MODES[mode], model_id, width, height, (zh, zw)), streams
