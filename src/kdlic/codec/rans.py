"""rANS coding with :class:`~kdlic.codec.tables.Tables`, safe on hostile streams.

Encoding is CompressAI's C++ rANS (``compressai.ans``), called with cached table lists;
decoding is :mod:`kdlic.codec._rans`, which decodes the same streams straight into
arrays (CompressAI's binding converts every index and symbol through Python lists,
several times the cost of decoding them). CompressAI's *bypass* mode is never used:

* Out-of-range values are coded as the table's escape symbol, and their values are
  written to a separate *escape* stream (zigzag LEB128 varints), not as bypass bits
  inside the rANS stream.
* Each table is handed to the C++ encoder with one extra CDF entry above ``2**16`` and
  a size one larger than its real size. The encoder enters bypass mode only for the
  symbol index ``size - 2``, which the enlarged size makes unreachable.

Why: in bypass mode CompressAI's decoder reads a symbol-count prefix of unbounded
length from the stream, and nothing checks the end of the buffer. kdlic's decoder has
no bypass mode, checks every table index, bounds every CDF search by the table's
length and reads words past the end of the stream as zeros. Decoded values are then
bounded by the tables' ranges, escapes by the escape stream's checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from compressai import ans

from kdlic.codec import _rans
from kdlic.codec.tables import TOTAL, Tables
from kdlic.errors import KdlicError

if TYPE_CHECKING:
    from kdlic.codec.fixedpoint import TableSelector

MIN_SYMBOLS = 8  # CompressAI's encoder sizes its output buffer by the symbol count
ESCAPE_LIMIT = 1 << 24  # |escaped value| bound: latents are fp32 integers below 2**24
FAST_SIZE = 258  # stream order: tables up to 256 symbols (+1 CDF entry, +1 guard) first


@dataclass
class PreparedTables:
    """A :class:`Tables` in the form the C++ coder takes, cached once per model."""

    tables: Tables
    cdfs: list[list[int]] = field(init=False)  # each with the extra entry (encoder)
    sizes: np.ndarray = field(init=False)  # real size + 1
    flat_cdfs: np.ndarray = field(init=False)  # int32, the real CDFs end to end (decoder)
    cdf_starts: np.ndarray = field(init=False)  # int32, where each begins in flat_cdfs
    cdf_lengths: np.ndarray = field(init=False)  # int32, real size
    value_starts: np.ndarray = field(init=False)  # int32, where each begins in to_value
    lo: np.ndarray = field(init=False)
    hi: np.ndarray = field(init=False)
    escape: np.ndarray = field(init=False)  # the escape symbol's position (last)
    base: np.ndarray = field(init=False)  # start of each table in the flat maps
    to_value: np.ndarray = field(init=False)  # int32, flat: position -> value (escape: 0)
    to_position: np.ndarray = field(init=False)  # flat: value - lo -> position

    def __post_init__(self) -> None:
        t = self.tables
        self.cdfs = [[*cdf, TOTAL + 1] for cdf in t.cdfs]
        self.sizes = np.asarray([len(c) for c in self.cdfs], dtype=np.int64)
        self.flat_cdfs = np.concatenate([np.asarray(c, np.int32) for c in t.cdfs])
        self.cdf_lengths = (self.sizes - 1).astype(np.int32)
        self.cdf_starts = np.concatenate([[0], np.cumsum(self.cdf_lengths)[:-1]]).astype(np.int32)
        self.lo, self.hi = t.lo, t.hi
        self.escape = self.hi - self.lo + 1
        self.base = np.concatenate([[0], np.cumsum(self.escape + 1)[:-1]]).astype(np.int64)
        self.value_starts = self.base.astype(np.int32)
        self.to_value = np.zeros(int((self.escape + 1).sum()), dtype=np.int32)
        self.to_position = np.zeros(self.to_value.size, dtype=np.int64)
        for i, order in enumerate(t.orders):
            b = self.base[i]
            self.to_value[b : b + order.size] = order
            self.to_position[b + order - self.lo[i]] = np.arange(order.size)

    def subset(self, indexes: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Only the tables that ``indexes`` uses: (their ids, remapped indexes).

        Passing every table costs a Python-to-C++ list conversion per entry per call;
        a low-rate image uses a few small tables (encoder).
        """
        used = np.flatnonzero(np.bincount(indexes, minlength=len(self.cdfs)))
        lookup = np.zeros(len(self.cdfs), dtype=np.int32)
        lookup[used] = np.arange(used.size, dtype=np.int32)
        return used.tolist(), lookup[indexes]


