"""Cost of a distillation step: live teacher, cached teacher, plain student step.

For each student size N, times (median over repeats, after warm-up) one optimisation
step of: the student alone (RD loss, preset ``none``), the student with the paper's
L1 loss and a live teacher, and the same with the teacher's outputs served from the
cache; plus one teacher inference on the batch. Ratios show the teacher's overhead.

    python benchmarks/distill_step.py --sizes 16,32,64 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time

import torch

from kdlic.distillation.objective import Distillation
from kdlic.distillation.teacher import FrozenTeacher
from kdlic.distillation.terms import PRESETS, TERMS
from kdlic.models import build_model, load_model
from kdlic.training.config import TRAIN_DEFAULTS
from kdlic.training.trainer import Trainer


def median_time(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", help="teacher spec (default: random-init N=128, M=192; "
                   "timing does not depend on the weights)")
    p.add_argument("--sizes", default="16,32,64")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="bf16 transforms (student and teacher)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    teacher_model = load_model(args.teacher) if args.teacher else build_model(
        "scale-hyperprior", 128, 192)
    teacher = FrozenTeacher(teacher_model, "cpu", bf16=args.bf16)
    cpu = torch.device("cpu")
    x = torch.rand(args.batch_size, 3, args.crop, args.crop)
    needed = {TERMS[t].needs for t in PRESETS["L1"] if t in TERMS}
    cached = {f"teacher0.{k}": v for k, v in teacher(x, needed, cpu).items()}
    t_teacher = median_time(lambda: teacher(x, needed, cpu), args.repeats, args.warmup)

    rows = []
    for n in map(int, args.sizes.split(",")):
        def step_time(preset: str, batch: dict, n: int = n) -> float:
            cfg = copy.deepcopy(TRAIN_DEFAULTS)
            cfg["run_dir"] = tempfile.mkdtemp()
            cfg["runtime"].update(threads=args.threads, bf16=args.bf16, progress=False)
            student = build_model("scale-hyperprior", n, teacher_model.M)
            objective = Distillation([teacher], PRESETS[preset], 0.025)
            trainer = Trainer(cfg, student, objective)
            return median_time(lambda: trainer.train_step(batch), args.repeats, args.warmup)

        plain = step_time("none", {"x": x})
        live = step_time("L1", {"x": x})
        from_cache = step_time("L1", {"x": x, **cached})
        rows.append((n, plain, live, from_cache))

    print(f"\nbatch {args.batch_size} x {args.crop}x{args.crop}, {args.threads} threads, "
          f"{'bf16' if args.bf16 else 'fp32'}; teacher N={teacher_model.N} M={teacher_model.M}"
          f" inference (y_hat, x_hat): {1000 * t_teacher:.0f} ms")
    print("| student N | plain step (ms) | KD step, live teacher (ms) | KD step, cached (ms) "
          "| live / plain | cached / plain |")
    print("|---|---|---|---|---|---|")
    for n, plain, live, from_cache in rows:
        print(f"| {n} | {1000 * plain:.0f} | {1000 * live:.0f} | {1000 * from_cache:.0f} | "
              f"{live / plain:.2f} | {from_cache / plain:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
