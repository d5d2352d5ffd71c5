import re

import pytest
import torch

from kdlic.errors import KdlicError
from kdlic.models import build_model, forward_with_latents, latent_shapes, load_model
from kdlic.models.latents import set_transform_dtype
from kdlic.utils.checkpoint import save_checkpoint


def test_forward_with_latents_exposes_distillation_outputs(tiny_model):
    out = forward_with_latents(tiny_model, torch.rand(2, 3, 128, 64))
    assert out["x_hat"].shape == (2, 3, 128, 64)
    assert out["y_hat"].shape == (2, 16, 8, 4)
    assert out["z_hat"].shape == (2, 8, 2, 1)
    assert out["likelihoods"]["y"].shape == out["y_hat"].shape
    assert out["likelihoods"]["z"].shape == out["z_hat"].shape


def test_z_channels_sets_hyper_latent_width():
    model = build_model("scale-hyperprior", 8, 16, z_channels=32)
    assert latent_shapes(model)["z_hat"] == (32, 1, 1)


def test_bf16_autocast_keeps_entropy_models_fp32(tiny_model):
    seen = {}
    tiny_model.gaussian_conditional.register_forward_pre_hook(
        lambda m, args: seen.update(scales=args[1].dtype))
    tiny_model.g_s[0].register_forward_hook(lambda m, a, out: seen.update(g_s=out.dtype))
    set_transform_dtype(tiny_model, torch.bfloat16)
    out = tiny_model(torch.rand(1, 3, 64, 64))
    assert seen == {"g_s": torch.bfloat16, "scales": torch.float32}  # h_s's output cast back
    assert out["x_hat"].dtype == torch.float32
    assert out["likelihoods"]["y"].dtype == torch.float32
    set_transform_dtype(tiny_model, None)
    tiny_model(torch.rand(1, 3, 64, 64))
    assert seen["g_s"] == torch.float32


@pytest.mark.parametrize("N,M", [(0, 16), (-8, 16), (8, 0), (8, -1), (8.5, 16)])
def test_bad_sizes_are_refused(N, M):
    with pytest.raises(KdlicError, match="must be a positive integer"):
        build_model("scale-hyperprior", N, M)


def test_checkpoint_round_trip_rebuilds_the_same_model(tiny_model, tmp_path):
    x = torch.rand(1, 3, 64, 64)
    tiny_model.eval()
    save_checkpoint(tmp_path / "m.pt", tiny_model, {"lmbda": 0.01, "step": 7})
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.arch_args == tiny_model.arch_args
    assert loaded.meta == {"lmbda": 0.01, "step": 7}
    a, b = tiny_model.state_dict(), loaded.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(tiny_model(x)["x_hat"], loaded(x)["x_hat"])


def test_fp16_checkpoint_loads_into_fp32(tiny_model, tmp_path):
    save_checkpoint(tmp_path / "h.pt", tiny_model, {}, half=True)
    loaded = load_model(tmp_path / "h.pt")
    p = loaded.g_a[0].weight
    assert p.dtype == torch.float32
    assert torch.allclose(p, tiny_model.g_a[0].weight, atol=1e-3)


def test_packed_fp16_checkpoint_is_lossless_and_smaller(tiny_model, tmp_path):
    save_checkpoint(tmp_path / "h.pt", tiny_model, {}, half=True)
    save_checkpoint(tmp_path / "p.pt", tiny_model, {}, half=True, pack=True)
    assert "packed_half" in torch.load(tmp_path / "p.pt", weights_only=True)
    a, b = load_model(tmp_path / "h.pt").state_dict(), load_model(tmp_path / "p.pt").state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "p.pt").stat().st_size < (tmp_path / "h.pt").stat().st_size


@pytest.mark.parametrize("damage", ["cut", "shape", "names"])
def test_corrupt_packed_weights_are_reported(tiny_model, tmp_path, damage):
    save_checkpoint(tmp_path / "p.pt", tiny_model, {}, half=True, pack=True)
    ckpt = torch.load(tmp_path / "p.pt", weights_only=True)
    packed = ckpt["packed_half"]
    if damage == "cut":
        packed["high"] = packed["high"][:-5]
    elif damage == "shape":
        packed["shapes"][0] = [10**6, 10**6]
    else:
        packed["names"].pop()
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(KdlicError, match="corrupt packed weights"):
        load_model(tmp_path / "bad.pt")


def test_loading_never_unpickles_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "kdlic-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(KdlicError, match="refusing to load") as info:
        load_model(tmp_path / "evil.pt")
    # PyTorch's advice to retry with weights_only=False is not passed on.
    message = str(info.value)
    assert "kdlic never loads such files" in message and "print" in message
    assert "weights_only" not in message and "\n" not in message


def test_truncated_checkpoint_is_reported(tiny_model, tmp_path):
    save_checkpoint(tmp_path / "m.pt", tiny_model, {})
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(KdlicError, match="truncated or not a checkpoint"):
        load_model(tmp_path / "t.pt")


def test_weights_that_do_not_fit_the_architecture(tiny_model, tmp_path):
    save_checkpoint(tmp_path / "m.pt", tiny_model, {})
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    ckpt["arch_args"]["N"] = 16
    torch.save(ckpt, tmp_path / "lie.pt")
    with pytest.raises(KdlicError, match="weights do not fit scale-hyperprior"):
        load_model(tmp_path / "lie.pt")
    ckpt["arch"] = "no-such-architecture"
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(KdlicError, match="unknown architecture"):
        load_model(tmp_path / "other.pt")


