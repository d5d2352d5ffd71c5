"""Regenerate docs/results/ and docs/results.md from the shipped zoo, on Kodak.

Evaluates every zoo model with real bitstreams (grouped: teachers, then students by
KD preset), profiles them (params, FLOPs, latency on this CPU), sweeps the classic
codecs, and runs `kdlic report` into docs/results/. docs/results.md is then assembled
from the report's tables. Intermediate JSONs go to --work (re-used when present, so an
interrupted run continues; a JSON that lacks a model or has it at other steps is redone;
--fresh recomputes all).

    python benchmarks/zoo_results.py
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from learning_curve import BAR_BPP, BAR_PSNR  # issue 11's bar, one place (benchmarks/)

import kdlic
from kdlic.errors import KdlicError
from kdlic.evaluation.bd import bd_psnr, bd_rate
from kdlic.evaluation.metrics import rd_cost
from kdlic.evaluation.reference import COMPRESSAI_HYPERPRIOR, PAPER_SIZE_TABLE
from kdlic.models import display_name
from kdlic.utils.files import write_json
from kdlic.zoo import checkpoint_info, zoo_names, zoo_teacher
from kdlic.zoo import zoo_info as read_zoo_info

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python benchmarks/zoo_results.py"

# Models reported but not shipped (--extra), e.g. the KD-loss ablation students, whose
# weights would not fit the zoo's budget: name -> checkpoint, or, for a model whose
# checkpoint is gone, name -> its entry in an earlier evaluate JSON (docs/results/data/)
# with its results there ({"entry": ..., "results": {metric: value}}), reported as stored.
EXTRA: dict[str, Path] = {}
STORED: dict[str, dict] = {}


def zoo_info(name: str) -> dict:
    """:func:`kdlic.zoo.zoo_info`, or the checkpoint's (or stored entry's) for a model of
    ``--extra`` (by its name or by its path, which is what the evaluate JSONs record for
    it)."""
    return _info(display_name(name))


@functools.cache  # each call reads the model's checkpoint; none changes during a run
def _info(name: str) -> dict:
    if name in STORED:  # the evaluate JSON's record of it (its model_summary)
        e = STORED[name]["entry"]
        return {"name": name, "arch": e["arch"], **e["arch_args"], "lmbda": e["lmbda"],
                "steps": e["steps"], "params": e["params"], "kodak": {},
                **{k: e.get(k) for k in ("kind", "teacher", "teacher_step", "preset",
                                         "total_steps")},
                "kd_weights": e.get("kd_weights") or {}}
    return checkpoint_info(EXTRA[name], name) if name in EXTRA else read_zoo_info(name)


def reported_only() -> list[str]:
    """The models of ``--extra``, checkpoints and stored entries alike."""
    return sorted({*EXTRA, *STORED})


def models() -> list[str]:
    """The zoo's models, then the reported-only ones (``--extra``)."""
    return zoo_names() + reported_only()


def spec(name: str) -> str:
    """What to evaluate for model ``name``: its zoo name or its checkpoint's path."""
    return str(EXTRA[name]) if name in EXTRA else name


def groups() -> dict[str, list[str]]:
    """Zoo models by role: the teachers, then the students of each preset (`none` last),
    so that each of the report's curves is one preset at one N over its lambdas; the
    cross-rate students (:func:`_cross_rate`) are a curve of their own, named after
    their teacher."""
    out: dict[str, list[str]] = {"teachers": []}
    students: dict[str, list[str]] = {}
    for name in models():
        info = zoo_info(name)
        if info["kind"] == "train":
            out["teachers"].append(name)
        else:
            group = f"students-{info['preset']}"
            if _cross_rate(name):
                group += f"-of-{info['teacher']}"
            students.setdefault(group, []).append(name)
    for group in sorted(students, key=lambda g: (g == "students-none", g)):
        out[group] = students[group]
    return {k: v for k, v in out.items() if v}


