"""Bjontegaard delta metrics (BD-rate, BD-PSNR) between two rate-distortion curves.

Two interpolations are offered:

* ``"pchip"`` (default): piecewise cubic Hermite interpolation (PCHIP), integrated
  exactly. This is what the JCT-VC/JVET common-test-conditions spreadsheets and the
  ``bjontegaard`` PyPI package (FAU-LMS) use; it matches the JCTVC-E137 reference
  values to machine precision (see ``tests/test_bd.py``).
* ``"cubic"``: the original VCEG-M33 method, a least-squares 3rd-order polynomial
  fitted through the points and integrated analytically.

Both work on ``log10(rate)``: BD-rate integrates log-rate as a function of quality over
the quality range the two curves share; BD-PSNR integrates quality as a function of
log-rate over the shared log-rate range. The rate unit is irrelevant (bpp, kbit/s) as
long as both curves use the same one; quality is PSNR in dB or any higher-is-better
metric (BD-"PSNR" is then in that metric's units).

Points may come in any order: each curve is sorted by rate. PCHIP needs the abscissa
of its interpolation to strictly increase along the sorted curve: for BD-rate, quality
must strictly increase with rate; for BD-PSNR, rates must be distinct. Curves that
violate this (non-monotonic quality, duplicate rates) raise :class:`KdlicError` rather
than being silently reordered; the ``"cubic"`` least-squares fit accepts them as long
as the abscissa has 4 distinct values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

from kdlic.errors import KdlicError

METHODS = ("pchip", "cubic")
_MIN_POINTS = {"pchip": 2, "cubic": 4}


def bd_rate(
    rate_ref: Sequence[float],
    psnr_ref: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Average rate difference of ``test`` against ``ref`` at equal quality, in percent.

    Negative means the test codec needs fewer bits for the same quality (-10.0: 10 %
    fewer). ``log10(rate)`` is interpolated as a function of quality (``method``:
    ``"pchip"`` or ``"cubic"``, see the module docstring) and averaged over the quality
    range both curves cover.

    Raises:
        KdlicError: too few points, non-finite values, non-positive rates, an unknown
            method, a curve PCHIP cannot interpolate, or quality ranges that do not
            overlap.
    """
    q_ref, lr_ref = _curve(rate_ref, psnr_ref, method, "reference")
    q_test, lr_test = _curve(rate_test, psnr_test, method, "test")
    for quality, name in ((q_ref, "reference"), (q_test, "test")):
        _check_abscissa(quality, method, f"{name} curve: quality must strictly increase with rate")
    lo, hi = _overlap(
        q_ref, q_test, "quality ranges of the curves do not overlap", lambda v: f"{v:.4g}"
    )
    avg = (
        _integral(q_test, lr_test, lo, hi, method) - _integral(q_ref, lr_ref, lo, hi, method)
    ) / (hi - lo)
    return float((10.0**avg - 1.0) * 100.0)


