"""Validation curves of the zoo's student runs: has each flattened by its last step?

Reads each run's ``metrics.jsonl`` (the trainer's validation rows: every
``schedule.val_every`` steps, on ``data.val_count`` held-out crops) and writes one CSV
row per validation (run, step, lr, bpp, PSNR, validation RD loss ``lambda * 255^2 * MSE +
bpp``) and one figure with a panel per lambda. Prints, per run, the RD loss at the last
validation, its change over the 1000 steps before the learning-rate decay began (the
slope the constant-lr phase ended on; validations at or before those steps) and the
change the decay brought. No training and
no evaluation: it only reads logs.

Directories of the same name are phases of one run (``scripts/train_zoo.sh students2 P``
continues each run in folder v(P+3)), in the order given: each phase's steps count on
from the one before, and the table gives the change of each phase (from the phase
before's last validation, or its own first, to its last). ``--before PREFIX.csv`` takes the
phases before from a CSV this script wrote (their run directories gone: a fresh machine),
its rows coming first (a run it holds and the arguments do not stays in, as it was).

    python benchmarks/student_curves.py ~/.cache/kdlic/runs/v2/student-* \\
        -o docs/curves/students
    python benchmarks/student_curves.py runs/v5/student-n64-* runs/v6/student-n64-* \\
        -o docs/curves/students-n64-phases
    git show 5cc17c4:docs/curves/students-n64-phases.csv > phases2-4.csv  # phases 2-4 only
    python benchmarks/student_curves.py runs/v8/student-n64-* --before phases2-4.csv \\
        -o docs/curves/students-n64-phases
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import yaml

COLUMNS = ["run", "lmbda", "step", "lr", "bpp", "psnr", "rd_loss"]


def val_rows(run_dir: Path, offset: int = 0) -> list[dict]:
    """The run's validation rows, in step order (a resumed run's repeats: the last), their
    steps counted from ``offset`` (the steps of the phases before)."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    rows: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("split") == "val":
            rows[r["step"]] = {"run": run_dir.name, "lmbda": cfg["lmbda"], **{
                k: r[k] for k in COLUMNS[2:]}, "step": offset + r["step"]}
    return [rows[s] for s in sorted(rows)]


def change(rows: list[dict], start: int, end: int) -> float | None:
    """Relative change of the RD loss between the last validations at or before steps
    ``start`` and ``end`` (None: no validation that early)."""
    def at(step: int) -> float | None:
        logged = [r["rd_loss"] for r in rows if r["step"] <= step]
        return logged[-1] if logged else None

    a, b = at(start), at(end)
    return b / a - 1 if a is not None and b is not None and start < end else None


def before_rows(path: Path) -> dict[str, list[dict]]:
    """The rows of a CSV this script wrote, by run, in step order."""
    if not path.is_file():
        raise SystemExit(f"--before: no such file: {path}")
    rows: dict[str, list[dict]] = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows[r["run"]].append({"run": r["run"], "lmbda": float(r["lmbda"]),
                                   "step": int(r["step"]), **{k: float(r[k]) for k in COLUMNS[3:]}})
    return {name: sorted(rs, key=lambda r: r["step"]) for name, rs in rows.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="path prefix: writes PREFIX.csv and PREFIX.png")
    p.add_argument("--before", type=Path, metavar="CSV",
                   help="the phases before, as this script's CSV (read before it is rewritten)")
    args = p.parse_args()
    phases: dict[str, list[Path]] = defaultdict(list)  # a run's directories, phase by phase
    for d in args.runs:
        if (d / "metrics.jsonl").is_file():
            phases[d.name].append(d)
    if not phases:
        raise SystemExit("no run directory with a metrics.jsonl among the arguments")
    runs: dict[str, list[dict]] = {}
    phase_changes: dict[str, list[float]] = {}  # the RD loss's change over each phase
    last_offset: dict[str, int] = {}  # the steps before the last phase
    earlier = before_rows(args.before) if args.before else {}
    for name in (n for n in earlier if n not in phases):
        runs[name], phase_changes[name] = earlier[name], []
    for name, dirs in phases.items():
        runs[name], phase_changes[name] = earlier.get(name, []), []
        for d in dirs:
            previous = runs[name][-1] if runs[name] else None  # the phase before's last
            last_offset[name] = previous["step"] if previous else 0
            rows = val_rows(d, last_offset[name])
            if rows:
                start = (previous or rows[0])["rd_loss"]
                phase_changes[name].append(rows[-1]["rd_loss"] / start - 1)
            runs[name] += rows
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for rows in runs.values():
            w.writerows(rows)

    print("| run | steps | val RD loss | change, 1000 steps before the (last) decay | "
          "change over the decay | change over each phase |")
    print("|---|---|---|---|---|---|")
    for name, rows in runs.items():
        if name not in phases:  # only in --before: as it was, no phase of its own here
            print(f"| {name} | {rows[-1]['step']} | {rows[-1]['rd_loss']:.3f} | | | |")
            continue
        cfg = yaml.safe_load((phases[name][-1] / "config.yaml").read_text())
        end = last_offset[name] + cfg["schedule"]["steps"]  # the last phase's, counted on
        decay_start = end - cfg["optim"]["decay_steps"]
        reached = rows[-1]["step"]  # a run still going: no change over steps it has not seen
        before = change(rows, decay_start - 1000, decay_start) if reached >= decay_start else None
        during = change(rows, decay_start, end) if cfg["optim"]["decay_steps"] and reached >= end \
            else None
        cells = [f"{c:+.1%}" if c is not None else "" for c in (before, during)]
        per_phase = ", ".join(f"{c:+.1%}" for c in phase_changes[name])
        print(f"| {name} | {rows[-1]['step']} | {rows[-1]['rd_loss']:.3f} | {cells[0]} | "
              f"{cells[1]} | {per_phase} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_lmbda: dict[float, list[str]] = defaultdict(list)
    for name, rows in runs.items():
        by_lmbda[rows[0]["lmbda"]].append(name)
    fig, axes = plt.subplots(1, len(by_lmbda), figsize=(5 * len(by_lmbda), 4), squeeze=False)
    for ax, (lmbda, names) in zip(axes[0], sorted(by_lmbda.items()), strict=True):
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
