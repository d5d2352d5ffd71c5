"""The experiment that justifies kdlic: does distillation beat plain training?

For each student size N and each student lambda, trains the same student twice with the
same steps, seed and data: with the paper's L1 loss from the teacher, and with plain RD
training (preset ``none``). All are evaluated on Kodak with real bitstreams. Prints the
RD points and, per N, the BD-rate and BD-PSNR of KD against no-KD (needs >= 2 lambdas;
with one lambda, the rate/PSNR difference of the single points is shown instead).
Runs resume from their run directories, so re-running continues instead of restarting.

    python benchmarks/kd_vs_nokd.py --teacher TEACHER.pt --sizes 16,32 \
        --lambdas 0.0130,0.025,0.0483 --steps 4000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import kdlic
from kdlic.data.images import find_images
from kdlic.errors import KdlicError
from kdlic.evaluation.bd import bd_psnr, bd_rate
from kdlic.evaluation.evaluate import evaluate_models
from kdlic.utils.files import write_json

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--sizes", default="16,32")
    p.add_argument("--lambdas", default="0.0130,0.025,0.0483")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/train"))
    p.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    p.add_argument("--out", default=str(Path.home() / ".cache/kdlic/kd_vs_nokd"))
    args = p.parse_args()

    kodak = find_images(args.kodak)
    lambdas = [float(v) for v in args.lambdas.split(",")]
    curves: dict[tuple[int, str], dict] = {}
    for n in map(int, args.sizes.split(",")):
        for preset in ("L1", "none"):
            ckpts = []
            for lmbda in lambdas:
                run = Path(args.out) / f"N{n}-{preset}-lmbda{lmbda}"
                overrides = [f"data.batch_size={args.batch_size}", f"data.crop={args.crop}",
                             f"optim.lr={args.lr}", f"runtime.threads={args.threads}",
                             f"runtime.seed={args.seed}", "runtime.bf16=true",
                             "runtime.progress=false", "schedule.val_every=500",
                             f"kd.cache={'none' if preset == 'none' else 'disk'}"]
                kdlic.distill(args.teacher, n, args.data, preset=preset, lmbda=lmbda,
                              steps=args.steps, run_dir=run, overrides=overrides,
                              resume=(run / "last.pt").exists())
                ckpts.append(str(run / "best.pt"))
            res = evaluate_models(ckpts, kodak, f"N{n}-{preset}", progress=False)
            write_json(Path(args.out) / f"N{n}-{preset}.json", res)
            curves[(n, preset)] = res["results"]

    print(f"\nteacher {args.teacher}; {args.steps} steps, batch {args.batch_size} x "
          f"{args.crop}px, seed {args.seed}; Kodak ({len(kodak)} images), real bitstreams")
    points = ["| N | lambda | L1 bpp | L1 PSNR | none bpp | none PSNR |",
              "|---|---|---|---|---|---|"]
    deltas = ["| N | BD-rate KD vs no-KD | BD-PSNR KD vs no-KD |", "|---|---|---|"]
    for n in map(int, args.sizes.split(",")):
        kd, base = curves[(n, "L1")], curves[(n, "none")]
        for i, lmbda in enumerate(lambdas):
            points.append(f"| {n} | {lmbda} | {kd['bpp'][i]:.4f} | {kd['psnr-rgb'][i]:.2f} | "
                          f"{base['bpp'][i]:.4f} | {base['psnr-rgb'][i]:.2f} |")
        ref = (base["bpp"], base["psnr-rgb"], kd["bpp"], kd["psnr-rgb"])
        deltas.append(f"| {n} | {_bd(bd_rate, ref, '%')} | {_bd(bd_psnr, ref, 'dB')} |")
    print("\n".join(points) + "\n\n" + "\n".join(deltas))
    return 0


def _bd(metric, curves: tuple, unit: str) -> str:
    """A Bjontegaard delta as text; n/a with the reason when the curves don't allow one."""
    try:
        return f"{metric(*curves):+.2f} {unit}"
    except KdlicError as exc:
        return f"n/a ({exc})"


if __name__ == "__main__":
    sys.exit(main())