def bd_psnr(
    rate_ref: Sequence[float],
    psnr_ref: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Average quality difference of ``test`` against ``ref`` at equal rate, in dB.

    Positive means the test codec gives better quality for the same rate; the unit is
    that of the quality values (dB for PSNR). Quality is interpolated as a function of
    ``log10(rate)`` (``method``: ``"pchip"`` or ``"cubic"``) and averaged over the
    log-rate range both curves cover. Swapping the curves negates the result exactly.

    Raises:
        KdlicError: too few points, non-finite values, non-positive rates, an unknown
            method, duplicate rates with PCHIP, or rate ranges that do not overlap.
    """
    q_ref, lr_ref = _curve(rate_ref, psnr_ref, method, "reference")
    q_test, lr_test = _curve(rate_test, psnr_test, method, "test")
    for log_rate, name in ((lr_ref, "reference"), (lr_test, "test")):
        _check_abscissa(log_rate, method, f"{name} curve: rates must be distinct")
    lo, hi = _overlap(
        lr_ref, lr_test, "rate ranges of the curves do not overlap", lambda v: f"{10.0**v:.4g}"
    )
    avg_ref = _integral(lr_ref, q_ref, lo, hi, method)
    avg_test = _integral(lr_test, q_test, lo, hi, method)
    return float((avg_test - avg_ref) / (hi - lo))


def _curve(
    rate: Sequence[float], quality: Sequence[float], method: str, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve; return ``(quality, log10(rate))`` sorted by rate."""
    if method not in METHODS:
        raise KdlicError(f"unknown BD interpolation {method!r}; choose from {', '.join(METHODS)}")
    r = np.asarray(rate, dtype=float)
    q = np.asarray(quality, dtype=float)
    if r.ndim != 1 or q.shape != r.shape:
        raise KdlicError(
            f"{name} curve: rates and qualities must be 1-D lists of the same length "
            f"(got {r.shape} and {q.shape})"
        )
    if len(r) < _MIN_POINTS[method]:
        raise KdlicError(
            f"{name} curve: {method} interpolation needs at least {_MIN_POINTS[method]} "
            f"points, got {len(r)}"
        )
    if not (np.isfinite(r).all() and np.isfinite(q).all()):
        raise KdlicError(f"{name} curve: rates and qualities must be finite numbers")
    if (r <= 0).any():
        raise KdlicError(f"{name} curve: rates must be positive, got {r.min():g}")
    order = np.argsort(r, kind="stable")
    return q[order], np.log10(r[order])


def _check_abscissa(x: np.ndarray, method: str, message: str) -> None:
    """Check that ``x`` can serve as the interpolation abscissa for ``method``."""
    if method == "pchip" and not (np.diff(x) > 0).all():
        raise KdlicError(f"{message} for pchip interpolation (got {np.round(x, 4).tolist()})")
    if method == "cubic" and len(np.unique(x)) < _MIN_POINTS["cubic"]:
        raise KdlicError(f"{message}: cubic interpolation needs 4 distinct values")


def _overlap(
    a: np.ndarray, b: np.ndarray, message: str, fmt: Callable[[float], str]
) -> tuple[float, float]:
    """The common interval of the ranges of ``a`` and ``b``; KdlicError if empty."""
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if lo >= hi:
        raise KdlicError(
            f"{message}: reference {fmt(a.min())}..{fmt(a.max())}, "
            f"test {fmt(b.min())}..{fmt(b.max())}"
        )
    return float(lo), float(hi)


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Integral over ``[lo, hi]`` of the curve through ``(x, y)``, interpolated by ``method``."""
    if method == "pchip":
        return float(PchipInterpolator(x, y).integrate(lo, hi))
    antiderivative = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))


def point_gaps(
    rate: float, psnr: float, rate_ref: Sequence[float], psnr_ref: Sequence[float]
) -> tuple[float, float]:
    """One RD point against a reference curve: (rate difference %, PSNR difference dB).

    The rate difference is ``rate / rate_ref(psnr) - 1`` at the point's quality and the
    PSNR difference is ``psnr - psnr_ref(rate)`` at its rate, the reference being
    PCHIP-interpolated (log10 rate) as in :func:`bd_rate`. A one-point "curve" has no
    range to average over; this is what BD-rate reduces to at a single point.
    Either is NaN when the point lies outside the reference's range on that axis.
    """
    q_ref, lr_ref = _curve(rate_ref, psnr_ref, "pchip", "reference")
    _check_abscissa(q_ref, "pchip", "reference curve: quality must strictly increase with rate")
    lr = np.log10(rate)
    dr = (
        10.0 ** (lr - PchipInterpolator(q_ref, lr_ref)(psnr)) - 1.0
        if q_ref.min() <= psnr <= q_ref.max() else np.nan
    )
    dq = psnr - PchipInterpolator(lr_ref, q_ref)(lr) if lr_ref.min() <= lr <= lr_ref.max() \
        else np.nan
    return float(dr * 100.0), float(dq)
