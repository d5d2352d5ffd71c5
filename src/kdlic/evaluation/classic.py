"""Classic image codecs through Pillow: JPEG, WebP, JPEG 2000, AVIF, JPEG XL (and PNG).

Every point is measured on real bitstreams: each image is encoded to bytes in memory,
``bpp = 8 * len(bytes) / (W * H)``, then decoded and compared with the original:

* PSNR over RGB, 8-bit, peak 255, in dB; identical images give ``float("inf")``.
* MS-SSIM over RGB (``pytorch_msssim.ms_ssim``, ``data_range=255``, 5 scales), or
  ``None`` for images smaller than 161 px on a side (too small for 5 scales).
* encoding and decoding wall time in seconds (``time.perf_counter``), per image.

Results are written in CompressAI's results format, one file per codec, one list entry
per sweep setting (means over the images), plus per-image values under ``"per_image"``.
JSON has no infinity: ``inf`` is written as the string ``"inf"`` (see
:func:`kdlic.utils.files.jsonable`).

JPEG XL comes from the ``pillow_jxl`` plugin (PyPI ``pillow-jxl-plugin``, a kdlic
dependency), imported here so that it registers the format with Pillow; where it is
missing or does not import, the ``jxl`` codec is simply not available.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import io
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image, features

from kdlic.data.images import load_rgb
from kdlic.errors import KdlicError
from kdlic.evaluation.metrics import mean_of_measured, msssim, psnr
from kdlic.utils.files import write_json
from kdlic.utils.progress import progress_bar

METRICS = ("psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Codec:
    """A Pillow codec and the one setting its sweep varies.

    Attributes:
        name: short name used on the command line and as the JSON file name.
        label: human-readable name.
        pil_format: Pillow's format name for ``Image.save``.
        setting: what a sweep value means (e.g. ``"quality"``).
        defaults: default sweep values, from low to high bitrate.
        valid: inclusive range allowed for a sweep value.
        options: maps a sweep value to ``Image.save`` keyword arguments.
        library: ``PIL.features`` name of the library (availability and version), or
            the name of a plugin module to import.
        notes: library and fixed encoder options, for the description; ``{version}``
            is replaced by the library version.
        integer: whether sweep values must be whole numbers.
    """

    name: str
    label: str
    pil_format: str
    setting: str
    defaults: tuple[float, ...]
    valid: tuple[float, float]
    options: Callable[[float], dict[str, Any]]
    library: str
    notes: str = ""
    integer: bool = True


CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec("jpeg", "JPEG", "JPEG", "quality", (5, 10, 20, 30, 50, 70, 85, 90), (0, 100),
              lambda q: {"quality": q}, "jpg", "{version}, 4:2:0"),
        Codec("webp", "WebP", "WEBP", "quality", (5, 10, 20, 35, 50, 70, 85, 90), (0, 100),
              lambda q: {"quality": q, "method": 6}, "webp", "libwebp {version}, method=6",
              integer=False),
        Codec("jpeg2000", "JPEG 2000", "JPEG2000", "compression ratio",
              (240, 120, 80, 48, 32, 24, 16, 12), (1, math.inf),
              lambda r: {"quality_mode": "rates", "quality_layers": [r],
                         "irreversible": True, "mct": 1},
              "jpg_2000", "OpenJPEG {version}, 9/7 wavelet, colour transform; bpp ~ 24/ratio",
              integer=False),
        Codec("avif", "AVIF", "AVIF", "quality", (10, 20, 30, 45, 60, 70, 80, 85), (0, 100),
              lambda q: {"quality": q}, "avif",
              "libavif {version}, speed 6, 4:2:0, all threads"),
        Codec("jxl", "JPEG XL", "JXL", "quality", (1, 10, 25, 40, 55, 70, 80, 90), (0, 100),
              lambda q: {"quality": q}, "pillow_jxl",
              "pillow-jxl-plugin {version} (libjxl), effort 7, all threads"),
        Codec("png", "PNG", "PNG", "compress_level", (6,), (0, 9),
              lambda level: {"compress_level": level}, "zlib", "lossless, zlib {version}"),
    )
}
LOSSY_CODECS = ("jpeg", "webp", "jpeg2000", "avif", "jxl")


def _is_pil_feature(library: str) -> bool:
    """Whether ``library`` is a name ``PIL.features`` knows (rather than a plugin module)."""
    return library in features.modules or library in features.codecs


def is_available(name: str) -> bool:
    """Whether this Pillow build (or an installed plugin) can encode and decode ``name``."""
    library = CODECS[name].library
    if _is_pil_feature(library):
        return bool(features.check(library))
    return _load_plugin(library)


@functools.cache
def _load_plugin(module: str) -> bool:
    """Import a Pillow plugin module (importing registers its format); False where it is
    not installed or fails to import (said once, in the log)."""
    if importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception as exc:  # e.g. built for another Pillow: the codec is unavailable
        log.warning("Pillow plugin %s does not import (%s); its codec is unavailable",
                    module, exc)
        return False
    return True


def _plugin_version(module: str) -> str:
    """The installed version of the distribution that provides ``module``."""
    for dist in importlib.metadata.packages_distributions().get(module, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def available_codecs(lossy_only: bool = True) -> list[str]:
    """Names of the codecs usable here, in a fixed order (PNG only if not ``lossy_only``)."""
    names = LOSSY_CODECS if lossy_only else tuple(CODECS)
    return [n for n in names if is_available(n)]


def _library_version(library: str) -> str:
    """Name and version of the library behind a codec, as Pillow reports them."""
    if library == "jpg":
        turbo = features.check("libjpeg_turbo")
        return (f"libjpeg-turbo {features.version('libjpeg_turbo')}" if turbo
                else f"libjpeg {features.version('jpg')}")
    return str(features.version(library)) if _is_pil_feature(library) \
        else _plugin_version(library)


def describe(codec: Codec) -> str:
    """One-line description: Pillow version, codec, what is swept, library and options."""
    notes = codec.notes.format(version=_library_version(codec.library))
    return f"Pillow {PIL.__version__} {codec.label} {codec.setting} sweep ({notes})"


def encode(image: Image.Image, codec: Codec, value: float) -> bytes:
    """Encode ``image`` with ``codec`` at sweep setting ``value``; return the bitstream."""
    if not _is_pil_feature(codec.library):
        _load_plugin(codec.library)  # registers the format with Pillow
    buf = io.BytesIO()
    image.save(buf, format=codec.pil_format, **codec.options(value))
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode a bitstream to an ``(H, W, 3)`` uint8 RGB array."""
    for codec in CODECS.values():  # plugin formats (JPEG XL) must be registered to open
        if not _is_pil_feature(codec.library):
            _load_plugin(codec.library)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def measure(image: np.ndarray, codec: Codec, value: float) -> dict[str, float | None]:
    """Encode, decode and score one image at one setting: the :data:`METRICS` of one point."""
    pil_image = Image.fromarray(image)
    start = time.perf_counter()
    data = encode(pil_image, codec, value)
    encoding_time = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode(data)
    decoding_time = time.perf_counter() - start
    return {
        "psnr-rgb": psnr(image, decoded),
        "ms-ssim-rgb": msssim(image, decoded),
        "bpp": 8.0 * len(data) / (image.shape[0] * image.shape[1]),
        "encoding_time": encoding_time,
        "decoding_time": decoding_time,
    }


