"""``kdlic profile``: what encoding (sender) and decoding (receiver) cost with a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kdlic.cli.common import quiet_logging, shorten
from kdlic.errors import KdlicError
from kdlic.evaluation.profile import DEFAULT_IMAGE, fmt_float, profile_models


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile",
        help="parameters, memory, FLOPs, latency and energy of encoder and decoder",
        description="Profile models as a sender (g_a, h_a, h_s, entropy coding) and a "
        "receiver (entropy decoding, h_s, g_s): parameters and their memory, peak memory "
        "of one encode/decode (fresh subprocess on CPU), FLOPs per frame (torch "
        "FlopCounterMode, 1 multiply-add = 2 FLOPs, split by g_a/h_a/h_s/g_s), latency of "
        "real coding (median, p10/p90 after warm-up, fixed threads), throughput, achieved "
        "GFLOP/s against this machine's fp32 matmul peak, and energy per frame where RAPL "
        "or NVML exists (else \"not metered\"). The JSON is rewritten after each model, so "
        "an interrupted run keeps the models already done.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="checkpoint, zoo name, compressai:bmshj2018-hyperprior:Q, or "
                   "random:N=128,M=192 (random weights: sizes, FLOPs and transform times "
                   "do not depend on the weights)")
    p.add_argument("--output", "-o", type=Path, help="profile JSON (default: print only)")
    p.add_argument("--image", default=None,
                   help=f"frame to code (default: {DEFAULT_IMAGE} if present, else a random "
                   "smooth frame of --size)")
    p.add_argument("--size", default="512x768", help="HxW of the random frame")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for every run")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--matmul-size", type=int, default=2048,
                   help="side of the fp32 matmul that measures the peak (0: skip)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory subprocess")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise KdlicError(f"bad --size {text!r}: expected HxW, e.g. 512x768") from None
    if h <= 0 or w <= 0:
        raise KdlicError(f"bad --size {text!r}: sides must be positive")
    return h, w


def _line(e: dict[str, Any]) -> str:
    enc, dec = e["encoder"], e["decoder"]
    return (f"{shorten(e['name'], 28):28s} {e['params'] / 1e6:7.3f} "
            f"{e['flops']['gmacs_per_frame']:7.2f} "
            f"{enc['latency_s']['median'] * 1e3:8.1f} {dec['latency_s']['median'] * 1e3:8.1f} "
            f"{enc['achieved_gflops_per_s']:7.1f} {dec['achieved_gflops_per_s']:7.1f} "
            f"{fmt_float(enc['peak_memory_mib'], '.1f'):>7s} "
            f"{fmt_float(dec['peak_memory_mib'], '.1f'):>7s} "
            f"{fmt_float(enc['energy_mj_per_frame'], '.1f'):>11s}")


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    if args.threads is not None and args.threads < 1:
        raise KdlicError("--threads must be >= 1")
    if args.repeats < 1 or args.warmup < 0:
        raise KdlicError("--repeats must be >= 1 and --warmup >= 0")
    size = parse_size(args.size)
    image = args.image
    if image is None and DEFAULT_IMAGE.is_file():
        image = str(DEFAULT_IMAGE)
    print(f"{'model':28s} {'Mparams':>7s} {'GMAC':>7s} {'enc ms':>8s} {'dec ms':>8s} "
          f"{'encGF/s':>7s} {'decGF/s':>7s} {'encMiB':>7s} {'decMiB':>7s} {'enc mJ':>11s}",
          flush=True)
    doc = profile_models(
        args.models, args.output, size, args.repeats, args.warmup, args.threads, args.device,
        image, memory=not args.no_memory, matmul_n=args.matmul_size,
        progress=not args.no_progress, on_model=lambda e: print(_line(e), flush=True),
    )
    peak = doc["matmul_peak"]
    if peak:
        print(f"fp32 matmul peak ({peak['n']}x{peak['n']}, {peak['threads']} threads): "
              f"{peak['gflops_per_s']:.1f} GFLOP/s")
    print("GMAC = multiply-adds per frame over g_a+h_a+h_s+g_s (fvcore's and the paper's "
          "'GFLOPs'); energy: " + doc["models"][-1]["energy_method"])
    if args.output:
        print(f"wrote {args.output}")
    return 0
