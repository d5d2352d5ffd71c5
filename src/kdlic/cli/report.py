"""``kdlic report``: tables, plots, crops and an HTML page from result JSONs."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdlic.cli.common import quiet_logging
from kdlic.report import build_report
from kdlic.report.crops import parse_box


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="tables (size, compute, energy, BD-rate), RD and resource plots, crops, HTML",
        description="Read evaluation (`kdlic evaluate`), baselines (`kdlic baselines`, a "
        "folder stands for its JSON files) and profile (`kdlic profile`) JSONs and write "
        "OUT_DIR/index.html, a page that opens from disk, with: tables/{size,compute,"
        "energy,bd_rate}.{md,csv} (absolute values and change against the reference "
        "model), plots/*.png (PSNR and MS-SSIM against bpp; PSNR against parameters, "
        "FLOPs and latency) and crops/*.png (one image coded by each evaluated model).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="result JSON files or folders of them")
    p.add_argument("--output", "-o", type=Path, default=Path("report"), help="output folder")
    p.add_argument("--reference", metavar="MODEL",
                   help="model the changes are computed against (name or spec; default: "
                   "the model with most parameters)")
    p.add_argument("--bd-reference", metavar="CURVE",
                   help="anchor curve of the BD-rate table: a curve name or 'compressai' "
                   "(default: the reference model's curve if it has 2+ points, else "
                   "CompressAI's published hyperprior curve)")
    p.add_argument("--crop-image", default="kodim14",
                   help="image for the reconstruction crops: a path or a name in --images")
    p.add_argument("--crop-box", metavar="X,Y,W,H",
                   help="crop region (default 384,192,256,256: kodim14's faces and lettering)")
    p.add_argument("--no-crops", action="store_true", help="skip the reconstruction crops")
    p.add_argument("--images", default="../shared/data/kodak",
                   help="folder searched for --crop-image")
    p.add_argument("--no-compressai-curve", action="store_true",
                   help="leave CompressAI's published hyperprior curve off the RD plot")
    p.add_argument("--device", default="cpu", help="device for coding the crops")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    out = build_report(
        args.results, args.output, reference=args.reference,
        crop_image=None if args.no_crops else args.crop_image, images=args.images,
        compressai_curve=not args.no_compressai_curve, crop_box=parse_box(args.crop_box),
        bd_reference=args.bd_reference, device=args.device, progress=not args.no_progress,
    )
    for table in out["tables"].values():
        print(f"wrote {table[0]} and {table[1].name}")
    print(f"wrote {len(out['plots'])} plots in {args.output / 'plots'}")
    if out["crops"]:
        done = [c for c in out["crops"]["crops"] if c["file"]]
        print(f"wrote {len(done) + 1} crops in {args.output / 'crops'}")
    for note in out["notes"]:
        print(f"note: {note}")
    print(f"reference model: {out['reference']}; BD anchor: {out['bd_reference']}")
    print(f"open {out['index']}")
    return 0
