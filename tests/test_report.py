"""`kdlic report`: every table and plot is written, and the page's links all resolve."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from kdlic.cli import main
from kdlic.evaluation.classic import run_baselines
from kdlic.evaluation.evaluate import evaluate_models
from kdlic.evaluation.profile import profile_models
from kdlic.models import build_model
from kdlic.report import PLOTS, TABLES, build_report
from kdlic.utils.checkpoint import save_checkpoint
from kdlic.utils.files import write_json


class Links(HTMLParser):
    """Every href and src of a page, and whether it has a script or external stylesheet."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" or (tag == "link" and a.get("rel") == "stylesheet"):
            self.scripts += 1
        if "href" in a:
            self.links.append(a["href"])
        if "src" in a:
            self.images.append(a["src"])


def page_links(index: Path) -> Links:
    parser = Links()
    parser.feed(index.read_text())
    return parser


@pytest.fixture(scope="module")
def results(tmp_path_factory, image_dir):
    """Evaluation (2 tiny models), JPEG baseline and profile JSONs, made for real."""
    root = tmp_path_factory.mktemp("results")
    specs = []
    for name, n in (("big/best.pt", 8), ("small.pt", 4)):
        torch.manual_seed(n)
        model = build_model("scale-hyperprior", n, 16)
        save_checkpoint(root / name, model, {"lmbda": 0.01, "step": 0})
        specs.append(str(root / name))
    images = sorted(image_dir.rglob("img*.png"))[:2]
    evaluation = root / "eval.json"
    write_json(evaluation, evaluate_models(specs, images, "tiny", progress=False))
    run_baselines(images, ["jpeg"], {"jpeg": [20, 60, 90]}, root / "baselines", progress=False)
    profile = root / "profile.json"
    profile_models(specs, profile, repeats=2, warmup=0, threads=1, image=images[0],
                   memory=False, matmul_n=64, progress=False)
    return {"root": root, "specs": specs, "evaluation": evaluation,
            "baselines": root / "baselines", "profile": profile, "crop": images[0]}


@pytest.fixture(scope="module")
def report(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    summary = build_report([results["evaluation"], results["baselines"], results["profile"]],
                           out, crop_image=results["crop"], progress=False)
    return out, summary


def metered(summary) -> bool:
    return not any(n.startswith("No energy table") for n in summary["notes"])


def test_report_writes_every_table_plot_and_crop(report):
    out, summary = report
    for name in TABLES:
        if name == "energy" and not metered(summary):
            assert not (out / "tables" / "energy.md").exists()  # a table of n/a says nothing
            continue
        for ext in ("md", "csv"):
            path = out / "tables" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 0, path
    # MS-SSIM needs images over 160 px a side; these are smaller: no empty MS-SSIM axes
    assert set(summary["plots"]) == set(PLOTS) - {"rd_msssim"}
    assert not (out / "plots" / "rd_msssim.png").exists()
    for name in summary["plots"]:
        path = out / "plots" / f"{name}.png"
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    crops = summary["crops"]
    assert crops is not None and (out / "crops" / "original.png").is_file()
    assert [c["name"] for c in crops["crops"]] == ["big", "small"]
    assert all(c["file"] is not None and Path(c["file"]).is_file() for c in crops["crops"])


def test_html_page_links_all_resolve_and_need_no_server(report):
    out, summary = report
    page = page_links(out / "index.html")
    assert page.scripts == 1  # the inline self-check; nothing loaded from elsewhere
    targets = page.links + page.images
    assert targets
    for target in targets:
        assert "://" not in target and not target.startswith("/"), target
        path = (out / target).resolve()
        assert path.is_file(), target
        assert out.resolve() in path.parents  # inside the report folder
    linked = {Path(t).as_posix() for t in targets}
    for name in TABLES:
        if name != "energy" or metered(summary):
            assert f"tables/{name}.md" in linked and f"tables/{name}.csv" in linked
    for name in summary["plots"]:
        assert f"plots/{name}.png" in linked
    assert "crops/original.png" in linked
    assert any(t.startswith("data/") and t.endswith(".json") for t in linked)


def test_tables_compare_with_the_reference_model(report):
    out, summary = report
    assert summary["reference"] == "big"  # most parameters
    with open(out / "tables" / "size.csv") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"big", "small"}
    assert rows["big"]["reference"] == "yes"
    assert float(rows["big"]["params_m_change_pct"]) == 0
    big, small = float(rows["big"]["params_m"]), float(rows["small"]["params_m"])
    assert float(rows["small"]["params_m_change_pct"]) == pytest.approx(
        (small - big) / big * 100, rel=1e-3)
    assert rows["small"]["psnr_db_change_db"] != ""
    with open(out / "tables" / "compute.csv") as f:
        compute = {r["model"]: r for r in csv.DictReader(f)}
    # evaluation and profile were joined: one row carries both PSNR and latency
    assert float(compute["small"]["encode_ms"]) > 0 and float(compute["small"]["psnr_db"]) > 0
    assert float(compute["big"]["gflops_per_frame"]) > float(compute["small"]["gflops_per_frame"])
    md = (out / "tables" / "size.md").read_text()
    assert "**big** (ref)" in md and "%)" in md
    if metered(summary):
        assert "mJ" in (out / "tables" / "energy.md").read_text()
    bd = (out / "tables" / "bd_rate.csv").read_text()
    assert "jpeg" in bd  # the codec curve has a BD-rate against the published curve


