"""``kdlic train``: rate-distortion training of a model (e.g. a teacher)."""

from __future__ import annotations

import argparse

from kdlic.api import train
from kdlic.cli.common import add_run_arguments, quiet_logging, run_overrides
from kdlic.training.config import TRAIN_DEFAULTS, resolve_config


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="RD-train a model (lambda*255^2*MSE + bpp)",
        description="Rate-distortion training of a CompressAI-style model. A YAML config "
        "(--config) describes the run; flags override single keys (shown in brackets). "
        "Checkpoints last.pt / best.pt and metrics.jsonl go to --run-dir. Defaults: "
        "N=128, M=192, lambda 0.0067, 256-px crops, batch 8, Adam lr 1e-4, bf16 auto (on "
        "where the device has native bf16 kernels, fp32 elsewhere; see "
        "kdlic.training.config.TRAIN_DEFAULTS).",
    )
    p.add_argument("--arch", help="architecture [model.arch]")
    p.add_argument("--N", type=int, help="transform channels [model.N]")
    p.add_argument("--M", type=int, help="latent channels [model.M]")
    p.add_argument("--init", help="start from this model's weights (checkpoint or zoo name)")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    overrides = [
        {"model": {k: v for k, v in (("arch", args.arch), ("N", args.N), ("M", args.M))
                   if v is not None}},
        {"init": args.init} if args.init else {},
        *run_overrides(args),
    ]
    result = train(config=resolve_config(TRAIN_DEFAULTS, args.config, overrides),
                   resume=args.resume)
    m = result.metrics
    if result.main_process:
        print(f"done: step {result.steps}, val bpp {m['bpp']:.4f}, "
              f"PSNR {m['psnr']:.2f} dB; checkpoints in {result.run_dir}")
    return 0
