"""``kdlic bdrate``: Bjontegaard deltas between two CompressAI-format result files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdlic.errors import KdlicError
from kdlic.evaluation.bd import METHODS, bd_psnr, bd_rate
from kdlic.utils.files import from_jsonable

QUALITY_METRICS = ("psnr-rgb", "ms-ssim-rgb")
INTERPOLATION = {
    "pchip": "piecewise cubic Hermite (PCHIP, JCT-VC/JVET CTC)",
    "cubic": "3rd-order polynomial fit (VCEG-M33)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bdrate",
        help="BD-rate and BD-PSNR of TEST against REF (CompressAI result JSONs)",
        description="Bjontegaard deltas of the TEST curve against the REF curve, read from "
        "two CompressAI-format result files (results.bpp and results.<metric>, e.g. from "
        "`kdlic baselines`). BD-rate (%, negative = TEST needs fewer bits for the same "
        "quality) interpolates log10(bpp) over quality; BD-quality (dB for PSNR, positive "
        "= TEST is better) interpolates quality over log10(bpp).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("ref", type=Path, metavar="REF.json", help="reference (anchor) results")
    p.add_argument("test", type=Path, metavar="TEST.json", help="results to compare")
    p.add_argument("--metric", choices=QUALITY_METRICS, default="psnr-rgb",
                   help="quality metric")
    p.add_argument("--method", choices=METHODS, default="pchip", help="interpolation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ref = read_curve(args.ref, args.metric)
    test = read_curve(args.test, args.metric)
    try:
        rate = bd_rate(*ref, *test, method=args.method)
        quality = bd_psnr(*ref, *test, method=args.method)
    except KdlicError as exc:
        raise KdlicError(f"{args.test} vs {args.ref} ({args.metric}): {exc}") from exc
    unit = " dB" if args.metric.startswith("psnr") else ""
    print(f"{args.test} vs {args.ref} ({args.metric}, {INTERPOLATION[args.method]} "
          "on log10(bpp))")
    print(f"BD-rate: {rate:+.2f} %")
    print(f"BD-{args.metric}: {quality:+.4f}{unit}")
    return 0


def read_curve(path: Path, metric: str) -> tuple[list[float], list[float]]:
    """``(bpp, quality)`` lists from a CompressAI-format JSON file; KdlicError if unusable.

    ``"inf"`` strings (as written by ``kdlic baselines``) become ``float("inf")``, which
    the BD functions then reject as non-finite.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KdlicError(f"cannot read results {path}: {exc}") from exc
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise KdlicError(f"{path}: no \"results\" object (not a CompressAI result file?)")
    curve = []
    for key in ("bpp", metric):
        values = results.get(key)
        if not isinstance(values, list) or any(
            isinstance(v, bool) or not isinstance(from_jsonable(v), int | float) for v in values
        ):
            raise KdlicError(f"{path}: results.{key} must be a list of numbers")
        curve.append([float(from_jsonable(v)) for v in values])
    return curve[0], curve[1]
