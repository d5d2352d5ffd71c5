"""Teacher-output cache: the teacher runs once per training image, never per step.

For each training image (as the crop source decodes it), the teacher's outputs on
the whole image (padded to 64 px) are stored compactly:

* ``y_hat``: int16 (the teacher's latent is rounded, so integers are exact);
* ``z_hat``: int16 offsets ``round(z - median)`` plus the fp32 medians (exact);
* ``x_hat``: uint8 (the reconstruction rounded to 8 bits; error <= 1/510, far below
  any distortion a student reaches).

Crops are then served aligned to the latent grids: their corners lie on multiples of
64 px, so the matching ``y_hat`` (16 px per element) and ``z_hat`` (64 px) windows
are exact slices. Two differences from a live teacher, both deliberate: the targets
see the whole image's context rather than the crop's borders, and there are no flips
(a flipped image's latent is not the flipped latent).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kdlic.codec.codec import model_id
from kdlic.data.sampling import CropSource, padded_input, to_tensor
from kdlic.distillation.teacher import FrozenTeacher
from kdlic.errors import KdlicError
from kdlic.utils.files import atomic_open
from kdlic.utils.progress import progress_bar

log = logging.getLogger(__name__)

# The teacher outputs a cache holds for each teacher, by batch key prefix "teacher{i}.".
Needs = list[tuple[FrozenTeacher, set[str]]]


def _teacher_outputs(teacher: FrozenTeacher, img: np.ndarray, needed: set[str]) -> dict:
    h, w = img.shape[:2]
    out = teacher(padded_input(img), needed, torch.device("cpu"))
    packed: dict[str, Tensor] = {}
    if "y_hat" in out:
        packed["y_hat"] = out["y_hat"][0].round().to(torch.int16)
    if "z_hat" in out:
        medians = teacher.model.entropy_bottleneck._get_medians().detach().float().cpu()
        packed["z_hat"] = (out["z_hat"][0] - medians).round().to(torch.int16)
        packed["z_medians"] = medians
    if "x_hat" in out:
        packed["x_hat"] = out["x_hat"][0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
    return packed


class CachedTeacherCrops(CropSource):
    """A crop source whose crops carry the cached teacher outputs (``teacher{i}.y_hat`` ...).

    Args:
        source: the plain crop source (images, crop size).
        needs: for each teacher, the outputs its loss terms need.
        cache_dir: where to keep the cache on disk (reused across runs with the same
            teachers, images and crop size); None keeps it in memory only.
    """

    def __init__(self, source: CropSource, needs: Needs, cache_dir: str | Path | None,
                 progress: bool = True) -> None:
        super().__init__(source.paths, source.crop)
        self._cache, self._cache_budget = source._cache, source._cache_budget  # share decodes
        self.targets: list[list[dict[str, Tensor]]] = []
        for i, (teacher, needed) in enumerate(needs):
            self.targets.append(self._load_or_build(i, teacher, needed, cache_dir, progress))

    def _key(self, teacher: FrozenTeacher, needed: set[str]) -> str:
        h = hashlib.sha256(model_id(teacher.model))
        h.update(f"{sorted(needed)}{self.crop}{teacher.model.autocast_dtype}".encode())
        for p in self.paths:  # a file replaced in place has another size or mtime
            st = Path(p).stat()
            h.update(f"{Path(p).resolve()}{st.st_size}{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def _load_or_build(self, i: int, teacher: FrozenTeacher, needed: set[str],
                       cache_dir: str | Path | None, progress: bool) -> list[dict[str, Tensor]]:
        path = Path(cache_dir).expanduser() / f"{self._key(teacher, needed)}.pt" \
            if cache_dir else None
        if path is not None and path.is_file():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
                log.info("teacher %d: cache loaded from %s", i, path)
                return data
            except Exception as exc:  # a damaged cache is rebuilt, not fatal
                log.warning("teacher cache %s unreadable (%s); rebuilding", path, exc)
        outputs = []
        for index in progress_bar(range(len(self.paths)), desc=f"caching teacher {i}",
                                  unit="img", disable=not progress):
            try:
                img = self.image(index)
            except KdlicError:
                outputs.append({})
                continue
            outputs.append(_teacher_outputs(teacher, img, needed))
        if path is not None:
            with atomic_open(path) as f:
                torch.save(outputs, f)
            log.info("teacher %d: cache written to %s", i, path)
        return outputs

    def crop_at(self, index: int, img: np.ndarray, rng: np.random.Generator) -> dict[str, Tensor]:
        """A crop whose corner lies on the 64-px grid, with the teacher outputs under it."""
        h, w = img.shape[:2]
        top = 64 * int(rng.integers((h - self.crop) // 64 + 1))
        left = 64 * int(rng.integers((w - self.crop) // 64 + 1))
        out = {"x": to_tensor(img[top : top + self.crop, left : left + self.crop])}
        for i, per_image in enumerate(self.targets):
            t = per_image[index]
            if "y_hat" in t:
                s, c = slice(top // 16, (top + self.crop) // 16), slice(left // 16,
                                                                         (left + self.crop) // 16)
                out[f"teacher{i}.y_hat"] = t["y_hat"][:, s, c].float()
            if "z_hat" in t:
                s, c = slice(top // 64, (top + self.crop) // 64), slice(left // 64,
                                                                         (left + self.crop) // 64)
                out[f"teacher{i}.z_hat"] = t["z_hat"][:, s, c].float() + t["z_medians"]
            if "x_hat" in t:
                patch = t["x_hat"][:, top : top + self.crop, left : left + self.crop]
                out[f"teacher{i}.x_hat"] = patch.float().div_(255)
        return out
