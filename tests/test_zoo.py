"""Every shipped model loads, round-trips an image and still meets its stored Kodak figures."""

from pathlib import Path

import numpy as np
import pytest

from kdlic.cli import main
from kdlic.codec import Codec
from kdlic.data.images import find_images, load_rgb
from kdlic.evaluation.metrics import psnr
from kdlic.models import load_model
from kdlic.zoo import BUDGET_BYTES, checkpoint_info, zoo_bytes, zoo_info, zoo_names

from .conftest import KODAK


def test_zoo_list_prints_every_model(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in zoo_names():
        assert name in out
    assert f"{len(zoo_names())} models, {zoo_bytes() / 1e6:.1f} MB of weights" in out


def test_the_zoo_fits_its_budget():
    """The weights ship in the wheel: PyPI refuses wheels over 100 MB."""
    assert 0 < zoo_bytes() <= BUDGET_BYTES


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_model_meets_its_stored_kodak_figures(name):
    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak not available")
    stored = zoo_info(name)["kodak"]
    images = find_images(KODAK)
    assert stored["images"] == len(images)
    # the bitstream part of `kdlic evaluate` (which also runs MS-SSIM and a likelihood
    # pass), image by image: the mean PSNR and bpp it stored at export
    codec = Codec(load_model(name))
    bpps, psnrs = [], []
    for path in images:
        rgb = load_rgb(path)
        data = codec.encode(rgb)
        bpps.append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
        psnrs.append(psnr(rgb, np.asarray(codec.decode(data))))
    assert np.mean(psnrs) == pytest.approx(stored["psnr-rgb"], abs=0.05)
    assert np.mean(bpps) == pytest.approx(stored["bpp"], rel=0.01)


def _markdown_rows(text: str, heading: str) -> list[list[str]]:
    """Body rows of the first table under ``heading`` in a markdown text, as cells."""
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def test_published_results_describe_the_shipped_zoo():
    """docs/results.md (made by benchmarks/zoo_results.py) is not stale: it lists every
    shipped model with its steps, and its figures are the zoo's measured Kodak figures
    (models reported but not shipped, `--extra`, are marked so)."""
    text = (Path(__file__).parents[1] / "docs" / "results.md").read_text()
    rows = {row[0]: row for row in _markdown_rows(text, "## The models")}
    models = {n: r for n, r in rows.items() if not n.endswith(" (not shipped)")}
    reported = {n.removesuffix(" (not shipped)") for n in rows}
    assert sorted(models) == zoo_names()
    size = {row[0].strip("*").split("*")[0].strip(): row for row in _markdown_rows(text, "## Size")}
    assert set(size) == reported
    for name in zoo_names():
        info = zoo_info(name)
        assert int(models[name][4]) == info["steps"], name
        psnr_cell, bpp_cell = size[name][-2:]  # "24.34 (-4.49 dB)", "0.5963 (-25.6%)"
        assert float(psnr_cell.split()[0]) == pytest.approx(info["kodak"]["psnr-rgb"], abs=0.011)
        assert float(bpp_cell.split()[0]) == pytest.approx(info["kodak"]["bpp"], abs=2e-4)


@pytest.fixture
def empty_zoo(tmp_path, monkeypatch):
    """The zoo's weights folder, empty, in tmp_path (the package's own is left alone)."""
    import kdlic.zoo
    import kdlic.zoo.export

    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(kdlic.zoo, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(kdlic.zoo.export, "WEIGHTS_DIR", weights)
    # an untrained tiny model codes 2 small images in ~0.05 bpp, where a byte is over 1 %
    monkeypatch.setattr(kdlic.zoo.export, "MAX_BPP_DRIFT", 0.05)
    return weights


def test_export_writes_fp16_weights_with_their_figures(empty_zoo, tiny_model, image_dir,
                                                       tmp_path):
    from kdlic.utils.checkpoint import save_checkpoint
    from kdlic.zoo.export import export_to_zoo

    source = tmp_path / "run.pt"
    save_checkpoint(source, tiny_model, {"kind": "train", "lmbda": 0.01, "step": 7})
    images = find_images(image_dir)[:2]
    figures = export_to_zoo(str(source), "tiny", images, progress=False)
    assert zoo_names() == ["tiny"] and [p.name for p in empty_zoo.iterdir()] == ["tiny.pt"]
    info = zoo_info("tiny")
    assert info["steps"] == 7 and info["kodak"] == figures and figures["images"] == 2
    # the same facts of a checkpoint outside the zoo, named after its file
    assert {k: v for k, v in checkpoint_info(source).items() if k not in ("file_mb", "kodak")} \
        == {**{k: v for k, v in info.items() if k not in ("file_mb", "kodak")}, "name": "run"}
    assert abs(figures["psnr-rgb"] - figures["fp32_psnr-rgb"]) <= 0.05


def test_export_refuses_to_outgrow_the_budget_and_writes_nothing(empty_zoo, tiny_model,
                                                                  image_dir, tmp_path,
                                                                  monkeypatch):
    import kdlic.zoo.export
    from kdlic.errors import KdlicError
    from kdlic.utils.checkpoint import save_checkpoint
    from kdlic.zoo.export import export_to_zoo

    source = tmp_path / "run.pt"
    save_checkpoint(source, tiny_model, {"kind": "train", "lmbda": 0.01, "step": 7})
    images = find_images(image_dir)[:2]
    export_to_zoo(str(source), "a", images, progress=False)
    size = zoo_bytes()
    # room for one such model: re-exporting "a" replaces it, a second name does not fit
    monkeypatch.setattr(kdlic.zoo.export, "BUDGET_BYTES", size + size // 2)
    export_to_zoo(str(source), "a", images, progress=False)
    with pytest.raises(KdlicError, match=r"over the \d+ MB budget"):
        export_to_zoo(str(source), "b", images, progress=False)
    assert [p.name for p in empty_zoo.iterdir()] == ["a.pt"] and zoo_bytes() == size
    # and a model that fp16 would change is refused, also without a trace
    monkeypatch.setattr(kdlic.zoo.export, "MAX_PSNR_DRIFT_DB", -1.0)
    with pytest.raises(KdlicError, match="fp16 changes c"):
        export_to_zoo(str(source), "c", images, progress=False)
    assert [p.name for p in empty_zoo.iterdir()] == ["a.pt"]


def test_a_zoo_decoder_takes_its_encoder_from_its_zoo_teacher(empty_zoo, tiny_model, image_dir,
                                                              tmp_path):
    import torch

    import kdlic
    from kdlic.errors import KdlicError
    from kdlic.models import build_model
    from kdlic.models.identity import ENCODER_MODULES, bind_encoder
    from kdlic.utils.checkpoint import read_checkpoint, save_checkpoint
    from kdlic.zoo import load_zoo_model
    from kdlic.zoo.export import export_to_zoo

    images = find_images(image_dir)[:2]
    # (sources named as the zoo names: a file's header carries the name, and these tiny
    # models code in a few hundred bytes)
    save_checkpoint(tmp_path / "teacher.pt", tiny_model,
                    {"kind": "train", "lmbda": 0.01, "step": 7})
    export_to_zoo(str(tmp_path / "teacher.pt"), "teacher", images, progress=False)
    teacher = load_zoo_model("teacher")
    decoder = build_model("scale-hyperprior-decoder", 4, 16, z_channels=8, encoder_N=8)
    bind_encoder(decoder, teacher)
    save_checkpoint(tmp_path / "decoder.pt", decoder,
                    {"kind": "distill", "lmbda": 0.01, "step": 3})
    export_to_zoo(str(tmp_path / "decoder.pt"), "decoder", images, progress=False)
    # the file holds the synthesis only; loading takes the rest from the zoo's teacher
    stored = read_checkpoint(empty_zoo / "decoder.pt")
    assert stored["meta"]["encoder_from"] == "teacher"
    assert not [k for k in stored["state_dict"] if k.split(".")[0] in ENCODER_MODULES]
    loaded = load_zoo_model("decoder")
    halved = {k for k, _ in decoder.named_parameters() if k.startswith("g_s.")}  # fp16 in zoo
    for key, value in decoder.state_dict().items():
        expected = value.half().float() if key in halved else value
        assert torch.equal(loaded.state_dict()[key], expected), key
    image = next(image_dir.rglob("*.png"))
    assert kdlic.decompress(kdlic.compress(image, teacher), loaded).size > (0, 0)
    # its size counts the encoder it uses (the teacher's, N=8) and its own g_s (N=4)
    assert zoo_info("teacher")["params"] / 2 < zoo_info("decoder")["params"] < zoo_info(
        "teacher")["params"]
    # a zoo teacher replaced by another model: the decoder is refused, in one line
    torch.manual_seed(1)
    save_checkpoint(empty_zoo / "teacher.pt", build_model("scale-hyperprior", 8, 16),
                    {"kind": "train", "lmbda": 0.01, "step": 9}, half=True, pack=True)
    with pytest.raises(KdlicError, match="has been replaced since"):
        load_zoo_model("decoder")
