"""``kdlic distill``: train a small student from a frozen teacher (knowledge distillation)."""

from __future__ import annotations

import argparse
from typing import Any

from kdlic.cli.common import add_run_arguments, quiet_logging, run_overrides
from kdlic.data.sampling import CropSource
from kdlic.distillation.cache import CachedTeacherCrops
from kdlic.distillation.config import DISTILL_DEFAULTS, check_distill_config, kd_weights
from kdlic.distillation.objective import Distillation
from kdlic.distillation.teacher import FrozenTeacher
from kdlic.distillation.terms import PRESETS, TERM_TARGET
from kdlic.errors import KdlicError
from kdlic.models import load_model
from kdlic.training.config import check_train_config, nested, parse_override, resolve_config
from kdlic.training.trainer import Trainer, init_model

FLAGS = {
    "teacher": "teacher",
    "teacher2": "teacher2",
    "teacher_device": "teacher_device",
    "preset": "kd.preset",
    "cache": "kd.cache",
    "temperature": "kd.temperature",
    "N": "student.N",
    "M": "student.M",
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
        "RD loss. Works under torchrun (DDP). Defaults: student N=32 with the teacher's M, "
        "lambda = the teacher's, preset L1, the train command's schedule (see "
        "kdlic.distillation.config.DISTILL_DEFAULTS).",
    )
    p.add_argument("--teacher", help="teacher: checkpoint, zoo name or compressai:ARCH:Q")
    p.add_argument("--teacher2", help="hybrid preset: the second (low-rate) teacher")
    p.add_argument("--teacher-device", help="device for the teacher(s) [teacher_device]")
    p.add_argument("--preset", help=f"loss preset: {', '.join(PRESETS)} [kd.preset]")
    p.add_argument("--weight", action="append", default=[], metavar="TERM=W",
                   help="override one term's weight, e.g. --weight latent=0.3")
    p.add_argument("--temperature", type=float, help="latent_kl temperature [kd.temperature]")
    p.add_argument("--cache", choices=("none", "memory", "disk"),
                   help="precompute teacher outputs once per image [kd.cache]")
    p.add_argument("--N", type=int, help="student transform channels [student.N]")
    p.add_argument("--M", type=int, help="student latent channels (default: teacher's)")
    add_run_arguments(p)
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = [nested(key, getattr(args, dest)) for dest, key in FLAGS.items()
           if getattr(args, dest) is not None]
    out += [parse_override(f"kd.weights.{w}") for w in args.weight]
    return out + run_overrides(args)


def _check_shapes(student_args: dict[str, Any], teachers: list, term_teacher: dict[str, int],
                  weights: dict[str, float]) -> None:
    """Refuse, before training, KD terms whose student and teacher tensors differ in shape."""
    for name in (k for k, w in weights.items() if w > 0 and k != "rd"):
        t = teachers[term_teacher[name]].model.arch_args
        key = {"y_hat": "M", "z_hat": "z_channels", "x_hat": None}[TERM_TARGET[name]]
        if key and student_args[key] != t[key]:
            raise KdlicError(
                f"KD term {name!r} compares {TERM_TARGET[name]}, but the student's {key} "
                f"({student_args[key]}) differs from the teacher's ({t[key]})"
            )


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    cfg = resolve_config(DISTILL_DEFAULTS, args.config, _overrides(args))
    check_distill_config(cfg)
    weights = kd_weights(cfg)
    device = cfg["teacher_device"] or cfg["runtime"]["device"]
    bf16 = cfg["runtime"]["bf16"] if cfg["teacher_bf16"] is None else cfg["teacher_bf16"]
    teachers = [FrozenTeacher(load_model(cfg["teacher"]), device, bf16)]
    term_teacher = dict.fromkeys(TERM_TARGET, 0)
    if cfg["kd"]["preset"] == "hybrid":
        teachers.append(FrozenTeacher(load_model(cfg["teacher2"]), device, bf16))
        term_teacher["hyper"] = 1
    main = teachers[0].model
    if cfg["lmbda"] is None:
        cfg["lmbda"] = main.meta.get("lmbda")
        if cfg["lmbda"] is None:
            raise KdlicError("the teacher records no lambda: set --lmbda for the student")
    check_train_config(cfg)
    s = cfg["student"]
    s["M"] = s["M"] or main.arch_args["M"]
    if s["z_channels"] is None and weights.get("hyper", 0) > 0:
        s["z_channels"] = teachers[term_teacher["hyper"]].model.arch_args["z_channels"]
    student = init_model(s, cfg["runtime"]["seed"])
    _check_shapes(student.arch_args, teachers, term_teacher, weights)
    cfg["student"] = {"arch": s["arch"], **student.arch_args}
    objective = Distillation(teachers, term_teacher, weights, cfg["lmbda"],
                             cfg["kd"]["temperature"])

    wrap = None
    if cfg["kd"]["cache"] != "none" and objective.kd_terms:
        cache_dir = cfg["kd"]["cache_dir"] if cfg["kd"]["cache"] == "disk" else None

        def wrap(source: CropSource) -> CropSource:
            return CachedTeacherCrops(source, list(zip(teachers, objective.needs(), strict=True)),
                                      cache_dir, progress=cfg["runtime"]["progress"])

    trainer = Trainer(cfg, student, objective, kind="distill", resume=args.resume,
                      wrap_source=wrap)
    metrics = trainer.fit()
    if trainer.ddp.is_main:
        print(f"done: step {trainer.step}, student val bpp {metrics['bpp']:.4f}, "
              f"PSNR {metrics['psnr']:.2f} dB; checkpoints in {trainer.run_dir}")
    return 0
