"""Entropy-coding tables that are bit-identical on every machine.

The rANS coder needs integer frequency tables, and encoder and decoder must use
*exactly* the same ones: one frequency off and the rest of the stream decodes to
garbage. CompressAI builds its tables with ``torch.erfc``/``sigmoid``/``softplus``
on whatever device the model lives on; those functions have vectorised and scalar
code paths (chosen by CPU features, tensor length and thread chunking) and other
implementations on GPU, which may differ in the last bit, and a last-bit difference
can move a quantised frequency.

Here the tables are computed from the model's fp32 parameters in float64 NumPy
using only ``+ - * /``, comparisons, ``floor``/``rint``/``ldexp`` (all exact or
correctly rounded under IEEE 754, hence identical on every conforming platform;
NumPy never fuses them into FMAs) and then quantised with integer arithmetic. The
transcendental functions (exp, log1p, tanh, erfc) are implemented below from those
operations, so no libm or SIMD library is involved. The scale table is a list of
literals, not ``exp(linspace(...))``.

A table for a set of symbol values ``lo..hi`` has ``hi - lo + 2`` symbols: the values
and an *escape* symbol (last) that stands for any value outside ``lo..hi``; the
escaped values themselves travel in a separate stream (see :mod:`kdlic.codec.rans`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PRECISION = 16  # frequencies sum to 2**16 (CompressAI's rANS precision)
TOTAL = 1 << PRECISION

# CompressAI's scale table, exp(linspace(log 0.11, log 256, 64)) in fp32, as literals.
SCALE_TABLE = (
    0.10999999940395355, 0.12440409511327744, 0.14069437980651855, 0.15911780297756195,
    0.1799536943435669, 0.20351797342300415, 0.2301679253578186, 0.2603076100349426,
    0.294393926858902, 0.33294373750686646, 0.3765415549278259, 0.4258483052253723,
    0.48161160945892334, 0.5446768999099731, 0.6160004138946533, 0.6966634392738342,
    0.7878890037536621, 0.8910602331161499, 1.0077413320541382, 1.13970148563385,
    1.2889412641525269, 1.4577234983444214, 1.6486071348190308, 1.8644862174987793,
    2.1086339950561523, 2.384752035140991, 2.6970267295837402, 3.0501928329467773,
    3.4496042728424072, 3.9013173580169678, 4.412181377410889, 4.989940643310547,
    5.6433539390563965, 6.382330894470215, 7.218074798583984, 8.163254737854004,
    9.232203483581543, 10.441128730773926, 11.808356285095215, 13.35461711883545,
    15.103355407714844, 17.081085205078125, 19.317794799804688, 21.847389221191406,
    24.708223342895508, 27.943681716918945, 31.60280418395996, 35.7410774230957,
    40.42123794555664, 45.71425247192383, 51.70037841796875, 58.4703369140625,
    66.1268310546875, 74.7859115600586, 84.5788345336914, 95.65414428710938,
    108.17973327636719, 122.34544372558594, 138.3661651611328, 156.4847412109375,
    176.97579956054688, 200.15017700195312, 226.3590545654297, 256.0,
)
# Gaussian tables cover +-TAIL_SIGMAS standard deviations (CompressAI: tail mass 1e-9).
TAIL_SIGMAS = 6.1094102048693975
MAX_TABLE_SYMBOLS = TOTAL // 4  # every symbol needs a frequency >= 1


@dataclass(frozen=True)
class Tables:
    """A set of coding tables: table ``i`` codes values ``lo[i]..hi[i]`` plus an escape.

    Within a table the symbols are ordered by decreasing frequency (ties: lower value
    first), the escape last: the rANS symbol is a value's *position* in that order.
    (CompressAI's decoder finds a symbol by a linear scan of the CDF from position 0,
    so the most probable symbols are found first.) ``orders[i]`` lists the values by
    position; ``cdfs[i]`` is the cumulative frequency list over positions (``0 ..
    2**16``, length ``hi - lo + 3``) as plain Python ints, for CompressAI's binding.
    """

    cdfs: tuple[tuple[int, ...], ...]
    orders: tuple[np.ndarray, ...]  # int64 values by position (escape not included)
    lo: np.ndarray  # int64 (T,)
    hi: np.ndarray  # int64 (T,)

    def __len__(self) -> int:
        return len(self.cdfs)

    def digest(self) -> str:
        """SHA-256 of the tables: equal on every platform, or the format is broken."""
        h = hashlib.sha256()
        for cdf, order, lo, hi in zip(self.cdfs, self.orders, self.lo.tolist(),
                                      self.hi.tolist(), strict=True):
            h.update(np.asarray([lo, hi, *cdf, *order.tolist()], dtype="<i8").tobytes())
        return h.hexdigest()


# ---------------------------------------------------------------------------------------
# Deterministic elementary functions (float64 arrays, basic IEEE operations only)

_LN2_HI = 6.93147180369123816490e-01  # high bits of ln 2 (trailing zeros: k*_LN2_HI exact)
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_EXP_TAYLOR = tuple(1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64)))
                    for k in range(14, -1, -1))  # 1/14!, ..., 1/1!, 1/0!


def det_exp(x: np.ndarray) -> np.ndarray:
    """exp(x), relative error ~1e-16, from + - * and ldexp only."""
    x = np.clip(np.asarray(x, dtype=np.float64), -745.0, 709.0)
    k = np.rint(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= 0.347
    p = np.full_like(r, _EXP_TAYLOR[0])
    for c in _EXP_TAYLOR[1:]:
        p = p * r + c
    return np.ldexp(p, k.astype(np.int64))


def det_log1p(u: np.ndarray) -> np.ndarray:
    """log(1 + u) for u in [0, 1]: 2 atanh(u / (2 + u)), a series in t**2 <= 1/9."""
    u = np.asarray(u, dtype=np.float64)
    t = u / (2.0 + u)
    t2 = t * t
    s = np.full_like(t, 1.0 / 41.0)
    for k in range(19, -1, -1):
        s = s * t2 + 1.0 / (2 * k + 1)
    return 2.0 * t * s


def det_softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0) + det_log1p(det_exp(-np.abs(x)))


def det_tanh(x: np.ndarray) -> np.ndarray:
    e = det_exp(-2.0 * np.abs(x))
    return np.sign(x) * ((1.0 - e) / (1.0 + e))


def det_sigmoid(x: np.ndarray) -> np.ndarray:
    e = det_exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_ERFC = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806,
         0.09678418, 0.37409196, 1.00002368, -1.26551223)


def det_erfc(x: np.ndarray) -> np.ndarray:
    """erfc(x), relative error < 1.2e-7 (Numerical Recipes' Chebyshev fit), any x."""
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    p = np.full_like(t, _ERFC[0])
    for c in _ERFC[1:]:
        p = p * t + c
    ans = t * det_exp(-z * z + p)
    return np.where(x >= 0, ans, 2.0 - ans)


def det_normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * det_erfc(x * -0.7071067811865476)


# ---------------------------------------------------------------------------------------
# Quantisation of probabilities to frequencies (integer arithmetic after one rounding)


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Integer frequencies >= 1 summing to 2**16, close to ``pmf * 2**16``.

    Round each probability (half up), raise zeros to 1, then remove the surplus one
    unit at a time from the largest frequencies (ties: lowest symbol) or give the
    deficit to the largest. Everything after the first rounding is integer.
    """
    n = pmf.size
    if not 2 <= n <= MAX_TABLE_SYMBOLS:
        raise ValueError(f"a coding table needs 2..{MAX_TABLE_SYMBOLS} symbols, not {n}")
    pmf = np.where(np.isfinite(pmf), np.maximum(pmf, 0.0), 0.0)
    freq = np.maximum(np.floor(pmf * float(TOTAL) + 0.5), 1.0).astype(np.int64)
    freq = np.minimum(freq, TOTAL)
    surplus = int(freq.sum()) - TOTAL
    while surplus > 0:
        order = np.lexsort((np.arange(n), -freq))  # largest first, then lowest index
        k = min(surplus, int((freq > 1).sum()))
        freq[order[:k]] -= 1
        surplus -= k
    if surplus < 0:
        freq[int(np.argmax(freq))] -= surplus
    assert freq.sum() == TOTAL and (freq >= 1).all()
    return freq


def _tables(pmfs: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> Tables:
    """Tables from probabilities of ``lo..hi`` followed by the escape mass."""
    cdfs, orders = [], []
    for pmf, low in zip(pmfs, lo.tolist(), strict=True):
        freq = quantize_pmf(pmf)
        values = freq[:-1]
        order = np.lexsort((np.arange(values.size), -values))  # most frequent first
        cdf = np.zeros(freq.size + 1, dtype=np.int64)
        np.cumsum(np.concatenate([values[order], freq[-1:]]), out=cdf[1:])
        cdfs.append(tuple(cdf.tolist()))
        orders.append(order.astype(np.int64) + low)
    return Tables(tuple(cdfs), tuple(orders), np.asarray(lo, dtype=np.int64),
                  np.asarray(hi, dtype=np.int64))


@lru_cache(maxsize=1)
def gaussian_tables() -> Tables:
    """Zero-mean Gaussian tables for every entry of :data:`SCALE_TABLE`.

    Table ``i`` codes integers ``-c..c`` with ``c = ceil(TAIL_SIGMAS * scale_i)``; the
    escape symbol gets the mass outside ``[-c - 1/2, c + 1/2]``.
    """
    pmfs, lo, hi = [], [], []
    for scale in SCALE_TABLE:
        c = int(np.ceil(TAIL_SIGMAS * scale))
        k = np.abs(np.arange(-c, c + 1, dtype=np.float64))
        upper = det_normal_cdf((0.5 - k) / scale)
        lower = det_normal_cdf((-0.5 - k) / scale)
        tail = 2.0 * det_normal_cdf(np.asarray([(-0.5 - c) / scale]))
        pmfs.append(np.concatenate([upper - lower, tail]))
        lo.append(-c)
        hi.append(c)
    return _tables(pmfs, np.asarray(lo), np.asarray(hi))


def _eb_logits(x: np.ndarray, matrices, biases, factors) -> np.ndarray:
    """CompressAI's EntropyBottleneck._logits_cumulative in deterministic float64.

    ``x`` is (C, 1, L). The per-channel matrix products are written out as sums in a
    fixed order (no BLAS, so no FMA and no blocking that could change the rounding).
    """
    logits = x
    for i, matrix in enumerate(matrices):
        m = det_softplus(matrix)  # (C, out, in)
        out = m[:, :, 0:1] * logits[:, 0:1, :]
        for j in range(1, m.shape[2]):
            out = out + m[:, :, j : j + 1] * logits[:, j : j + 1, :]
        logits = out + biases[i]
        if i < len(factors):
            logits = logits + det_tanh(factors[i]) * det_tanh(logits)
    return logits


def bottleneck_tables(entropy_bottleneck) -> tuple[Tables, np.ndarray]:
    """Per-channel tables of a CompressAI ``EntropyBottleneck``, and its medians.

    Same ranges as CompressAI's ``update()`` (from the learned quantiles), computed
    from the fp32 parameters in deterministic float64. Returns the tables (one per
    channel) and the medians (float64, exactly the fp32 parameter values).
    """

    def arr(p) -> np.ndarray:
        return p.detach().float().cpu().numpy().astype(np.float64)

    quantiles = arr(entropy_bottleneck.quantiles)[:, 0, :]  # (C, 3)
    matrices = [arr(m) for m in entropy_bottleneck.matrices]
    biases = [arr(b) for b in entropy_bottleneck.biases]
    factors = [arr(f) for f in entropy_bottleneck.factors]
    medians = quantiles[:, 1]
    minima = np.maximum(np.ceil(medians - quantiles[:, 0]), 0).astype(np.int64)
    maxima = np.maximum(np.ceil(quantiles[:, 2] - medians), 0).astype(np.int64)
    lengths = minima + maxima + 1
    if not np.isfinite(quantiles).all() or lengths.max() >= MAX_TABLE_SYMBOLS:
        raise ValueError("the entropy bottleneck's quantiles are not usable for coding")
    width = int(lengths.max())
    samples = (medians - minima)[:, None, None] + np.arange(width, dtype=np.float64)
    lower = _eb_logits(samples - 0.5, matrices, biases, factors)[:, 0, :]
    upper = _eb_logits(samples + 0.5, matrices, biases, factors)[:, 0, :]
    pmf = det_sigmoid(upper) - det_sigmoid(lower)
    pmfs = []
    for c in range(len(medians)):
        n = int(lengths[c])
        tail = det_sigmoid(lower[c, :1]) + det_sigmoid(-upper[c, n - 1 : n])
        pmfs.append(np.concatenate([pmf[c, :n], tail]))
    return _tables(pmfs, -minima, maxima), medians
