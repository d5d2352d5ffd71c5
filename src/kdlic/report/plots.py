"""Report figures (matplotlib, Agg backend, PNG): RD curves and quality against resources.

Every figure is always written, so a report's page never links to a missing file: with
nothing to draw, the figure says so in its middle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from kdlic.report.inputs import Curve, ModelRow  # noqa: E402
from kdlic.report.tables import prof  # noqa: E402
from kdlic.utils.files import atomic_write  # noqa: E402

MARKERS = "osD^v<>pP*Xh"
DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)
    return path


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def rd_plot(curves: Sequence[Curve], metric: str, path: Path,
            reference: Curve | None = None, title: str = "") -> Path:
    """Quality (``"psnr"`` or ``"msssim"``) against bpp: one line per curve."""
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    drawn = 0
    if reference is not None:
        bpp, q = reference.points(metric)
        if bpp:
            ax.plot(bpp, q, "--", color="0.45", lw=1.5, label=reference.name)
            drawn += 1
    for i, curve in enumerate(c for c in curves if c.kind != "published"):
        bpp, q = curve.points(metric)
        if not bpp:
            continue
        style = "-" if curve.kind == "model" else ":"
        marker = MARKERS[i % len(MARKERS)]
        ax.plot(bpp, q, style, marker=marker, ms=6, lw=1.4, label=curve.name)
        if curve.kind == "model" and len(bpp) == 1:
            ax.annotate(curve.labels[0] if curve.labels else curve.name, (bpp[0], q[0]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
        drawn += 1
    ylabel = "PSNR RGB (dB)" if metric == "psnr" else "MS-SSIM RGB"
    ax.set_xlabel("bits per pixel (real bitstream)")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel} against bpp")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    else:
        _empty(ax, f"no {ylabel} data in the inputs")
    return _save(fig, path)


def resource_plot(rows: Sequence[ModelRow], series: Sequence[tuple[str, Callable]],
                  xlabel: str, path: Path, title: str, logx: bool = True) -> Path:
    """PSNR against a resource figure, one marker per model, one series per getter."""
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    drawn = 0
    xs: list[float] = []
    for j, (label, get) in enumerate(series):
        pts = [(get(r), r.value("psnr-rgb"), r.name) for r in rows]
        pts = [(x, y, n) for x, y, n in pts if _num(x) and _num(y) and x > 0]
        if not pts:
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[j % len(MARKERS)],
                   s=40, label=label, zorder=3)
        if j == 0 or not drawn:  # names once, by the first series drawn
            for x, y, name in pts:
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        drawn += len(pts)
        xs.extend(p[0] for p in pts)
    if logx and drawn:
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        # minor ticks: label 2x and 5x a power of ten when the axis spans few decades
        some = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else "")
        ax.xaxis.set_minor_formatter(some if max(xs) / min(xs) < 50 else NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("PSNR RGB (dB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if drawn:
        if len(series) > 1:
            ax.legend(fontsize=8)
    else:
        _empty(ax, "no model with both a PSNR and this figure\n"
                   "(needs an evaluation and a profile of the same model)")
    return _save(fig, path)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v


def _scaled(v: Any, k: float) -> Any:
    return v * k if _num(v) else None


def write_plots(curves: Sequence[Curve], rows: Sequence[ModelRow], folder: Path,
                published: Curve | None) -> dict[str, Path]:
    """Every report figure into ``folder``; {figure key: path}."""
    return {
        "rd_psnr": rd_plot(curves, "psnr", folder / "rd_psnr.png", published,
                           "Rate-distortion: PSNR"),
        "rd_msssim": rd_plot(curves, "msssim", folder / "rd_msssim.png", None,
                             "Rate-distortion: MS-SSIM"),
        "psnr_vs_params": resource_plot(
            rows, [("parameters", lambda r: _scaled(r.params, 1e-6))],
            "parameters (millions)", folder / "psnr_vs_params.png", "PSNR against parameters"),
        "psnr_vs_flops": resource_plot(
            rows, [("forward (g_a+h_a+h_s+g_s)", lambda r: prof(r, "flops", "gflops_per_frame")),
                   ("encoder (g_a+h_a+h_s)", lambda r: prof(r, "encoder", "gflops")),
                   ("decoder (h_s+g_s)", lambda r: prof(r, "decoder", "gflops"))],
            "GFLOPs per frame (1 MAC = 2 FLOPs)", folder / "psnr_vs_flops.png",
            "PSNR against compute"),
        "psnr_vs_latency": resource_plot(
            rows, [("encode", lambda r: _scaled(prof(r, "encoder", "latency_s", "median"), 1e3)),
                   ("decode", lambda r: _scaled(prof(r, "decoder", "latency_s", "median"), 1e3))],
            "latency per frame (ms, median)", folder / "psnr_vs_latency.png",
            "PSNR against latency"),
    }
