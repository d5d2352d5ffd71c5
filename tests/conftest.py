"""Shared fixtures: tiny generated images and tiny model configs (fast on 2 cores)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdlic.training.config import TRAIN_DEFAULTS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KODAK = SHARED / "kodak"


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A natural-ish (H, W, 3) uint8 image: upsampled noise, so it is compressible."""
    small = rng.random((max(2, h // 16), max(2, w // 16), 3)) * 255
    img = Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.BICUBIC)
    noise = rng.normal(0, 4, (h, w, 3))
    return np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 96x128 PNGs in nested folders, plus one 40x48 (smaller than a crop)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(8):
        sub = root / f"set{i % 2}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(smooth_image(rng, 96, 128)).save(sub / f"img{i}.png")
    Image.fromarray(smooth_image(rng, 40, 48)).save(root / "tiny.png")
    return root


@pytest.fixture
def tiny_cfg(image_dir: Path, tmp_path: Path) -> dict:
    """A train config for an N=8, M=16 model on 64x64 crops, 6 steps."""
    cfg = copy.deepcopy(TRAIN_DEFAULTS)
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["model"].update(N=8, M=16)
    cfg["data"].update(train=str(image_dir), val_count=2, crop=64, val_crop=64, batch_size=2)
    cfg["schedule"].update(steps=6, val_every=3, log_every=2)
    cfg["runtime"].update(threads=1, progress=False)
    cfg["optim"]["lr"] = 1e-3
    return cfg


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    from kdlic.models import build_model

    torch.manual_seed(0)
    return build_model("scale-hyperprior", 8, 16)
