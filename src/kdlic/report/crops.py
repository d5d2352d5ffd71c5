"""Side-by-side reconstruction crops: one image coded by each model, same region cut out.

The whole image is really coded (:class:`kdlic.codec.Codec`, bitstream and all); bpp and
PSNR are those of the whole image, the crop only shows a detail. Models that cannot be
loaded (a checkpoint that is gone, weights not in the cache) are skipped with a note.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from kdlic.data.images import IMAGE_EXTENSIONS, load_rgb
from kdlic.errors import KdlicError
from kdlic.evaluation.metrics import psnr
from kdlic.report.inputs import ModelRow
from kdlic.utils.files import atomic_write

# kodim14: faces and the "SNOWMASS WHITEWATER" lettering on the raft.
DEFAULT_BOX = (384, 192, 256, 256)


def slug(name: str) -> str:
    """A file-name-safe version of ``name``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "model"


def find_image(name: str | Path, folder: str | Path | None) -> Path | None:
    """``name`` as a path, or an image called ``name`` (with any extension) in ``folder``."""
    path = Path(name)
    if path.is_file():
        return path
    if folder is None or not Path(folder).is_dir():
        return None
    for candidate in sorted(Path(folder).rglob(f"{path.stem}*")):
        if candidate.is_file() and candidate.suffix.lower() in IMAGE_EXTENSIONS and \
                candidate.stem == path.stem:
            return candidate
    return None


def parse_box(text: str | None) -> tuple[int, int, int, int] | None:
    """``"X,Y,W,H"`` -> a tuple; None stays None."""
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise KdlicError(f"bad crop box {text!r}: expected X,Y,WIDTH,HEIGHT") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise KdlicError(f"bad crop box {text!r}: needs x, y >= 0 and a positive size")
    return x, y, w, h


def clamp_box(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``box`` moved (and shrunk if needed) to lie inside an image of ``shape`` (H, W, ...)."""
    x, y, w, h = box
    H, W = shape[:2]
    w, h = min(w, W), min(h, H)
    return min(x, W - w), min(y, H - h), w, h


def _save_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def write_crops(rows: Sequence[ModelRow], image: Path, folder: Path,
                box: tuple[int, int, int, int] | None = None, progress: bool = False,
                device: str = "cpu") -> dict[str, Any]:
    """Code ``image`` with each evaluated model; save the crops into ``folder``.

    Returns ``{"image", "box", "original": path, "crops": [{"name", "file"|None, "bpp",
    "psnr", "note"}]}``.
    """
    from kdlic.codec import Codec
    from kdlic.models import load_model

    rgb = load_rgb(image)
    x, y, w, h = clamp_box(box or DEFAULT_BOX, rgb.shape)
    folder.mkdir(parents=True, exist_ok=True)
    original = folder / "original.png"
    _save_png(original, np.ascontiguousarray(rgb[y:y + h, x:x + w]))
    crops: list[dict[str, Any]] = []
    taken: set[str] = {"original"}
    for row in tqdm(rows, desc="crops", unit="model", disable=not progress, leave=False):
        entry: dict[str, Any] = {"name": row.name, "file": None, "bpp": None, "psnr": None,
                                 "note": ""}
        crops.append(entry)
        try:
            codec = Codec(load_model(row.spec), device)
            data = codec.encode(rgb)
            decoded = np.asarray(codec.decode(data).convert("RGB"))
        except KdlicError as exc:
            entry["note"] = f"skipped: {exc}"
            continue
        except Exception as exc:  # a model the codec cannot run: note it, keep the report
            entry["note"] = f"skipped: {type(exc).__name__}: {exc}"
            continue
        stem = slug(row.name)
        while stem in taken:
            stem += "_"
        taken.add(stem)
        path = folder / f"{stem}.png"
        _save_png(path, np.ascontiguousarray(decoded[y:y + h, x:x + w]))
        entry.update(file=path, bpp=8 * len(data) / (rgb.shape[0] * rgb.shape[1]),
                     psnr=psnr(rgb, decoded))
    return {"image": image, "box": (x, y, w, h), "original": original, "crops": crops}
