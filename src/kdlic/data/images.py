"""Finding and reading images: folders of any depth, Vimeo90K list files, bad files."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kdlic.errors import KdlicError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm")
# Vimeo90K ships its split as list files of "00001/0001" sequence folders.
VIMEO_LISTS = {
    "train": ("sep_trainlist.txt", "tri_trainlist.txt"),
    "test": ("sep_testlist.txt", "tri_testlist.txt"),
}


def padded_size(side: int) -> int:
    """An image side padded up to the models' 64-pixel grid (two 1/4 and four 1/2 stages)."""
    return (side + 63) // 64 * 64


def open_image(source: str | Path | bytes | Image.Image | np.ndarray,
               max_pixels: int | None = None, name: str | None = None) -> Image.Image:
    """A PIL image from a path, a file's bytes, a PIL image or an (H, W[, C]) uint8
    array, upright.

    With ``max_pixels``, a file declaring more pixels is refused from its header, before
    any pixel is decoded: a 17 KB PNG can declare 12000x12000 (1.9 GB, 17 s to decode).
    Of an animated file (GIF, WebP, APNG) only the first frame is used, with a warning.
    ``name`` names bytes in messages.
    """
    if isinstance(source, np.ndarray):
        try:
            return Image.fromarray(source)
        except (TypeError, ValueError) as exc:
            raise KdlicError(f"cannot use a {source.dtype} array of shape {source.shape} "
                             "as an image") from exc
    if isinstance(source, Image.Image):
        return ImageOps.exif_transpose(source)
    if isinstance(source, bytes):
        name = name or "image data"
        if not source:
            raise KdlicError(f"{name} is empty")
        file: Path | io.BytesIO = io.BytesIO(source)
    else:
        file = Path(source)
        name = name or str(file)
        if file.is_dir():
            raise KdlicError(f"{file} is a directory, not an image")
    try:
        with Image.open(file) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise KdlicError(f"image {name} is {img.width}x{img.height}: more than "
                                 f"{max_pixels} pixels")
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                log.warning("%s has %d frames: only the first one is used", name, frames)
            img.load()
            return ImageOps.exif_transpose(img)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError,
            SyntaxError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise KdlicError(f"cannot read image {name}: {reason}") from exc


def split_channels(img: Image.Image) -> tuple[str, np.ndarray, np.ndarray | None]:
    """(mode, rgb (H, W, 3) uint8, alpha (H, W) uint8 or None) as the container codes it."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        gray = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
        return "L", np.repeat(gray[..., None], 3, axis=2), None
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    gray = img.mode in ("1", "L", "LA", "La", "F", "I;16", "I") or (
        img.mode == "P" and img.palette is not None and img.palette.mode == "L")
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        mode = "LA" if gray else "RGBA"
        return mode, np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    if gray:
        g = np.asarray(img.convert("L"))
        return "L", np.repeat(g[..., None], 3, axis=2), None
    return "RGB", np.asarray(img.convert("RGB")), None


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array, as the codec sees it.

    EXIF orientation is applied; grayscale becomes three equal channels, 16-bit values
    are scaled to 8 bits (value / 257) and alpha is dropped (see :func:`split_channels`).
    Raises :class:`KdlicError` if the file cannot be decoded.
    """
    return split_channels(open_image(path))[1]


def _vimeo_files(root: Path, split: str) -> list[Path] | None:
    """Frames listed by Vimeo90K's list file for ``split``, or None if ``root`` isn't Vimeo."""
    for name in VIMEO_LISTS[split]:
        list_file = root / name
        if list_file.is_file():
            seq_dir = root / "sequences"
            frames = []
            for line in list_file.read_text().split():
                frames.extend(sorted((seq_dir / line).glob("im*.png")))
            return frames
    return None


def find_images(root: str | Path, split: str = "train", check: bool = True,
                max_pixels: int | None = None) -> list[Path]:
    """Image files under ``root`` (recursively), sorted, unreadable ones skipped.

    If ``root`` is a Vimeo90K folder (it holds ``sep_trainlist.txt`` or
    ``tri_trainlist.txt``), the frames listed for ``split`` ("train"/"test") are used.
    With ``check``, each file's header is read (no full decode) and files that are
    not images, or that Pillow refuses as decompression bombs, or (with ``max_pixels``)
    that declare more pixels, are reported as a warning with a count, then skipped.

    Raises:
        KdlicError: ``root`` is missing, not a folder, or holds no readable image.
    """
    root = Path(root)
    if not root.exists():
        raise KdlicError(f"image folder not found: {root}")
    if root.is_file():
        files = [root]
    else:
        files = _vimeo_files(root, split)
        if files is None:
            files = sorted(
                p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
            )
    if check:
        bad, large = [], []
        for path in files:
            try:
                with Image.open(path) as img:  # reads the header only
                    if max_pixels is not None and img.width * img.height > max_pixels:
                        large.append(path)
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
                bad.append(path)
        for skipped, what in ((bad, "unreadable image(s)"),
                              (large, f"image(s) larger than {max_pixels} pixels")):
            if skipped:
                shown = ", ".join(str(p) for p in skipped[:3]) + (" ..." if len(skipped) > 3
                                                                  else "")
                log.warning("skipped %d %s of %d: %s", len(skipped), what, len(files), shown)
        skipped_set = set(bad + large)
        files = [p for p in files if p not in skipped_set]
    if not files:
        raise KdlicError(
            f"no readable images in {root} (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def collect_images(paths: Iterable[str | Path]) -> list[Path]:
    """Images named by ``paths``: files as given, folders searched (see :func:`find_images`)."""
    return [f for p in paths for f in find_images(p, "test")]
