import copy
import json
import math

import pytest
import torch

from kdlic.errors import KdlicError
from kdlic.models import build_model, forward_with_latents, load_model
from kdlic.models.latents import set_quantization
from kdlic.training.config import (
    TRAIN_DEFAULTS,
    check_train_config,
    parse_override,
    resolve_config,
)
from kdlic.training.losses import RateDistortion
from kdlic.training.trainer import Trainer
from kdlic.utils.checkpoint import read_checkpoint


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


def test_snapshots_keep_fp16_eval_weights_every_k_steps(tiny_cfg):
    tiny_cfg["schedule"]["snapshot_every"] = 2
    tiny_cfg["optim"]["ema"] = 0.9
    trainer = make_trainer(tiny_cfg)
    trainer.fit()
    snaps = sorted((trainer.run_dir / "snapshots").iterdir())
    assert [p.name for p in snaps] == ["step-0000002.pt", "step-0000004.pt", "step-0000006.pt"]
    ckpt = read_checkpoint(snaps[-1])
    assert "train_state" not in ckpt and ckpt["meta"]["step"] == 6
    last = read_checkpoint(trainer.run_dir / "last.pt")["state_dict"]  # the EMA weights
    params = {name for name, _ in trainer.model.named_parameters()}
    for name, value in ckpt["state_dict"].items():
        if name in params:
            assert value.dtype == torch.float16
            torch.testing.assert_close(value.float(), last[name].half().float())
        else:  # buffers stay fp32 (fp16 would zero the 1e-9 likelihood bound)
            torch.testing.assert_close(value, last[name])


RECIPES = {
    "plain": {},
    # the recipe options at once: the averaged weights, the warm-up, mixed
    # quantisation and downscaled crops must all resume exactly too (the final decay
    # depends on schedule.steps, which this test changes)
    "recipe": {"optim": {"ema": 0.9, "warmup_steps": 3},
               "quantization": "mixed", "data": {"downscale": 0.5}},
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tiny_cfg, tmp_path, recipe):
    tiny_cfg = resolve_config(tiny_cfg, overrides=[RECIPES[recipe]])
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

    a = read_checkpoint(tmp_path / "straight" / "last.pt")
    b = read_checkpoint(tmp_path / "stopped" / "last.pt")
    for name in a["state_dict"]:
        assert torch.equal(a["state_dict"][name], b["state_dict"][name]), name
    if recipe == "recipe":  # and the raw weights next to the averaged ones
        raw_a, raw_b = a["train_state"]["raw_model"], b["train_state"]["raw_model"]
        assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)
        assert not all(torch.equal(raw_a[k], a["state_dict"][k]) for k in raw_a)
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
    with pytest.raises(KdlicError, match="lmbda must be a positive finite number"):
        check_train_config(cfg)
    for override in ("lmbda=.inf", "optim.lr=.inf", "optim.lr=.nan", "optim.ema=1.0",
                     "quantization=round", "data.downscale=0", "data.train=[]"):
        cfg = resolve_config(TRAIN_DEFAULTS, overrides=[parse_override(override)])
        with pytest.raises(KdlicError, match=override.split("=")[0]):
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