def test_cli_report_reference_and_no_crops(results, tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["report", str(results["evaluation"]), str(results["profile"]), "-o", str(out),
                 "--reference", "small", "--no-crops", "--no-compressai-curve",
                 "--no-progress"])
    assert code == 0
    assert "reference model: small" in capsys.readouterr().out
    assert (out / "index.html").is_file() and not (out / "crops").exists()
    for target in (lambda p: p.links + p.images)(page_links(out / "index.html")):
        assert (out / target).is_file(), target


def test_crops_skip_models_that_cannot_be_loaded(results, tmp_path):
    doc = json.loads(results["evaluation"].read_text())
    doc["models"][1]["model"] = str(tmp_path / "gone.pt")
    broken = tmp_path / "eval.json"
    broken.write_text(json.dumps(doc))
    summary = build_report([broken], tmp_path / "r", crop_image=results["crop"],
                           progress=False)
    notes = {c["name"]: c["note"] for c in summary["crops"]["crops"]}
    assert notes["big"] == "" and notes["gone"].startswith("skipped")
    page = page_links(tmp_path / "r" / "index.html")
    for target in page.links + page.images:
        assert (tmp_path / "r" / target).is_file(), target


@pytest.mark.parametrize("content, message", [
    ({"hello": 1}, "not an evaluation, baselines or profile"),
    (None, "cannot read results"),
])
def test_cli_report_user_errors(content, message, tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text("{broken" if content is None else json.dumps(content))
    assert main(["report", str(path), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_reference_is_a_user_error(results, tmp_path, capsys):
    assert main(["report", str(results["evaluation"]), "-o", str(tmp_path / "r"),
                 "--reference", "nope", "--no-crops"]) == 2
    assert "reference model 'nope' not in the results" in capsys.readouterr().err


def test_curves_are_families_not_sizes(tmp_path):
    """KD and no-KD students of one size, at two lambdas each, and a lone teacher: three
    curves named after what differs, never one line through all five points."""
    from kdlic.report.inputs import load_inputs

    def entry(name, preset, lmbda, kind="distill", n=16):
        return {"model": name, "arch": "scale-hyperprior", "kind": kind, "preset": preset,
                "arch_args": {"N": n, "M": 192, "z_channels": n}, "lmbda": lmbda}

    models = [entry("s-l1-a", "L1", 0.0018), entry("s-none-a", "none", 0.0018),
              entry("s-l1-b", "L1", 0.025), entry("s-none-b", "none", 0.025),
              entry("teacher", None, 0.025, kind="train", n=128)]
    doc = {"name": "kdlic", "models": models,
           "results": {"bpp": [0.1, 0.12, 0.5, 0.55, 0.8],
                       "psnr-rgb": [26.0, 25.5, 30.0, 29.5, 31.0]}}
    write_json(tmp_path / "eval.json", doc)
    curves = {c.name: c for c in load_inputs([tmp_path / "eval.json"]).curves}
    assert set(curves) == {"kdlic N=16,M=192 KD L1", "kdlic N=16,M=192 no KD",
                           "kdlic N=128,M=192 RD-trained"}
    assert curves["kdlic N=16,M=192 KD L1"].labels == ["s-l1-a", "s-l1-b"]
    assert len(curves["kdlic N=128,M=192 RD-trained"].bpp) == 1


def test_sections_without_data_are_left_out(results, tmp_path):
    """An evaluation without a profile: no compute or energy table, no resource plots
    other than parameters, and the summary says once why."""
    out = build_report([results["evaluation"]], tmp_path / "r", crop_image=None)
    assert not (tmp_path / "r" / "tables" / "compute.md").exists()
    assert "psnr_vs_flops" not in out["plots"] and "psnr_vs_latency" not in out["plots"]
    assert any(n.startswith("No compute table") for n in out["notes"])
    page = (tmp_path / "r" / "index.html").read_text()
    assert "Quality against resources" in page  # the parameters plot has data
    assert "no model with both" not in page


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(BROWSER is None, reason="no chromium (Debian: apt install chromium)")
def test_the_page_renders_whole_in_a_headless_browser(report):
    """Every image loads and no table is empty, as Chromium sees the page (the page's
    self-check writes both counts on <body> once it has loaded)."""
    out, _ = report
    dom = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
         "--dump-dom", (out / "index.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    counts = dict(re.findall(r'data-(images|broken-images|empty-tables)="(\d+)"', dom))
    assert int(counts["images"]) >= 5
    assert counts["broken-images"] == "0" and counts["empty-tables"] == "0"
