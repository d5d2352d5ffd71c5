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


def _legend_outside(ax: Any) -> None:
    """The legend right of the axes: it never hides a point, however many curves."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def rd_plot(curves: Sequence[Curve], metric: str, path: Path,
            reference: Curve | None = None, title: str = "") -> Path | None:
    """Quality (``"psnr"`` or ``"msssim"``) against bpp: a line per curve of two or more
    points (one family: the same model recipe at several rates, or one codec's sweep), a
    lone marker per single point. None when no curve has this metric."""
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    drawn = 0
    if reference is not None:
        bpp, q = reference.points(metric)
        if bpp:
            ax.plot(bpp, q, "--", color="0.45", lw=1.5, label=reference.name)
    for i, curve in enumerate(c for c in curves if c.kind != "published"):
        bpp, q = curve.points(metric)
        if not bpp:
            continue
        style = ("-" if curve.kind == "model" else ":") if len(bpp) > 1 else "none"
        ax.plot(bpp, q, linestyle=style, marker=MARKERS[i % len(MARKERS)], ms=6, lw=1.4,
                label=curve.name)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ylabel = "PSNR RGB (dB)" if metric == "psnr" else "MS-SSIM RGB"
    ax.set_xlabel("bits per pixel (real bitstream)")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel} against bpp")
    ax.grid(True, alpha=0.3)
    _legend_outside(ax)
    return _save(fig, path)


def resource_plot(rows: Sequence[ModelRow], series: Sequence[tuple[str, Callable]],
                  xlabel: str, path: Path, title: str, logx: bool = True) -> Path | None:
    """PSNR against a resource figure: a colour per model family (its RD curve), a marker
    shape per series, both in the legend (no text on the points, which would overlap).
    None when no model has both a PSNR and this figure."""
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    families = list(dict.fromkeys(r.curve or r.name for r in rows))
    colours = {f: f"C{i % 10}" for i, f in enumerate(families)}
    xs: list[float] = []
    used_families: set[str] = set()
    used_series: list[int] = []
    for j, (_, get) in enumerate(series):
        for family in families:
            pts = [(get(r), r.value("psnr-rgb")) for r in rows if (r.curve or r.name) == family]
            pts = [(x, y) for x, y in pts if _num(x) and _num(y) and x > 0]
            if not pts:
                continue
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=40, zorder=3,
                       marker=MARKERS[j % len(MARKERS)], color=colours[family])
            used_families.add(family)
            used_series.append(j)
            xs.extend(p[0] for p in pts)
    if not xs:
        plt.close(fig)
        return None
    handles = [plt.Line2D([], [], linestyle="none", marker="o", color=colours[f], label=f)
               for f in families if f in used_families]
    if len(series) > 1:
        handles += [plt.Line2D([], [], linestyle="none", marker=MARKERS[j % len(MARKERS)],
                               color="0.3", label=series[j][0])
                    for j in dict.fromkeys(used_series)]
    if logx:
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
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0)
    return _save(fig, path)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v


def _scaled(v: Any, k: float) -> Any:
    return v * k if _num(v) else None


def write_plots(curves: Sequence[Curve], rows: Sequence[ModelRow], folder: Path,
                published: Curve | None) -> dict[str, Path]:
    """Every report figure that has data into ``folder``; {figure key: path}."""
    plots = {
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
    return {k: p for k, p in plots.items() if p is not None}
