import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from kdlic.cli import main
from kdlic.distillation.objective import Distillation
from kdlic.distillation.teacher import FrozenTeacher
from kdlic.models import build_model, forward_with_latents, load_model
from kdlic.utils.checkpoint import save_checkpoint

CPU = torch.device("cpu")


def make_model(seed, N=8, M=16, z=None):
    torch.manual_seed(seed)
    return build_model("scale-hyperprior", N, M, z_channels=z)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, make_model(1, N=16, M=16), {"lmbda": 0.01, "step": 0})
    return path


def tiny_args(image_dir, run_dir, *extra):
    return ["--data", str(image_dir), "--run-dir", str(run_dir), "--crop", "64",
            "--batch-size", "2", "--steps", "4", "--val-every", "2", "--threads", "1",
            "--set", "data.val_count=2", "--set", "data.val_crop=64", "--set",
            "schedule.log_every=1", "--no-progress", *extra]


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_teacher_is_frozen_and_unchanged(teacher_file, image_dir, tmp_path):
    before = load_model(teacher_file).state_dict()
    teacher = FrozenTeacher(load_model(teacher_file), "cpu")
    student = make_model(0, N=4)
    objective = Distillation([teacher], {"latent": 0.5, "hyper": 0.0, "output": 0.5, "rd": 0.4},
                             0.01)
    objective(student, {"x": torch.rand(2, 3, 64, 64)})["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    assert main(["distill", "--teacher", str(teacher_file), "--N", "4",
                 *tiny_args(image_dir, tmp_path / "run")]) == 0
    after = load_model(teacher_file).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("term", ["latent", "latent_kl", "hyper", "output"])
def test_each_term_moves_the_student_only_when_weighted(term, teacher_file):
    teacher = FrozenTeacher(load_model(teacher_file), "cpu")
    x = {"x": torch.rand(2, 3, 64, 64)}

    def grads(weights):
        student = make_model(0, N=4, z=16)
        obj = Distillation([teacher], weights, 0.01)
        terms = obj(student, x)
        terms["loss"].backward()
        return terms, torch.cat([p.grad.flatten() for p in student.parameters()
                                 if p.grad is not None])

    terms, g_term = grads({term: 1.0})
    assert term in terms and g_term.abs().sum() > 0
    torch.manual_seed(5)
    terms_off, g_off = grads({term: 0.0, "rd": 1.0})
    torch.manual_seed(5)
    _, g_rd = grads({"rd": 1.0})
    assert term not in terms_off
    assert torch.equal(g_off, g_rd)


def test_hybrid_reads_its_second_teacher(teacher_file, tmp_path):
    t1 = FrozenTeacher(load_model(teacher_file), "cpu")
    other = make_model(9, N=16, M=16)
    with torch.no_grad():
        other.h_a[-1].bias.fill_(3.0)  # a hyper-latent clearly unlike the first teacher's
    t2 = FrozenTeacher(other, "cpu")
    student = make_model(0, N=4, z=16)
    x = torch.rand(2, 3, 64, 64)
    hybrid = Distillation([t1, t2], {"hyper": 1.0}, 0.01, term_teacher={"hyper": 1})
    torch.manual_seed(0)
    out = forward_with_latents(student, x)
    expected = torch.mean((out["z_hat"] - t2(x, {"z_hat"}, CPU)["z_hat"]) ** 2)
    not_expected = torch.mean((out["z_hat"] - t1(x, {"z_hat"}, CPU)["z_hat"]) ** 2)
    torch.manual_seed(0)
    value = hybrid(student, {"x": x})["hyper"]
    assert torch.allclose(value, expected) and not torch.allclose(value, not_expected)


