"""The teacher recipe A/B: fine-tunes of one teacher that differ in one choice each.

Every variant starts from the same weights (``--init``, default the zoo's teacher-q5),
runs the same number of steps with the same seed and batches, on one thread, and is
evaluated on Kodak with real bitstreams. Equal steps rather than equal minutes: on a
shared 2-core machine a step's time varies with the load, while a step costs the same
in every variant (EMA and downscaling add under 2 %; the time column shows it).

The variants (``--variants``, comma list; each adds one change to ``base``):

* ``base``: the recipe the zoo's teachers used (train/ only, Adam 3e-4 from the first
  step, ReduceLROnPlateau, uniform noise).
* ``warmup``: 200-step linear warm-up of the lr, and an EMA of the weights (0.999);
  the EMA run is evaluated twice, with its raw and its averaged weights, and a third
  time with the averaged weights and quantiles re-estimated by CompressAI's
  ``update(update_quantiles=True)`` instead of the auxiliary optimiser's.
* ``mixed``: ``warmup`` + mixed quantisation (straight-through rounding for g_s/h_s).
* ``data``: ``warmup`` + train-extra/ (238 photos instead of 40) + random downscaling
  (factor 0.5-1).
* ``lr``: ``warmup`` with a peak lr of 6e-4.
* ``crop256``: ``data`` with crops of 256 px, batch 2 (the same pixels per step).

Every model is also scored on the first photos of train/ (``--train-images``), which
every variant trained on: the gap between that cost and Kodak's shows whether 40
photos overfit.

    python benchmarks/teacher_recipe.py --steps 600          # all variants
    python benchmarks/teacher_recipe.py --steps 600 --variants base,warmup

Prints one Markdown row per evaluated model: steps, training minutes, Kodak bpp, PSNR
and the RD cost ``bpp + lambda * 255^2 * MSE`` that training minimises (lower wins).
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch

from kdlic.data.images import find_images
from kdlic.evaluation.evaluate import evaluate_models
from kdlic.evaluation.metrics import rd_cost
from kdlic.models import load_model
from kdlic.training.config import TRAIN_DEFAULTS, check_train_config
from kdlic.training.lineage import warm_start_record
from kdlic.training.losses import RateDistortion
from kdlic.training.trainer import Trainer, init_model
from kdlic.utils.checkpoint import read_checkpoint, save_checkpoint
from kdlic.utils.files import write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data"

WARMUP = {"optim": {"warmup_steps": 200, "ema": 0.999}}
MORE_DATA = {"data": {"train": [str(DATA / "train"), str(DATA / "train-extra")],
                      "downscale": 0.5}}
VARIANTS: dict[str, list[dict]] = {
    "base": [],
    "warmup": [WARMUP],
    "mixed": [WARMUP, {"quantization": "mixed"}],
    "data": [WARMUP, MORE_DATA],
    "lr": [WARMUP, {"optim": {"lr": 6e-4}}],
    # the same pixels per step as 8 x 128^2 (CompressAI trains on 256^2 crops): at 128 px
    # the hyper-latent z of a crop is 2 x 2, at 256 px 4 x 4 (Kodak's is 8 x 12)
    "crop256": [WARMUP, MORE_DATA, {"data": {"crop": 256, "batch_size": 2}}],
}


def merge(cfg: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict):
            merge(cfg[key], value)
        else:
            cfg[key] = value


def variant_config(name: str, args: argparse.Namespace) -> dict:
    cfg = copy.deepcopy(TRAIN_DEFAULTS)
    merge(cfg, {
        "run_dir": f"{args.run_dir}/{name}",
        "init": args.init,
        "lmbda": args.lmbda,
        "data": {"train": str(DATA / "train"), "val_count": 4, "crop": 128, "batch_size": 8},
        "optim": {"lr": 3e-4, "plateau_patience": 8},
        "schedule": {"steps": args.steps, "val_every": 200, "checkpoint_minutes": 4},
        "runtime": {"threads": args.threads, "bf16": "auto", "progress": False},
    })
    for update in VARIANTS[name]:
        merge(cfg, update)
    check_train_config(cfg)
    return cfg


def train_variant(cfg: dict) -> Path:
    """Train (or resume) one variant; returns its last.pt."""
    last = Path(cfg["run_dir"]).expanduser() / "last.pt"
    resume = last.is_file()
    start = load_model(cfg["init"])
    record = warm_start_record(start)  # a zoo name may since name a retrained model
    meta = read_checkpoint(last)["meta"] if resume else {}
    # (runs of 2026-12-03 recorded the start's id as init_id)
    if resume and meta.get("warm_start", {}).get("model_id",
                                                  meta.get("init_id")) != record["model_id"]:
        raise SystemExit(f"{last.parent} holds a run from other weights than --init "
                         f"{cfg['init']}; choose another --run-dir")
    if resume and meta["step"] >= cfg["schedule"]["steps"]:
        return last
    model = init_model(cfg["model"], cfg["runtime"]["seed"])
    if not resume:
        model.load_state_dict(start.state_dict())
    Trainer(cfg, model, RateDistortion(cfg["lmbda"]), resume=resume,
            meta={"warm_start": record}).fit()
    return last


def ema_companions(last: Path) -> list[tuple[str, Path]]:
    """For an EMA run: its raw weights, and its averaged weights with re-estimated quantiles."""
    ckpt = read_checkpoint(last)
    raw = ckpt["train_state"].get("raw_model")
    if raw is None:
        return []
    out = []
    model = load_model(str(last))
    model.load_state_dict(raw)
    out.append(("raw weights", last.with_name("raw.pt")))
    save_checkpoint(out[-1][1], model, ckpt["meta"])
    model = load_model(str(last))
    model.entropy_bottleneck.update(force=True, update_quantiles=True)
    out.append(("EMA, update_quantiles", last.with_name("quantiles.pt")))
    save_checkpoint(out[-1][1], model, ckpt["meta"])
    return out


def score(spec: str, label: str, images: list[Path], lmbda: float) -> dict[str, float]:
    """Real-bitstream bpp, PSNR and mean RD cost (per-image MSE from PSNR) on ``images``."""
    res = evaluate_models([spec], images, label, progress=False)
    return {"bpp": res["results"]["bpp"][0], "psnr": res["results"]["psnr-rgb"][0],
            "rd_cost": rd_cost(res["models"][0]["per_image"], lmbda)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--init", default="teacher-q5")
    p.add_argument("--lmbda", type=float, default=0.025)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kodak", default=str(DATA / "kodak"))
    p.add_argument("--train-images", type=int, default=4,
                   help="also score the first N photos of train/ (seen in training)")
    p.add_argument("--run-dir", default=str(Path.home() / ".cache/kdlic/bench/teacher_recipe"))
    p.add_argument("-o", "--output", default=str(ROOT / "results/teacher_recipe.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    kodak = find_images(args.kodak)
    seen = find_images(DATA / "train")[: args.train_images]
    names = args.variants.split(",")
    for name in names:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")
    rows = []
    print("| variant | steps | minutes | Kodak bpp | PSNR (dB) | RD cost | train/ RD cost |")
    print("|---|---|---|---|---|---|---|")

    def add_row(label: str, spec: str, steps: int, minutes: float) -> None:
        row = {"variant": label, "steps": steps, "minutes": minutes,
               **score(spec, label, kodak, args.lmbda),
               "train_rd_cost": score(spec, label, seen, args.lmbda)["rd_cost"] if seen else None}
        rows.append(row)
        seen_cost = "" if row["train_rd_cost"] is None else f"{row['train_rd_cost']:.4f}"
        print(f"| {label} | {steps} | {minutes:.0f} | {row['bpp']:.4f} | {row['psnr']:.2f} | "
              f"{row['rd_cost']:.4f} | {seen_cost} |", flush=True)
        write_json(args.output, {"lmbda": args.lmbda, "init": args.init, "rows": rows})

    add_row("init", args.init, 0, 0.0)
    for name in names:
        cfg = variant_config(name, args)
        last = train_variant(cfg)
        meta = read_checkpoint(last)["meta"]
        minutes = meta["elapsed_s"] / 60
        add_row(f"{name} (EMA)" if cfg["optim"]["ema"] else name, str(last), meta["step"],
                minutes)
        for what, path in ema_companions(last):
            add_row(f"{name} ({what})", str(path), meta["step"], minutes)
    return 0 if all(math.isfinite(r["rd_cost"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