def stream_order(indexes: np.ndarray, tables: PreparedTables) -> np.ndarray | None:
    """The order symbols go into the stream (part of the format, version 1): symbols of
    tables with at most 256 symbols first, those of larger tables (scales above ~20, rare)
    after them, each group in its original order. ``None`` when every table is small
    (the order is unchanged)."""
    large = tables.sizes[indexes] > FAST_SIZE
    if not large.any():
        return None
    return np.concatenate([np.flatnonzero(~large), np.flatnonzero(large)])


def encode(symbols: np.ndarray, indexes: np.ndarray, tables: PreparedTables
           ) -> tuple[bytes, np.ndarray]:
    """rANS-code ``symbols`` (int, flat) with table ``indexes``; (stream, escaped values).

    Escaped values are returned in stream order (:func:`stream_order`).
    """
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    indexes = np.asarray(indexes, dtype=np.int64).reshape(-1)
    if symbols.size == 0:
        return b"", np.zeros(0, np.int64)
    order = stream_order(indexes, tables)
    if order is not None:
        symbols, indexes = symbols[order], indexes[order]
    symbols, indexes = _pad(symbols, indexes, tables)
    lo, hi = tables.lo[indexes], tables.hi[indexes]
    outside = (symbols < lo) | (symbols > hi)
    escaped = symbols[outside]
    positions = np.where(outside, tables.escape[indexes],
                         tables.to_position[tables.base[indexes] + np.clip(symbols, lo, hi) - lo])
    used, remapped = tables.subset(indexes)
    stream = ans.RansEncoder().encode_with_indexes(
        positions.astype(np.int32).tolist(), _index_list(remapped, len(used)),
        [tables.cdfs[i] for i in used], tables.sizes[used].tolist(), [0] * len(used))
    return stream, escaped


def decode(stream: bytes, indexes: np.ndarray, tables: PreparedTables,
           escapes: EscapeReader) -> np.ndarray:
    """Decode ``len(indexes)`` values (int32) coded with table ``indexes``; escaped values
    are taken from ``escapes``."""
    indexes = np.ascontiguousarray(np.asarray(indexes).reshape(-1), dtype=np.int32)
    return _decode(stream, indexes, b"", tables, escapes, lambda where: indexes[where])


def decode_scaled(stream: bytes, scales: np.ndarray, selector: TableSelector,
                  tables: PreparedTables, escapes: EscapeReader) -> np.ndarray:
    """:func:`decode` with the table of each value picked from its fixed-point scale
    (float64, see :class:`~kdlic.codec.fixedpoint.TableSelector`) inside the decoder's
    loop: the values ``decode(stream, selector(scales), ...)`` gives, without the
    whole-array passes of selecting first."""
    scales = np.ascontiguousarray(np.asarray(scales).reshape(-1), dtype=np.float64)
    return _decode(stream, scales, selector.lut_bytes, tables, escapes,
                   lambda where: selector.indexes_of(scales[where]))


