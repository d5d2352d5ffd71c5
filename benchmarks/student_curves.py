"""Validation curves of the zoo's student runs: has each flattened by its last step?

Reads each run's ``metrics.jsonl`` (the trainer's validation rows: every
``schedule.val_every`` steps, on ``data.val_count`` held-out crops) and writes one CSV
row per validation (run, step, lr, bpp, PSNR, validation RD loss ``lambda * 255^2 * MSE +
bpp``) and one figure with a panel per lambda. Prints, per run, the RD loss at the last
validation, its change over the 1000 steps before the learning-rate decay began (the
slope the constant-lr phase ended on; validations at or before those steps) and the
change the decay brought. No training and
no evaluation: it only reads logs.

    python benchmarks/student_curves.py ~/.cache/kdlic/runs/v2/student-* \\
        -o docs/curves/students
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import yaml

COLUMNS = ["run", "lmbda", "step", "lr", "bpp", "psnr", "rd_loss"]


def val_rows(run_dir: Path) -> list[dict]:
    """The run's validation rows, in step order (a resumed run's repeats: the last)."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    rows: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("split") == "val":
            rows[r["step"]] = {"run": run_dir.name, "lmbda": cfg["lmbda"], **{
                k: r[k] for k in COLUMNS[2:]}}
    return [rows[s] for s in sorted(rows)]


def change(rows: list[dict], start: int, end: int) -> float | None:
    """Relative change of the RD loss between the last validations at or before steps
    ``start`` and ``end`` (None: no validation that early)."""
    def at(step: int) -> float | None:
        logged = [r["rd_loss"] for r in rows if r["step"] <= step]
        return logged[-1] if logged else None

    a, b = at(start), at(end)
    return b / a - 1 if a is not None and b is not None and start < end else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="path prefix: writes PREFIX.csv and PREFIX.png")
    args = p.parse_args()
    dirs = {d.name: d for d in args.runs if (d / "metrics.jsonl").is_file()}
    runs = {name: val_rows(d) for name, d in dirs.items()}
    if not runs:
        raise SystemExit("no run directory with a metrics.jsonl among the arguments")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for rows in runs.values():
            w.writerows(rows)

    print("| run | steps | val RD loss | change, 1000 steps before the decay | "
          "change over the decay |")
    print("|---|---|---|---|---|")
    for name, rows in runs.items():
        cfg = yaml.safe_load((dirs[name] / "config.yaml").read_text())
        steps, decay = cfg["schedule"]["steps"], cfg["optim"]["decay_steps"]
        last = rows[-1]
        before = change(rows, steps - decay - 1000, steps - decay)
        during = change(rows, steps - decay, steps) if decay else None
        cells = [f"{c:+.1%}" if c is not None else "" for c in (before, during)]
        print(f"| {name} | {last['step']} | {last['rd_loss']:.3f} | {cells[0]} | {cells[1]} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_lmbda: dict[float, list[str]] = defaultdict(list)
    for name, rows in runs.items():
        by_lmbda[rows[0]["lmbda"]].append(name)
    fig, axes = plt.subplots(1, len(by_lmbda), figsize=(5 * len(by_lmbda), 4), squeeze=False)
    for ax, (lmbda, names) in zip(axes[0], sorted(by_lmbda.items())):
        for name in sorted(names):
            rows = runs[name]
            ax.plot([r["step"] for r in rows], [r["rd_loss"] for r in rows], marker=".",
                    label=name, linestyle="--" if "-none" in name else "-")
        ax.set(title=f"lambda {lmbda}", xlabel="step", ylabel="validation RD loss (lower wins)",
               yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output.with_suffix(".png"), dpi=100)
    print(f"\nwrote {args.output.with_suffix('.csv')} and {args.output.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
