"""``kdlic train``: rate-distortion training of a model (e.g. a teacher)."""

from __future__ import annotations

import argparse

from kdlic.cli.common import add_run_arguments, quiet_logging, run_overrides
from kdlic.models import load_model
from kdlic.training.config import TRAIN_DEFAULTS, check_train_config, resolve_config
from kdlic.training.losses import RateDistortion
from kdlic.training.trainer import Trainer, init_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="RD-train a model (lambda*255^2*MSE + bpp)",
        description="Rate-distortion training of a CompressAI-style model. A YAML config "
        "(--config) describes the run; flags override single keys (shown in brackets). "
        "Checkpoints last.pt / best.pt and metrics.jsonl go to --run-dir. Defaults: "
        "N=128, M=192, lambda 0.0067, 256-px crops, batch 8, Adam lr 1e-4, bf16 on (see "
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
    cfg = resolve_config(TRAIN_DEFAULTS, args.config, overrides)
    check_train_config(cfg)
    model = init_model(cfg["model"], cfg["runtime"]["seed"])
    if cfg["init"] and not args.resume:
        model.load_state_dict(load_model(cfg["init"]).state_dict())
    trainer = Trainer(cfg, model, RateDistortion(cfg["lmbda"]), kind="train", resume=args.resume)
    metrics = trainer.fit()
    if trainer.ddp.is_main:
        print(f"done: step {trainer.step}, val bpp {metrics['bpp']:.4f}, "
              f"PSNR {metrics['psnr']:.2f} dB; checkpoints in {trainer.run_dir}")
    return 0
