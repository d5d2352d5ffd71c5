"""One figure of every teacher's Kodak learning curve across its phases (issue 11).

Reads the curves ``benchmarks/learning_curve.py`` wrote (``docs/curves/teacher-qN-curve.csv``
for phase 1, ``-2-curve`` to ``-6-curve`` for the later phases, ``-4-noise-curve``
for the quantisation A/B's noise arm; the x axis is each
model's whole training, warm starts included) and draws one panel per teacher: RD cost
``bpp + lambda * 255^2 * MSE`` at its own lambda against total steps, so where each curve
flattens can be seen side by side. No model is run.

    python benchmarks/teacher_phases.py -o docs/curves/teachers-all-phases.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CURVES = ROOT / "docs/curves"
PHASES = [("", "phase 1"), ("-2", "phase 2"), ("-3", "phase 3"),
          ("-4-noise", "phase 4, noise (A/B arm)"), ("-4", "phase 4, mixed quantisation"),
          ("-5", "phase 5, mixed quantisation"),
          ("-6", "phase 6 (measured; weights lost, not shipped)")]


def read_curve(path: Path) -> tuple[list[float], list[float]]:
    """(total steps in thousands, RD cost) of one learning-curve CSV."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return [int(r["total_steps"]) / 1000 for r in rows], [float(r["rd_cost"]) for r in rows]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    p.add_argument("--curves", type=Path, default=CURVES)
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(18, 3.6))
    for q, ax in enumerate(axes, start=1):
        later = []  # every point but each phase's start
        for suffix, label in PHASES:
            path = args.curves / f"teacher-q{q}{suffix}-curve.csv"
            if path.is_file():
                steps, cost = read_curve(path)
                ax.plot(steps, cost, "o-", ms=3, label=label)
                later += cost[1:]
        # a fine-tune's start is the q5 model scored at another lambda: far off the scale
        # of what follows, so the axis shows the training, not that jump
        pad = 0.05 * (max(later) - min(later))
        ax.set_ylim(min(later) - pad, max(later) + pad)
        ax.set_title(f"teacher-q{q}", fontsize=10)
        ax.set_xlabel("total training steps (thousands)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("Kodak RD cost at its lambda")
    fig.suptitle("The teachers' Kodak learning curves, real bitstreams "
                 "(q1-q4's phase 1 is an earlier, superseded branch; a fine-tune's start, "
                 "at another lambda, is off the scale)", fontsize=10)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=100)
    plt.close(fig)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
