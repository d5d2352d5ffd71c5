"""`kdlic profile`: FLOP counts against hand counts, the profile's figures and its JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from kdlic.cli import main
from kdlic.evaluation import profile as prof
from kdlic.evaluation.profile import (
    NOT_METERED,
    count_flops,
    measure_matmul_peak,
    profile_model,
    profile_models,
    transform_flops,
)
from kdlic.models import ARCHITECTURES, build_model


def conv(cin: int, cout: int, k: int, h_out: int, w_out: int) -> int:
    """Hand count of a convolution: 2 FLOPs per multiply-add, one per weight per output."""
    return 2 * cin * cout * k * k * h_out * w_out


def deconv(cin: int, cout: int, k: int, h_in: int, w_in: int) -> int:
    """Transposed convolution: every input pixel meets every weight once."""
    return 2 * cin * cout * k * k * h_in * w_in


def gdn(c: int, h: int, w: int) -> int:
    """GDN / IGDN: a 1x1 convolution C -> C over x**2 (element-wise work not counted)."""
    return 2 * c * c * h * w


def test_single_layer_flops_match_hand_count():
    x = torch.rand(1, 3, 10, 12)
    assert count_flops(nn.Conv2d(3, 5, 3, padding=1), x)[0] == conv(3, 5, 3, 10, 12)
    x = torch.rand(1, 4, 6, 7)
    layer = nn.ConvTranspose2d(4, 2, 5, stride=2, padding=2, output_padding=1)
    assert count_flops(layer, x)[0] == deconv(4, 2, 5, 6, 7)
    total, by_op = count_flops(nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU()),
                               torch.rand(1, 3, 10, 12))
    assert total == conv(3, 5, 3, 10, 12)  # the ReLU adds nothing
    assert sum(by_op.values()) == total


def test_tiny_model_flops_match_hand_count():
    N, M, H, W = 2, 3, 64, 128
    model = build_model("scale-hyperprior", N, M).eval()
    f = transform_flops(model, (H, W))
    h2, w2, h4, w4, h8, w8, h16, w16 = H // 2, W // 2, H // 4, W // 4, H // 8, W // 8, \
        H // 16, W // 16
    g_a = (conv(3, N, 5, h2, w2) + gdn(N, h2, w2) + conv(N, N, 5, h4, w4) + gdn(N, h4, w4)
           + conv(N, N, 5, h8, w8) + gdn(N, h8, w8) + conv(N, M, 5, h16, w16))
    h_a = conv(M, N, 3, h16, w16) + conv(N, N, 5, H // 32, W // 32) + conv(N, N, 5, 1, 2)
    h_s = deconv(N, N, 5, 1, 2) + deconv(N, N, 5, H // 32, W // 32) + conv(N, M, 3, h16, w16)
    g_s = (deconv(M, N, 5, h16, w16) + gdn(N, h8, w8) + deconv(N, N, 5, h8, w8)
           + gdn(N, h4, w4) + deconv(N, N, 5, h4, w4) + gdn(N, h2, w2) + deconv(N, 3, 5, h2, w2))
    assert (f["g_a"], f["h_a"], f["h_s"], f["g_s"]) == (g_a, h_a, h_s, g_s)
    assert f["encoder"] == g_a + h_a + h_s
    assert f["decoder"] == h_s + g_s
    assert f["forward"] == g_a + h_a + h_s + g_s
    assert f["gmacs_per_frame"] == pytest.approx(f["forward"] / 2e9)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_meta_count_equals_real_count(arch):
    torch.manual_seed(0)
    model = build_model(arch, 4, None if arch.startswith("cheng") else 6).eval()
    meta = transform_flops(model, (64, 128))
    real = prof._transform_flops(model, prof.transform_inputs(model, (64, 128)),
                                 torch.device("cpu"), (64, 128))
    transforms = prof.present(model, prof.TRANSFORMS)
    assert {k: meta[k] for k in transforms} == {k: real[k] for k in transforms}
    assert all(meta[k] > 0 for k in transforms) and meta["forward"] == sum(
        meta[k] for k in transforms)


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "mbt2018"])
def test_profile_model_reads_any_architecture(arch):
    torch.manual_seed(0)
    out = profile_model(build_model(arch, 4, 6), size=(64, 64), repeats=1, warmup=0,
                        threads=1, memory=False)
    has_hyper = arch != "bmshj2018-factorized"
    assert ("h_s" in out["decoder"]["transforms"]) == has_hyper
    assert ("context_prediction" in out["decoder"]["transforms"]) == (arch == "mbt2018")
    assert out["decoder"]["flops"] > 0 and out["decoder"]["latency_s"]["median"] > 0


# The paper's table (docs/method.md section 3): N -> (params M, memory MB, GFLOPs/frame).
PAPER = {16: (0.27, 1.01, 1.02), 32: (0.64, 2.43, 2.98), 64: (1.69, 6.46, 9.67),
         96: (3.17, 12.11, 20.10), 112: (4.07, 15.53, 26.70), 128: (5.08, 20.18, 34.24)}


@pytest.mark.parametrize("n", sorted(PAPER))
def test_paper_gflops_are_multiply_adds(n):
    """The paper's "GFLOPs/frame" (fvcore) are multiply-adds: half of our 2-per-MAC FLOPs."""
    params, memory, gflops = PAPER[n]
    model = build_model("scale-hyperprior", n, 192).eval()
    f = transform_flops(model, (512, 768))
    assert round(f["gmacs_per_frame"], 2) == gflops
    assert f["gflops_per_frame"] == pytest.approx(2 * f["gmacs_per_frame"])
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6, 2) == params
    if n != 128:  # memory = fp32 params in MiB; the teacher's 20.18 also holds CDF tables
        assert round(4 * count / 2**20, 2) == memory


