"""Bad input: one line naming the problem, exit code 2, no traceback, no output file."""

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from kdlic.cli import main
from kdlic.utils.checkpoint import save_checkpoint


@dataclass
class Result:
    returncode: int
    stderr: str


@pytest.fixture
def kdlic(capsys):
    """Run the CLI in-process (same entry point as the `kdlic` script, faster)."""

    def run(*args):
        code = main([str(a) for a in args])
        return Result(code, capsys.readouterr().err)

    return run


def test_entry_point_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kdlic", "evaluate", str(tmp_path / "x.pt")],
                          capture_output=True, text=True, timeout=120)
    assert_clean_error(proc, "no checkpoint file or zoo model")


def assert_clean_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("kdlic")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from kdlic.models import build_model

    path = tmp_path_factory.mktemp("ck") / "m.pt"
    save_checkpoint(path, build_model("scale-hyperprior", 8, 16), {"lmbda": 0.01})
    return path


def test_a_reader_that_leaves_early_is_no_error():
    """`kdlic zoo list | head -1`: the pipe closes before kdlic writes; no traceback."""
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-m", "kdlic", "zoo", "list"], stdout=write,
                          stderr=subprocess.PIPE, text=True)
    os.close(write)
    assert proc.stderr == "" and proc.returncode == 141  # 128 + SIGPIPE, as a shell says


def test_evaluate_missing_folder(kdlic, ckpt, tmp_path):
    assert_clean_error(kdlic("evaluate", ckpt, "-i", tmp_path / "nope"), "not found")


def test_evaluate_empty_folder(kdlic, ckpt, tmp_path):
    assert_clean_error(kdlic("evaluate", ckpt, "-i", tmp_path), "no readable images")


def test_evaluate_non_image_file(kdlic, ckpt, tmp_path):
    (tmp_path / "x.png").write_text("hello")
    assert_clean_error(kdlic("evaluate", ckpt, "-i", tmp_path / "x.png"), "no readable images")


def test_truncated_checkpoint(kdlic, ckpt, tmp_path, image_dir):
    bad = tmp_path / "t.pt"
    bad.write_bytes(ckpt.read_bytes()[:1000])
    assert_clean_error(kdlic("evaluate", bad, "-i", image_dir), "truncated")


def test_checkpoint_of_another_architecture(kdlic, ckpt, tmp_path, image_dir):
    data = torch.load(ckpt, weights_only=True)
    data["arch"] = "no-such-architecture"
    torch.save(data, tmp_path / "o.pt")
    assert_clean_error(kdlic("evaluate", tmp_path / "o.pt", "-i", image_dir),
                       "unknown architecture")


@pytest.mark.parametrize("flag,value", [("--N", 0), ("--N", -4), ("--M", 0)])
def test_train_refuses_bad_sizes(kdlic, flag, value, image_dir, tmp_path):
    proc = kdlic("train", flag, value, "--data", image_dir, "--run-dir", tmp_path / "r")
    assert_clean_error(proc, "must be a positive integer")
    assert not (tmp_path / "r").exists()


def test_train_missing_data(kdlic, tmp_path):
    proc = kdlic("train", "--N", 8, "--M", 16, "--data", tmp_path / "none",
                 "--run-dir", tmp_path / "r")
    assert_clean_error(proc, "image folder not found")


def test_resume_without_checkpoint(kdlic, image_dir, tmp_path):
    proc = kdlic("train", "--N", 8, "--M", 16, "--data", image_dir, "--run-dir", tmp_path,
                 "--resume")
    assert_clean_error(proc, "checkpoint not found")


@pytest.mark.parametrize("device", ["foo", "cuda:7" if torch.cuda.is_available() else "cuda"])
def test_bad_device_is_a_one_line_error(kdlic, ckpt, image_dir, device):
    assert_clean_error(kdlic("evaluate", ckpt, "-i", image_dir, "--device", device), "device")


def test_a_run_is_never_overwritten_without_resume(kdlic, image_dir, tmp_path):
    args = ["train", "--N", 8, "--M", 16, "--data", image_dir, "--run-dir", tmp_path,
            "--crop", 64, "--batch-size", 2, "--steps", 1, "--val-every", 1,
            "--set", "data.val_count=2", "--set", "data.val_crop=64", "--no-progress"]
    assert kdlic(*args).returncode == 0
    before = (tmp_path / "last.pt").read_bytes()
    assert_clean_error(kdlic(*args), "already holds a run")
    assert (tmp_path / "last.pt").read_bytes() == before


@pytest.mark.parametrize("override,message", [
    ("optim.lr=[1", "expected ',' or ']'"),
    ("optim.lr=!!python/object/apply:os.system ['echo pwned']",
     "could not determine a constructor for the tag"),
])
def test_set_values_must_be_plain_yaml(kdlic, image_dir, tmp_path, override, message):
    proc = kdlic("train", "--N", 8, "--M", 16, "--data", image_dir, "--run-dir", tmp_path / "r",
                 "--set", override)
    assert_clean_error(proc, "is not plain YAML", message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,config,message", [
    (["--lr", "inf"], None, "optim.lr must be a positive finite number"),
    ([], "optim:\n  lr: .inf\n", "optim.lr must be a positive finite number"),
    ([], "lmbda: .inf\n", "lmbda must be a positive finite number"),
    (["--lmbda", "nan"], None, "lmbda must be a positive finite number"),
])
def test_non_finite_hyperparameters_are_refused(kdlic, image_dir, tmp_path, args, config,
                                                 message):
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
        args = [*args, "-c", tmp_path / "c.yaml"]
    proc = kdlic("train", "--N", 8, "--M", 16, "--data", image_dir, "--run-dir", tmp_path / "r",
                 *args)
    assert_clean_error(proc, message)
    assert not (tmp_path / "r").exists()


def test_an_invalid_config_file_is_one_line(kdlic, image_dir, tmp_path):
    (tmp_path / "c.yaml").write_text("optim:\n  lr: [1\n")
    proc = kdlic("train", "-c", tmp_path / "c.yaml", "--data", image_dir,
                 "--run-dir", tmp_path / "r")
    assert_clean_error(proc, "is not valid YAML", "line 3")
    assert not (tmp_path / "r").exists()
