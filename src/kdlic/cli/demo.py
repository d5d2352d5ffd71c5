"""``kdlic demo``: the end-to-end demo (see :mod:`kdlic.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdlic.cli.common import quiet_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="distil a student from the zoo teacher, compress, compare, report",
        description="Offline end-to-end demo: distils an N=16 student from the zoo teacher "
        "for a short budget, compresses a sample image with the zoo models, the student, "
        "JPEG and WebP, and writes an HTML report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0, help="distillation budget")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlic.demo import run_demo

    quiet_logging()
    index = run_demo(Path(args.out), args.minutes, args.threads)
    print(f"\n[demo] report: {index.resolve()}")
    return 0