def test_profile_model_figures(tiny_model, tmp_path):
    peak = measure_matmul_peak(threads=1, n=128, repeats=2)
    assert peak["gflops_per_s"] > 0 and peak["threads"] == 1
    out = profile_model(tiny_model, size=(64, 128), repeats=2, warmup=1, threads=1,
                        memory=True, matmul_peak=peak)
    assert out["frame"] == [64, 128]
    parts = out["parts"]
    assert out["params"] == sum(p.numel() for p in tiny_model.parameters())
    assert out["params"] == sum(parts[n]["params"] for n in prof.present(tiny_model, prof.PARTS))
    assert out["param_memory_mib"] == pytest.approx(
        (out["param_bytes"] + out["buffer_bytes"]) / 2**20)
    for side, names, transforms in (
            ("encoder", prof.present(tiny_model, prof.ENCODER_PARTS), prof.ENCODER_TRANSFORMS[:3]),
            ("decoder", prof.present(tiny_model, prof.DECODER_PARTS), ("h_s", "g_s"))):
        s = out[side]
        assert s["params"] == sum(parts[n]["params"] for n in names)
        assert s["flops"] == sum(out["flops"][t] for t in transforms)
        lat = s["latency_s"]
        assert lat["n"] == 2 and lat["p10"] <= lat["median"] <= lat["p90"]
        assert s["fps"] == pytest.approx(1 / lat["median"])
        assert s["achieved_gflops_per_s"] > 0
        assert s["fraction_of_matmul_peak"] == pytest.approx(
            s["achieved_gflops_per_s"] / peak["gflops_per_s"])
        assert s["peak_memory_mib"] is not None and s["peak_memory_mib"] >= 0
        assert s["memory"]["method"]
        energy = s["energy_mj_per_frame"]
        assert energy == NOT_METERED or (isinstance(energy, float) and energy >= 0)
    assert out["decoder"]["params"] < out["params"]  # the receiver needs no g_a, h_a
    assert out["bytes"] > 0


def test_energy_is_not_metered_without_a_meter(tmp_path, monkeypatch):
    monkeypatch.setattr(prof.RaplMeter, "ROOT", tmp_path / "absent")
    meter, why = prof.energy_meter(torch.device("cpu"))
    assert meter is None and why.startswith(NOT_METERED)


def test_rapl_meter_sums_packages_and_handles_wraparound(tmp_path, monkeypatch):
    for pkg, value in (("intel-rapl:0", 900), ("intel-rapl:1", 50)):
        d = tmp_path / pkg
        d.mkdir()
        (d / "energy_uj").write_text(str(value))
        (d / "max_energy_range_uj").write_text("1000")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-zone: not summed again
    monkeypatch.setattr(prof.RaplMeter, "ROOT", tmp_path)
    meter, why = prof.energy_meter(torch.device("cpu"))
    assert meter is not None and "RAPL" in why
    before = meter.snapshot()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("100")  # wrapped: +200 uJ
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("350")  # +300 uJ
    assert meter.delta(before, meter.snapshot()) == pytest.approx(500e-6)


def test_profile_json_is_written_per_model_and_survives_interrupt(tmp_path):
    out = tmp_path / "profile.json"

    def stop_after_first(entry):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_models(["random:N=4,M=8", "random:8,16"], out, size=(64, 64), repeats=2,
                       warmup=0, threads=1, memory=False, matmul_n=64, progress=False,
                       on_model=stop_after_first)
    doc = json.loads(out.read_text())
    assert doc["kind"] == "kdlic-profile" and doc["complete"] is False
    assert [m["model"] for m in doc["models"]] == ["random:N=4,M=8"]
    assert doc["models"][0]["arch_args"]["N"] == 4
    assert doc["models"][0]["encoder"]["peak_memory_mib"] is None  # not measured


def test_cli_profile(tmp_path, capsys):
    image = tmp_path / "img.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "p.json"
    code = main(["profile", "random:N=4,M=8", "-o", str(out), "--image", str(image),
                 "--threads", "1", "--repeats", "2", "--warmup", "1", "--no-memory",
                 "--matmul-size", "64", "--no-progress"])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["complete"] is True and doc["settings"]["threads"] == 1
    entry = doc["models"][0]
    assert entry["frame"] == [64, 128]  # the image, padded to multiples of 64
    assert entry["name"] == "random:N=4,M=8"
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["random:N=4"], "random:N=128,M=192"),
    (["random:N=4,M=8", "--image", "/nonexistent.png"], "image not found"),
    (["random:N=4,M=8", "--size", "64by64"], "bad --size"),
    (["/nonexistent/model.pt"], "no checkpoint"),
    (["random:N=4,M=8", "--device", "cuda:0"] if not torch.cuda.is_available()
     else ["random:N=4,M=8", "--device", "nonsense"], "device"),
])
def test_cli_profile_user_errors(argv, message, capsys):
    assert main(["profile", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
