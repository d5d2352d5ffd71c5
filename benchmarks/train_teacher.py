"""Train a teacher for a fixed wall-clock budget, then evaluate it on Kodak.

Prints training throughput (steps/s), Kodak real-bitstream bpp / PSNR / MS-SSIM and
the gap to CompressAI's published bmshj2018-hyperprior curve (rate difference at equal
PSNR, PSNR difference at equal rate). With several --precision values, one run per
precision with the same budget, seed and data: the bf16-vs-fp32 comparison.

    python benchmarks/train_teacher.py --minutes 30 --precision bf16,fp32
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import torch

from kdlic.data.images import find_images
from kdlic.evaluation.bd import point_gaps
from kdlic.evaluation.evaluate import evaluate_models
from kdlic.evaluation.reference import COMPRESSAI_HYPERPRIOR as REF
from kdlic.models import build_model
from kdlic.training.config import TRAIN_DEFAULTS
from kdlic.training.losses import RateDistortion
from kdlic.training.trainer import Trainer
from kdlic.utils.files import write_json

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="training budget per run")
    p.add_argument("--lmbda", type=float, default=0.0067)
    p.add_argument("--precision", default="bf16", help="comma list of bf16, fp32")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/train"))
    p.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    p.add_argument("--run-dir", default=str(Path.home() / ".cache/kdlic/bench/train_teacher"))
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    kodak = find_images(args.kodak)
    rows = []
    for precision in args.precision.split(","):
        cfg = copy.deepcopy(TRAIN_DEFAULTS)
        cfg["run_dir"] = f"{args.run_dir}/{precision}-lmbda{args.lmbda}"
        cfg["lmbda"] = args.lmbda
        cfg["data"].update(train=args.data, crop=args.crop, batch_size=args.batch_size)
        cfg["optim"]["lr"] = args.lr
        cfg["schedule"].update(steps=10**9, minutes=args.minutes, val_every=250)
        cfg["runtime"].update(threads=args.threads, bf16=precision == "bf16", progress=False)
        shutil.rmtree(cfg["run_dir"], ignore_errors=True)  # a fresh run each time
        torch.manual_seed(0)
        trainer = Trainer(cfg, build_model("scale-hyperprior", 128, 192),
                          RateDistortion(args.lmbda))
        trainer.fit()
        steps_per_s = trainer.step / trainer.elapsed_s
        best = str(Path(cfg["run_dir"]) / "best.pt")
        res = evaluate_models([best], kodak, f"teacher-{precision}", progress=False)
        write_json(Path(cfg["run_dir"]) / "kodak.json", res)
        r = {k: v[0] for k, v in res["results"].items()}
        dr, dq = point_gaps(r["bpp"], r["psnr-rgb"], REF["bpp"], REF["psnr-rgb"])
        rows.append({"precision": precision, "steps": trainer.step, "steps_per_s": steps_per_s,
                     "bpp": r["bpp"], "psnr": r["psnr-rgb"], "ms_ssim": r["ms-ssim-rgb"],
                     "rate_gap_pct": dr, "psnr_gap_db": dq})
    print(f"\nteacher N=128 M=192 lambda={args.lmbda}, {args.minutes:g} min per run, "
          f"{args.threads} threads, crop {args.crop}, batch {args.batch_size}, lr {args.lr}; "
          f"Kodak ({len(kodak)} images), real bitstreams")
    print("| precision | steps | steps/s | bpp | PSNR (dB) | MS-SSIM | rate vs CompressAI "
          "at equal PSNR | PSNR vs CompressAI at equal rate |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['steps']} | {r['steps_per_s']:.2f} | {r['bpp']:.4f} | "
              f"{r['psnr']:.2f} | {r['ms_ssim']:.4f} | {r['rate_gap_pct']:+.1f} % | "
              f"{r['psnr_gap_db']:+.2f} dB |")
    write_json(Path(args.run_dir) / "summary.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