def test_learning_rate_warms_up_and_decays_to_the_floor(tiny_cfg):
    tiny_cfg["optim"].update(lr=1e-3, warmup_steps=4, decay_steps=10, min_lr=1e-5)
    tiny_cfg["schedule"]["steps"] = 20
    trainer = make_trainer(tiny_cfg)
    lrs = [trainer.learning_rate(s) for s in range(20)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lrs[4:11] == pytest.approx([1e-3] * 7)  # flat until the last 10 steps
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert 1e-5 < lrs[-1] < 1e-4
    trainer.plateau.scale = 0.5  # plateau halvings multiply in
    assert trainer.learning_rate(5) == pytest.approx(5e-4)


def test_plateau_halves_after_patience_validations_without_a_best(tiny_cfg):
    tiny_cfg["optim"].update(plateau_patience=1, plateau_factor=0.5)
    trainer = make_trainer(tiny_cfg)
    for value in (3.0, 2.0, 2.5, 2.5, 2.5, 1.0):
        trainer.plateau.update(value)
    assert trainer.plateau.scale == 0.5  # one halving after two bad ones; the third resets
    del trainer  # its run directory lock with it
    tiny_cfg["optim"]["plateau_patience"] = None
    trainer = make_trainer(tiny_cfg)
    for value in (1.0, 2.0, 2.0, 2.0):
        trainer.plateau.update(value)
    assert trainer.plateau.scale == 1.0


def test_ema_validates_and_saves_the_averaged_weights(tiny_cfg):
    tiny_cfg["optim"]["ema"] = 0.5
    trainer = make_trainer(tiny_cfg)
    trainer.fit()
    saved = read_checkpoint(trainer.run_dir / "last.pt")
    ema = trainer.ema.state_dict()
    raw = trainer.model.state_dict()
    assert all(torch.equal(saved["state_dict"][k], ema[k]) for k in ema)
    assert all(torch.equal(saved["train_state"]["raw_model"][k], raw[k]) for k in raw)
    assert not torch.equal(ema["g_a.0.weight"], raw["g_a.0.weight"])
    tiny_cfg["optim"]["ema"] = 0.0  # resuming it without EMA would lose the average
    with pytest.raises(KdlicError, match="optim.ema on"):
        make_trainer(tiny_cfg, resume=True)


def test_mixed_quantization_rounds_what_the_synthesis_sees():
    torch.manual_seed(0)
    model = build_model("scale-hyperprior", 8, 16).train()
    set_quantization(model, "mixed")
    x = 50 * torch.rand(1, 3, 64, 64)  # large enough that y is not all rounded to 0
    out = forward_with_latents(model, x)
    y = model.g_a(x)
    assert torch.allclose(out["y_hat"], torch.round(y), atol=1e-5)
    assert out["y_hat"].abs().sum() > 0
    out["x_hat"].sum().backward()
    assert model.g_a[0].weight.grad.abs().sum() > 0  # straight-through: g_a still learns
    set_quantization(model, "noise")
    torch.manual_seed(1)
    noisy = forward_with_latents(model, x)["y_hat"]
    assert not torch.allclose(noisy, torch.round(noisy))


def test_non_finite_loss_stops_without_saving(tiny_cfg):
    last = make_trainer(tiny_cfg).run_dir / "last.pt"
    make_trainer(tiny_cfg).fit()
    good = last.read_bytes()
    tiny_cfg["schedule"]["steps"] = 9
    trainer = make_trainer(tiny_cfg, resume=True)

    def nan_loss(model, batch):
        terms = RateDistortion(1.0)(model, batch)
        return {**terms, "loss": terms["loss"] * float("nan")}

    trainer.objective = nan_loss
    with pytest.raises(KdlicError, match="loss became nan at step 7"):
        trainer.fit()
    assert last.read_bytes() == good


def test_a_second_trainer_on_the_same_run_dir_is_refused(tiny_cfg):
    first = make_trainer(tiny_cfg)
    with pytest.raises(KdlicError, match="in use by another trainer"):
        make_trainer(tiny_cfg)
    first.fit()  # releases the lock
    make_trainer(tiny_cfg, resume=True)


def test_a_second_trainer_process_is_refused(tiny_cfg, tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path;"
        "from kdlic.training.trainer import lock_run_dir;"
        f"f = lock_run_dir(Path({tiny_cfg['run_dir']!r})); print('locked', flush=True);"
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(KdlicError, match="in use by another trainer"):
            make_trainer(tiny_cfg)
    finally:
        holder.kill()
        holder.wait()
    make_trainer(tiny_cfg).fit()  # a killed holder leaves no lock behind


def test_resume_removes_temporary_files_of_a_killed_checkpoint_write(tiny_cfg):
    run = make_trainer(tiny_cfg).run_dir
    make_trainer(tiny_cfg).fit()
    stale = run / ".last.pt.abc123.tmp"
    stale.write_bytes(b"x" * 1000)
    make_trainer(tiny_cfg, resume=True)
    assert not stale.exists() and (run / "last.pt").is_file()


def test_bpp_bound_leaves_values_and_gradients_of_bounded_likelihoods_alone():
    """The rate's 1e-9 floor (issue 14) changes nothing where a model keeps its bound,
    so the training loss and its gradients are those of the plain -log2 sum."""
    from kdlic.training.losses import bpp

    lik = torch.tensor([1e-9, 1e-4, 0.5, 1.0], requires_grad=True)
    plain = -torch.log2(lik).sum() / 4
    (g_plain,) = torch.autograd.grad(plain, lik)
    rate = bpp({"y": lik}, 4)
    (g_rate,) = torch.autograd.grad(rate, lik)
    assert torch.equal(rate, plain)
    assert torch.equal(g_rate, g_plain)
    # Below the floor: a finite value, and still a gradient that raises the likelihood.
    zero = torch.tensor([0.0, 0.5], requires_grad=True)
    rate = bpp({"y": zero}, 1)
    assert torch.isfinite(rate)
    assert rate.item() == pytest.approx(-math.log2(1e-9) + 1, rel=1e-6)
    rate.backward()
    assert zero.grad[0] < 0


def test_overrides_read_exponents_without_a_dot_as_numbers():
    # YAML 1.1 would give the string "3e-4"; nobody writing optim.lr=3e-4 means that
    assert parse_override("optim.lr=3e-4") == {"optim": {"lr": 3e-4}}
    assert parse_override("run_dir=runs/a") == {"run_dir": "runs/a"}
