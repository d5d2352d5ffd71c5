"""Kodak learning curve of a training run, from its snapshots (``schedule.snapshot_every``).

Every snapshot (``RUN_DIR/snapshots/step-NNNNNNN.pt``: the fp16 eval weights, as the zoo
ships them) is compressed and decoded on Kodak with real bitstreams once; its figures are
cached beside it (``step-NNNNNNN.kodak.json``), so re-running after more training only
evaluates the new snapshots. The run's warm start (``init`` in its config) is the first
point, and its steps and hours are added to the run's, so the x axis is the model's whole
training.

    python benchmarks/learning_curve.py ~/.cache/kdlic/runs/teacher-q5-long \\
        -o docs/curves/teacher-q5-curve

writes ``teacher-q5-curve.csv`` (one row per point: steps, hours, Kodak bpp, PSNR,
MS-SSIM, the RD cost ``bpp + lambda * 255^2 * MSE`` that training minimises, and the
machine the step was trained on) and ``teacher-q5-curve.png``. With ``--fit-until 25446``
it also fits RD cost = a + b * steps^-c to the points of the constant-lr phase (up to that
total step) and says where each fit meets issue 11's bar: the honest extrapolation of the
steps the bar would take.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
import yaml

from kdlic.data.images import find_images
from kdlic.evaluation.evaluate import evaluate_models
from kdlic.evaluation.metrics import rd_cost
from kdlic.models import load_model
from kdlic.training.lineage import warm_start_record
from kdlic.utils.checkpoint import read_checkpoint
from kdlic.utils.files import atomic_write, write_json

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared/data/kodak"
# Issue 11's bar for teacher-q5: WebP's level on Kodak (33.0 dB at 0.67 bpp).
BAR_PSNR, BAR_BPP = 33.0, 0.70
COLUMNS = ["total_steps", "run_step", "hours", "bpp", "psnr", "ms_ssim", "rd_cost",
           "cpu", "device", "bf16", "threads"]


def kodak_figures(spec: str, images: list[Path], lmbda: float, cache: Path | None) -> dict:
    """Mean real-bitstream figures of ``spec`` on ``images`` (read from ``cache`` if there)."""
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    res = evaluate_models([spec], images, "learning curve", progress=False)
    per_image = res["models"][0]["per_image"]
    figures = {
        "bpp": res["results"]["bpp"][0],
        "psnr": res["results"]["psnr-rgb"][0],
        "ms_ssim": res["results"]["ms-ssim-rgb"][0],
        "rd_cost": rd_cost(per_image, lmbda),
        "images": len(per_image),
    }
    if cache is not None:
        write_json(cache, figures)
    return figures


def machine_columns(meta: dict) -> dict:
    machine = meta.get("machine") or {}
    return {k: machine.get(k, "not recorded") for k in ("cpu", "device", "bf16", "threads")}


def curve_rows(run_dir: Path, images: list[Path]) -> list[dict]:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    lmbda = cfg["lmbda"]
    rows = []
    init_steps, init_hours = 0, 0.0
    snaps = sorted((run_dir / "snapshots").glob("step-*.pt"))
    if cfg.get("init"):
        cache = run_dir / "snapshots" / "init.kodak.json"
        figures = kodak_figures(cfg["init"], images, lmbda, cache)
        # The warm start's history: as the run recorded it when it began (runs since
        # 2026-12-03) if complete, else counted once and kept with the start's figures
        # (a zoo name in `init` may later name a retrained model).
        if "total_steps" not in figures:
            start = load_model(cfg["init"])
            record = ((read_checkpoint(snaps[0])["meta"].get("warm_start") if snaps else None)
                      or warm_start_record(start))
            if record["unrecorded"]:
                print(f"warning: the training behind {record['unrecorded']!r} is not "
                      f"recorded and not counted; correct {cache} by hand", flush=True)
            figures.update(total_steps=record["steps"], hours=record["hours"],
                           **machine_columns(start.meta))
            write_json(cache, figures)
        init_steps, init_hours = figures["total_steps"], figures["hours"]
        rows.append({"run_step": 0, **figures})
    for snap in snaps:
        meta = read_checkpoint(snap)["meta"]
        figures = kodak_figures(str(snap), images, lmbda, snap.with_suffix(".kodak.json"))
        rows.append({"total_steps": init_steps + meta["step"], "run_step": meta["step"],
                     "hours": init_hours + meta["elapsed_s"] / 3600, **figures,
                     **machine_columns(meta)})
        print(f"step {meta['step']}: {figures['bpp']:.4f} bpp, {figures['psnr']:.2f} dB, "
              f"RD cost {figures['rd_cost']:.4f}", flush=True)
    return rows


def bar_rd_cost(lmbda: float) -> float:
    """The RD cost of the bar's point (BAR_PSNR at BAR_BPP) at ``lmbda``."""
    return BAR_BPP + lmbda * 255**2 * 10 ** (-BAR_PSNR / 10)


