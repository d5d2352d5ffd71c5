"""Reproducible crops: the batch of step ``s`` depends only on (seed, s).

Training draws a fresh random batch at every step from a generator seeded by
``(seed, step)``. Resuming at step ``s`` therefore sees exactly the batches an
uninterrupted run would have seen, with no iterator state to save; and with
``K`` processes (DDP) each takes a slice of the same global batch, so a K-process
run trains on the same crops as a 1-process run with the same global batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from kdlic.data.images import load_rgb, padded_size
from kdlic.errors import KdlicError

log = logging.getLogger(__name__)


class CropSource:
    """Images (decoded once, kept in memory up to ``cache_mb``) and crops of them.

    Images smaller than the crop on a side are upscaled (bicubic) until they fit,
    rather than padded: padding would teach the codec about borders that never
    occur in real images. Files that fail to decode are skipped with a warning.
    """

    def __init__(self, paths: Sequence[Path], crop: int, cache_mb: float = 4096,
                 downscale: float | None = None) -> None:
        if crop <= 0 or crop % 64:
            raise KdlicError(f"crop size must be a positive multiple of 64, got {crop}")
        self.paths = list(paths)
        self.crop = crop
        self.downscale = downscale  # smallest random downscaling factor; None: off
        self._cache: dict[int, np.ndarray] = {}
        self._cache_budget = int(cache_mb * 2**20)
        self._broken: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 image ``index``, each side at least ``crop``."""
        if index in self._cache:
            return self._cache[index]
        img = load_rgb(self.paths[index])
        h, w = img.shape[:2]
        if min(h, w) < self.crop:
            scale = self.crop / min(h, w)
            size = (max(self.crop, round(w * scale)), max(self.crop, round(h * scale)))
            img = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
        if self._cache_budget >= img.nbytes:
            self._cache[index] = img
            self._cache_budget -= img.nbytes
        return img

    def random_crop(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A random crop with random horizontal flip: ``{"x": (3, crop, crop)}`` in [0, 1]."""
        for _ in range(len(self.paths)):
            index = int(rng.integers(len(self.paths)))
            if index in self._broken:
                continue
            try:
                img = self.image(index)
            except KdlicError as exc:
                self._broken.add(index)
                log.warning("skipping image (%d skipped so far): %s", len(self._broken), exc)
                continue
            return self.crop_at(index, img, rng)
        raise KdlicError("every training image failed to decode")

    def crop_at(
        self, index: int, img: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """A random crop of decoded image ``index`` (subclasses add targets to it).

        With ``downscale``, a region ``crop / f`` pixels wide (f uniform in
        [downscale, 1], capped by the image) is cropped and resized to ``crop``.
        """
        h, w = img.shape[:2]
        side = self.crop
        if self.downscale is not None:
            side = min(h, w, round(self.crop / rng.uniform(self.downscale, 1.0)))
        top = int(rng.integers(h - side + 1))
        left = int(rng.integers(w - side + 1))
        patch = img[top : top + side, left : left + side]
        if side != self.crop:  # antialiased, as a camera's downsampling would be
            patch = np.asarray(Image.fromarray(patch).resize((self.crop, self.crop),
                                                              Image.LANCZOS))
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return {"x": to_tensor(patch)}

    def center_crop(self, index: int) -> torch.Tensor:
        """The deterministic central crop of image ``index``: (3, crop, crop) in [0, 1]."""
        img = self.image(index)
        h, w = img.shape[:2]
        top, left = (h - self.crop) // 2, (w - self.crop) // 2
        return to_tensor(img[top : top + self.crop, left : left + self.crop])


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div_(255.0)


def padded_input(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H', W') in [0, 1], H' and W' padded up to multiples of 64.

    Replicate padding: flat borders cost fewer bits than zeros. Crop back with
    ``[..., :H, :W]``.
    """
    h, w = img.shape[:2]
    x = to_tensor(img)[None]
    return F.pad(x, (0, padded_size(w) - w, 0, padded_size(h) - h), mode="replicate")


class StepBatches(torch.utils.data.Dataset):
    """Dataset whose item ``s`` is this rank's share of the global batch of step ``s``.

    Args:
        source: where crops come from.
        batch_size: the global batch (all ranks together).
        seed: the run's seed.
        rank, world_size: this process's slice of the batch (DDP).
    """

    def __init__(
        self, source: CropSource, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size % world_size:
            raise KdlicError(
                f"batch size {batch_size} is not divisible by the {world_size} processes"
            )
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        """``{"x": (batch_size / world_size, 3, crop, crop)}`` in [0, 1], plus any targets."""
        crops = [
            self.source.random_crop(np.random.default_rng([self.seed, step, i]))
            for i in range(self.rank, self.batch_size, self.world_size)
        ]
        return {key: torch.stack([c[key] for c in crops]) for key in crops[0]}


def validation_crops(source: CropSource) -> torch.Tensor:
    """The fixed validation set: one central crop per image, (n, 3, crop, crop)."""
    return torch.stack([source.center_crop(i) for i in range(len(source))])


def split_train_val(paths: Sequence[Path], val_count: int) -> tuple[list[Path], list[Path]]:
    """Hold out ``val_count`` images spread evenly over the sorted list (deterministic)."""
    paths = sorted(paths)
    if val_count <= 0:
        return paths, []
    if val_count >= len(paths):
        raise KdlicError(
            f"cannot hold out {val_count} validation images from {len(paths)}; "
            "give a separate validation folder or lower data.val_count"
        )
    step = len(paths) / val_count
    val_idx = {int(i * step + step / 2) for i in range(val_count)}
    return (
        [p for i, p in enumerate(paths) if i not in val_idx],
        [p for i, p in enumerate(paths) if i in val_idx],
    )
