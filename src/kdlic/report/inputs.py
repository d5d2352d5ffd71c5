"""Reading result JSONs for the report: evaluations, baselines, profiles.

Kinds, told apart by content:

* **profile** (``kdlic profile``): ``"kind": "kdlic-profile"``, one entry per model.
* **evaluation** (``kdlic evaluate``): CompressAI ``results`` plus a ``models`` list,
  one RD point per model.
* **baselines** (``kdlic baselines``): CompressAI ``results`` with a ``quality`` list,
  one curve per codec.
* any other CompressAI-format file (``results.bpp`` and ``results.psnr-rgb``) is read as
  a codec curve too (e.g. CompressAI's own published result files).

A folder stands for the ``*.json`` files in it (``*.partial.json`` left out).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlic.errors import KdlicError
from kdlic.models import display_name
from kdlic.utils.files import from_jsonable

POINT_METRICS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "bpp_estimated", "encoding_time",
                 "decoding_time")


@dataclass
class Curve:
    """An RD curve (or a single point): one codec sweep or a group of evaluated models."""

    name: str
    kind: str  # "model", "codec" or "published"
    source: str
    bpp: list[float]
    psnr: list[float | None]
    msssim: list[float | None]
    labels: list[str] = field(default_factory=list)

    def points(self, metric: str = "psnr") -> tuple[list[float], list[float]]:
        """(bpp, quality) of the points with a finite quality, sorted by bpp."""
        values = self.psnr if metric == "psnr" else self.msssim
        pts = sorted((b, q) for b, q in zip(self.bpp, values, strict=True)
                     if _finite(b) and _finite(q))
        return [p[0] for p in pts], [p[1] for p in pts]


@dataclass
class ModelRow:
    """One model across inputs: its evaluation point and/or its profile."""

    name: str
    spec: str
    arch_args: dict[str, Any] = field(default_factory=dict)
    params: int | None = None
    point: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    curve: str | None = None
    sources: list[str] = field(default_factory=list)

    def value(self, key: str) -> Any:
        """An evaluation metric of this model (None when not evaluated)."""
        return None if self.point is None else self.point.get(key)


@dataclass
class Inputs:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path, kind)
    rows: list[ModelRow] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)  # whole profile documents
    notes: list[str] = field(default_factory=list)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _num(v: Any) -> float | None:
    v = from_jsonable(v)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def expand(paths: list[str | Path]) -> list[Path]:
    """Files named by ``paths``; folders give their ``*.json`` (not ``*.partial.json``)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.glob("*.json") if not f.name.endswith(".partial.json"))
            if not found:
                raise KdlicError(f"no result JSON files in folder {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise KdlicError(f"results file not found: {p}")
    return out


def detect_kind(doc: Any) -> str | None:
    """``"profile"``, ``"evaluation"``, ``"baselines"``, ``"results"`` or None."""
    if not isinstance(doc, dict):
        return None
    if doc.get("kind") == "kdlic-profile":
        return "profile"
    results = doc.get("results")
    if not isinstance(results, dict) or not isinstance(results.get("bpp"), list):
        return None
    if isinstance(doc.get("models"), list):
        return "evaluation"
    if "quality" in results:
        return "baselines"
    if "psnr-rgb" in results:
        return "results"
    return None


def _spec_key(spec: str) -> str:
    """Join key of a model spec: paths normalised (``./a/b.pt`` == ``a/b.pt``)."""
    return os.path.normpath(spec)


def _unique(name: str, taken: set[str]) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name} ({i})", i + 1
    taken.add(out)
    return out


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KdlicError(f"cannot read results {path}: {exc}") from exc


def _column(results: dict[str, Any], key: str, n: int, path: Path) -> list[float | None]:
    values = results.get(key)
    if values is None:
        return [None] * n
    if not isinstance(values, list) or len(values) != n:
        raise KdlicError(f"{path}: results.{key} must be a list of {n} values")
    return [_num(v) for v in values]


