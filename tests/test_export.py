"""ONNX export (kdlic export, Codec.from_export, --backend onnxruntime): the graphs load
in ONNX Runtime, the exact h_s graph equals the fixed-point h_s, files decode to the
torch path's latents exactly and its pixels within one level, int8 is deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")

import onnxruntime as ort  # noqa: E402

import kdlic  # noqa: E402
from kdlic.cli import main  # noqa: E402
from kdlic.codec import Codec  # noqa: E402
from kdlic.codec.export import (  # noqa: E402
    build_export,
    equalised_gdn_outputs,
    read_export,
    write_export,
)
from kdlic.codec.fixedpoint import FixedPointSequential, to_fixed  # noqa: E402
from kdlic.errors import KdlicError  # noqa: E402
from kdlic.models import build_model  # noqa: E402
from kdlic.utils.checkpoint import save_checkpoint  # noqa: E402
from tests.test_codec import decoded_latents, make_model, smooth  # noqa: E402
from tests.test_codec_mean_scale import make_mean_model  # noqa: E402
from tests.test_decoder_only import decoder_of  # noqa: E402

MODELS = {"scale-hyperprior": make_model, "mbt2018-mean": make_mean_model}


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory, image_dir):
    """(model, export folder with an int8 synthesis calibrated on the test images)."""
    model = MODELS[request.param]()
    out = tmp_path_factory.mktemp("export") / request.param
    kdlic.export(model, out, calibration=image_dir)
    return model, out


def test_graphs_load_and_hyper_is_exact(exported):
    model, out = exported
    export = read_export(out)
    assert set(export.graphs) == {"analysis", "hyper", "synthesis", "synthesis_int8"}
    sessions = {k: ort.InferenceSession(v, providers=["CPUExecutionProvider"])
                for k, v in export.graphs.items()}
    z = to_fixed(torch.round(torch.randn(2, 8, 3, 5) * 4))  # a batch: as the torch h_s
    (params,) = sessions["hyper"].run(None, {"z_fixed": z.numpy()})
    assert np.array_equal(params, FixedPointSequential(model.h_s)(z).numpy())
    x = torch.rand(1, 3, 128, 192)  # dynamic sizes: any multiple of 64
    y, _ = sessions["analysis"].run(None, {"x": x.numpy()})
    with torch.no_grad():
        assert np.allclose(y, model.g_a(x).numpy(), atol=1e-4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_id"] == Codec(model).id.hex()


def test_decodes_torch_files_exactly(exported, monkeypatch):
    model, out = exported
    torch_codec, onnx_codec = Codec(model), Codec.from_export(out)
    rgb = smooth(72, 100)
    data = torch_codec.encode(rgb)
    assert torch.equal(decoded_latents(onnx_codec, data, monkeypatch),
                       decoded_latents(torch_codec, data, monkeypatch))
    a = np.asarray(torch_codec.decode(data), dtype=int)
    b = np.asarray(onnx_codec.decode(data), dtype=int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1
    # and the other way: a file written by the ONNX encoder decodes with torch
    other = onnx_codec.encode(rgb)
    c = np.asarray(torch_codec.decode(other), dtype=int)
    assert np.abs(c - a).mean() < 1


def test_backend_from_a_model_is_the_same(exported):
    model, out = exported
    rgb = smooth(64, 64, seed=2)
    data = Codec(model).encode(rgb)
    expected = np.asarray(Codec.from_export(out).decode(data))
    assert np.array_equal(np.asarray(Codec(model, backend="onnxruntime").decode(data)),
                          expected)
    assert np.array_equal(np.asarray(kdlic.decompress(data, out)), expected)  # the API


@pytest.mark.parametrize("int8", [False, True])
def test_thread_independent(exported, int8):
    model, out = exported
    codec = Codec.from_export(out, int8=int8)
    data = Codec(model).encode(smooth(300, 260, seed=1))
    threads = torch.get_num_threads()
    try:
        decoded = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            decoded.append(np.asarray(codec.decode(data)))
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(decoded[0], d) for d in decoded[1:])


def test_int8_changes_pixels_only(exported, monkeypatch):
    model, out = exported
    fp32, int8 = Codec.from_export(out), Codec.from_export(out, int8=True)
    rgb = smooth(96, 96, seed=4)
    data = fp32.encode(rgb)
    assert torch.equal(decoded_latents(int8, data, monkeypatch),
                       decoded_latents(fp32, data, monkeypatch))
    a = np.asarray(fp32.decode(data), dtype=float)
    b = np.asarray(int8.decode(data), dtype=float)
    assert a.shape == b.shape and np.abs(a - b).mean() < 4


def test_gdn_equalisation_keeps_the_function(exported):
    """The float graph the int8 quantiser starts from: GDN outputs rescaled (so its
    weights change) yet the same pixels, up to float rounding."""
    model, out = exported
    graph = read_export(out).graphs["synthesis"]
    latents = [np.round(np.random.default_rng(i).normal(0, 4, (1, 16, 4, 6))).astype(np.float32)
               for i in range(3)]
    equalised = equalised_gdn_outputs(graph, latents)
    assert equalised != graph
    a, b = (ort.InferenceSession(g, providers=["CPUExecutionProvider"]) for g in (graph,
                                                                                  equalised))
    y = {"y_hat": latents[0]}
    assert np.abs(a.run(None, y)[0].astype(int) - b.run(None, y)[0].astype(int)).max() <= 1


def test_decoder_only_export_decodes_the_teachers_files(tmp_path):
    teacher = make_model()
    student = decoder_of(teacher)
    out = kdlic.export(student, tmp_path / "dec")
    data = Codec(teacher).encode(smooth(64, 80))
    assert Codec.from_export(out).decode(data).size == (80, 64)
    other = Codec(make_model(seed=5)).encode(smooth(64, 80))
    with pytest.raises(KdlicError, match="decoder-only"):
        Codec.from_export(out).decode(other)


def test_refusals(tmp_path):
    with pytest.raises(KdlicError, match="exact coder"):
        build_export(build_model("bmshj2018-factorized", 8, 16))
    out = kdlic.export(make_model(), tmp_path / "e")
    with pytest.raises(KdlicError, match="exists"):
        kdlic.export(make_model(), out)
    with pytest.raises(KdlicError, match="no int8"):
        Codec.from_export(out, int8=True)
    (tmp_path / "plain").mkdir()
    with pytest.raises(KdlicError, match="not a kdlic ONNX export"):
        write_export(build_export(make_model()), tmp_path / "plain", force=True)
    (out / "hyper.onnx").unlink()
    with pytest.raises(KdlicError, match="cannot read the ONNX export"):
        Codec.from_export(out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(KdlicError, match="version 99"):
        read_export(out)


def test_cli(tmp_path, image_dir, capsys):
    model_file = tmp_path / "m.pt"
    save_checkpoint(model_file, make_model(), {"lmbda": 0.01, "step": 0})
    Image.fromarray(smooth(70, 90)).save(tmp_path / "a.png")
    out = tmp_path / "onnx"
    assert main(["export", str(model_file), "-o", str(out), "--int8",
                 "--calibration", str(image_dir)]) == 0
    assert main(["compress", str(tmp_path / "a.png"), "-m", str(model_file),
                 "-o", str(tmp_path / "a.kdl")]) == 0
    for name, extra in [("t.png", []), ("o.png", ["-m", str(out)]),
                        ("i.png", ["-m", str(out), "--int8"]),
                        ("b.png", ["-m", str(model_file), "--backend", "onnxruntime"])]:
        extra = extra if "-m" in extra else ["-m", str(model_file), *extra]
        assert main(["decompress", str(tmp_path / "a.kdl"), "-o", str(tmp_path / name),
                     *extra]) == 0
    t, o, b = (np.asarray(Image.open(tmp_path / n), dtype=int) for n in ("t.png", "o.png",
                                                                        "b.png"))
    assert np.abs(t - o).max() <= 1 and np.array_equal(o, b)
    capsys.readouterr()
    for argv, message in [
        (["decompress", str(tmp_path / "a.kdl"), "-m", str(model_file), "--int8"],
         "calibrated at export"),
        (["decompress", str(tmp_path / "a.kdl"), "-m", str(out), "--bf16"], "ONNX export"),
        (["export", str(model_file), "-o", str(out)], "exists"),
        (["export", str(model_file), "-o", str(tmp_path / "x"), "--int8"], "go together"),
    ]:
        assert main([*argv, "-o", str(tmp_path / "never.png")] if argv[0] == "decompress"
                    else argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "never.png").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("damage", ["corrupt-graph", "manifest-key", "manifest-list",
                                    "no-synthesis", "z-tables", "y-tables"])
def test_a_damaged_export_is_one_clean_error(damage, tmp_path):
    out = kdlic.export(make_model(), tmp_path / "e")
    manifest = json.loads((out / "manifest.json").read_text())
    tables = json.loads((out / "tables.json").read_text())
    if damage == "corrupt-graph":
        (out / "synthesis.onnx").write_bytes(b"not a graph")
    elif damage == "manifest-key":
        del manifest["y_channels"]
    elif damage == "manifest-list":
        manifest = [manifest]
    elif damage == "no-synthesis":
        del manifest["graphs"]["synthesis"]
    elif damage == "z-tables":
        tables["z"]["medians"] = tables["z"]["medians"][:-1]
    elif damage == "y-tables":
        tables["y"]["thresholds"][0] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "tables.json").write_text(json.dumps(tables))
    with pytest.raises(KdlicError) as exc:
        Codec.from_export(out)  # fails when opened, before any file is decoded
    assert "\n" not in str(exc.value)


def test_export_folders_are_written_whole_and_readable(tmp_path, monkeypatch):
    out = kdlic.export(make_model(), tmp_path / "e")
    assert (out.stat().st_mode & 0o755) == 0o755  # not mkdtemp's 0700
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(*args):
        raise OSError(28, "No space left on device")

    import kdlic.codec.export as export_module

    monkeypatch.setattr(export_module.Path, "write_bytes", fail)
    with pytest.raises(KdlicError, match="No space left"):
        kdlic.export(make_model(seed=3), out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old one, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no leftovers


def test_a_long_model_name_is_not_an_export_error(tmp_path, capsys):
    (tmp_path / "x.kdl").write_bytes(Codec(make_model()).encode(smooth(32, 32)))
    assert main(["decompress", str(tmp_path / "x.kdl"), "-m", "m" * 300]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint file or zoo model" in err and len(err.splitlines()) == 1
