"""Every shipped model loads, round-trips an image and still meets its stored Kodak figures."""

import pytest

from kdlic.cli import main
from kdlic.data.images import find_images
from kdlic.evaluation.evaluate import evaluate_models
from kdlic.zoo import zoo_info, zoo_names

from .conftest import KODAK


def test_zoo_list_prints_every_model(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in zoo_names():
        assert name in out


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_model_meets_its_stored_kodak_figures(name):
    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak not available")
    stored = zoo_info(name)["kodak"]
    images = find_images(KODAK)
    assert stored["images"] == len(images)
    r = evaluate_models([name], images, name, progress=False)["results"]
    assert r["psnr-rgb"][0] == pytest.approx(stored["psnr-rgb"], abs=0.05)
    assert r["bpp"][0] == pytest.approx(stored["bpp"], rel=0.01)