def zoo_table() -> str:
    """How each zoo model was trained (the figures above depend on it)."""
    rows = ["## The models\n", "| model | kind | N | lambda | steps | steps in all | teacher | "
            "preset |", "|---|---|---|---|---|---|---|---|"]
    unrecorded = False
    for name in models():
        i = zoo_info(name)
        teacher = i["teacher"] or ""
        if teacher and i["teacher_step"] is not None:
            teacher += f" ({i['teacher_step']:,} steps)"
        elif teacher:
            teacher, unrecorded = teacher + " *", True
        total = "-" if i["total_steps"] is None else f"{i['total_steps']:,}"
        shown = f"{name} (not shipped)" if name in reported_only() else name
        preset = i["preset"] or ""
        if i["kd_weights"]:  # the preset's weights, changed
            preset += " (" + ", ".join(f"{t} {w:g}" for t, w in i["kd_weights"].items()) + ")"
        rows.append(f"| {shown} | {i['kind']} | {i['N']} | {i['lmbda']} | {i['steps']} | "
                    f"{total} | {teacher} | {preset} |")
    rows.append("\nsteps: the run's own steps to the shipped checkpoint (its best validation); "
                "steps in all: with the warm starts it began from (its `meta.warm_start`; "
                "'-' for models from before that record: docs/training.md gives the "
                "teachers' totals). `scripts/train_zoo.sh` lists the runs.")
    if unrecorded:
        rows.append("\n\\* distilled before students recorded their teacher's step: from the "
                    "zoo's earlier teachers of that name (teacher-q5: 5,446 steps; teacher-q1 "
                    "and teacher-q3: 500- and 300-step fine-tunes of it; in git history), not "
                    "from the teachers listed here.")
    return "\n".join(rows) + "\n"


def _teacher_lmbda(name: str) -> float | None:
    """The lambda of the zoo teacher a student learnt from (None: not a zoo model)."""
    teacher = zoo_info(name)["teacher"]
    return zoo_info(teacher)["lmbda"] if teacher in zoo_names() else None


def _points(doc: dict) -> dict[tuple[int, float, str], tuple[float, float]]:
    """(N, lambda, preset) -> (bpp, PSNR) of every model in an evaluate JSON, but for the
    students distilled from a teacher of another lambda (see :func:`cross_rate`) and the
    decoder-only ones (the teacher's bitstream: not a twin of a full student; README)."""
    res = doc["results"]
    return {(m["arch_args"]["N"], m["lmbda"], zoo_info(m["model"])["preset"]):
            (res["bpp"][i], res["psnr-rgb"][i]) for i, m in enumerate(doc["models"])
            if _own_curve(m["model"])}


def _own_curve(name: str) -> bool:
    """A model on its preset's curve: neither a cross-rate student nor a decoder-only one."""
    return not _cross_rate(name) and zoo_info(name)["preset"] != "decoder"


def _cross_rate(name: str) -> bool:
    """A KD student whose teacher was trained at another lambda than its own."""
    info = zoo_info(name)
    lmbda = _teacher_lmbda(name) if info["kind"] != "train" and info["preset"] != "none" else None
    return lmbda is not None and lmbda != info["lmbda"]


def _own_students(work: Path):
    """((N, lambda, preset), evaluate-JSON model entry) of every student on its preset's
    curve (:func:`_own_curve`), from the work JSONs."""
    for group in groups():
        if group == "teachers":
            continue
        for m in json.loads((work / f"{group}.json").read_text())["models"]:
            if _own_curve(m["model"]):
                yield (m["arch_args"]["N"], m["lmbda"], m["preset"]), m


def _rd_costs(work: Path) -> dict[tuple[int, float, str], float]:
    """(N, lambda, preset) -> Kodak RD cost at the student's lambda (:func:`rd_cost`)."""
    return {key: rd_cost(m["per_image"], m["lmbda"]) for key, m in _own_students(work)}


def _total_steps(work: Path) -> dict[tuple[int, float, str], int | None]:
    """(N, lambda, preset) -> the student's training steps in all (its warm starts
    included): a twin comparison holds only between students of equal steps."""
    return {key: zoo_info(m["model"])["total_steps"] for key, m in _own_students(work)}


def _students(work: Path) -> dict[tuple[int, float, str], tuple[float, float]]:
    return {k: v for group in groups() if group != "teachers"
            for k, v in _points(json.loads((work / f"{group}.json").read_text())).items()}


def _bd_cells(curves: list[list[float]]) -> list[str]:
    """[BD-rate %, BD-PSNR dB] of (ref bpp, ref PSNR, test bpp, test PSNR), as table cells."""
    cells = []
    for fn, spec in ((bd_rate, "+.1f"), (bd_psnr, "+.2f")):
        try:
            cells.append(format(fn(*curves), spec))
        except KdlicError as exc:  # e.g. PSNR not increasing with rate along a curve
            cells.append(f"n/a ({exc})")
    return cells


