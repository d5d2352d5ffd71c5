"""The ``.kdl`` container: a checked header around the entropy-coded streams.

Layout (all integers little-endian; docs/format.md has the full description)::

    offset  size  field
    0       4     magic b"KDLC"
    4       1     format version (1, or 2: a coder byte follows the sizes)
    5       1     colour mode: 0 = RGB, 1 = L (grayscale), 2 = RGBA, 3 = LA
    6       8     encoder id: an ordinary model's model id, SHA-256[:8] of architecture,
                  arguments, fp32 parameters; a decoder-only student writes its teacher's
    14      1     n: length of the model name
    15      n     model name, UTF-8 (zoo name, compressai:... spec or checkpoint file name)
    15+n    4     image width in pixels (1..65535)
    +4      4     image height in pixels (1..65535)
    +8      2     M: latent (y) channels
    +10     2     C: hyper-latent (z) channels
    +12     2     z height = ceil(height / 64)  (y is 4x larger: 16-pixel grid)
    +14     2     z width  = ceil(width / 64)
    +16     1     S: number of streams (exact coders: 3, or 4 with alpha)
    (+17    1     version 2 only: coder, 1 = the architecture's own compress(),
                  2 = exact mean-scale; the fields below move by one)
    +17     m     y channel mask, m = ceil(M / 8): bit c (LSB first) set = channel c coded
    ...     4*S   stream lengths in bytes
    ...           streams: z (rANS), y (rANS, coded channels only), escapes, [alpha: zlib]
    end-4   4     CRC-32 of every byte before it

Version 1 is the exact scale-hyperprior coder (coder 0). Version 2 adds the coder byte;
coder 1 holds the streams of the model's own CompressAI ``compress()`` (one per entropy
model, latent y first), then [alpha], for the architectures without an exact coder;
coder 2, the exact mean-scale coder (``mbt2018-mean``), has coder 0's streams, its y
symbols being ``round(y - means)`` with the fixed-point means (docs/format.md).

Everything is validated before any tensor is allocated: a declared size beyond
``MAX_SIDE``/``MAX_PIXELS``, latent shapes that don't match the image size, a mask
with bits beyond M, stream lengths that don't add up to the file size, and a wrong
checksum are refused with a :class:`~kdlic.errors.KdlicError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from kdlic.data.images import padded_size
from kdlic.errors import KdlicError

MAGIC = b"KDLC"
VERSION = 2  # the newest this kdlic reads and writes; exact-coder files are still version 1
CODERS = {0: "exact scale-hyperprior", 1: "compressai", 2: "exact mean-scale"}
EXACT_CODERS = (0, 2)  # kdlic's streams: z, y, escapes [, alpha]
COLOUR_MODES = {0: "RGB", 1: "L", 2: "RGBA", 3: "LA"}
ALPHA_MODES = ("RGBA", "LA")
MAX_SIDE = 65535
MAX_PIXELS = 2**26  # 67 Mpx (8192 x 8192): decoding needs ~N * pixels bytes of activations
MAX_CHANNELS = 4096
MAX_NAME = 255
_PREFIX = struct.Struct("<4sBB8sB")  # magic, version, mode, model id, name length
_SIZES = struct.Struct("<IIHHHHB")  # width, height, M, C, z height, z width, streams
_CRC = struct.Struct("<I")
STREAM_NAMES = ("z", "y", "escapes", "alpha")


@dataclass(frozen=True)
class Header:
    mode: str  # "RGB", "L", "RGBA" or "LA"
    model_id: bytes  # 8 bytes
    width: int
    height: int
    z_shape: tuple[int, int]  # (height, width) of the hyper-latent grid
    y_channels: int = 0  # M
    z_channels: int = 0  # C
    y_mask: bytes = b""  # ceil(M / 8) bytes
    model_name: str = ""
    coder: int = 0  # CODERS

    @property
    def y_shape(self) -> tuple[int, int]:
        return (4 * self.z_shape[0], 4 * self.z_shape[1])

    def coded_channels(self) -> list[int]:
        """Indexes of the y channels whose symbols are in the y stream."""
        return [c for c in range(self.y_channels) if self.y_mask[c // 8] >> (c % 8) & 1]


def mask_bytes(coded: list[bool]) -> bytes:
    """The y channel mask for per-channel flags (LSB of byte 0 = channel 0)."""
    out = bytearray((len(coded) + 7) // 8)
    for c, flag in enumerate(coded):
        if flag:
            out[c // 8] |= 1 << (c % 8)
    return bytes(out)


def encode_name(name: str) -> bytes:
    """UTF-8 name cut to MAX_NAME bytes on a character boundary."""
    raw = name.encode("utf-8")[:MAX_NAME]
    return raw.decode("utf-8", errors="ignore").encode("utf-8")


def pack(header: Header, streams: list[bytes]) -> bytes:
    """Header, streams and checksum as one byte string."""
    mode = {v: k for k, v in COLOUR_MODES.items()}[header.mode]
    name = encode_name(header.model_name)
    version = 1 if header.coder == 0 else 2  # exact files stay readable by older kdlic
    head = (_PREFIX.pack(MAGIC, version, mode, header.model_id, len(name)) + name
            + _SIZES.pack(header.width, header.height, header.y_channels, header.z_channels,
                          *header.z_shape, len(streams))
            + (b"" if version == 1 else bytes([header.coder]))
            + header.y_mask)
    body = head + struct.pack(f"<{len(streams)}I", *map(len, streams)) + b"".join(streams)
    return body + _CRC.pack(zlib.crc32(body))


def peek_model(data: bytes) -> tuple[bytes, str]:
    """(model id, model name) of a container, checking only what is needed to read them."""
    _check_prefix(data)
    _, _, _, model_id, n = _PREFIX.unpack_from(data)
    if len(data) < _PREFIX.size + n:
        raise KdlicError("truncated file (header incomplete)")
    return model_id, _name(data[_PREFIX.size : _PREFIX.size + n])


def _check_prefix(data: bytes) -> None:
    if len(data) == 0:
        raise KdlicError("empty file")
    if data[: len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise KdlicError("truncated file (header incomplete)")
        raise KdlicError("not a kdlic file (wrong magic bytes)")
    if len(data) < _PREFIX.size:
        raise KdlicError("truncated file (header incomplete)")
    version = data[len(MAGIC)]
    if version not in (1, VERSION):
        raise KdlicError(f"unsupported format version {version} (this kdlic reads 1 to "
                         f"{VERSION})")


def _name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KdlicError("corrupt header: the model name is not UTF-8") from None


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, list[bytes]]:
    """Parse and check a container; :class:`KdlicError` names the first problem found.

    ``max_pixels`` lowers the format's pixel limit (a server's own limit).
    """
    limit = MAX_PIXELS if max_pixels is None else min(max_pixels, MAX_PIXELS)
    data = bytes(data)
    _check_prefix(data)
    _, version, mode, model_id, n_name = _PREFIX.unpack_from(data)
    pos = _PREFIX.size + n_name
    if len(data) < pos + _SIZES.size + 1 + _CRC.size:
        raise KdlicError("truncated file (header incomplete)")
    name_raw = data[_PREFIX.size : pos]
    width, height, m, c, zh, zw, n = _SIZES.unpack_from(data, pos)
    pos += _SIZES.size
    coder = 0
    if version == 2:
        coder = data[pos]
        pos += 1
        if coder not in CODERS or coder == 0:
            raise KdlicError(f"unknown coder {coder}")
    if mode not in COLOUR_MODES:
        raise KdlicError(f"unknown colour mode {mode}")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > limit:
        raise KdlicError(f"declared image size {width}x{height} is out of range "
                         f"(at most {MAX_SIDE} per side and {limit} pixels)")
    if (zh, zw) != (padded_size(height) // 64, padded_size(width) // 64):
        raise KdlicError(f"latent shape {zh}x{zw} does not match image size {width}x{height}")
    if not (1 <= m <= MAX_CHANNELS and 1 <= c <= MAX_CHANNELS):
        raise KdlicError(f"latent channel counts {m}, {c} are out of range")
    alpha = COLOUR_MODES[mode] in ALPHA_MODES
    expected = (3,) if coder in EXACT_CODERS else (1, 2)  # compressai: y [, z]
    if n - alpha not in expected:
        raise KdlicError(f"{n} streams where {' or '.join(str(e + alpha) for e in expected)} "
                         "are expected")
    mask_len = (m + 7) // 8
    table = pos + mask_len
    if len(data) < table + 4 * n + _CRC.size:
        raise KdlicError("truncated file (header incomplete)")
    mask = data[pos:table]
    if m % 8 and mask[-1] >> (m % 8):
        raise KdlicError("corrupt header: channel mask has bits beyond the channel count")
    lengths = struct.unpack_from(f"<{n}I", data, table)
    start = table + 4 * n
    end = start + sum(lengths)
    if len(data) < end + _CRC.size:
        raise KdlicError(f"truncated file ({len(data)} bytes, the header declares "
                         f"{end + _CRC.size})")
    if len(data) > end + _CRC.size:
        raise KdlicError(f"{len(data) - end - _CRC.size} unexpected bytes after the data")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(memoryview(data)[:end]) != crc:
        raise KdlicError("checksum mismatch: the file is corrupt")
    streams = []
    for length in lengths:
        streams.append(data[start : start + length])
        start += length
    header = Header(COLOUR_MODES[mode], model_id, width, height, (zh, zw), m, c, mask,
                    _name(name_raw), coder)
    return header, streams
