"""Every shipped model loads, round-trips an image and still meets its stored Kodak figures."""

import numpy as np
import pytest

from kdlic.cli import main
from kdlic.codec import Codec
from kdlic.data.images import find_images, load_rgb
from kdlic.evaluation.metrics import psnr
from kdlic.models import load_model
from kdlic.zoo import zoo_info, zoo_names

from .conftest import KODAK


def test_zoo_list_prints_every_model(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in zoo_names():
        assert name in out
    assert f"{len(zoo_names())} models," in out and "MiB of weights" in out


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_model_meets_its_stored_kodak_figures(name):
    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak not available")
    stored = zoo_info(name)["kodak"]
    images = find_images(KODAK)
    assert stored["images"] == len(images)
    # the bitstream part of `kdlic evaluate` (which also runs MS-SSIM and a likelihood
    # pass), image by image: the mean PSNR and bpp it stored at export
    codec = Codec(load_model(name))
    bpps, psnrs = [], []
    for path in images:
        rgb = load_rgb(path)
        data = codec.encode(rgb)
        bpps.append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
        psnrs.append(psnr(rgb, np.asarray(codec.decode(data))))
    assert np.mean(psnrs) == pytest.approx(stored["psnr-rgb"], abs=0.05)
    assert np.mean(bpps) == pytest.approx(stored["bpp"], rel=0.01)
