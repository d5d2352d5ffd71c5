"""Shared fixtures: tiny generated images and tiny model configs (fast on 2 cores)."""

from __future__ import annotations

import copy
import os
import struct
import sys
import zlib
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


# -- which files a command reads ------------------------------------------------------
_WATCHERS: list[list[str]] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCHERS and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        for record in _WATCHERS:
            record.append(path)


@pytest.fixture
def opened_files():
    """Every file path opened (Python's ``open`` audit event: open(), os.open, torch.load
    of a path, Path.read_bytes ...) by any thread while the test runs."""
    if not getattr(sys, "_kdlic_audit_installed", False):
        sys.addaudithook(_audit)  # hooks cannot be removed: installed once, then gated
        sys._kdlic_audit_installed = True
    record: list[str] = []
    _WATCHERS.append(record)
    yield record
    _WATCHERS.remove(record)


def reads_under(opened: list[str], root: Path, allowed: tuple[Path, ...] = ()) -> set[str]:
    """Files under ``root`` that were opened, other than ``allowed`` ones (and the
    temporary files of atomic writes beside them)."""
    root_s = str(root.resolve())
    ok = {str(p.resolve()) for p in allowed}
    return {p for p in opened
            if p.startswith(root_s + os.sep) and p not in ok
            and not (os.path.basename(p).startswith(".") and p.endswith(".tmp"))}


# -- decompression bombs -------------------------------------------------------------
def write_png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit black PNG of ``width`` x ``height``: a few KB that decode to
    width*height bytes in Pillow (it unpacks 1-bit images to one byte per pixel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then zero bits
    packer = zlib.compressobj(9)
    rows_per_block = max(1, (1 << 22) // len(row))
    idat = []
    for start in range(0, height, rows_per_block):
        idat.append(packer.compress(row * min(rows_per_block, height - start)))
    idat.append(packer.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b""))
    return path