def extrapolate(rows: list[dict], until: int, lmbda: float) -> list[str]:
    """Fits of RD cost = a + b * (steps / 10^4)^-c to the points up to ``until`` total
    steps (a constant-lr phase), over all of them and without the first: each fit's
    asymptote a and the steps at which it reaches the bar's RD cost (if ever)."""
    from scipy.optimize import curve_fit

    points = [(r["total_steps"], r["rd_cost"]) for r in rows if r["total_steps"] <= until]
    target = bar_rd_cost(lmbda)
    lines = [f"bar's RD cost at lambda {lmbda}: {target:.4f}"]
    for first in (0, 1):
        steps, cost = (list(v) for v in zip(*points[first:], strict=True))
        if len(steps) < 4:
            lines.append(f"fit from {steps[0] if steps else '-'} steps: too few points")
            continue
        def law(s, a, b, c):
            return a + b * (s / 1e4) ** -c
        (a, b, c), _ = curve_fit(law, steps, cost, p0=[min(cost) * 0.9, 1.0, 1.0],
                                 maxfev=20000)
        reach = (f"reaches it at {1e4 * ((target - a) / b) ** (-1 / c):,.0f} steps"
                 if a < target and b > 0 else "never reaches it")
        lines.append(f"fit over {len(steps)} points from {steps[0]:,} steps: asymptote "
                     f"{a:.4f} (b {b:.3f}, c {c:.2f}); {reach}")
    return lines


def plot(rows: list[dict], title: str, path: Path, bars: bool = True) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["total_steps"] / 1000 for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [("psnr", "Kodak PSNR (dB)", BAR_PSNR if bars else None),
              ("bpp", "Kodak bpp", BAR_BPP if bars else None),
              ("rd_cost", "RD cost (bpp + lambda 255^2 MSE)",
               bar_rd_cost(0.025) if bars else None)]
    for ax, (key, label, bar) in zip(axes, panels, strict=True):
        ax.plot(steps, [r[key] for r in rows], "o-", ms=3)
        if bar is not None:
            ax.axhline(bar, color="tab:red", ls="--", lw=1, label="bar (WebP's level)")
            ax.legend(loc="best", fontsize=8)
        # phase 2 of the q5 run: 2 crops of 256 px, the same pixels per step
        ax.set_xlabel("training steps (thousands; 8 x 128^2 or 2 x 256^2 px each)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output stem: writes STEM.csv and STEM.png")
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fit-until", type=int, metavar="STEPS",
                   help="extrapolate the RD cost from the points up to STEPS total steps "
                        "(a constant-lr phase) to the bar's")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = args.run_dir.expanduser()
    rows = curve_rows(run_dir, find_images(args.kodak))
    lmbda = yaml.safe_load((run_dir / "config.yaml").read_text())["lmbda"]
    out = args.output
    atomic_write(out.with_suffix(".csv"), lambda f: _write_csv(f, rows), mode="w")
    # the bar is teacher-q5's, at lambda 0.025
    plot(rows, f"{run_dir.name}: Kodak, real bitstreams", out.with_suffix(".png"),
         bars=lmbda == 0.025)
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')} ({len(rows)} points)")
    if args.fit_until:
        print("\n".join(extrapolate(rows, args.fit_until, lmbda)))
    return 0


def _write_csv(f, rows: list[dict]) -> None:
    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})


if __name__ == "__main__":
    raise SystemExit(main())
