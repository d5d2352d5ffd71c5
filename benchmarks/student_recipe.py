"""The student recipe A/B: distillations of one student that differ in one choice each.

Every variant distils the same student (``--N``, default 64, the teacher's lambda) from
the same teacher (``--teacher``), from the same seed, with the same batches, on
``--threads`` threads (one by default), for the same budget (``--steps``, or
``--minutes`` for equal wall-clock), and is evaluated on Kodak with real bitstreams.
Variants (``--variants``, comma list); ``base`` is configs/student-cpu.yaml with the L1
preset (latent 0.2, output 0.2, rd 0.4) and the disk cache of the teacher's outputs:

* ``w-0.1-0.1-0.8``, ``w-0.3-0.3-0.4``, ``w-0.4-0.4-0.2``: the paper's weight sweep
  (latent, output, rd); ``base`` is its (0.2, 0.2, 0.4);
* ``units``: L1 with the output term in the RD term's units: its weight times
  lambda * 255^2, as the RD term's distortion is (the paper's output MSE is on [0, 1]
  images next to lambda * 255^2 * MSE + bpp, so it barely counts);
* ``ema``: 200-step warm-up and an EMA of the weights (0.999), the teachers' winner;
* ``mixed``: ``ema`` + mixed quantisation;
* ``live``: the teacher run live (free crops and flips) instead of the cache of its
  outputs on grid-aligned crops; compare at equal wall-clock (``--minutes``);
* ``data``: ``train/`` + ``train-extra/`` (238 photos instead of 40), cached;
* ``crop256``: crops of 256 px, batch 2 (the same pixels per step), cached;
* ``cosine``: the learning rate decays (cosine) over the last third of ``--steps``, as
  the zoo's students' does (scripts/train_zoo.sh);
* ``none``: no KD (the RD term alone), what each KD choice is measured against.

``A+B`` combines two variants (their overrides, and the preset that is not L1), e.g.
``w-0.4-0.4-0.2+cosine`` and ``none+cosine``, the zoo's N=16 and N=32 twins.

    python benchmarks/student_recipe.py --N 64 --steps 3000
    python benchmarks/student_recipe.py --N 16 --minutes 30 --variants base,live,none
    python benchmarks/student_recipe.py --N 16 --steps 6000 --threads 2 \
        --variants w-0.4-0.4-0.2,w-0.4-0.4-0.2+cosine,none,none+cosine

Prints one Markdown row per variant: steps, training minutes, Kodak bpp, PSNR and the RD
cost ``bpp + lambda * 255^2 * MSE`` (lower wins).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import kdlic
from kdlic.evaluation.metrics import rd_cost
from kdlic.models import load_model
from kdlic.utils.checkpoint import read_checkpoint
from kdlic.utils.files import write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data"
EMA = {"optim": {"warmup_steps": 200, "ema": 0.999}}


def variants(lmbda: float, steps: int | None) -> dict[str, tuple[str, list[dict]]]:
    """name -> (preset, config overrides); ``steps`` None: a --minutes budget."""
    def weights(latent: float, output: float, rd: float) -> dict:
        return {"kd": {"weights": {"latent": latent, "output": output, "rd": rd}}}

    return {
        "base": ("L1", []),
        "w-0.1-0.1-0.8": ("L1", [weights(0.1, 0.1, 0.8)]),
        "w-0.3-0.3-0.4": ("L1", [weights(0.3, 0.3, 0.4)]),
        "w-0.4-0.4-0.2": ("L1", [weights(0.4, 0.4, 0.2)]),
        "units": ("L1", [weights(0.2, 0.2 * lmbda * 255**2, 0.4)]),
        "ema": ("L1", [EMA]),
        "mixed": ("L1", [EMA, {"quantization": "mixed"}]),
        "live": ("L1", [{"kd": {"cache": "none"}}]),
        # the teachers' other winners (docs/training.md): 238 photos instead of 40, and
        # 256-px crops at the same pixels per step (both keep the cache)
        "data": ("L1", [{"data": {"train": [str(DATA / "train"), str(DATA / "train-extra")]}}]),
        "crop256": ("L1", [{"data": {"crop": 256, "batch_size": 2}}]),
        "none": ("none", []),
    } | ({"cosine": ("L1", [{"optim": {"decay_steps": steps // 3}}])} if steps else {})


def combine(name: str, known: dict[str, tuple[str, list[dict]]]) -> tuple[str, list[dict]]:
    """``A+B`` -> the variants' overrides in order, with the preset that is not L1."""
    parts = name.split("+")
    for part in parts:
        if part not in known:
            raise SystemExit(f"unknown variant {part!r} (known: {', '.join(known)}; "
                             "cosine needs --steps)")
    presets = {known[part][0] for part in parts} - {"L1"}
    if len(presets) > 1:
        raise SystemExit(f"variant {name!r} mixes presets {', '.join(sorted(presets))}")
    return presets.pop() if presets else "L1", [o for part in parts for o in known[part][1]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", default="teacher-q5")
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--variants", default="base,w-0.1-0.1-0.8,w-0.3-0.3-0.4,w-0.4-0.4-0.2,"
                   "units,ema,mixed,none")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=3000)
    budget.add_argument("--minutes", type=float, help="equal wall-clock instead of steps")
    p.add_argument("--threads", type=int, default=1,
                   help="threads per run (2 on an otherwise idle 2-core machine)")
    p.add_argument("--kodak", default=str(DATA / "kodak"))
    p.add_argument("--run-dir", default=str(Path.home() / ".cache/kdlic/bench/student_recipe"))
    p.add_argument("-o", "--output", default=str(ROOT / "results/student_recipe.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lmbda = float(load_model(args.teacher).meta["lmbda"])
    known = variants(lmbda, None if args.minutes else args.steps)
    names = args.variants.split(",")
    chosen = {name: combine(name, known) for name in names}
    # with --minutes, the clock alone ends a run (the config's step count would end the
    # faster variants first: equal steps, not equal minutes)
    asked = {"minutes": args.minutes} if args.minutes else {"steps": args.steps}
    budget = {**asked, "steps": 10**9} if args.minutes else asked
    tag = f"n{args.N}-" + (f"{args.minutes:g}min" if args.minutes else f"{args.steps}steps")
    rows = []
    print(f"N={args.N}, teacher {args.teacher} (lambda {lmbda}); Kodak, real bitstreams\n")
    print("| variant | steps | minutes | Kodak bpp | PSNR (dB) | RD cost |")
    print("|---|---|---|---|---|---|")
    for name in names:
        preset, overrides = chosen[name]
        run_dir = Path(args.run_dir) / tag / name
        run = kdlic.distill(args.teacher, args.N, None, preset=preset, run_dir=run_dir,
                            config=str(ROOT / "configs/student-cpu.yaml"),
                            overrides=[*overrides, {"runtime": {"progress": False,
                                                               "threads": args.threads}}],
                            resume=(run_dir / "last.pt").is_file(), **budget)
        res = kdlic.evaluate(run.model, args.kodak, name=name)  # the best validation
        minutes = read_checkpoint(run.last)["meta"]["elapsed_s"] / 60
        row = {"variant": name, "steps": run.steps, "minutes": minutes,
               "bpp": res["results"]["bpp"][0], "psnr": res["results"]["psnr-rgb"][0],
               "rd_cost": rd_cost(res["models"][0]["per_image"], lmbda)}
        rows.append(row)
        print(f"| {name} | {row['steps']} | {row['minutes']:.0f} | {row['bpp']:.4f} | "
              f"{row['psnr']:.2f} | {row['rd_cost']:.4f} |", flush=True)
        write_json(args.output, {"teacher": args.teacher, "N": args.N, "lmbda": lmbda,
                                 **asked, "rows": rows})
    return 0 if all(math.isfinite(r["rd_cost"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
