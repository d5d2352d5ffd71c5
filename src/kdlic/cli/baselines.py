"""``kdlic baselines``: rate-distortion sweeps of classic codecs (JPEG, WebP, ...) via Pillow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kdlic.data.images import IMAGE_EXTENSIONS, collect_images
from kdlic.errors import KdlicError
from kdlic.evaluation.classic import CODECS, available_codecs, parse_qualities, run_baselines


def register(subparsers: argparse._SubParsersAction) -> None:
    sweeps = "; ".join(
        f"{c.name}: {c.setting} {','.join(f'{v:g}' for v in c.defaults)}" for c in CODECS.values()
    )
    p = subparsers.add_parser(
        "baselines",
        help="RD points of classic codecs (JPEG, WebP, JPEG 2000, AVIF, JPEG XL) on real "
        "bitstreams",
        description="Encode every image with each codec at each sweep setting, in memory, "
        "and measure bpp (8 * bytes / pixels), RGB PSNR, MS-SSIM and encode/decode time. "
        "Writes OUT_DIR/<codec>.json in CompressAI's results format (means over images, "
        "plus per-image values); OUT_DIR/<codec>.partial.json holds the settings done so "
        "far while a codec runs. An infinite PSNR (lossless) is written as \"inf\". "
        f"Default sweeps: {sweeps}.",
    )
    p.add_argument(
        "images", nargs="+", metavar="IMAGES",
        help=f"image files or folders (searched recursively for {' '.join(IMAGE_EXTENSIONS)})",
    )
    p.add_argument(
        "--codecs", default=",".join(available_codecs()),
        help=f"comma-separated codecs among {', '.join(CODECS)} (default: every lossy "
        "codec this Pillow build supports, here %(default)s)",
    )
    p.add_argument(
        "--qualities", action="append", default=[], metavar="CODEC=V1,V2,...",
        help="override one codec's sweep, e.g. jpeg=10,30,50,70,90 (repeatable); for "
        "jpeg2000 the values are compression ratios (bpp ~ 24/ratio)",
    )
    p.add_argument("-o", "--out-dir", type=Path, default=Path("results/baselines"),
                   help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    codecs = [c.strip().lower() for c in args.codecs.split(",") if c.strip()]
    if not codecs:
        raise KdlicError("--codecs is empty")
    images = collect_images(args.images)
    results = run_baselines(images, codecs, parse_qualities(args.qualities), args.out_dir,
                            progress=not args.no_progress)
    for name, doc in results.items():
        print(f"{name}: {len(images)} images -> {args.out_dir / f'{name}.json'}")
        print(_table(doc["results"]))
    return 0


def _table(results: dict[str, list[Any]]) -> str:
    """The mean RD points of one codec as an aligned text table."""
    rows = ["  setting      bpp   PSNR dB  MS-SSIM  enc s   dec s"]
    for i, value in enumerate(results["quality"]):
        ms_ssim = results["ms-ssim-rgb"][i]
        rows.append(
            f"  {value:>7g} {results['bpp'][i]:>8.4f} {results['psnr-rgb'][i]:>9.3f} "
            f"{'n/a' if ms_ssim is None else f'{ms_ssim:.4f}':>8} "
            f"{results['encoding_time'][i]:>6.3f} {results['decoding_time'][i]:>7.3f}"
        )
    return "\n".join(rows)