def parse_qualities(specs: Iterable[str]) -> dict[str, list[float]]:
    """Parse ``CODEC=V1,V2,...`` strings into ``{codec: [values]}`` (integers kept as int)."""
    qualities: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().lower()
        if not sep or not values.strip():
            raise KdlicError(f"bad --qualities {spec!r}: expected CODEC=V1,V2,... "
                             "e.g. jpeg=10,30,50,70,90")
        try:
            numbers = [float(v) for v in values.split(",")]
        except ValueError as exc:
            raise KdlicError(f"bad --qualities {spec!r}: {exc}") from exc
        qualities[name] = [int(v) if v.is_integer() else v for v in numbers]
    return qualities


def check_sweep(codec: Codec, values: Sequence[float]) -> None:
    """KdlicError unless ``values`` is a non-empty list of settings valid for ``codec``."""
    lo, hi = codec.valid
    bad = [v for v in values
           if not (math.isfinite(v) and lo <= v <= hi) or (codec.integer and v != int(v))]
    if not values or bad:
        kind = "whole numbers" if codec.integer else "numbers"
        raise KdlicError(f"{codec.name}: {codec.setting} values must be {kind} in "
                         f"[{lo:g}, {hi:g}], got {list(values)}")


def image_keys(images: Sequence[Path]) -> list[str]:
    """Per-image keys for the JSON: file names, or full paths if two names collide."""
    names = [p.name for p in images]
    return names if len(set(names)) == len(names) else [str(p) for p in images]