def _decode(stream: bytes, keys: np.ndarray, lut: bytes, tables: PreparedTables,
            escapes: EscapeReader, tables_of) -> np.ndarray:
    """The C decoder on ``keys`` (table indexes, or scales read through ``lut``); the
    escaped values filled in from ``escapes`` after checking them against the tables
    ``tables_of(elements)`` of their elements."""
    count = keys.size
    if count == 0:
        if stream:
            raise KdlicError("corrupt file: data in a stream that should be empty")
        return np.zeros(0, np.int32)
    # (the encoder pads streams of fewer than MIN_SYMBOLS symbols at their end: the
    # decoder stops before the padding)
    values, escaped = np.empty(count, np.int32), np.empty(count, np.int32)
    n_escapes = _rans.decode(stream, keys, lut, tables.flat_cdfs, tables.cdf_starts,
                             tables.cdf_lengths, tables.value_starts, tables.to_value,
                             FAST_SIZE - 1, values, escaped)
    if n_escapes:
        where = escaped[:n_escapes]
        got = escapes.take(n_escapes)
        table = tables_of(where)
        if ((got >= tables.lo[table]) & (got <= tables.hi[table])).any():
            raise KdlicError("corrupt file: an escaped value lies inside its table's range")
        values[where] = got
    return values


def _index_list(remapped: np.ndarray, n_tables: int) -> bytearray | list[int]:
    """Table indexes for the C++ call: a bytearray (a sequence of ints to pybind11, and
    much cheaper to build than a list) when they fit in a byte."""
    if n_tables <= 256:
        return bytearray(remapped.astype(np.uint8))
    return remapped.tolist()


def _pad(symbols: np.ndarray, indexes: np.ndarray, tables: PreparedTables):
    """At least MIN_SYMBOLS symbols (extra ones: the first table's lowest value)."""
    if symbols.size >= MIN_SYMBOLS:
        return symbols, indexes
    extra = MIN_SYMBOLS - symbols.size
    return (np.concatenate([symbols, np.full(extra, tables.lo[0])]),
            np.concatenate([indexes, np.zeros(extra, np.int64)]))


# ---------------------------------------------------------------------------------------
# Escape stream: signed values as zigzag LEB128 varints


def pack_escapes(values: np.ndarray) -> bytes:
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return b""
    if np.abs(values).max() >= ESCAPE_LIMIT:
        raise ValueError("latent value out of the codable range")
    zigzag = np.where(values >= 0, 2 * values, -2 * values - 1).astype(np.uint64)
    out = bytearray()
    for v in zigzag.tolist():
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


class EscapeReader:
    """Reads the escape stream in order; every read is checked."""

    def __init__(self, data: bytes) -> None:
        raw = np.frombuffer(data, dtype=np.uint8)
        self.values = np.zeros(0, np.int64)
        self.pos = 0
        if raw.size == 0:
            return
        ends = np.flatnonzero(raw < 0x80)
        if ends.size == 0 or ends[-1] != raw.size - 1:
            raise KdlicError("corrupt file: the escape stream ends inside a value")
        starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        lengths = ends - starts + 1
        if (lengths > 4).any():  # 4 varint bytes hold 28 bits > 2 * ESCAPE_LIMIT
            raise KdlicError("corrupt file: an escaped value is too large")
        shifts = 7 * (np.arange(raw.size, dtype=np.int64) - np.repeat(starts, lengths))
        zigzag = np.add.reduceat((raw & 0x7F).astype(np.int64) << shifts, starts)
        self.values = np.where(zigzag % 2 == 0, zigzag // 2, -(zigzag // 2) - 1)
        if (np.abs(self.values) >= ESCAPE_LIMIT).any():
            raise KdlicError("corrupt file: an escaped value is too large")

    def take(self, n: int) -> np.ndarray:
        if self.pos + n > self.values.size:
            raise KdlicError("corrupt file: fewer escaped values than escape symbols")
        out = self.values[self.pos : self.pos + n]
        self.pos += n
        return out

    def finish(self) -> None:
        if self.pos != self.values.size:
            raise KdlicError("corrupt file: unused data in the escape stream")
