"""``kdlic evaluate``: real-bitstream RD evaluation of models on an image folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from kdlic.cli.common import quiet_logging, shorten
from kdlic.codec.format import MAX_PIXELS
from kdlic.data.images import find_images
from kdlic.evaluation.evaluate import evaluate_models
from kdlic.utils.files import write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="really compress/decompress images with models; bpp, PSNR, MS-SSIM, times",
        description="Evaluate one or more models (checkpoint paths, zoo names or "
        "compressai:ARCH:QUALITY) on an image folder with real bitstreams. Writes "
        "CompressAI-format JSON: results[metric] has one entry per model, in order; "
        "models[i].per_image has per-image figures.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint, zoo name or "
                   "compressai:bmshj2018-hyperprior:Q")
    p.add_argument("--images", "-i", default="../shared/data/kodak",
                   help="image folder (searched recursively) or one image")
    p.add_argument("--output", "-o", help="results JSON (default: print only)")
    p.add_argument("--name", help="curve name in the JSON (default: first model's name)")
    p.add_argument("--description", default="kdlic real-bitstream evaluation")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's, one per core)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Files Pillow refuses as decompression bombs, or declaring more pixels than the
    # codec takes, are skipped and counted, like unreadable ones, before any is decoded.
    images = find_images(args.images, "test", max_pixels=MAX_PIXELS)
    name = args.name or Path(args.models[0]).stem
    out = evaluate_models(args.models, images, name, args.description, args.device,
                          progress=not args.no_progress)
    for line in table(out):
        print(line)
    if args.output:
        write_json(args.output, out)
        print(f"wrote {args.output}")
    return 0


# Widest model column; longer names keep their start and end (cli.common.shorten).
NAME_WIDTH = 48


def table(out: dict[str, Any]) -> list[str]:
    """The printed summary of an evaluation: one row per model."""
    r = out["results"]
    names = [model["model"] for model in out["models"]]
    width = min(NAME_WIDTH, max([len("model"), *map(len, names)]))
    lines = [f"{'model':{width}s} {'bpp':>7s} {'est.bpp':>7s} {'PSNR':>7s} {'MS-SSIM':>8s} "
             f"{'enc s':>6s} {'dec s':>6s}"]
    for i, name in enumerate(names):
        cells = [fmt(r[key][i], spec) for key, spec in (
            ("bpp", "7.4f"), ("bpp_estimated", "7.4f"), ("psnr-rgb", "7.2f"),
            ("ms-ssim-rgb", "8.4f"), ("encoding_time", "6.3f"), ("decoding_time", "6.3f"))]
        lines.append(f"{shorten(name, width):{width}s} " + " ".join(cells))
    return lines


def fmt(value: float | None, spec: str) -> str:
    """A table cell: ``n/a`` for a metric that was not measurable, right-aligned."""
    width = int(spec.split(".")[0])
    return f"{'n/a':>{width}s}" if value is None else f"{value:{spec}}"