def test_none_preset_equals_kdlic_train(teacher_file, image_dir, tmp_path):
    assert main(["distill", "--teacher", str(teacher_file), "--preset", "none", "--N", "8",
                 "--lmbda", "0.01", *tiny_args(image_dir, tmp_path / "kd")]) == 0
    assert main(["train", "--N", "8", "--M", "16", "--lmbda", "0.01",
                 *tiny_args(image_dir, tmp_path / "train")]) == 0
    a = load_model(tmp_path / "kd" / "last.pt").state_dict()
    b = load_model(tmp_path / "train" / "last.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_config_and_checkpoint_record_the_experiment(teacher_file, image_dir, tmp_path):
    assert main(["distill", "--teacher", str(teacher_file), "--preset", "L2", "--N", "4",
                 "--weight", "latent=0.3", "--weight", "output=0.5",  # several terms
                 *tiny_args(image_dir, tmp_path / "run")]) == 0
    student = load_model(tmp_path / "run" / "best.pt")
    cfg = student.meta["config"]
    assert cfg["kd"]["preset"] == "L2"
    assert cfg["kd"]["weights"] == {"latent": 0.3, "output": 0.5}
    assert cfg["lmbda"] == 0.01  # taken from the teacher
    assert student.arch_args == {"N": 4, "M": 16, "z_channels": 16}  # z from the teacher
    val = [r for r in read_log(tmp_path / "run") if r["split"] == "val"][-1]
    assert {"latent", "hyper", "output", "rd_loss", "psnr", "bpp"} <= set(val)


def test_cached_teacher_matches_shapes_and_skips_the_teacher(teacher_file, image_dir,
                                                             tmp_path, monkeypatch):
    calls = []
    original = FrozenTeacher.__call__

    def spy(self, x, needed, out_device):
        calls.append(tuple(x.shape))
        return original(self, x, needed, out_device)

    monkeypatch.setattr(FrozenTeacher, "__call__", spy)
    assert main(["distill", "--teacher", str(teacher_file), "--preset", "L2", "--N", "4",
                 "--cache", "disk", "--set", f"kd.cache_dir={tmp_path / 'cache'}",
                 *tiny_args(image_dir, tmp_path / "run")]) == 0
    crops = [c for c in calls if c[-1] == 64 and c[0] == 2]
    val_calls = [c for c in calls if c[0] == 2]
    # Teacher ran once per training image (whole image) and on validation crops only.
    assert len([c for c in calls if c[0] == 1]) == 7
    assert len(val_calls) == len(crops)
    assert list((tmp_path / "cache").glob("*.pt"))


@pytest.mark.parametrize("args,message", [
    (["--preset", "L7"], "unknown KD preset 'L7'"),
    (["--weight", "latent=-1"], "kd.weights.latent must be a number >= 0"),
    (["--M", "32"], "the student's has 32 channels and the teacher's 16"),
    (["--preset", "hybrid"], "needs a second teacher"),
])
def test_bad_configs_fail_before_training(args, message, teacher_file, image_dir, tmp_path,
                                          capsys):
    code = main(["distill", "--teacher", str(teacher_file), *args,
                 *tiny_args(image_dir, tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_student_starts_from_another_students_weights(teacher_file, image_dir, tmp_path,
                                                       monkeypatch, capsys):
    # a rate fine-tune: --init (CLI) or a spec as the student (API) starts from its weights
    import kdlic
    from kdlic.training.trainer import Trainer

    assert main(["distill", "--teacher", str(teacher_file), "--N", "4",
                 *tiny_args(image_dir, tmp_path / "a")]) == 0
    first = tmp_path / "a" / "last.pt"
    handed = []
    original = Trainer.__init__

    def spy(self, cfg, model, *args, **kwargs):
        handed.append(copy.deepcopy(model.state_dict()))
        original(self, cfg, model, *args, **kwargs)

    monkeypatch.setattr(Trainer, "__init__", spy)
    assert main(["distill", "--teacher", str(teacher_file), "--N", "4", "--init", str(first),
                 "--lmbda", "0.02", *tiny_args(image_dir, tmp_path / "b")]) == 0
    start = load_model(first).state_dict()
    assert all(torch.equal(handed[-1][k], start[k]) for k in start)
    meta = load_model(tmp_path / "b" / "last.pt").meta
    assert meta["config"]["init"] == str(first) and meta["warm_start"]["steps"] == 4
    # the API takes the sizes from the spec
    run = kdlic.distill(str(teacher_file), str(first), str(image_dir), steps=1,
                        run_dir=tmp_path / "c", overrides=[
                            "data.crop=64", "data.batch_size=2", "data.val_count=2",
                            "data.val_crop=64", "runtime.threads=1", "runtime.progress=false"])
    assert run.model.arch_args["N"] == 4 and all(
        torch.equal(handed[-1][k], start[k]) for k in start)
    # another size is refused before training, in one line
    capsys.readouterr()
    assert main(["distill", "--teacher", str(teacher_file), "--N", "8", "--init", str(first),
                 *tiny_args(image_dir, tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert f"init {first} is scale-hyperprior" in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


def test_missing_teacher_file(image_dir, tmp_path, capsys):
    code = main(["distill", "--teacher", str(tmp_path / "nope.pt"),
                 *tiny_args(image_dir, tmp_path / "run")])
    assert code == 2 and "no checkpoint file or zoo model" in capsys.readouterr().err


def test_two_process_gloo_run_matches_one_process(teacher_file, image_dir, tmp_path):
    common = ["--teacher", str(teacher_file), "--N", "4",
              *tiny_args(image_dir, tmp_path / "X", "--batch-size", "4")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = copy.copy(common)
    one[one.index(str(tmp_path / "X"))] = str(tmp_path / "one")
    assert main(["distill", *one]) == 0
    two = copy.copy(common)
    two[two.index(str(tmp_path / "X"))] = str(tmp_path / "two")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port=29517", "-m", "kdlic", "distill", *two],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "two").glob("*.pt")) == ["best.pt", "last.pt"]
    log1 = [r for r in read_log(tmp_path / "one") if r["split"] == "train"]
    log2 = [r for r in read_log(tmp_path / "two") if r["split"] == "train"]
    assert [r["step"] for r in log2] == [1, 2, 3, 4]  # one writer: no duplicate records
    # Same crops and initial weights; only the quantisation noise differs per rank.
    assert log2[0]["loss"] == pytest.approx(log1[0]["loss"], rel=0.05)
    assert load_model(tmp_path / "two" / "last.pt").meta["step"] == 4


def test_cli_distils_a_compressai_file_into_another_architecture(image_dir, tmp_path):
    from compressai.models import MeanScaleHyperprior

    torch.manual_seed(0)
    weights = tmp_path / "mbt2018-mean-q3.pth.tar"
    torch.save(MeanScaleHyperprior(8, 16).state_dict(), weights)
    run = tmp_path / "run"
    assert main(["distill", "--teacher", f"compressai:mbt2018-mean:3:{weights}",
                 "--student-arch", "bmshj2018-factorized", "--N", "4",
                 *tiny_args(image_dir, run)]) == 0
    student = load_model(run / "best.pt")
    assert student.arch == "bmshj2018-factorized" and student.arch_args == {"N": 4, "M": 16}
    assert student.meta["lmbda"] == 0.0067  # CompressAI's lambda for quality 3
