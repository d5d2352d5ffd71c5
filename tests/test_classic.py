"""Classic codecs through Pillow: real-bitstream bpp, lossless PSNR, result files, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdlic.cli import main
from kdlic.data.images import collect_images, load_rgb
from kdlic.errors import KdlicError
from kdlic.evaluation import classic
from kdlic.evaluation.classic import (
    CODECS,
    METRICS,
    available_codecs,
    encode,
    parse_qualities,
    run_baselines,
)
from kdlic.evaluation.metrics import msssim, psnr

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"
RESULT_KEYS = {*METRICS, "quality"}


def smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A compressible (H, W, 3) uint8 image: bicubically upsampled noise."""
    small = (rng.random((h // 16, w // 16, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Two 64x96 PNGs in a nested folder, plus a stray text file beside them."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs" / "sub"
    folder.mkdir(parents=True)
    paths = []
    for i in range(2):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(smooth(rng, 64, 96)).save(paths[-1])
    (folder / "notes.txt").write_text("not an image")
    return paths


def test_bpp_is_measured_on_the_real_bitstream(images, tmp_path):
    doc = run_baselines(images, ["jpeg"], {"jpeg": [20, 80]}, tmp_path / "out", False)["jpeg"]
    data = encode(Image.fromarray(load_rgb(images[0])), CODECS["jpeg"], 80)
    per_image = doc["per_image"][images[0].name]
    assert per_image["bpp"][1] == 8 * len(data) / (96 * 64)
    expected_mean = np.mean([doc["per_image"][p.name]["bpp"][1] for p in images])
    assert doc["results"]["bpp"][1] == pytest.approx(expected_mean)
    assert doc["results"]["quality"] == [20, 80]
    assert doc["results"]["bpp"][0] < doc["results"]["bpp"][1]
    assert doc["results"]["psnr-rgb"][0] < doc["results"]["psnr-rgb"][1]


def test_png_round_trip_is_lossless_and_written_as_inf(images, tmp_path):
    out = tmp_path / "out"
    doc = run_baselines(images, ["png"], None, out, False)["png"]
    assert doc["results"]["psnr-rgb"] == [math.inf]
    assert all(v["psnr-rgb"] == [math.inf] for v in doc["per_image"].values())
    # 96x64 is too small for 5-scale MS-SSIM: reported as None / null.
    assert doc["results"]["ms-ssim-rgb"] == [None]
    text = (out / "png.json").read_text()
    written = json.loads(text)  # strict JSON: no Infinity/NaN tokens
    assert "Infinity" not in text
    assert written["results"]["psnr-rgb"] == ["inf"]
    assert written["results"]["ms-ssim-rgb"] == [None]
    assert written["per_image"][images[1].name]["psnr-rgb"] == ["inf"]


def test_result_files_for_every_available_codec(images, tmp_path):
    out = tmp_path / "out"
    codecs = available_codecs()
    assert {"jpeg", "webp", "jxl"} <= set(codecs)  # pillow-jxl-plugin is a dependency
    qualities = {name: list(CODECS[name].defaults[2:4]) for name in codecs}
    run_baselines(images, codecs, qualities, out, False)
    for name in codecs:
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["name"] == name
        assert doc["description"].startswith("Pillow ")
        assert set(doc["results"]) == RESULT_KEYS
        assert all(len(v) == 2 for v in doc["results"].values())
        assert set(doc["per_image"]) == {p.name for p in images}
        for per_image in doc["per_image"].values():
            assert set(per_image) == set(METRICS)
            assert all(len(v) == 2 for v in per_image.values())
        times = doc["results"]["encoding_time"] + doc["results"]["decoding_time"]
        assert all(t >= 0 for t in times)
        assert not (out / f"{name}.partial.json").exists()


def test_jpeg_xl_is_a_default_baseline(images, tmp_path):
    """Issue 14: JPEG XL (pillow-jxl-plugin) is swept by default, on real bitstreams."""
    from kdlic.cli import build_parser

    assert "jxl" in build_parser().parse_args(["baselines", "x"]).codecs.split(",")
    doc = run_baselines(images, ["jxl"], {"jxl": [25, 90]}, tmp_path / "out", False)["jxl"]
    bpp, quality = doc["results"]["bpp"], doc["results"]["psnr-rgb"]
    assert 0 < bpp[0] < bpp[1] and quality[0] < quality[1]
    assert "pillow-jxl-plugin" in doc["description"]
    data = classic.encode(Image.open(images[0]), CODECS["jxl"], 90)
    assert data[:2] == b"\xff\x0a"  # a bare JPEG XL codestream
    assert classic.decode(data).shape == (64, 96, 3)


def test_interrupted_sweep_keeps_finished_settings(images, tmp_path, monkeypatch):
    out = tmp_path / "out"
    measure, calls = classic.measure, []

    def flaky(*args):
        calls.append(args)
        if len(calls) > len(images):  # dies during the second setting
            raise KeyboardInterrupt
        return measure(*args)

    monkeypatch.setattr(classic, "measure", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_baselines(images, ["jpeg"], {"jpeg": [30, 60, 90]}, out, False)
    partial = json.loads((out / "jpeg.partial.json").read_text())
    assert partial["results"]["quality"] == [30]
    assert not (out / "jpeg.json").exists()
    assert not [p for p in out.iterdir() if p.suffix == ".tmp"]


def test_unreadable_image_raises_naming_the_file(images, tmp_path):
    bad = images[0].parent / "notes.txt"
    with pytest.raises(KdlicError, match="notes.txt"):
        run_baselines([images[0], bad], ["jpeg"], None, tmp_path / "out", False)
    with pytest.raises(KdlicError, match="missing.png"):
        load_rgb(tmp_path / "missing.png")


def test_collect_images_recurses_and_filters(images, tmp_path):
    assert collect_images([tmp_path / "imgs"]) == images
    assert collect_images([images[1]]) == [images[1]]
    with pytest.raises(KdlicError, match="not found"):
        collect_images([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(KdlicError, match="no readable images"):
        collect_images([tmp_path / "empty"])


@pytest.mark.parametrize(
    "codecs, qualities, match",
    [
        (["gif"], None, "unknown codec 'gif'"),
        (["jpeg"], {"jpeg": [101]}, r"whole numbers in \[0, 100\]"),
        (["jpeg"], {"jpeg": [50.5]}, "whole numbers"),
        (["jpeg2000"], {"jpeg2000": [0.5]}, "compression ratio"),
        (["jpeg"], {"webp": [50]}, "webp, which is not being run"),
        ([], None, "no codecs"),
    ],
)
def test_bad_sweeps_raise(images, tmp_path, codecs, qualities, match):
    with pytest.raises(KdlicError, match=match):
        run_baselines(images, codecs, qualities, tmp_path / "out", False)


def test_parse_qualities():
    assert parse_qualities(["jpeg=10,30", "JPEG2000=24,12.5"]) == {
        "jpeg": [10, 30],
        "jpeg2000": [24, 12.5],
    }
    for bad in ("jpeg", "jpeg=", "jpeg=a,b"):
        with pytest.raises(KdlicError, match="--qualities"):
            parse_qualities([bad])


def test_metrics():
    rng = np.random.default_rng(1)
    a = smooth(rng, 176, 176)
    b = a.copy()
    assert psnr(a, b) == math.inf
    b[..., 0] ^= 1  # every red value off by one: MSE = 1/3
    assert psnr(a, b) == pytest.approx(10 * math.log10(3 * 255**2))
    assert msssim(a, a) == pytest.approx(1.0, abs=1e-5)
    assert 0.9 < msssim(a, b) < 1.0
    assert msssim(a[:160], b[:160]) is None


@pytest.mark.skipif(not (KODAK / "kodim23.png").exists(), reason="Kodak not available")
def test_kodak_jpeg_point_is_plausible(tmp_path):
    doc = run_baselines([KODAK / "kodim23.png"], ["jpeg"], {"jpeg": [50]}, tmp_path, False)
    results = doc["jpeg"]["results"]
    assert 0.2 < results["bpp"][0] < 1.5
    assert 30 < results["psnr-rgb"][0] < 40
    assert 0.95 < results["ms-ssim-rgb"][0] < 1.0


def test_cli_baselines_writes_files(images, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["baselines", str(tmp_path / "imgs"), "-o", str(out), "--codecs", "jpeg,png",
                 "--qualities", "jpeg=20,80", "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["jpeg.json", "png.json"]
    assert json.loads((out / "jpeg.json").read_text())["results"]["quality"] == [20, 80]
    assert "png.json" in capsys.readouterr().out


def test_cli_baselines_missing_folder(tmp_path, capsys):
    code = main(["baselines", str(tmp_path / "nope"), "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err
    assert not (tmp_path / "out").exists()


def write_results(path: Path, bpp: list, psnr: list) -> Path:
    path.write_text(json.dumps({"name": path.stem, "results": {"bpp": bpp, "psnr-rgb": psnr}}))
    return path


def test_cli_bdrate(tmp_path, capsys):
    bpp, psnr = [0.1, 0.25, 0.5, 1.0], [27.0, 30.0, 33.0, 36.0]
    ref = write_results(tmp_path / "ref.json", bpp, psnr)
    test = write_results(tmp_path / "test.json", [0.9 * b for b in bpp], psnr)
    assert main(["bdrate", str(ref), str(test)]) == 0
    out = capsys.readouterr().out
    assert "BD-rate: -10.00 %" in out
    assert "BD-psnr-rgb: +0." in out and "PCHIP" in out
    assert main(["bdrate", str(ref), str(test), "--method", "cubic"]) == 0
    assert "VCEG-M33" in capsys.readouterr().out


def test_cli_bdrate_rejects_bad_files(tmp_path, capsys):
    ref = write_results(tmp_path / "ref.json", [0.1, 0.5], [27.0, 33.0])
    lossless = write_results(tmp_path / "png.json", [12.0, 13.0], ["inf", "inf"])
    far = write_results(tmp_path / "far.json", [0.1, 0.5], [40.0, 45.0])
    (tmp_path / "broken.json").write_text("{")
    for other, match in ((lossless, "finite"), (far, "do not overlap"),
                         (tmp_path / "broken.json", "cannot read results"),
                         (tmp_path / "none.json", "cannot read results")):
        assert main(["bdrate", str(ref), str(other)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err
    assert main(["bdrate", str(ref), str(ref), "--metric", "ms-ssim-rgb"]) == 2
    assert "results.ms-ssim-rgb must be a list" in capsys.readouterr().err
