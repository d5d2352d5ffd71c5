"""Atomic file writes: a crash or a full disk never leaves a half-written result."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from others
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "wb") -> None:
    """Call ``write(f)`` on a temporary file, then rename it onto ``path``."""
    with atomic_open(path, mode) as f:
        write(f)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (non-finite floats as strings)."""
    atomic_write(path, lambda f: json.dump(jsonable(obj), f, indent=2, allow_nan=False), mode="w")


def jsonable(obj: Any) -> Any:
    """``obj`` with non-finite floats as strings ("inf", "-inf", "nan"): JSON has no inf.

    A lossless round trip has PSNR = inf; we keep that fact rather than a made-up number.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def from_jsonable(value: Any) -> Any:
    """Inverse of :func:`jsonable` for one value: ``"inf"``/``"-inf"``/``"nan"`` -> float."""
    return float(value) if value in ("inf", "-inf", "nan") else value
