"""``kdlic export``: a model's codec as ONNX graphs and entropy tables (docs/format.md)."""

from __future__ import annotations

import argparse

from kdlic.cli.common import quiet_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="write a model's codec as ONNX graphs (encoder, exact h_s, decoder)",
        description="Write MODEL's transforms as ONNX graphs with dynamic image sizes "
        "(analysis: g_a and h_a; hyper: the exact fixed-point h_s; synthesis: g_s) and its "
        "entropy tables to the folder -o, with a manifest: what a decoder outside Python "
        "needs besides rANS and the container (docs/format.md, 'ONNX export'). kdlic "
        "decodes with it too: kdlic decompress -m FOLDER. Needs pip install "
        "'kdlic[export]'.")
    p.add_argument("model", help="checkpoint, zoo name or compressai:ARCH:Q (a scale or "
                   "mean-scale hyperprior, or a decoder-only student)")
    p.add_argument("--output", "-o", required=True, help="the export folder")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--int8", action="store_true",
                   help="also write an int8 synthesis (static quantisation of g_s's "
                   "convolutions, calibrated on --calibration)")
    p.add_argument("--calibration", nargs="+", metavar="IMAGES",
                   help="image folders or files for the int8 calibration (central 256x256 "
                   "crops of the first 32 images), e.g. your training photos")
    p.add_argument("--force", "-f", action="store_true", help="replace an existing export")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlic.api import export
    from kdlic.errors import KdlicError

    if args.int8 != bool(args.calibration):
        raise KdlicError("--int8 and --calibration go together (int8 needs calibration "
                         "images, and calibration is only for --int8)")
    quiet_logging()
    out = export(args.model, args.output, format=args.format, calibration=args.calibration,
                 force=args.force)
    print(f"exported {args.model} to {out}" + (" (with int8 synthesis)" if args.int8 else ""))
    return 0
