"""Every Kodak image: real files agree with `kdlic evaluate`, and thread counts don't matter.

A tiny model (N=8, M=16) keeps this fast; skipped when ../shared/data/kodak is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kdlic.cli import main
from kdlic.codec import Codec, unpack
from kdlic.evaluation.evaluate import evaluate_image
from kdlic.evaluation.metrics import psnr
from kdlic.utils.checkpoint import save_checkpoint
from tests.conftest import KODAK
from tests.test_codec import make_model

pytestmark = pytest.mark.skipif(not KODAK.is_dir(), reason="Kodak images not available")


@pytest.fixture(scope="module")
def kodak():
    return sorted(KODAK.glob("kodim*.png"))


@pytest.fixture(scope="module")
def codec():
    return Codec(make_model())


def test_kodak_has_24_images(kodak):
    assert len(kodak) == 24


def test_files_match_what_evaluate_reports(codec, kodak, monkeypatch):
    import kdlic.evaluation.evaluate as ev

    monkeypatch.setattr(ev, "msssim", lambda a, b: None)  # slow, and not what is tested here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # for evaluate's likelihood pass (the codec uses 1 anyway)
    try:
        reports = [evaluate_image(codec, path) for path in kodak]
    finally:
        torch.set_num_threads(threads)
    for path, report in zip(kodak, reports, strict=True):
        data = codec.encode(path)
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        assert len(data) == report["bytes"]
        assert 8 * len(data) / (h * w) == report["bpp"]
        assert psnr(rgb, np.asarray(codec.decode(data))) == report["psnr-rgb"], path.name


def test_thread_count_changes_neither_files_nor_pixels(codec, kodak):
    threads = torch.get_num_threads()
    try:
        for path in kodak:
            torch.set_num_threads(2)
            two = codec.encode(path)
            torch.set_num_threads(1)
            one = codec.encode(path)
            assert one == two, path.name
            decoded_by_one = np.asarray(codec.decode(two))  # compressed with 2, decoded with 1
            torch.set_num_threads(2)
            decoded_by_two = np.asarray(codec.decode(one))  # and the reverse
            assert np.array_equal(decoded_by_one, decoded_by_two), path.name
    finally:
        torch.set_num_threads(threads)


def test_cli_folder_round_trip(codec, kodak, tmp_path):
    model = tmp_path / "m.pt"
    save_checkpoint(model, make_model(), {"lmbda": 0.01})
    assert main(["compress", str(KODAK), "-o", str(tmp_path / "kdl"), "--model", str(model),
                 "--threads", "2", "--no-progress"]) == 0
    assert main(["decompress", str(tmp_path / "kdl"), "-o", str(tmp_path / "png"), "--model",
                 str(model), "--no-progress"]) == 0
    for path in kodak:
        data = (tmp_path / "kdl" / f"{path.stem}.kdl").read_bytes()
        assert unpack(data)[1] == unpack(codec.encode(path))[1]  # same streams, other name
        decoded = np.asarray(Image.open(tmp_path / "png" / f"{path.stem}.png"))
        assert np.array_equal(decoded, np.asarray(codec.decode(data))), path.name
