"""The paper's three tables (size, compute, energy) and a BD-rate table, as Markdown and CSV.

Every resource column shows the absolute value and its change against the reference
model: ``%`` for sizes, FLOPs, times, energy and bpp; ``dB`` for PSNR. In Markdown the
change is in brackets after the value; in CSV it is a column of its own
(``<column>_change_pct`` / ``<column>_change_db``). Missing figures are ``n/a`` in
Markdown and empty in CSV; energy without a meter is ``not metered`` in both.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdlic.errors import KdlicError
from kdlic.evaluation.bd import bd_psnr, bd_rate, point_gaps
from kdlic.evaluation.profile import MIB, NOT_METERED
from kdlic.report.inputs import Curve, ModelRow
from kdlic.utils.files import atomic_write


@dataclass
class Column:
    """One column: ``get(row)`` gives the value; ``delta`` is ``"pct"``, ``"db"`` or None.

    ``spread(row)`` (optional) gives a (p10, p90) pair shown in brackets in Markdown
    and written as ``<key>_p10``/``<key>_p90`` in CSV.
    """

    header: str
    key: str
    get: Callable[[ModelRow], Any]
    fmt: str = ".3g"
    delta: str | None = None
    spread: Callable[[ModelRow], tuple[Any, Any] | None] | None = None


@dataclass
class Table:
    name: str
    title: str
    header: list[str]
    cells: list[list[str]]  # Markdown/HTML cells
    csv_header: list[str]
    csv_rows: list[list[Any]]
    notes: list[str]

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        for row in self.cells:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"* {n}" for n in self.notes)
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.csv_header)
        w.writerows(self.csv_rows)
        return buf.getvalue()

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write ``<name>.md`` and ``<name>.csv`` into ``folder`` (atomically)."""
        md, cs = folder / f"{self.name}.md", folder / f"{self.name}.csv"
        atomic_write(md, lambda f: f.write(self.markdown()), mode="w")
        atomic_write(cs, lambda f: f.write(self.csv()), mode="w")
        return md, cs


# ---------------------------------------------------------------------------- values


def prof(row: ModelRow, *keys: str) -> Any:
    """A value inside the row's profile entry (None when absent)."""
    value: Any = row.profile
    for k in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(k)
    return value


def _scaled(value: Any, factor: float) -> Any:
    return value * factor if _is_num(value) else value


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _latency(side: str, scale: float = 1e3) -> Callable[[ModelRow], Any]:
    return lambda r: _scaled(prof(r, side, "latency_s", "median"), scale)


def _latency_spread(side: str) -> Callable[[ModelRow], tuple[Any, Any] | None]:
    def get(r: ModelRow) -> tuple[Any, Any] | None:
        lat = prof(r, side, "latency_s")
        return (lat["p10"] * 1e3, lat["p90"] * 1e3) if isinstance(lat, dict) else None
    return get


def _params_mib(r: ModelRow) -> Any:
    if prof(r, "params_mib") is not None:
        return prof(r, "params_mib")
    return r.params * 4 / MIB if _is_num(r.params) else None


def _mega(x: Any) -> Any:
    return x / 1e6 if _is_num(x) else None


def _pct_of_peak(side: str) -> Callable[[ModelRow], Any]:
    return lambda r: _scaled(prof(r, side, "fraction_of_matmul_peak"), 100.0)


QUALITY = [
    Column("PSNR (dB)", "psnr_db", lambda r: r.value("psnr-rgb"), ".2f", "db"),
    Column("bpp", "bpp", lambda r: r.value("bpp"), ".4f", "pct"),
]

SIZE = [
    Column("N", "N", lambda r: r.arch_args.get("N"), "d"),
    Column("M", "M", lambda r: r.arch_args.get("M"), "d"),
    Column("params (M)", "params_m", lambda r: _mega(r.params), ".3f", "pct"),
    Column("encoder params (M)", "encoder_params_m",
           lambda r: _mega(prof(r, "encoder", "params")), ".3f", "pct"),
    Column("decoder params (M)", "decoder_params_m",
           lambda r: _mega(prof(r, "decoder", "params")), ".3f", "pct"),
    Column("fp32 params (MiB)", "params_mib", _params_mib, ".2f", "pct"),
    Column("params + CDF tables (MiB)", "param_memory_mib",
           lambda r: prof(r, "param_memory_mib"), ".2f", "pct"),
    Column("encoder peak memory (MiB)", "encoder_peak_memory_mib",
           lambda r: prof(r, "encoder", "peak_memory_mib"), ".1f", "pct"),
    Column("decoder peak memory (MiB)", "decoder_peak_memory_mib",
           lambda r: prof(r, "decoder", "peak_memory_mib"), ".1f", "pct"),
    *QUALITY,
]