def kd_pairs(work: Path) -> str:
    """Each KD student against its no-KD twin (same N, lambda, steps, seed and data):
    the difference at each lambda, and the BD-rate over the lambdas where both exist."""
    points, steps = _students(work), _total_steps(work)
    pairs = sorted((n, lm, p) for n, lm, p in points if p != "none" and (n, lm, "none") in points
                   and steps[n, lm, p] == steps[n, lm, "none"])
    rows = ["## Distillation against plain training (zoo pairs)\n",
            "| N | lambda | preset | KD bpp | KD PSNR | no-KD bpp | no-KD PSNR | rate change | "
            "PSNR change |", "|---|---|---|---|---|---|---|---|---|"]
    for n, lmbda, preset in pairs:
        (b1, q1), (b0, q0) = points[n, lmbda, preset], points[n, lmbda, "none"]
        rows.append(f"| {n} | {lmbda} | {preset} | {b1:.4f} | {q1:.2f} | {b0:.4f} | {q0:.2f} | "
                    f"{100 * (b1 / b0 - 1):+.1f} % | {q1 - q0:+.2f} dB |")
    rows += ["\nBD-rate of each KD student against its no-KD twin over the lambdas both have "
             "(PCHIP on log10 bpp; negative: KD needs fewer bits for the same PSNR):\n",
             "| N | preset | lambdas | BD-rate (%) | BD-PSNR (dB) |", "|---|---|---|---|---|"]
    for n, preset in sorted({(n, p) for n, _, p in pairs}):
        lambdas = sorted(lm for m, lm, p in pairs if (m, p) == (n, preset))
        if len(lambdas) < 2:
            rows.append(f"| {n} | {preset} | {lambdas[0]} | n/a (one lambda) | n/a |")
            continue
        # (no-KD bpps, no-KD PSNRs, KD bpps, KD PSNRs) over the shared lambdas
        curves = [[points[n, lm, p][i] for lm in lambdas] for p in ("none", preset)
                  for i in (0, 1)]
        cells = _bd_cells(curves)
        rows.append(f"| {n} | {preset} | {', '.join(map(str, lambdas))} | {cells[0]} | "
                    f"{cells[1]} |")
    return "\n".join(rows) + "\n"


def _bd(ref: tuple[list[float], list[float]], test: tuple[list[float], list[float]]
        ) -> tuple[float, float] | None:
    """(BD-rate %, BD-PSNR dB) of the curve ``test`` against ``ref`` ((bpps, PSNRs) each),
    or None where the curves share no PSNR range or one is not monotonic."""
    try:
        return bd_rate(*ref, *test), bd_psnr(*ref, *test)
    except KdlicError:
        return None


