"""``kdlic evaluate``: real-bitstream RD evaluation of models on an image folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kdlic.cli.common import quiet_logging
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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint, zoo name or "
                   "compressai:bmshj2018-hyperprior:Q")
    p.add_argument("--images", "-i", default="../shared/data/kodak",
                   help="image folder (searched recursively) or one image")
    p.add_argument("--output", "-o", help="results JSON (default: print only)")
    p.add_argument("--name", help="curve name in the JSON (default: first model's name)")
    p.add_argument("--description", default="kdlic real-bitstream evaluation")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
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
    r = out["results"]
    print(f"{'model':40s} {'bpp':>7s} {'est.bpp':>7s} {'PSNR':>7s} {'MS-SSIM':>8s} "
          f"{'enc s':>6s} {'dec s':>6s}")
    for i, model in enumerate(out["models"]):
        ms = r["ms-ssim-rgb"][i]
        print(f"{model['model'][-40:]:40s} {r['bpp'][i]:7.4f} {r['bpp_estimated'][i]:7.4f} "
              f"{r['psnr-rgb'][i]:7.2f} {'n/a' if ms is None else f'{ms:.4f}':>8} "
              f"{r['encoding_time'][i]:6.3f} {r['decoding_time'][i]:6.3f}")
    if args.output:
        write_json(args.output, out)
        print(f"wrote {args.output}")
    return 0
