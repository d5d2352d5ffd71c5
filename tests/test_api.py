"""The Python API on every architecture, CompressAI instances, user data, the README."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai import models as cm
from PIL import Image

import kdlic
from kdlic.distillation.terms import TERMS
from kdlic.models import ARCHITECTURES, build_model, load_model
from tests.conftest import smooth_image

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.crop=64", "data.val_crop=64", "data.batch_size=2", "data.val_count=2",
        "schedule.val_every=2", "runtime.threads=1", "runtime.progress=false"]


def tiny(arch, N=8, seed=0):
    torch.manual_seed(seed)
    return build_model(arch, N, None if arch.startswith("cheng") else 16)


class Crops(torch.utils.data.Dataset):
    """Random 64x64 images in [0, 1], as a user's Dataset would give (image, label)."""

    def __init__(self, n, side=64):
        self.images = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], 0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_distils_codes_and_evaluates(arch, image_dir, tmp_path):
    teacher = tiny(arch, seed=1)
    # cheng2020's latent has N channels: a narrower one cannot match the teacher's y_hat
    preset = "output-only" if arch.startswith("cheng") else "L1"
    # a decoder-only student's architecture comes from decoder-only distillation
    decoder_only = arch.endswith("-decoder")
    run = kdlic.distill(teacher, student=4, data=image_dir, lmbda=0.01, steps=2,
                        preset="decoder" if decoder_only else preset, decoder_only=decoder_only,
                        run_dir=tmp_path / "run", overrides=TINY)
    assert run.steps == 2 and run.best.is_file()
    assert run.model.arch == arch and run.model.arch_args["N"] == 4
    assert run.config["student"]["arch"] == arch
    assert load_model(run.best).arch_args == run.model.arch_args
    image = Image.fromarray(smooth_image(np.random.default_rng(0), 70, 90))
    decoded = kdlic.decompress(kdlic.compress(image, run.model), run.model)
    assert decoded.size == (90, 70) and decoded.mode == "RGB"
    res = kdlic.evaluate([teacher, run.model], [next(image_dir.rglob("*.png"))])
    assert len(res["results"]["bpp"]) == 2 and all(b > 0 for b in res["results"]["bpp"])
    assert res["models"][1]["arch_args"]["N"] == 4


def test_compressai_instances_are_teacher_and_student(image_dir, tmp_path):
    torch.manual_seed(0)
    teacher, student = cm.MeanScaleHyperprior(8, 16), cm.MeanScaleHyperprior(4, 16)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    run = kdlic.distill(teacher, student, image_dir, lmbda=0.01, steps=2,
                        run_dir=tmp_path / "run", overrides=TINY)
    assert isinstance(run.model, cm.MeanScaleHyperprior) and run.model.arch == "mbt2018-mean"
    assert run.config["teacher"] == "<mbt2018-mean(N=8, M=16) instance>"
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_compressai_weights_of_any_architecture_load_from_a_file(tmp_path):
    torch.manual_seed(0)
    for name, model in (("mbt2018-mean", cm.MeanScaleHyperprior(8, 12)),
                        ("cheng2020-anchor", cm.Cheng2020Anchor(8)),
                        ("bmshj2018-factorized", cm.FactorizedPrior(8, 12))):
        path = tmp_path / f"{name}.pth.tar"
        torch.save(model.state_dict(), path)
        loaded = load_model(f"compressai:{name}:3:{path}")
        assert type(loaded).__bases__[-1] is type(model)
        assert loaded.meta["lmbda"] == 0.0067
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_dataset_and_a_dataloader_train(tmp_path):
    run = kdlic.train({"arch": "mbt2018-mean", "N": 4, "M": 8}, Crops(6), lmbda=0.01, steps=2,
                      run_dir=tmp_path / "ds", overrides=TINY)
    assert run.steps == 2 and run.model.arch == "mbt2018-mean"
    loader = torch.utils.data.DataLoader(Crops(6), batch_size=3, shuffle=True)
    run = kdlic.distill(run.model, 4, loader, steps=3, run_dir=tmp_path / "dl",
                        val_data=Crops(2).images, overrides=TINY)
    assert run.steps == 3 and (tmp_path / "dl" / "metrics.jsonl").is_file()
    # the student names its teacher's version, not only its name (a zoo name may be retrained)
    teachers = load_model(run.best).meta["teachers"]
    assert [(t["source"], t["step"], t["total_steps"], t["lmbda"]) for t in teachers] == \
        [(str(tmp_path / "ds" / "best.pt"), 2, 2, 0.01)]


@pytest.mark.parametrize("data, message", [
    (Crops(6, side=60), "60x60; crop or pad images to multiples of 64"),
    (Crops(2), "too few to hold out 2"),
    (42, "data must be a folder"),
])
def test_bad_user_data_is_a_one_line_error(data, message, tmp_path):
    with pytest.raises(kdlic.KdlicError, match=re.escape(message)):
        kdlic.train({"N": 4, "M": 8}, data, steps=1, run_dir=tmp_path / "r", overrides=TINY)


