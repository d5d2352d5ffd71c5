import copy
import json

import pytest
import torch

from kdlic.errors import KdlicError
from kdlic.models import build_model, load_model
from kdlic.training.config import (
    TRAIN_DEFAULTS,
    check_train_config,
    parse_override,
    resolve_config,
)
from kdlic.training.losses import RateDistortion
from kdlic.training.trainer import Trainer


def make_trainer(cfg, resume=False):
    m = cfg["model"]
    torch.manual_seed(123)
    model = build_model(m["arch"], m["N"], m["M"])
    return Trainer(cfg, model, RateDistortion(cfg["lmbda"]), resume=resume)


def test_training_writes_checkpoints_and_log(tiny_cfg):
    trainer = make_trainer(tiny_cfg)
    metrics = trainer.fit()
    run = trainer.run_dir
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [3, 6]
    assert {"loss", "bpp", "mse", "psnr", "lr", "aux_loss"} <= set(records[0])
    assert metrics["step"] == 6
    last = load_model(run / "last.pt")
    assert last.meta["step"] == 6 and last.meta["config"] == tiny_cfg


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tiny_cfg, tmp_path):
    straight = copy.deepcopy(tiny_cfg)
    straight["run_dir"] = str(tmp_path / "straight")
    make_trainer(straight).fit()

    stopped = copy.deepcopy(tiny_cfg)
    stopped["run_dir"] = str(tmp_path / "stopped")
    stopped["schedule"]["steps"] = 4
    make_trainer(stopped).fit()
    with open(tmp_path / "stopped" / "metrics.jsonl", "a") as log:
        log.write('{"step": 9, "split": "tr')  # a record cut short by a kill
    first = load_model(tmp_path / "stopped" / "last.pt").meta["elapsed_s"]
    stopped["schedule"]["steps"] = 6
    make_trainer(stopped, resume=True).fit()
    # the training time adds up over resumes, and best.pt records its own
    resumed = load_model(tmp_path / "stopped" / "last.pt").meta["elapsed_s"]
    best = load_model(tmp_path / "stopped" / "best.pt").meta["elapsed_s"]
    assert 0 < first < resumed and 0 < best <= resumed

    a = load_model(tmp_path / "straight" / "last.pt").state_dict()
    b = load_model(tmp_path / "stopped" / "last.pt").state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    log = (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()
    steps = [(json.loads(r)["split"], json.loads(r)["step"]) for r in log]
    assert len(steps) == len(set(steps)), "resumed log repeats records"


def test_resume_refuses_another_architecture(tiny_cfg):
    make_trainer(tiny_cfg).fit()
    other = copy.deepcopy(tiny_cfg)
    other["model"]["N"] = 16
    with pytest.raises(KdlicError, match="but this run builds"):
        make_trainer(other, resume=True)


def test_time_budget_stops_the_run(tiny_cfg):
    tiny_cfg["schedule"].update(steps=10_000, minutes=1e-9)
    trainer = make_trainer(tiny_cfg)
    trainer.fit()
    assert trainer.step < 10_000
    assert (trainer.run_dir / "last.pt").is_file()


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(KdlicError, match="unknown config key 'data.crp'"):
        resolve_config(TRAIN_DEFAULTS, overrides=[parse_override("data.crp=64")])
    cfg = resolve_config(TRAIN_DEFAULTS, overrides=[parse_override("lmbda=-1")])
    with pytest.raises(KdlicError, match="lmbda must be a positive number"):
        check_train_config(cfg)
    cfg = resolve_config(TRAIN_DEFAULTS, overrides=[parse_override("data.val_count=abc")])
    with pytest.raises(KdlicError, match="data.val_count must be a non-negative integer"):
        check_train_config(cfg)
    (tmp_path / "c.yaml").write_text("data: [1, 2]\n")
    with pytest.raises(KdlicError, match="must be a mapping"):
        resolve_config(TRAIN_DEFAULTS, tmp_path / "c.yaml")
    cfg = resolve_config(TRAIN_DEFAULTS, overrides=[parse_override("runtime.bf16=yes please")])
    with pytest.raises(KdlicError, match="runtime.bf16 must be true, false or auto"):
        check_train_config(cfg)


def test_bf16_auto_follows_the_device(monkeypatch):
    """"auto" turns bf16 on only where it runs natively (emulated bf16 is ~25x slower)."""
    from kdlic.utils import device as dev

    cpu = torch.device("cpu")
    assert dev.resolve_bf16(True, cpu) and not dev.resolve_bf16(False, cpu)
    for native in (True, False):
        monkeypatch.setattr(dev, "fast_bf16", lambda d, native=native: native)
        assert dev.resolve_bf16("auto", cpu) is native