def teachers_against_bars(work: Path) -> str:
    """Issue 11's bars: teacher-q5's Kodak point against WebP's level, and the teachers'
    curve against CompressAI's published hyperprior curve and each classic codec."""
    doc = json.loads((work / "teachers.json").read_text())
    points = {m["model"]: (doc["results"]["bpp"][i], doc["results"]["psnr-rgb"][i])
              for i, m in enumerate(doc["models"])}
    ours = sorted(points.values())
    curve = ([b for b, _ in ours], [q for _, q in ours])
    # (name, curve, bar: (text, test of the BD-rate) or None)
    refs = [(COMPRESSAI_HYPERPRIOR["name"], COMPRESSAI_HYPERPRIOR, ("<= +25 %", lambda r: r <= 25))]
    for path in sorted((work / "baselines").glob("*.json")):
        baseline = json.loads(path.read_text())
        refs.append((f"{baseline['name']} (kdlic baselines)", baseline["results"],
                     ("< 0 %", lambda r: r < 0) if baseline["name"] == "webp" else None))
    rows = ["## Teachers against the bars\n",
            f"The {len(ours)} teachers' curve against each reference (PCHIP on log10 bpp, over "
            "the PSNR range both cover; negative BD-rate: ours needs fewer bits). Bars "
            "(issue 11): below WebP, within +25 % of CompressAI's published curve.\n",
            "| reference | BD-rate (%) | BD-PSNR (dB) | bar | met |", "|---|---|---|---|---|"]
    for name, ref, bar in refs:
        bd = _bd((ref["bpp"], ref["psnr-rgb"]), curve)
        cells = ["n/a", "n/a"] if bd is None else [f"{bd[0]:+.1f}", f"{bd[1]:+.2f}"]
        verdict = "" if bar is None or bd is None else ("yes" if bar[1](bd[0]) else "**no**")
        rows.append(f"| {name} | {cells[0]} | {cells[1]} | {bar[0] if bar else ''} | {verdict} |")
    q5 = zoo_teacher(0.025)
    bpp, psnr = points[q5]
    met = psnr >= BAR_PSNR and bpp <= BAR_BPP
    rows.append(f"\n{q5}: **{psnr:.2f} dB at {bpp:.3f} bpp** against the bar of {BAR_PSNR} dB "
                f"at no more than {BAR_BPP} bpp (WebP's level): "
                f"{'met' if met else '**not met**'}.")
    if curve[0][0] <= BAR_BPP <= curve[0][-1]:  # the curve's PSNR at the bar's rate
        at_bar = float(np.interp(np.log10(BAR_BPP), np.log10(curve[0]), curve[1]))
        rows[-1] += (f" The teachers' curve gives {at_bar:.2f} dB at {BAR_BPP} bpp "
                     "(linear in log bpp between its two nearest points).")
    return "\n".join(rows) + "\n"


def paper_side_by_side(work: Path) -> str:
    """The paper's size table (its teacher and L1 students at lambda 0.025) beside ours:
    the same N, our zoo teacher and L1 students at lambda 0.025."""
    points = {**_points(json.loads((work / "teachers.json").read_text())), **_students(work)}
    profiles = {m["model"]: m for m in json.loads((work / "profile.json").read_text())["models"]}
    ours = {}  # N -> our model of the paper's row
    for name in zoo_names():
        info = zoo_info(name)
        if info["lmbda"] == 0.025 and (info["kind"] == "train" or info["preset"] == "L1"):
            ours[info["N"]] = name
    rows = ["## The paper's table beside ours\n",
            "Paper: its teacher (CompressAI's hyperprior q5) and L1 students at lambda 0.025, "
            "trained 4-5 million GPU steps; GFLOPs are fvcore's multiply-adds, speed on an "
            "RTX 3090. Ours: the zoo's teacher and L1 students at lambda 0.025, GMACs counted "
            "the same way, encode + decode time on this CPU (one thread). Kodak, 24 images, "
            "ours with real bitstreams.\n",
            "| N | params (M) paper / ours | weights (MiB, fp32) paper / ours | GMACs paper / "
            "ours | PSNR (dB) paper / ours | bpp paper / ours | paper FPS (GPU) | ours "
            "encode + decode ms (CPU) | model |", "|---|---|---|---|---|---|---|---|---|"]
    for paper in PAPER_SIZE_TABLE:
        n, name = paper["N"], ours.get(paper["N"])
        prof = profiles.get(name)
        if name is None or prof is None:
            rows.append(f"| {n} | {paper['params_m']:.2f} / - | {paper['memory_mb']:.2f} / - | "
                        f"{paper['gflops']:.2f} / - | {paper['psnr-rgb']:.2f} / - | "
                        f"{paper['bpp']:.2f} / - | {paper['fps']:.1f} | - | none at this N |")
            continue
        bpp, psnr = points[n, 0.025, zoo_info(name)["preset"]]
        ms = 1000 * (prof["encoder"]["latency_s"]["median"]
                     + prof["decoder"]["latency_s"]["median"])
        rows.append(f"| {n} | {paper['params_m']:.2f} / {prof['params'] / 1e6:.2f} | "
                    f"{paper['memory_mb']:.2f} / {prof['params_mib']:.2f} | "
                    f"{paper['gflops']:.2f} / {prof['flops']['gmacs_per_frame']:.2f} | "
                    f"{paper['psnr-rgb']:.2f} / {psnr:.2f} | {paper['bpp']:.2f} / {bpp:.3f} | "
                    f"{paper['fps']:.1f} | {ms:.0f} | {name} |")
    return "\n".join(rows) + "\n"


