"""What the CLI shows before it runs anything: --help texts and table name columns."""

from __future__ import annotations

import re

import pytest

from kdlic.cli import SUBCOMMANDS, main
from kdlic.cli.common import shorten


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_shows_no_meaningless_or_repeated_default(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flat = re.sub(r"\s+", " ", text)  # a default may be wrapped onto the next line
    assert "(default: None)" not in flat
    assert "(default: False)" not in flat
    assert "(default: [])" not in flat
    # one "(default: ...)" per option at most, i.e. never one after the help's own
    options = re.split(r"\s(?=-{1,2}[a-zA-Z])", flat.split("options:", 1)[-1])
    for option in options:
        assert option.lower().count("default") <= 1, option


def test_train_help_says_bf16_is_auto(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    flat = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "bf16 on" not in flat
    assert "bf16 auto" in flat and "default: auto" in flat


def test_shorten_keeps_the_start_and_the_end():
    spec = "compressai:mbt2018-mean:3:/home/someone/weights/mbt2018-mean-q3.pth"
    short = shorten(spec, 48)
    assert len(short) == 48
    assert short.startswith("compressai:mbt2018-mean")
    assert short.endswith("mbt2018-mean-q3.pth")
    assert "..." in short
    assert shorten("teacher-q5", 40) == "teacher-q5"
    assert shorten("abcdef", 3) == "abc"


def test_evaluate_table_shows_the_start_of_long_model_names():
    from kdlic.cli.evaluate import NAME_WIDTH, table

    long = "compressai:bmshj2018-hyperprior:5:" + "x" * 60 + "/weights.pth"
    metrics = {"bpp": 0.5, "bpp_estimated": 0.49, "psnr-rgb": 30.0, "ms-ssim-rgb": None,
               "encoding_time": 0.1, "decoding_time": 0.2}
    out = {"results": {k: [v, v] for k, v in metrics.items()},
           "models": [{"model": long}, {"model": "teacher-q5"}]}
    header, first, second = table(out)
    assert first.startswith("compressai:bmshj2018")
    assert first.split()[0].endswith("/weights.pth")
    assert len(header) == len(first) == len(second)  # columns aligned
    assert header.index("bpp") == first.index("0.5000") + len("0.5000") - len("bpp")
    assert "n/a" in first
    assert len(first.split()[0]) == NAME_WIDTH
    # short names: a narrow column
    narrow = table({"results": out["results"] | {k: [v] for k, v in metrics.items()},
                    "models": [{"model": "s16"}]})
    assert narrow[1].startswith("s16   ")


def test_profile_line_shows_the_start_of_long_model_names():
    from kdlic.cli.profile import _line

    side = {"latency_s": {"median": 0.01}, "achieved_gflops_per_s": 1.0,
            "peak_memory_mib": 10.0, "energy_mj_per_frame": None}
    entry = {"name": "compressai:cheng2020-attn:6:/a/long/path/to/cheng-q6.pth",
             "params": 1e6, "flops": {"gmacs_per_frame": 1.0},
             "encoder": side, "decoder": side}
    name = _line(entry)[:28]
    assert name.startswith("compressai:") and name.endswith("cheng-q6.pth")
