"""Self-describing checkpoints that load without unpickling code.

A checkpoint is a plain dict (only tensors, numbers, strings, lists, dicts), read
with ``torch.load(weights_only=True)``, so a file from the internet cannot run code:

``format``       ``"kdlic-checkpoint"``
``version``      format version (int)
``arch``         architecture name (see :data:`kdlic.models.ARCHITECTURES`)
``arch_args``    constructor arguments (``N``, ``M``, ``z_channels``)
``state_dict``   model weights (fp32 or fp16; loaded into fp32)
``meta``         ``lmbda``, ``step``, ``config`` (the run's full config), ``metrics``
``train_state``  optional: optimizer, scheduler and RNG states for ``--resume``
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from kdlic.errors import KdlicError
from kdlic.utils.files import atomic_open

FORMAT = "kdlic-checkpoint"
VERSION = 1


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any] | None = None,
    half: bool = False,
) -> None:
    """Write ``model`` and its metadata to ``path`` atomically (temp file + rename).

    Args:
        half: store floating-point weights as fp16 (zoo files); loading restores fp32.
    """
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
        for k, v in model.state_dict().items()
    }
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch,
        "arch_args": model.arch_args,
        "state_dict": state,
        "meta": meta,
    }
    if train_state is not None:
        ckpt["train_state"] = train_state
    with atomic_open(path) as f:
        torch.save(ckpt, f)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint file; :class:`KdlicError` on any problem."""
    path = Path(path)
    if not path.exists():
        raise KdlicError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise KdlicError(f"checkpoint is not a file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise KdlicError(f"refusing to load {path}: not plain data ({first})") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise KdlicError(f"cannot read checkpoint {path}: truncated or not a checkpoint") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise KdlicError(f"{path} is not a kdlic checkpoint (no '{FORMAT}' header)")
    if ckpt.get("version") != VERSION:
        raise KdlicError(
            f"{path}: checkpoint format version {ckpt.get('version')} is not supported "
            f"(this kdlic reads version {VERSION})"
        )
    for key in ("arch", "arch_args", "state_dict", "meta"):
        if key not in ckpt:
            raise KdlicError(f"{path}: checkpoint lacks '{key}'")
    return ckpt
