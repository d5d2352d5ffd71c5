"""Bjontegaard metrics: published reference values, an independent VCEG-M33 formula,
symmetry and synthetic curves with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdlic.errors import KdlicError
from kdlic.evaluation.bd import bd_psnr, bd_rate

# JCTVC-E137 anchor/test pairs (rate kbit/s, PSNR dB) with the BD-rates of the JCT-VC
# PCHIP spreadsheet, as used by Netflix VMAF's BD-rate tests (given there as fractions).
JCTVC_E137 = [
    (
        [108048.8736, 61279.976, 33905.6656, 18883.6928],
        [43.6471, 40.3953, 37.247, 34.2911],
        [108061.2784, 61299.9936, 33928.7472, 18910.912],
        [43.6768, 40.4232, 37.2761, 34.3147],
        -0.465215420752807,
    ),
    (
        [40433.8848, 7622.7456, 2394.488, 1017.6184],
        [37.5761, 35.3756, 33.8977, 32.0603],
        [40370.12, 7587.0024, 2390.0944, 1017.0984],
        [37.5982, 35.4025, 33.9194, 32.0822],
        -1.8779823450567612,
    ),
]

# FAU-LMS `bjontegaard` README example (libx265 presets, rate kbit/s, PSNR dB).
RATE_A = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR_A = [40.037, 38.615, 36.845, 34.851]
RATE_B = [9787.80, 4469.00, 2451.52, 1356.24]
PSNR_B = [40.121, 38.651, 36.970, 34.987]


def vceg_m33(r1, p1, r2, p2, mode: str) -> float:
    """Literal VCEG-M33 (natural log, cubic polyfit), independent of kdlic's code."""
    lr1, lr2 = np.log(r1), np.log(r2)
    if mode == "rate":
        f1, f2 = np.polyfit(p1, lr1, 3), np.polyfit(p2, lr2, 3)
        lo, hi = max(min(p1), min(p2)), min(max(p1), max(p2))
    else:
        f1, f2 = np.polyfit(lr1, p1, 3), np.polyfit(lr2, p2, 3)
        lo, hi = max(min(lr1), min(lr2)), min(max(lr1), max(lr2))
    i1, i2 = np.polyint(f1), np.polyint(f2)
    int1 = np.polyval(i1, hi) - np.polyval(i1, lo)
    int2 = np.polyval(i2, hi) - np.polyval(i2, lo)
    avg = (int2 - int1) / (hi - lo)
    return (math.exp(avg) - 1) * 100 if mode == "rate" else avg


@pytest.mark.parametrize("r1, p1, r2, p2, expected", JCTVC_E137)
def test_pchip_matches_jctvc_spreadsheet(r1, p1, r2, p2, expected):
    assert bd_rate(r1, p1, r2, p2) == pytest.approx(expected, abs=1e-9)


def test_cubic_matches_vceg_m33_formula():
    assert bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B, method="cubic") == pytest.approx(
        vceg_m33(RATE_A, PSNR_A, RATE_B, PSNR_B, "rate"), rel=1e-9
    )
    assert bd_psnr(RATE_A, PSNR_A, RATE_B, PSNR_B, method="cubic") == pytest.approx(
        vceg_m33(RATE_A, PSNR_A, RATE_B, PSNR_B, "psnr"), rel=1e-9
    )


def test_pchip_and_cubic_agree_on_smooth_curves():
    # On a well-behaved 4-point curve both interpolations give nearly the same answer.
    pchip = bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B)
    cubic = bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B, method="cubic")
    assert pchip < 0 and cubic < 0
    assert pchip == pytest.approx(cubic, abs=0.5)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_curve_against_itself_is_zero(method):
    assert bd_rate(RATE_A, PSNR_A, RATE_A, PSNR_A, method=method) == pytest.approx(0, abs=1e-12)
    assert bd_psnr(RATE_A, PSNR_A, RATE_A, PSNR_A, method=method) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_swapping_curves_flips_sign(method):
    forward = bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B, method=method)
    backward = bd_rate(RATE_B, PSNR_B, RATE_A, PSNR_A, method=method)
    # Exactly: (1 + f/100) * (1 + b/100) == 1, so b is -f to first order.
    assert (1 + forward / 100) * (1 + backward / 100) == pytest.approx(1.0, rel=1e-12)
    assert backward == pytest.approx(-forward, rel=0.05)
    assert bd_psnr(RATE_B, PSNR_B, RATE_A, PSNR_A, method=method) == pytest.approx(
        -bd_psnr(RATE_A, PSNR_A, RATE_B, PSNR_B, method=method), rel=1e-12
    )


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_synthetic_known_answers(method):
    rates = [0.12, 0.25, 0.5, 0.9, 1.6]
    psnr = [27.1, 29.8, 32.4, 34.9, 37.2]
    scaled = [0.9 * r for r in rates]
    assert bd_rate(rates, psnr, scaled, psnr, method=method) == pytest.approx(-10.0, abs=1e-9)
    better = [p + 1.0 for p in psnr]
    assert bd_psnr(rates, psnr, rates, better, method=method) == pytest.approx(1.0, abs=1e-9)


