"""Progress outside a terminal (issue 14): plain lines at a bounded rate, no ``\\r``."""

from __future__ import annotations

import io
import re
import types

import numpy as np
import pytest
import torch
from PIL import Image
from tqdm import tqdm

from kdlic.utils import progress
from kdlic.utils.progress import PlainProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """A fake monotonic clock for the progress module: ``clock.now`` is advanced by hand."""
    fake = types.SimpleNamespace(now=1000.0)
    fake.monotonic = lambda: fake.now
    monkeypatch.setattr(progress, "time", fake)
    return fake


def test_a_terminal_gets_a_tqdm_bar():
    bar = progress_bar(total=3, file=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()


def test_a_log_gets_plain_lines_at_a_bounded_rate(clock):
    out = io.StringIO()
    bar = progress_bar(total=1000, desc="train", unit="step", file=out, interval=5.0)
    assert isinstance(bar, PlainProgress)
    for step in range(1, 1001):
        clock.now += 0.1  # 10 steps/s for 100 s
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss="1.234", bpp="0.456", psnr="30.12")
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # one line per 5 s over 100 s (the last one is the close's), never more
    assert len(lines) == 20
    assert lines[0] == "train: 50/1000 step (5%), 10 step/s, elapsed 00:05, ETA 01:35"
    assert lines[1] == ("train: 100/1000 step (10%), loss=1.234 bpp=0.456 psnr=30.12, "
                        "10 step/s, elapsed 00:10, ETA 01:30")
    assert lines[-1].startswith("train: 1000/1000 step (100%)")
    assert "ETA" not in lines[-1]  # the closing line


def test_close_prints_once_and_only_news(clock):
    out = io.StringIO()
    with progress_bar(total=2, desc="jpeg", unit="img", file=out, interval=5.0) as bar:
        clock.now += 1
        bar.update()
        bar.update()
    bar.close()  # a second close: nothing more
    assert out.getvalue() == "jpeg: 2/2 img (100%), 2 img/s, elapsed 00:01\n"
    quiet = io.StringIO()
    progress_bar(total=2, file=quiet).close()  # nothing done: no line
    assert quiet.getvalue() == ""


def test_iteration_and_disable(clock):
    out = io.StringIO()
    assert list(progress_bar(["a", "b", "c"], desc="m", unit="img", file=out)) == ["a", "b", "c"]
    assert out.getvalue().startswith("m: 3/3 img (100%)")
    off = io.StringIO()
    bar = progress_bar(total=10, file=off, interval=0.0, disable=True)
    for _ in range(10):
        clock.now += 1
        bar.update()
    bar.close()
    assert off.getvalue() == ""


def test_a_time_budget_bounds_the_eta(clock):
    out = io.StringIO()
    bar = progress_bar(desc="distill", unit="step", file=out, interval=5.0, budget_s=60,
                       initial=100)
    clock.now += 5
    bar.update(10)
    assert out.getvalue() == "distill: 110 step, 2 step/s, elapsed 00:05, ETA 00:55\n"
    # with a step total too, the sooner of the two
    bar = progress_bar(total=20, desc="d", file=out, interval=5.0, budget_s=60)
    clock.now += 5
    bar.update(10)
    assert out.getvalue().splitlines()[-1].endswith("ETA 00:05")


def test_training_evaluation_and_baselines_write_plain_lines(tiny_cfg, image_dir, tmp_path,
                                                             capsys):
    """The three callers, with stderr captured (not a terminal): lines, no \\r frames."""
    from kdlic.evaluation.classic import run_baselines
    from kdlic.evaluation.evaluate import evaluate_models
    from kdlic.models import build_model
    from kdlic.training.losses import RateDistortion
    from kdlic.training.trainer import Trainer

    tiny_cfg["runtime"]["progress"] = True
    torch.manual_seed(0)
    trainer = Trainer(tiny_cfg, build_model("scale-hyperprior", 8, 16), RateDistortion(0.01))
    trainer.fit()
    images = sorted(image_dir.rglob("img*.png"))[:2]
    evaluate_models([trainer.model], images, "tiny")
    rgb = np.asarray(Image.open(images[0]).convert("RGB"))
    Image.fromarray(rgb).save(tmp_path / "a.png")
    run_baselines([tmp_path / "a.png"], ["jpeg"], {"jpeg": [50, 90]}, tmp_path / "out",
                  progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert re.search(r"^train: 6/6 step \(100%\), loss=[\d.]+ bpp=[\d.]+ psnr=[\d.]+, "
                     r"[\d.]+ step/s, elapsed [\d:]+$", err, re.M), err
    assert re.search(r": 2/2 img \(100%\), [\d.]+ img/s, elapsed [\d:]+$", err, re.M), err
    assert re.search(r"^jpeg: 2/2 img \(100%\), ", err, re.M), err


def test_a_free_form_postfix(clock):
    out = io.StringIO()
    bar = progress_bar(total=2, desc="profile", unit="model", file=out)
    bar.set_postfix_str("teacher-q5")
    clock.now += 4
    bar.update(2)
    bar.close()
    assert out.getvalue() == "profile: 2/2 model (100%), teacher-q5, 0.5 model/s, elapsed 00:04\n"