def sweep(
    images: Sequence[np.ndarray],
    keys: Sequence[str],
    codec: Codec,
    values: Sequence[float],
    on_setting: Callable[[dict[str, Any]], None],
    progress: bool,
) -> dict[str, Any]:
    """Measure ``codec`` at every setting in ``values`` on every image.

    Returns the CompressAI-format result document; ``on_setting`` receives the document
    so far after each setting (used to save partial results).
    """
    results: dict[str, list[Any]] = {m: [] for m in METRICS} | {"quality": []}
    per_image: dict[str, dict[str, list[Any]]] = {k: {m: [] for m in METRICS} for k in keys}
    doc = {"name": codec.name, "description": describe(codec), "results": results,
           "per_image": per_image}
    with progress_bar(total=len(values) * len(images), desc=codec.name, unit="img",
                      disable=not progress) as bar:
        for value in values:
            points = []
            for key, image in zip(keys, images, strict=True):
                point = measure(image, codec, value)
                for metric in METRICS:
                    per_image[key][metric].append(point[metric])
                points.append(point)
                bar.update()
            results["quality"].append(value)
            for metric in METRICS:
                results[metric].append(mean_of_measured([p[metric] for p in points]))
            on_setting(doc)
    return doc


def run_baselines(
    images: list[Path],
    codecs: list[str],
    qualities: dict[str, list[float]] | None,
    out_dir: Path,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Sweep each codec over its settings on ``images``; write ``out_dir/<codec>.json``.

    Args:
        images: image files (read as RGB; all are read first, so a bad file fails early).
        codecs: codec names, see :data:`CODECS` and :func:`available_codecs`.
        qualities: per-codec sweep values overriding :attr:`Codec.defaults`.
        out_dir: output folder. ``<codec>.partial.json`` is rewritten after each setting
            and replaced by ``<codec>.json`` when the codec is done, so an interrupted
            sweep keeps what it finished. Writes are atomic.
        progress: show progress on stderr (a bar on a terminal, plain lines otherwise).

    Returns:
        ``{codec: result document}`` as written, except that infinite PSNRs are floats.
    """
    qualities = qualities or {}
    sweeps = _plan(codecs, qualities)
    if not images:
        raise KdlicError("no images given")
    arrays = [load_rgb(p) for p in images]
    keys = image_keys(images)
    out_dir = Path(out_dir)
    done: dict[str, dict[str, Any]] = {}
    for codec, values in sweeps:
        partial = out_dir / f"{codec.name}.partial.json"
        doc = sweep(arrays, keys, codec, values,
                    lambda d, path=partial: write_json(path, d), progress)
        write_json(out_dir / f"{codec.name}.json", doc)
        partial.unlink(missing_ok=True)
        done[codec.name] = doc
    return done


def _plan(codecs: Sequence[str], qualities: dict[str, list[float]]) -> list[tuple[Codec, list]]:
    """Validate codec names and sweep values; return ``(codec, values)`` pairs in order."""
    if not codecs:
        raise KdlicError("no codecs given")
    for name in [*codecs, *qualities]:
        if name not in CODECS:
            raise KdlicError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    unused = sorted(set(qualities) - set(codecs))
    if unused:
        raise KdlicError(f"qualities given for {', '.join(unused)}, which is not being run")
    missing = [n for n in codecs if not is_available(n)]
    if missing:
        hint = "; jxl needs `pip install pillow-jxl-plugin`" if "jxl" in missing else ""
        raise KdlicError(f"not available in this Pillow build: {', '.join(missing)} "
                         f"(available: {', '.join(available_codecs(lossy_only=False))}{hint})")
    plan = []
    for name in dict.fromkeys(codecs):
        codec = CODECS[name]
        values = list(qualities.get(name, codec.defaults))
        check_sweep(codec, values)
        plan.append((codec, values))
    return plan