def load_inputs(paths: list[str | Path]) -> Inputs:
    """Read and classify every results file; join evaluations and profiles by model spec."""
    inputs = Inputs()
    taken: set[str] = set()
    by_key: dict[str, ModelRow] = {}
    profile_entries: list[tuple[Path, dict[str, Any]]] = []
    for path in expand(paths):
        doc = _read(path)
        kind = detect_kind(doc)
        if kind is None:
            raise KdlicError(f"{path}: not an evaluation, baselines or profile JSON "
                             "(no CompressAI \"results\" with \"bpp\", no kdlic-profile kind)")
        inputs.files.append((path, kind))
        if kind == "profile":
            if not isinstance(doc.get("models"), list):
                raise KdlicError(f"{path}: profile without a \"models\" list")
            inputs.profiles.append(doc)
            if not doc.get("complete", True):
                inputs.notes.append(f"{path.name}: profile run did not finish "
                                    f"({len(doc['models'])} model(s) done)")
            profile_entries.extend((path, e) for e in doc["models"])
            continue
        results = doc["results"]
        n = len(results["bpp"])
        bpp = _column(results, "bpp", n, path)
        psnr = _column(results, "psnr-rgb", n, path)
        msssim = _column(results, "ms-ssim-rgb", n, path)
        name = str(doc.get("name") or path.stem)
        if kind != "evaluation":
            labels = [f"{q:g}" if isinstance(q, int | float) else str(q)
                      for q in results.get("quality", [""] * n)]
            inputs.curves.append(Curve(_unique(name, taken), "codec", str(path),
                                       [b for b in bpp], psnr, msssim, labels))
            continue
        models = doc["models"]
        if len(models) != n:
            raise KdlicError(f"{path}: {len(models)} models but {n} results")
        groups: dict[str, list[int]] = {}
        for i, m in enumerate(models):
            groups.setdefault(json.dumps(family_key(m), sort_keys=True), []).append(i)
        for members in groups.values():
            args = models[members[0]].get("arch_args") or {}
            curve_name = name if len(groups) == 1 else \
                f"{name} {family_name(models[members[0]])}"
            curve_name = _unique(curve_name, taken)
            labels = []
            for i in members:
                m = models[i]
                spec = str(m.get("model", f"{name}[{i}]"))
                row_name = _unique(display_name(spec), {r.name for r in inputs.rows})
                point = {k: _num(results.get(k, [None] * n)[i]) for k in POINT_METRICS}
                row = ModelRow(row_name, spec, dict(args), m.get("params"), point,
                               curve=curve_name, sources=[str(path)])
                row.point["lmbda"] = m.get("lmbda")
                inputs.rows.append(row)
                by_key.setdefault(_spec_key(spec), row)
                labels.append(row_name)
            inputs.curves.append(Curve(curve_name, "model", str(path),
                                       [bpp[i] for i in members], [psnr[i] for i in members],
                                       [msssim[i] for i in members], labels))
    for path, entry in profile_entries:
        spec = str(entry.get("model") or entry.get("name") or "?")
        row = by_key.get(_spec_key(spec))
        if row is None:
            row = next((r for r in inputs.rows if r.name == entry.get("name")
                        and r.profile is None), None)
        if row is None or row.profile is not None:
            row = ModelRow(_unique(display_name(spec), {r.name for r in inputs.rows}), spec,
                           dict(entry.get("arch_args") or {}), entry.get("params"))
            inputs.rows.append(row)
            by_key.setdefault(_spec_key(spec), row)
        row.profile = entry
        row.params = row.params if row.params is not None else entry.get("params")
        row.arch_args = row.arch_args or dict(entry.get("arch_args") or {})
        row.sources.append(str(path))
    return inputs


def family_key(model: dict[str, Any]) -> list[Any]:
    """What a curve holds fixed: architecture, size and recipe (train, or distillation
    with one KD preset); models that differ only in lambda (and teacher: each lambda has
    its own) are one curve, anything else another."""
    args = {k: v for k, v in (model.get("arch_args") or {}).items() if k != "z_channels"}
    kind = model.get("kind")
    return [model.get("arch"), args, kind, model.get("preset") if kind == "distill" else None]


def family_name(model: dict[str, Any]) -> str:
    """A curve's name from its family: ``N=16,M=192 KD L1``, ``N=16,M=192 no KD``, ..."""
    arch, args, kind, preset = family_key(model)
    size = ",".join(f"{k}={v}" for k, v in args.items())
    recipe = {"distill": "no KD" if preset == "none" else f"KD {preset}",
              "train": "RD-trained"}.get(kind or "", "")
    prefix = "" if arch in (None, "scale-hyperprior") else f"{arch} "
    return " ".join(p for p in (f"{prefix}{size}", recipe) if p)


def published_curve() -> Curve:
    """CompressAI's published bmshj2018-hyperprior Kodak curve (../shared/docs/method.md)."""
    from kdlic.evaluation.reference import COMPRESSAI_HYPERPRIOR as ref

    return Curve(ref["name"], "published", "../shared/docs/method.md", list(ref["bpp"]),
                 list(ref["psnr-rgb"]), [None] * len(ref["bpp"]),
                 [f"q{q}" for q in ref["quality"]])
