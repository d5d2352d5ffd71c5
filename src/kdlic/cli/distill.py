"""``kdlic distill``: train a small student from a frozen teacher (knowledge distillation)."""

from __future__ import annotations

import argparse
from typing import Any

from kdlic.api import distill
from kdlic.cli.common import add_run_arguments, quiet_logging, run_overrides
from kdlic.distillation.config import DISTILL_DEFAULTS
from kdlic.distillation.terms import PRESETS
from kdlic.training.config import nested, parse_override, resolve_config

FLAGS = {
    "teacher": "teacher",
    "teacher2": "teacher2",
    "teacher_device": "teacher_device",
    "preset": "kd.preset",
    "cache": "kd.cache",
    "temperature": "kd.temperature",
    "student_arch": "student.arch",
    "N": "student.N",
    "M": "student.M",
    "decoder_only": "student.decoder_only",
    "init": "init",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="distil a frozen teacher into a smaller student",
        description="Knowledge distillation (Allemand et al. 2025). A YAML config describes "
        "teacher(s), student, loss terms, data and schedule; flags override single keys "
        "(shown in brackets). Presets: " + "; ".join(
            f"{k} = " + " + ".join(f"{w:g}*{t}" for t, w in v.items()) for k, v in
            PRESETS.items()) + ". Terms: latent = MSE(y_hat), latent_kl = KL over channels, "
        "hyper = MSE(z_hat), output = MSE(x_hat) on [0,1] images, rd = student's "
        "lambda*255^2*MSE+bpp. The best checkpoint is chosen by the student's validation "
        "RD loss. Works under torchrun (DDP). Teachers and students may be any CompressAI "
        "architecture kdlic registers. Defaults: student N=32 with the teacher's "
        "architecture and latent channels, "
        "lambda = the teacher's, preset L1 (decoder with --decoder-only), the train "
        "command's schedule (see "
        "kdlic.distillation.config.DISTILL_DEFAULTS).",
    )
    p.add_argument("--teacher", help="teacher: checkpoint, zoo name or compressai:ARCH:Q[:FILE]")
    p.add_argument("--teacher2", help="hybrid preset: the second (low-rate) teacher")
    p.add_argument("--teacher-device", help="device for the teacher(s) [teacher_device]")
    p.add_argument("--preset", help=f"loss preset: {', '.join(PRESETS)} [kd.preset]")
    p.add_argument("--weight", action="append", default=[], metavar="TERM=W",
                   help="override one term's weight, e.g. --weight latent=0.3")
    p.add_argument("--temperature", type=float, help="latent_kl temperature [kd.temperature]")
    p.add_argument("--cache", choices=("none", "memory", "disk"),
                   help="precompute teacher outputs once per image [kd.cache]")
    p.add_argument("--student-arch", help="student architecture (default: the teacher's; "
                   "kdlic.ARCHITECTURES) [student.arch]")
    p.add_argument("--N", type=int, help="student transform channels [student.N]")
    p.add_argument("--M", type=int, help="student latent channels (default: teacher's)")
    p.add_argument("--init", help="start the student from this model's weights (checkpoint "
                   "or zoo name, of the student's architecture and sizes), e.g. to fine-tune "
                   "a student to another lambda [init]")
    p.add_argument("--decoder-only", action="store_const", const=True,
                   help="keep the teacher's encoder side (g_a, h_a, h_s, entropy models) "
                   "bit for bit and train only a synthesis of width --N: the student "
                   "decodes the teacher's .kdl files (scale or mean-scale hyperprior "
                   "teachers; default preset: decoder = output + distortion, no rate) "
                   "[student.decoder_only]")
    add_run_arguments(p)
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = [nested(key, getattr(args, dest)) for dest, key in FLAGS.items()
           if getattr(args, dest) is not None]
    out += [parse_override(f"kd.weights.{w}") for w in args.weight]
    return out + run_overrides(args)


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    cfg = resolve_config(DISTILL_DEFAULTS, args.config, _overrides(args))
    result = distill(config=cfg, resume=args.resume)
    m = result.metrics
    if result.main_process:
        print(f"done: step {result.steps}, student val bpp {m['bpp']:.4f}, "
              f"PSNR {m['psnr']:.2f} dB; checkpoints in {result.run_dir}")
    return 0
