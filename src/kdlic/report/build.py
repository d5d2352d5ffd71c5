"""``build_report``: tables, figures, crops and one HTML page from result JSONs.

Layout of the output folder::

    index.html          the page (relative links only: opens from disk)
    tables/{size,compute,energy,bd_rate}.{md,csv}
    plots/{rd_psnr,rd_msssim,psnr_vs_params,psnr_vs_flops,psnr_vs_latency}.png
    crops/original.png, crops/<model>.png
    data/<input>.json   copies of the inputs, linked from the page
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdlic.errors import KdlicError
from kdlic.report.crops import find_image, write_crops
from kdlic.report.html import write_html
from kdlic.report.inputs import Curve, Inputs, ModelRow, load_inputs, published_curve
from kdlic.report.plots import write_plots
from kdlic.report.tables import bd_table, resource_tables

TABLES = ("size", "compute", "energy", "bd_rate")
PLOTS = ("rd_psnr", "rd_msssim", "psnr_vs_params", "psnr_vs_flops", "psnr_vs_latency")


def choose_reference(rows: Sequence[ModelRow], name: str | None) -> ModelRow | None:
    """The row named ``name`` (display name or spec); by default the one with most params."""
    if name is not None:
        for row in rows:
            if name in (row.name, row.spec) or os.path.normpath(name) == \
                    os.path.normpath(row.spec):
                return row
        known = ", ".join(r.name for r in rows) or "none"
        raise KdlicError(f"reference model {name!r} not in the results (models: {known})")
    sized = [r for r in rows if isinstance(r.params, int | float)]
    return max(sized, key=lambda r: r.params) if sized else (rows[0] if rows else None)


def choose_reference_curve(inputs: Inputs, reference: ModelRow | None, name: str | None,
                           published: Curve) -> Curve:
    """The BD anchor: ``name`` (a curve name or ``compressai``), else the reference
    model's curve when it has 2+ points, else CompressAI's published curve."""
    if name is not None:
        if name.lower() in ("compressai", published.name.lower()):
            return published
        for curve in inputs.curves:
            if curve.name == name:
                return curve
        known = ", ".join(["compressai", *(c.name for c in inputs.curves)])
        raise KdlicError(f"BD reference curve {name!r} not found (curves: {known})")
    if reference is not None and reference.curve is not None:
        curve = next(c for c in inputs.curves if c.name == reference.curve)
        if len(curve.points("psnr")[0]) >= 2:
            return curve
    return published


def _copy_inputs(files: Sequence[tuple[Path, str]], folder: Path) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    out, taken = [], set()
    for path, kind in files:
        name = path.name
        i = 2
        while name in taken:
            name, i = f"{path.stem}_{i}{path.suffix}", i + 1
        taken.add(name)
        dest = folder / name
        if path.resolve() != dest.resolve():
            shutil.copyfile(path, dest)
        out.append((dest, kind))
    return out


def build_report(
    results: Sequence[str | Path],
    out_dir: str | Path,
    reference: str | None = None,
    crop_image: str | Path | None = "kodim14",
    images: str | Path | None = "../shared/data/kodak",
    compressai_curve: bool = True,
    crop_box: tuple[int, int, int, int] | None = None,
    bd_reference: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    lead: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the report for ``results`` (evaluation, baselines, profile JSONs) to ``out_dir``.

    ``lead``: sentences shown first in the summary, in bold (the demo's verdict).

    Returns the paths written: ``index``, ``tables`` {name: (md, csv)}, ``plots``
    {name: png}, ``crops`` (None if no crops), and ``notes``.
    """
    if not results:
        raise KdlicError("no results files given")
    inputs = load_inputs(list(results))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = inputs.rows
    ref = choose_reference(rows, reference)
    published = published_curve()
    bd_ref = choose_reference_curve(inputs, ref, bd_reference, published)
    notes = list(inputs.notes)

    methods: dict[str, str] = {}
    peak = None
    for doc in inputs.profiles:
        methods.update({k: str(v) for k, v in (doc.get("methods") or {}).items()})
        peak = peak or doc.get("matmul_peak")

    # Tables
    tables, left_out = resource_tables(rows, ref, methods, peak)
    notes += left_out
    bd_curves = [*inputs.curves]
    if bd_ref is not published and compressai_curve:
        bd_curves.append(published)
    tables.append(bd_table(bd_curves, bd_ref))
    table_files = {t.name: t.write(out / "tables") for t in tables}

    # Figures
    plots = write_plots(inputs.curves, rows, out / "plots",
                        published if compressai_curve else None)

    # Crops
    crops = None
    evaluated = [r for r in rows if r.point is not None]
    if crop_image is not None:
        image = find_image(crop_image, images)
        if image is None:
            notes.append(f"no crops: image {crop_image!s} not found"
                         + (f" in {images}" if images else ""))
        elif not evaluated:
            notes.append("no crops: no evaluated model in the inputs")
        else:
            crops = write_crops(evaluated, image, out / "crops", crop_box, progress, device)
            notes += [f"crop of {c['name']} {c['note']}" for c in crops["crops"] if c["note"]]

    # Page
    data = _copy_inputs(inputs.files, out / "data")
    kinds: dict[str, int] = {}
    for _, kind in inputs.files:
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = [*(f"**{line}**" for line in lead),
        "Inputs: " + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ".",
        f"Models: {', '.join(r.name for r in rows) or 'none'}; codec curves: "
        f"{', '.join(c.name for c in inputs.curves if c.kind == 'codec') or 'none'}.",
        f"Reference model: **{ref.name}**." if ref else "No reference model.",
        f"BD-rate anchor: **{bd_ref.name}**.",
    ]
    for doc in inputs.profiles:
        s, h = doc.get("settings", {}), doc.get("host", {})
        mp = doc.get("matmul_peak") or {}
        frames = {"x".join(map(str, m.get("frame", [])[::-1])) for m in doc["models"]}
        images = {str(m.get("image")) for m in doc["models"]}
        summary.append(
            f"Profile: frame {', '.join(sorted(frames))} ({', '.join(sorted(images))}), "
            f"{h.get('cpu', '?')}, {s.get('threads')} thread(s), {s.get('device')}, "
            f"{s.get('repeats')} repeats after {s.get('warmup')} warm-up, torch "
            f"{h.get('torch', '?')}, load average at start {h.get('loadavg_start')}"
            + (f"; fp32 matmul peak {mp['gflops_per_s']:.1f} GFLOP/s" if mp else "") + ".")
    summary += notes
    index = write_html(out / "index.html", [(t, table_files[t.name]) for t in tables], plots,
                       crops, data, summary, methods)
    return {"index": index, "tables": table_files, "plots": plots, "crops": crops,
            "notes": notes, "reference": ref.name if ref else None, "bd_reference": bd_ref.name}