def test_a_narrower_cheng2020_student_cannot_take_latent_terms(image_dir, tmp_path):
    with pytest.raises(kdlic.KdlicError, match="its latent has N channels"):
        kdlic.distill(tiny("cheng2020-anchor"), 4, image_dir, lmbda=0.01, steps=1,
                      run_dir=tmp_path / "r", overrides=TINY)


def test_terms_a_model_cannot_provide_are_refused_before_training(image_dir, tmp_path):
    with pytest.raises(kdlic.KdlicError, match="compares z_hat, which the teacher "
                                               r"\(bmshj2018-factorized\) does not have"):
        kdlic.distill(tiny("bmshj2018-factorized"), 4, image_dir, lmbda=0.01, preset="L2",
                      steps=1, run_dir=tmp_path / "r", overrides=TINY)


def test_mixed_quantization_is_refused_for_autoregressive_models(image_dir, tmp_path):
    with pytest.raises(kdlic.KdlicError, match="mixed is not available for mbt2018"):
        kdlic.train(tiny("mbt2018"), image_dir, lmbda=0.01, steps=1, run_dir=tmp_path / "r",
                    overrides=[*TINY, "quantization=mixed"])


def test_a_registered_term_is_usable_by_name(image_dir, tmp_path):
    @kdlic.register_term("output_l1", needs="x_hat")
    def output_l1(student, teacher, temperature):
        return (student - teacher).abs().mean()

    try:
        run = kdlic.distill(tiny("scale-hyperprior"), 4, image_dir, lmbda=0.01, steps=2,
                            run_dir=tmp_path / "r",
                            overrides=[*TINY, "kd.weights.output_l1=0.5", "schedule.log_every=1"])
        log = (run.run_dir / "metrics.jsonl").read_text()
        assert '"output_l1"' in log
    finally:
        del TERMS["output_l1"]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- distil-example")[1]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


def test_the_readme_distillation_example_runs(tmp_path, monkeypatch):
    code = readme_example()
    # the same code on a tiny teacher, few steps and small images
    for big, small in (("N=128, M=192", "N=8, M=16"), ("student=32", "student=4"),
                       ("steps=20_000", "steps=2")):
        assert big in code
        code = code.replace(big, small)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save(cm.MeanScaleHyperprior(N=8, M=16).state_dict(), "teacher.pth")
    rng = np.random.default_rng(0)
    for folder, count in (("photos", 6), ("kodak", 1)):
        Path(folder).mkdir()
        for i in range(count):
            Image.fromarray(smooth_image(rng, 256, 256)).save(f"{folder}/{i}.png")
    Image.fromarray(smooth_image(rng, 64, 96)).save("photo.png")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert Path("runs/mbt-n32/best.pt").is_file()
    decoded = kdlic.decompress(Path("photo.kdl").read_bytes(), "runs/mbt-n32/best.pt")
    assert decoded.size == (96, 64)


def test_a_warm_start_records_the_training_behind_it(tmp_path):
    # each run records its start's id and the steps behind it when it begins, so the
    # count stays true when the start's path (or zoo name) later holds other weights
    from kdlic.models.identity import model_id
    from kdlic.utils.checkpoint import total_steps

    model = {"arch": "scale-hyperprior", "N": 4, "M": 8}
    first = kdlic.train(model, Crops(6), lmbda=0.01, steps=2, run_dir=tmp_path / "a",
                        overrides=TINY)
    assert "warm_start" not in load_model(first.last).meta
    second = kdlic.train(str(first.last), Crops(6), lmbda=0.01, steps=3,
                         run_dir=tmp_path / "b", overrides=TINY)
    record = load_model(second.last).meta["warm_start"]
    assert record["steps"] == 2 and record["source"] == str(first.last)
    assert record["unrecorded"] is None
    assert record["model_id"] == model_id(load_model(first.last)).hex()
    # the first run's file is overwritten by other weights: the second's record holds
    kdlic.train(model, Crops(6), lmbda=0.01, steps=7, run_dir=tmp_path / "a2", overrides=TINY)
    (tmp_path / "a2" / "last.pt").replace(first.last)
    third = kdlic.train(str(second.last), Crops(6), lmbda=0.01, steps=1,
                        run_dir=tmp_path / "c", overrides=TINY)
    assert load_model(third.last).meta["warm_start"]["steps"] == 5
    # steps in all: its own and its starts' (a run from scratch: its own, here the 7-step one)
    assert total_steps(load_model(third.last).meta) == 6 and total_steps(
        load_model(first.last).meta) == 7
    # a resumed run keeps its record (its init is not reloaded)
    resumed = kdlic.train(str(second.last), Crops(6), lmbda=0.01, steps=2,
                          run_dir=tmp_path / "c", overrides=TINY, resume=True)
    assert load_model(resumed.last).meta["warm_start"]["steps"] == 5
    # a config whose model differs from its init's is refused in one line
    with pytest.raises(kdlic.KdlicError, match="but the config's model is"):
        kdlic.train({"arch": "scale-hyperprior", "N": 8, "M": 16}, Crops(6), steps=1,
                    run_dir=tmp_path / "d", overrides=[*TINY, f"init={second.last}"])