def test_unsorted_points_give_the_same_result():
    order = [2, 0, 3, 1]
    shuffled = ([RATE_A[i] for i in order], [PSNR_A[i] for i in order])
    assert bd_rate(*shuffled, RATE_B, PSNR_B) == pytest.approx(
        bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B), rel=1e-12
    )
    assert bd_psnr(*shuffled, RATE_B, PSNR_B) == pytest.approx(
        bd_psnr(RATE_A, PSNR_A, RATE_B, PSNR_B), rel=1e-12
    )


def test_two_points_are_enough_for_pchip():
    assert bd_rate([0.2, 1.0], [28.0, 34.0], [0.18, 0.9], [28.0, 34.0]) == pytest.approx(-10.0)


def test_non_overlapping_quality_raises():
    with pytest.raises(KdlicError, match="quality ranges .* do not overlap"):
        bd_rate(RATE_A, PSNR_A, RATE_A, [p + 10 for p in PSNR_A])


def test_non_overlapping_rates_raise():
    with pytest.raises(KdlicError, match="rate ranges .* do not overlap"):
        bd_psnr(RATE_A, PSNR_A, [r * 100 for r in RATE_A], PSNR_A)


@pytest.mark.parametrize(
    "rates, psnr, method, match",
    [
        ([1.0], [30.0], "pchip", "at least 2 points"),
        ([0.1, 0.2, 0.4], [28.0, 30.0, 32.0], "cubic", "at least 4 points"),
        ([0.1, 0.0, 0.4, 0.8], [28.0, 30.0, 32.0, 34.0], "pchip", "positive"),
        ([0.1, -0.2, 0.4, 0.8], [28.0, 30.0, 32.0, 34.0], "pchip", "positive"),
        ([0.1, 0.2, 0.4, 0.8], [28.0, float("nan"), 32.0, 34.0], "pchip", "finite"),
        ([0.1, 0.2, 0.4, 0.8], [28.0, 30.0, float("inf"), 34.0], "pchip", "finite"),
        ([0.1, 0.2, 0.4], [28.0, 30.0, 32.0, 34.0], "pchip", "same length"),
        ([0.1, 0.2, 0.4, 0.8], [28.0, 30.0, 32.0, 34.0], "akima", "unknown BD interpolation"),
    ],
)
def test_invalid_curves_raise(rates, psnr, method, match):
    good = ([0.1, 0.2, 0.4, 0.8], [28.0, 30.0, 32.0, 34.0])
    for fn in (bd_rate, bd_psnr):
        with pytest.raises(KdlicError, match=match):
            fn(*good, rates, psnr, method=method)
        with pytest.raises(KdlicError, match=match):
            fn(rates, psnr, *good, method=method)


def test_non_monotonic_quality_needs_cubic_for_bd_rate():
    rates, psnr = [0.1, 0.2, 0.4, 0.8, 1.6], [28.0, 31.0, 30.5, 34.0, 36.0]
    ref = ([0.1, 0.2, 0.4, 0.8, 1.6], [28.0, 30.0, 32.0, 34.0, 36.0])
    with pytest.raises(KdlicError, match="quality must strictly increase with rate"):
        bd_rate(*ref, rates, psnr)
    assert math.isfinite(bd_rate(*ref, rates, psnr, method="cubic"))
    # BD-PSNR interpolates quality over rate: a dip in quality is fine there.
    assert math.isfinite(bd_psnr(*ref, rates, psnr))


def test_duplicate_rates_raise_for_bd_psnr_pchip():
    with pytest.raises(KdlicError, match="rates must be distinct"):
        bd_psnr([0.1, 0.2, 0.4], [28.0, 30.0, 32.0], [0.1, 0.2, 0.2], [28.0, 30.0, 31.0])


def test_point_gaps_against_a_curve():
    import math

    from kdlic.evaluation.bd import point_gaps
    from kdlic.evaluation.reference import COMPRESSAI_HYPERPRIOR as ref

    # A point on the curve has no gap; 10% more rate at the same PSNR is +10%.
    dr, dq = point_gaps(ref["bpp"][3], ref["psnr-rgb"][3], ref["bpp"], ref["psnr-rgb"])
    assert abs(dr) < 1e-9 and abs(dq) < 1e-9
    dr, _ = point_gaps(ref["bpp"][3] * 1.1, ref["psnr-rgb"][3], ref["bpp"], ref["psnr-rgb"])
    assert abs(dr - 10.0) < 1e-9
    dr, dq = point_gaps(0.4, 20.0, ref["bpp"], ref["psnr-rgb"])  # PSNR below the curve's range
    assert math.isnan(dr) and dq < -9