def test_compressai_weights_missing_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(KdlicError, match="does not download"):
        load_model("compressai:bmshj2018-hyperprior:5")


def test_compressai_weights_from_a_local_file(tiny_model, tmp_path):
    # A CompressAI-style raw state dict with CompressAI's parameter names.
    torch.save(tiny_model.state_dict(), tmp_path / "w.pth.tar")
    model = load_model(f"compressai:bmshj2018-hyperprior:3:{tmp_path / 'w.pth.tar'}")
    assert model.arch_args["N"] == 8 and model.meta["lmbda"] == 0.0067


def _edited_checkpoint(model, tmp_path, edit) -> str:
    save_checkpoint(tmp_path / "m.pt", model, {})
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, tmp_path / "bad.pt")
    return str(tmp_path / "bad.pt")


MALFORMED = {
    "extra arch_args key": (lambda c: c["arch_args"].update(depth=3),
                            "scale-hyperprior takes N, M, z_channels, not depth"),
    "arch not a string": (lambda c: c.update(arch=7), "'arch' must be a string"),
    "arch_args a list": (lambda c: c.update(arch_args=[8, 16]), "'arch_args' must be a mapping"),
    "state_dict a list": (lambda c: c.update(state_dict=[1, 2]), "'state_dict' must be a mapping"),
    "weight not a tensor": (lambda c: c["state_dict"].update({"g_a.0.weight": "w"}),
                            "'g_a.0.weight' is a str, not a tensor"),
    "N a string": (lambda c: c["arch_args"].update(N="8"), "N must be a positive integer"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_checkpoint_metadata_is_refused(tiny_model, tmp_path, case):
    edit, message = MALFORMED[case]
    with pytest.raises(KdlicError, match=re.escape(message)) as info:
        load_model(_edited_checkpoint(tiny_model, tmp_path, edit))
    assert "\n" not in str(info.value)


def test_sizes_are_checked_against_the_weights_before_building(tiny_model, tmp_path,
                                                                monkeypatch):
    """N=20000 with an empty state dict once allocated 5.4 GB before failing."""
    from kdlic.models import registry

    built = []

    class Spy(registry.ARCHITECTURES["scale-hyperprior"]):
        def __init__(self, N, M, z_channels=None):
            real = not isinstance(torch.empty(0), torch._subclasses.FakeTensor)
            built.append(real)
            assert not (real and N > 1000), "a real N=20000 model was about to be built"
            super().__init__(N, M, z_channels)

    monkeypatch.setitem(registry.ARCHITECTURES, "scale-hyperprior", Spy)

    def huge(ckpt):
        ckpt["arch_args"]["N"] = 20000
        ckpt["state_dict"] = {}

    with pytest.raises(KdlicError, match="weights do not fit scale-hyperprior"):
        load_model(_edited_checkpoint(tiny_model, tmp_path, huge))
    assert built == [False]  # only the shape-only model was built
    load_model(tmp_path / "m.pt")  # a good file: shapes checked, then built for real
    assert built == [False, False, True]


@pytest.mark.parametrize("tensor", ["g_a.0.weight", "h_s.0.bias", "entropy_bottleneck.quantiles",
                                    "g_s.6.weight"])
@pytest.mark.parametrize("half", [False, True])
def test_non_finite_weights_are_refused_at_load_time(tiny_model, tmp_path, tensor, half):
    with torch.no_grad():
        tiny_model.state_dict()[tensor].view(-1)[0] = float("nan" if half else "inf")
    save_checkpoint(tmp_path / "nan.pt", tiny_model, {}, half=half, pack=half)
    with pytest.raises(KdlicError, match=f"weight tensor '{tensor}' holds NaN or infinite"):
        load_model(tmp_path / "nan.pt")


def test_a_name_too_long_for_a_file_is_a_clean_error():
    with pytest.raises(KdlicError, match="no checkpoint file or zoo model"):
        load_model("x" * 300)


def test_fp16_files_keep_the_likelihood_bound(tiny_model, tmp_path):
    """1e-9 underflows fp16: a zero bound let a likelihood reach 0 and the loss inf."""
    save_checkpoint(tmp_path / "h.pt", tiny_model, {}, half=True, pack=True)
    raw = torch.load(tmp_path / "h.pt", weights_only=True)
    assert raw["state_dict"]["gaussian_conditional.likelihood_lower_bound.bound"].dtype == \
        torch.float32
    # a file from before the fix: every float tensor in fp16, the bound stored as 0
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in tiny_model.state_dict().items()}
    raw = {**raw, "state_dict": state}
    raw.pop("packed_half")
    torch.save(raw, tmp_path / "old.pt")
    assert float(state["entropy_bottleneck.likelihood_lower_bound.bound"]) == 0
    loaded = load_model(tmp_path / "old.pt")
    for module in (loaded.entropy_bottleneck, loaded.gaussian_conditional):
        assert float(module.likelihood_lower_bound.bound) == pytest.approx(1e-9)
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        liks = loaded(x)["likelihoods"]
    assert all(float(v.min()) > 0 for v in liks.values())


def test_a_home_relative_path_loads(tiny_model, tmp_path, monkeypatch):
    """Configs name checkpoints under ~/.cache/kdlic/runs: ~ is the user's home."""
    monkeypatch.setenv("HOME", str(tmp_path))
    save_checkpoint(tmp_path / "m.pt", tiny_model, {"lmbda": 0.01})
    assert load_model("~/m.pt").arch_args == tiny_model.arch_args