def loss_variants(work: Path) -> str:
    """The KD loss ablation: students of one N and lambda trained with each preset."""
    runs: dict[tuple[int, float], dict[str, tuple[float, float]]] = {}
    for (n, lmbda, preset), point in _students(work).items():
        runs.setdefault((n, lmbda), {})[preset] = point
    costs, steps = _rd_costs(work), _total_steps(work)
    rows = ["## KD loss variants\n", "| N | lambda | preset | steps in all | bpp | PSNR (dB) | "
            "rate vs none | PSNR vs none | RD cost | RD cost vs none |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    unpaired = False
    for (n, lmbda), by_preset in sorted(runs.items()):
        if len(by_preset) < 3 or "none" not in by_preset:
            continue
        b0, q0 = by_preset["none"]
        c0, s0 = costs[n, lmbda, "none"], steps[n, lmbda, "none"]
        for preset, (b, q) in sorted(by_preset.items(), key=lambda kv: costs[n, lmbda, kv[0]]):
            c, s = costs[n, lmbda, preset], steps[n, lmbda, preset]
            versus = (f"{100 * (b / b0 - 1):+.1f} % | {q - q0:+.2f} dB",
                      f"{100 * (c / c0 - 1):+.1f} %")
            if s != s0:  # a twin of other steps is no twin
                versus, unpaired = ("- | -", "-"), True
            shown = "-" if s is None else f"{s:,}"
            rows.append(f"| {n} | {lmbda} | {preset} | {shown} | {b:.4f} | {q:.2f} | {versus[0]} | "
                        f"{c:.3f} | {versus[1]} |")
    if len(rows) == 3:
        return ""
    rows.append("\nSame N, lambda, seed and data; only the distillation terms differ "
                "(`kdlic distill --help` lists the presets), and a variant is set against the "
                "no-KD student of its own steps in all. Sorted by RD cost (lambda * 255^2 "
                "* MSE + bpp, per-image mean on Kodak: lower is better).")
    if unpaired:
        rows.append("\n'-': the zoo's no-KD twin trained other steps than this variant (the "
                    "zoo's N=64 twins went on to a second phase; docs/training.md gives the "
                    "variants against the twins of their own length).")
    return "\n".join(rows) + "\n"


def _cross_rate_rows(work: Path) -> list[dict]:
    """Every cross-rate student (:func:`_cross_rate`): its Kodak bpp / PSNR and RD cost at
    its own lambda, beside those of the student of its own lambda's teacher (``own``) and
    of its no-KD twin (``none``; either None when the zoo lacks it)."""
    points, costs = _students(work), _rd_costs(work)
    rows = []
    for group in groups():
        doc = json.loads((work / f"{group}.json").read_text())
        for i, m in enumerate(doc["models"]):
            if not _cross_rate(m["model"]):
                continue
            info = zoo_info(m["model"])
            key = (info["N"], info["lmbda"])
            rows.append({
                "model": m["model"], "N": key[0], "lmbda": key[1], "teacher": info["teacher"],
                "point": (doc["results"]["bpp"][i], doc["results"]["psnr-rgb"][i]),
                "cost": rd_cost(m["per_image"], key[1]),
                **{ref: (points[(*key, p)], costs[(*key, p)]) if (*key, p) in points else None
                   for ref, p in (("own", info["preset"]), ("none", "none"))}})
    return rows


def cross_rate(work: Path) -> str:
    """The paper's "other rate points": students distilled from a teacher of another lambda
    (teacher-q5) against the same students distilled from the teacher of their own."""
    rows = []
    for r in _cross_rate_rows(work):
        b, q = r["point"]
        cells = []
        for ref in ("own", "none"):
            if r[ref] is None:
                cells.append("- | -")
                continue
            (b0, q0), c0 = r[ref]
            cells.append(f"{b0:.4f} / {q0:.2f} ({c0:.4f}) | {100 * (b / b0 - 1):+.1f} % / "
                         f"{q - q0:+.2f} dB ({100 * (r['cost'] / c0 - 1):+.1f} %)")
        rows.append(f"| {r['model']} | {r['N']} | {r['lmbda']} | {r['teacher']} "
                    f"({_teacher_lmbda(r['model'])}) | {b:.4f} / {q:.2f} ({r['cost']:.4f}) | "
                    f"{cells[0]} | {cells[1]} |")
    if not rows:
        return ""
    return "\n".join([
        "## Students of a teacher at another lambda\n",
        "The paper's other rate points: a student trained at its own lambda but distilled "
        "from a teacher of another lambda, against the same student distilled from the "
        "teacher of its lambda and against its no-KD twin: bpp / PSNR (RD cost at the "
        "student's lambda, `bpp + lambda * 255^2 * MSE`), then the changes in rate, PSNR "
        "(RD cost); same N, steps, seed and data.\n",
        "| model | N | lambda | teacher (its lambda) | bpp / PSNR (RD cost) | own-lambda "
        "teacher's student | change | no-KD twin | change |",
        "|---|---|---|---|---|---|---|---|---|", *rows]) + "\n"


def _verdict(value: float | None, bar: Callable[[float], bool],
             sign: Callable[[float], bool]) -> str:
    """holds (bar met) / holds partly (right sign, bar not met) / does not hold here."""
    if value is None:
        return "not measured (n/a)"
    return "holds" if bar(value) else "holds partly" if sign(value) else "does not hold here"


def _curves(points: dict[tuple[int, float, str], tuple[float, float]], n: int, preset: str
            ) -> tuple[list[float], list[float]]:
    """(bpps, PSNRs) of the students of one N and preset, by lambda."""
    got = sorted((lm, bq) for (m, lm, p), bq in points.items() if (m, p) == (n, preset))
    return [bq[0] for _, bq in got], [bq[1] for _, bq in got]


def claims(work: Path) -> str:
    """Each KD claim of the paper, as measured on the zoo: holds, holds partly, or does not
    hold here, with the numbers (issue 16's bars)."""
    points = _students(work)
    teachers = json.loads((work / "teachers.json").read_text())["results"]
    rows = ["## The paper's claims, as measured here\n",
            "Each claim with the bar this project set for it (issue 16), our figure and the "
            "verdict: *holds* (bar met), *holds partly* (the effect has the paper's sign but "
            "misses the bar), *does not hold here*. BD figures: PCHIP on log10 bpp over the "
            "range both curves cover (`kdlic bdrate`).\n",
            "| claim | bar | measured | verdict |", "|---|---|---|---|"]
    for n, bar in ((16, -10.0), (32, -10.0), (64, None)):
        kd, none = _curves(points, n, "L1"), _curves(points, n, "none")
        lambdas = sorted({lm for (m, lm, p) in points if m == n and p in ("L1", "none")})
        bd = _bd(none, kd) if min(len(kd[0]), len(none[0])) >= 2 else None
        value = None if bd is None else bd[0]
        text = (f"{bd[0]:+.1f} % BD-rate ({bd[1]:+.2f} dB)" if bd is not None
                else "n/a (fewer than two lambdas)" if len(lambdas) < 2 else "n/a")
        rows.append(f"| KD (L1) beats plain training at N={n} (lambdas "
                    f"{', '.join(map(str, lambdas)) or '-'}) | "
                    f"{'BD-rate <= ' + format(bar, '+.0f') + ' %' if bar else 'sign'} | "
                    f"{text} | " + _verdict(value, lambda v, b=bar: v <= (b if b else 0),
                                            lambda v: v < 0) + " |")
    kd64 = _curves(points, 64, "L1")
    bd = _bd((teachers["bpp"], teachers["psnr-rgb"]), kd64) if len(kd64[0]) >= 2 else None
    rows.append("| the N=64 L1 student comes within 0.5 dB of its teacher (paper: 0.42 dB at one "
                "point) | BD-PSNR >= -0.5 dB | "
                + ("n/a" if bd is None else f"{bd[1]:+.2f} dB ({bd[0]:+.1f} % BD-rate)") + " | "
                + _verdict(None if bd is None else bd[1], lambda v: v >= -0.5,
                           lambda v: v >= -1.0) + " |")
    costs = _rd_costs(work)  # what training minimises at each student's own lambda
    pairs = sorted(k for k in costs if k[2] == "L1" and (k[0], k[1], "none") in costs)
    better = [k for k in pairs if costs[k] < costs[k[0], k[1], "none"]]
    rows.append("| KD helps at every rate-distortion trade-off (each N and lambda) | every "
                f"pair | {len(better)} of {len(pairs)} L1/no-KD pairs have the lower RD cost "
                "(bpp + lambda * 255^2 * MSE at their lambda) | "
                + ("not measured" if not pairs else "holds" if len(better) == len(pairs)
                   else "holds partly" if better else "does not hold here") + " |")
    cross = [r for r in _cross_rate_rows(work) if r["none"] is not None]
    if cross:  # what the cross-rate student minimises: the RD cost at its own lambda
        beat = [r for r in cross if r["cost"] < r["none"][1]]
        shown = "; ".join(
            f"N={r['N']} at {r['lmbda']}: {100 * (r['cost'] / r['none'][1] - 1):+.1f} % "
            + ("" if r["own"] is None else
               f"(own-lambda teacher's student {100 * (r['own'][1] / r['none'][1] - 1):+.1f} %)")
            for r in cross)
        rows.append(f"| a student can be pushed to another rate point than its teacher's "
                    f"(distilled from {cross[0]['teacher']}) | lower RD cost at its lambda than "
                    f"its no-KD twin | {shown} | "
                    + ("holds" if len(beat) == len(cross) else "holds partly" if beat
                       else "does not hold here") + " |")
    bad = []
    for n, preset in sorted({(n, p) for n, _, p in points}):
        bpps, psnrs = _curves(points, n, preset)
        if any(np.diff(bpps) <= 0) or any(np.diff(psnrs) <= 0):
            bad.append(f"N={n} {preset}")
    rows.append("| every student curve is monotonic (PSNR and bpp rise with lambda) | all | "
                + ("all are" if not bad else "not: " + ", ".join(bad)) + " | "
                + ("holds" if not bad else "does not hold here") + " |")
    if any(zoo_info(n)["teacher"] and zoo_info(n)["teacher_step"] is None for n in models()):
        rows.append("\nStudents marked \\* in *The models* were distilled from the zoo's earlier, "
                    "weaker teachers: their verdicts are about those teachers.")
    rows.append("\nResources (params, GMACs, latency, energy) against the teacher: *Size*, "
                "*Compute and speed* and *Energy* below; the paper's own figures beside ours: "
                "*The paper's table beside ours*.")
    return "\n".join(rows) + "\n"


def _covers(target: Path, models: list[str] | None) -> bool:
    """Whether an existing evaluate/profile JSON is of exactly these zoo models, as they
    ship (a model added or retrained since makes it stale)."""
    if not target.is_file():
        return target.exists()  # the baselines folder: present means done
    if models is None:
        return True
    try:
        doc = json.loads(target.read_text())
        listed, psnrs = doc["models"], doc.get("results", {}).get("psnr-rgb")
        return (sorted(display_name(m["model"]) for m in listed) == sorted(models)
                and all(_same_weights(m, psnrs[i] if psnrs else None)
                        for i, m in enumerate(listed)))
    except (ValueError, KeyError, TypeError, KdlicError):
        return False


def _same_weights(entry: dict, psnr: float | None) -> bool:
    """Whether a JSON entry (with ``psnr``, its mean PSNR in the JSON's results, for an
    evaluate JSON) is of the zoo file as it ships now: the same steps and, for an
    evaluation on the images the zoo's figures come from, the PSNR stored at export
    (decoding is deterministic; a retrain of equal length, such as the N=64 twins'
    phases, changes only the latter)."""
    info = zoo_info(entry["model"])
    if "steps" in entry and entry["steps"] != info["steps"]:
        return False
    stored = info.get("kodak") or {}
    same_images = len(entry.get("per_image", [])) == stored.get("images")
    if psnr is None or "psnr-rgb" not in stored or not same_images:
        return True
    return abs(psnr - stored["psnr-rgb"]) < 1e-4


def evaluate_group(names: list[str], group: str, kodak: str) -> dict:
    """The evaluate JSON of one group: its models with checkpoints (or in the zoo)
    evaluated now, those of ``STORED`` as they were stored, in ``names``' order."""
    live = [n for n in names if n not in STORED]
    done = kdlic.evaluate([spec(n) for n in live], kodak, name=group) if live else {
        "name": group, "description": "kdlic real-bitstream evaluation", "models": []}
    points = _by_model(done) if live else {}
    points.update((n, STORED[n]) for n in names if n in STORED)
    metrics = points[names[0]]["results"]
    return {**done, "results": {k: [points[n]["results"][k] for n in names] for k in metrics},
            "models": [points[n]["entry"] for n in names]}


def _by_model(doc: dict) -> dict[str, dict]:
    """An evaluate JSON's models by display name, each its entry and its results (the
    form of ``STORED``)."""
    return {display_name(m["model"]): {"entry": m, "results": {
        k: v[i] for k, v in doc["results"].items()}} for i, m in enumerate(doc["models"])}


def _read_stored(path: Path) -> dict[str, dict]:
    """The models of an earlier evaluate JSON (see ``STORED``)."""
    try:
        return _by_model(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise SystemExit(f"--extra {path}: not a kdlic evaluate JSON ({e})") from None


def step(work: Path, name: str, make: Callable[[Path], object], fresh: bool,
         models: list[str] | None = None) -> Path:
    """``make(WORK/NAME)`` unless WORK/NAME is already its result (for `models`, if given)."""
    target = work / name
    if fresh or not _covers(target, models):
        make(target)
    return target


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    p.add_argument("--work", default=str(ROOT / "results/zoo"))
    p.add_argument("--out", default=str(ROOT / "docs/results"))
    p.add_argument("--repeats", type=int, default=10, help="profile repeats")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--extra", nargs="+", default=[], metavar="CKPT|JSON",
                   help="models reported beside the zoo but not shipped: a run's best.pt "
                        "(named after its run folder), or an earlier evaluate JSON "
                        "(docs/results/data/students-L2.json) whose models' checkpoints "
                        "are gone: reported with its stored figures")
    args = p.parse_args()
    for given in args.extra:
        path = Path(given).expanduser()
        if not path.is_file():
            p.error(f"--extra {given}: not a file")
        found = _read_stored(path) if path.suffix == ".json" else {display_name(path): path}
        for name, value in found.items():
            if name in zoo_names() or name in EXTRA or name in STORED:
                p.error(f"--extra {given}: the name {name!r} is taken")
            (STORED if path.suffix == ".json" else EXTRA)[name] = value
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(args.threads)
    inputs = []
    for group, names in groups().items():
        inputs.append(step(work, f"{group}.json", lambda path, names=names, group=group:
                           write_json(path, evaluate_group(names, group, args.kodak)),
                           args.fresh, names))
    inputs.append(step(work, "profile.json", lambda path: kdlic.profile(
        zoo_names(), output=path, threads=args.threads, repeats=args.repeats),
        args.fresh, zoo_names()))
    inputs.append(step(work, "baselines", lambda path: kdlic.baselines(args.kodak, path),
                       args.fresh))
    out = Path(args.out)
    if out.exists():  # the report's folder, whole (learning curves live in docs/curves/)
        shutil.rmtree(out)
    # resources compared with the students' teacher
    reference = zoo_teacher() if "teachers" in groups() else None
    kdlic.report(inputs, out, images=args.kodak, reference=reference)

    tables = out / "tables"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    parts = [
        "# Results: the kdlic zoo on Kodak\n",
        # with --extra, the script that lists the run folders (paths differ per machine)
        f"Generated by `{'scripts/train_zoo.sh results' if reported_only() else COMMAND}` (commit "
        f"{commit}); every figure below comes from it. "
        "Kodak, 24 images, real bitstreams (`.kdl` files). Latency: this repository's "
        f"2-core CPU, {args.threads} thread(s), median of {args.repeats} runs. "
        "[The full report](results/index.html) has the RD plots and reconstruction crops.\n",
        "![PSNR vs bpp](results/plots/rd_psnr.png)\n",
    ]
    parts.append(zoo_table())
    parts.append(teachers_against_bars(work))
    parts.append(paper_side_by_side(work))
    parts.append(claims(work))
    parts.append(kd_pairs(work))
    parts.append(cross_rate(work))
    parts.append(loss_variants(work))
    for name, title in (("size", "Size"), ("compute", "Compute and speed"),
                        ("energy", "Energy"), ("bd_rate", "BD-rate")):
        md = tables / f"{name}.md"
        if md.exists():  # the report's own "# Title" line gives way to ours
            body = md.read_text().split("\n", 1)[1].lstrip("\n")
            parts.append(f"## {title}\n\n{body}\n")
    (ROOT / "docs/results.md").write_text("\n".join(parts))
    print(f"wrote {ROOT / 'docs/results.md'} and {out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