COMPUTE = [
    Column("GFLOPs/frame (forward)", "gflops_per_frame",
           lambda r: prof(r, "flops", "gflops_per_frame"), ".2f", "pct"),
    Column("GMACs/frame", "gmacs_per_frame",
           lambda r: prof(r, "flops", "gmacs_per_frame"), ".2f", "pct"),
    Column("encoder GFLOPs", "encoder_gflops", lambda r: prof(r, "encoder", "gflops"),
           ".2f", "pct"),
    Column("decoder GFLOPs", "decoder_gflops", lambda r: prof(r, "decoder", "gflops"),
           ".2f", "pct"),
    Column("encode ms", "encode_ms", _latency("encoder"), ".1f", "pct",
           _latency_spread("encoder")),
    Column("encode FPS", "encode_fps", lambda r: prof(r, "encoder", "fps"), ".2f", "pct"),
    Column("decode ms", "decode_ms", _latency("decoder"), ".1f", "pct",
           _latency_spread("decoder")),
    Column("decode FPS", "decode_fps", lambda r: prof(r, "decoder", "fps"), ".2f", "pct"),
    Column("encoder GFLOP/s", "encoder_gflops_per_s",
           lambda r: prof(r, "encoder", "achieved_gflops_per_s"), ".1f", "pct"),
    Column("decoder GFLOP/s", "decoder_gflops_per_s",
           lambda r: prof(r, "decoder", "achieved_gflops_per_s"), ".1f", "pct"),
    Column("encoder % of matmul peak", "encoder_pct_of_peak", _pct_of_peak("encoder"), ".0f"),
    Column("decoder % of matmul peak", "decoder_pct_of_peak", _pct_of_peak("decoder"), ".0f"),
    Column("threads", "threads", lambda r: prof(r, "threads"), "d"),
    *QUALITY,
]

ENERGY = [
    Column("encode mJ/frame", "encode_mj", lambda r: prof(r, "encoder", "energy_mj_per_frame"),
           ".1f", "pct"),
    Column("decode mJ/frame", "decode_mj", lambda r: prof(r, "decoder", "energy_mj_per_frame"),
           ".1f", "pct"),
    Column("meter", "meter", lambda r: prof(r, "energy_method"), "s"),
    *QUALITY,
]


# ---------------------------------------------------------------------------- building


def fmt(value: Any, spec: str) -> str:
    """Markdown cell text of one value."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return NOT_METERED if value.startswith(NOT_METERED) else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if spec == "d" and isinstance(value, float):
        spec = ".0f"
    return format(value, spec)


def change(value: Any, ref: Any, kind: str | None) -> float | None:
    """Change of ``value`` against ``ref``: % (``"pct"``) or a difference (``"db"``)."""
    if kind is None or not (_is_num(value) and _is_num(ref)):
        return None
    if kind == "db":
        return float(value - ref)
    return None if ref == 0 else float((value - ref) / ref * 100.0)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(NOT_METERED):
        return NOT_METERED
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return value


def build_table(name: str, title: str, columns: Sequence[Column], rows: Sequence[ModelRow],
                reference: ModelRow | None, notes: Sequence[str] = ()) -> Table:
    """One table: a line per model, value and change vs ``reference`` per column."""
    header = ["model", *(c.header for c in columns)]
    csv_header = ["model", "reference"]
    for c in columns:
        csv_header.append(c.key)
        if c.spread:
            csv_header += [f"{c.key}_p10", f"{c.key}_p90"]
        if c.delta:
            csv_header.append(f"{c.key}_change_{c.delta}")
    cells, csv_rows = [], []
    for row in rows:
        is_ref = reference is not None and row is reference
        line = [f"**{row.name}** (ref)" if is_ref else row.name]
        record: list[Any] = [row.name, "yes" if is_ref else ""]
        for c in columns:
            value = c.get(row)
            text = fmt(value, c.fmt)
            record.append(_csv_value(value))
            if c.spread:
                spread = c.spread(row)
                if spread is not None:
                    text += f" [{fmt(spread[0], c.fmt)}-{fmt(spread[1], c.fmt)}]"
                record += [_csv_value(v) for v in (spread or (None, None))]
            if c.delta:
                d = change(value, c.get(reference), c.delta) if reference is not None else None
                record.append("" if d is None else f"{d:.4g}")
                if d is not None and not is_ref:
                    text += f" ({d:+.1f}%)" if c.delta == "pct" else f" ({d:+.2f} dB)"
            line.append(text)
        cells.append(line)
        csv_rows.append(record)
    return Table(name, title, header, cells, csv_header, csv_rows, list(notes))


def _metered(row: ModelRow) -> bool:
    return any(isinstance(prof(row, side, "energy_mj_per_frame"), int | float)
               for side in ("encoder", "decoder"))


def resource_tables(rows: Sequence[ModelRow], reference: ModelRow | None,
                    methods: dict[str, str], peak: dict[str, Any] | None
                    ) -> tuple[list[Table], list[str]]:
    """The size, compute and energy tables, and a note for each one left out.

    Compute lists the profiled models, energy the metered ones; a table with no such
    model is left out (a table of ``n/a`` says nothing), and the note says why.
    """
    ref_note = (f"Changes are against the reference model **{reference.name}** "
                "(% for resources and bpp, dB for PSNR)." if reference else
                "No reference model: no changes shown.")
    mem = methods.get("peak_memory") or "see the profile JSON"
    size_notes = [ref_note,
                  "fp32 params (MiB) = 4 bytes x parameters / 2^20: the unit of the paper's "
                  "'memory (MB)' column.",
                  "params + CDF tables = parameters plus buffers (the entropy coders' CDF "
                  "tables built by update()).",
                  "Encoder: g_a, h_a, h_s, entropy bottleneck, Gaussian conditional; decoder: "
                  "entropy bottleneck, h_s, Gaussian conditional, g_s.",
                  f"Peak memory: rise of the resident set during one encode/decode of the "
                  f"frame above the loaded model ({mem}, fresh process, after one warm-up)."]
    peak_text = (f"{peak['gflops_per_s']:.1f} GFLOP/s (best of {peak.get('repeats', '?')} "
                 f"{peak['n']}x{peak['n']} fp32 matmuls, {peak['threads']} thread(s))"
                 if peak else "not measured")
    compute_notes = [ref_note,
                     "GFLOPs/frame: torch FlopCounterMode over g_a+h_a+h_s+g_s on one padded "
                     "frame, 1 multiply-add = 2 FLOPs, GDN counted, element-wise ops and "
                     "entropy coding not counted. GMACs/frame = GFLOPs / 2, which is what "
                     "fvcore (and the paper's 'GFLOPs/frame') reports.",
                     "encode/decode ms: median of real coding (bitstream included) with "
                     "[p10-p90]; FPS = 1 / median.",
                     "GFLOP/s: the side's transform FLOPs / the median time of the transforms "
                     f"alone; % of the measured matmul peak, {peak_text}."]
    energy_notes = [ref_note,
                    "Energy per frame from RAPL (CPU package, all processes) or NVML (GPU), "
                    "averaged over the timed repeats; 'not metered' where no meter exists: no "
                    "figure is estimated."]
    profiled = [r for r in rows if r.profile is not None]
    metered = [r for r in profiled if _metered(r)]
    tables = [build_table("size", "Size", SIZE, rows, reference, size_notes)]
    notes = []
    if profiled:
        tables.append(build_table("compute", "Compute", COMPUTE, profiled, reference,
                                  compute_notes))
    else:
        notes.append("No compute table: no model in the inputs was profiled "
                     "(`kdlic profile MODEL... -o profile.json`, then add it to the report).")
    if metered:
        tables.append(build_table("energy", "Energy", ENERGY, metered, reference,
                                  energy_notes))
    elif profiled:
        notes.append("No energy table: no energy meter (RAPL or NVML) was readable where "
                     "the models were profiled; kdlic does not estimate energy.")
    return tables, notes


def bd_table(curves: Sequence[Curve], reference: Curve) -> Table:
    """BD-rate and BD-PSNR (PCHIP) of every curve against ``reference``.

    Curves of one point get the point's gaps instead (rate at equal PSNR, PSNR at equal
    rate, against the interpolated reference), marked ``single point``.
    """
    header = ["curve", "kind", "points", "method", "BD-rate (%)", "BD-PSNR (dB)"]
    cells, csv_rows = [], []
    ref_bpp, ref_psnr = reference.points("psnr")
    for curve in curves:
        if curve is reference:
            continue
        bpp, psnr = curve.points("psnr")
        rate: float | None = None
        quality: float | None = None
        why = ""
        method = "BD (PCHIP, log10 bpp)" if len(bpp) >= 2 else "single point"
        try:
            if len(bpp) >= 2:
                rate = bd_rate(ref_bpp, ref_psnr, bpp, psnr)
                quality = bd_psnr(ref_bpp, ref_psnr, bpp, psnr)
            elif len(bpp) == 1:
                rate, quality = point_gaps(bpp[0], psnr[0], ref_bpp, ref_psnr)
            else:
                why = "no finite points"
        except KdlicError as exc:
            why = str(exc)
        rate = rate if rate is not None and math.isfinite(rate) else None
        quality = quality if quality is not None and math.isfinite(quality) else None
        if rate is None and quality is None and not why:
            why = "outside the reference's range"
        cells.append([curve.name, curve.kind, str(len(bpp)), method,
                      "n/a" if rate is None else f"{rate:+.2f}",
                      "n/a" if quality is None else f"{quality:+.3f}"])
        csv_rows.append([curve.name, curve.kind, len(bpp), method,
                         "" if rate is None else f"{rate:.4f}",
                         "" if quality is None else f"{quality:.4f}", why])
    notes = [f"Reference curve: **{reference.name}** ({len(ref_bpp)} points).",
             "BD-rate < 0: fewer bits than the reference at equal PSNR; BD-PSNR > 0: higher "
             "PSNR at equal rate. A single point is compared with the interpolated reference "
             "at its own PSNR (rate gap) and at its own bpp (PSNR gap).",
             *(f"{r[0]}: {r[-1]}" for r in csv_rows if r[-1])]
    return Table("bd_rate", f"BD-rate against {reference.name}", header, cells,
                 ["curve", "kind", "points", "method", "bd_rate_pct", "bd_psnr_db", "note"],
                 csv_rows, notes)
