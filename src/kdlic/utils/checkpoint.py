"""Self-describing checkpoints that load without unpickling code.

A checkpoint is a plain dict (only tensors, numbers, strings, lists, dicts), read
with ``torch.load(weights_only=True)``, so a file from the internet cannot run code:

``format``       ``"kdlic-checkpoint"``
``version``      format version (int)
``arch``         architecture name (see :data:`kdlic.models.ARCHITECTURES`)
``arch_args``    constructor arguments (``N``, ``M``, ``z_channels``)
``state_dict``   model weights (fp32 or fp16; loaded into fp32)
``packed_half``  optional (zoo files, version 2): the fp16 weights, packed (below);
                 ``state_dict`` then holds the other tensors (integer buffers)
``meta``         ``lmbda``, ``step``, ``config`` (the run's full config), ``metrics``;
                 ``warm_start`` for a run started from trained weights
                 (:mod:`kdlic.training.lineage`)
``train_state``  optional: optimizer, scheduler and RNG states for ``--resume``

Packed fp16 weights: all fp16 tensors, flattened in ``names`` order, as little-endian
bytes; the low bytes and the high bytes (sign, exponent and top mantissa bits, which
repeat a lot) are zlib-compressed separately. Lossless, and 14% smaller than the fp16
tensors in a plain ``torch.save`` (which barely compresses): the zoo is size-limited.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdlic.errors import KdlicError
from kdlic.utils.files import atomic_open

FORMAT = "kdlic-checkpoint"
VERSION = 2  # 2 added packed_half; version 1 files (no packing) still load
MAX_PACKED_VALUES = 1 << 31


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any] | None = None,
    half: bool = False,
    pack: bool = False,
    leave_out: tuple[str, ...] = (),
) -> None:
    """Write ``model`` and its metadata to ``path`` atomically (temp file + rename).

    Args:
        half: store floating-point weights as fp16 (zoo files); loading restores fp32.
            (Not a decoder-only student's encoder side: its teacher's encoder, kept exact.)
        pack: with ``half``, pack the fp16 weights (module docstring): smaller files.
        leave_out: top-level modules whose weights are not written (a zoo decoder's
            encoder side, which loading takes from its zoo teacher: ``meta["encoder_from"]``).
    """
    from kdlic.models.identity import ENCODER_MODULES, is_decoder_only

    # Buffers stay as they are: they are small, and fp16 would zero the entropy models'
    # likelihood bound (1e-9 is below fp16's smallest value). A decoder-only student's
    # encoder side stays fp32 too: it must stay its teacher's, bit for bit.
    params = {name for name, _ in model.named_parameters()}
    if is_decoder_only(model):
        params = {name for name in params if name.split(".", 1)[0] not in ENCODER_MODULES}
    state = {
        k: (v.half() if half and k in params and v.is_floating_point() else v).detach().cpu()
        for k, v in model.state_dict().items() if k.split(".", 1)[0] not in leave_out
    }
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch,
        "arch_args": model.arch_args,
        "state_dict": state,
        "meta": meta,
    }
    if half and pack:
        halves = {k: v for k, v in state.items() if v.dtype == torch.float16}
        ckpt["state_dict"] = {k: v for k, v in state.items() if k not in halves}
        ckpt["packed_half"] = pack_half(halves)
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
        # PyTorch's message suggests retrying with weights_only=False, i.e. running the
        # file's code: not advice to pass on. Name what the file asked for instead.
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" (it names {found.group(1)})" if found else ""
        raise KdlicError(f"refusing to load {path}: it holds more than plain data{what}; "
                         "kdlic never loads such files, as loading them could run code") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise KdlicError(f"cannot read checkpoint {path}: truncated or not a checkpoint") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise KdlicError(f"{path} is not a kdlic checkpoint (no '{FORMAT}' header)")
    if ckpt.get("version") not in (1, VERSION):
        raise KdlicError(
            f"{path}: checkpoint format version {ckpt.get('version')} is not supported "
            f"(this kdlic reads versions 1 to {VERSION})"
        )
    for key in ("arch", "arch_args", "state_dict", "meta"):
        if key not in ckpt:
            raise KdlicError(f"{path}: checkpoint lacks '{key}'")
    _check_types(ckpt, path)
    if "packed_half" in ckpt:
        ckpt["state_dict"] = {**ckpt["state_dict"], **unpack_half(ckpt.pop("packed_half"), path)}
    repair_likelihood_bounds(ckpt["state_dict"])
    raw = (ckpt.get("train_state") or {}).get("raw_model")
    if isinstance(raw, dict):
        repair_likelihood_bounds(raw)
    return ckpt


def total_steps(meta: dict[str, Any]) -> int | None:
    """Training steps behind a checkpoint, its warm starts included, from its ``meta``;
    None where a warm start's steps are not recorded (checkpoints from before the record)."""
    ws = meta.get("warm_start")
    if ws is not None:
        return None if ws["unrecorded"] else meta.get("step", 0) + ws["steps"]
    return None if meta.get("config", {}).get("init") else meta.get("step", 0)


def training_record(meta: dict[str, Any]) -> dict[str, Any]:
    """How a model was made, from its checkpoint's ``meta``: ``kind`` (train or distill),
    ``teacher`` and its training step when distilled (``teacher_step``; None for students
    distilled before kdlic recorded it), ``preset`` (the KD loss; ``none`` = plain RD
    training of a student), ``kd_weights`` (the preset's weights as changed) and
    ``total_steps`` (warm starts included, :func:`total_steps`)."""
    config = meta.get("config") or {}
    kd = config.get("kd") or {}
    return {"kind": meta.get("kind"), "teacher": config.get("teacher"),
            "teacher_step": (meta.get("teachers") or [{}])[0].get("step"),
            "preset": kd.get("preset"), "kd_weights": kd.get("weights") or {},
            "total_steps": total_steps(meta)}


# CompressAI's entropy models bound every likelihood below by 1e-9
# (compressai/entropy_models/entropy_models.py, likelihood_bound=1e-9).
LIKELIHOOD_BOUND = 1e-9


def repair_likelihood_bounds(state: dict[str, Any]) -> None:
    """Restore likelihood bounds that an fp16 file stored as 0, in place.

    Files written with every float tensor in fp16 (the zoo before this was fixed) hold
    ``*.likelihood_lower_bound.bound`` = 0: 1e-9 underflows fp16. A zero bound lets a
    likelihood reach 0, so the rate estimate becomes inf (training stops on a non-finite
    loss; evaluation's estimated bpp reads inf).
    """
    for name, value in state.items():
        if (name.endswith("likelihood_lower_bound.bound") and isinstance(value, torch.Tensor)
                and value.is_floating_point() and value.numel() == 1 and float(value) == 0):
            state[name] = torch.full_like(value, LIKELIHOOD_BOUND, dtype=torch.float32)


def _check_types(ckpt: dict[str, Any], path: Path) -> None:
    """Refuse metadata of the wrong type, which would fail later as a TypeError."""
    if not isinstance(ckpt["arch"], str):
        raise KdlicError(f"{path}: 'arch' must be a string, got {type(ckpt['arch']).__name__}")
    for key in ("arch_args", "state_dict", "meta"):
        if not isinstance(ckpt[key], dict) or not all(isinstance(k, str) for k in ckpt[key]):
            raise KdlicError(f"{path}: '{key}' must be a mapping with string keys, got "
                             f"{type(ckpt[key]).__name__}")
    for name, value in ckpt["state_dict"].items():
        if not isinstance(value, torch.Tensor):
            raise KdlicError(f"{path}: state_dict entry {name!r} is a "
                             f"{type(value).__name__}, not a tensor")


def pack_half(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """fp16 tensors -> ``{names, shapes, low, high}`` (see the module docstring)."""
    flat = np.concatenate([t.numpy().astype("<f2").reshape(-1) for t in tensors.values()]
                          or [np.zeros(0, "<f2")])
    pairs = flat.view(np.uint8).reshape(-1, 2)
    return {
        "names": list(tensors),
        "shapes": [list(t.shape) for t in tensors.values()],
        **{key: torch.frombuffer(bytearray(zlib.compress(pairs[:, i].tobytes(), 9)),
                                 dtype=torch.uint8) for i, key in enumerate(("low", "high"))},
    }


def unpack_half(packed: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack_half`, checking every size; :class:`KdlicError` if corrupt."""
    try:
        names, shapes = list(packed["names"]), [list(s) for s in packed["shapes"]]
        sizes = [math.prod(int(d) for d in s) for s in shapes]
        count = sum(sizes)
        if (len(names) != len(shapes) or count > MAX_PACKED_VALUES
                or not all(isinstance(n, str) for n in names)):
            raise ValueError("bad tensor list")
        planes = []
        for key in ("low", "high"):
            inflater = zlib.decompressobj()
            plane = inflater.decompress(packed[key].numpy().tobytes(), count + 1)
            if len(plane) != count or not inflater.eof:
                raise ValueError("wrong size")
            planes.append(np.frombuffer(plane, np.uint8))
    except (KeyError, TypeError, ValueError, AttributeError, zlib.error) as exc:
        raise KdlicError(f"{path}: corrupt packed weights ({exc})") from exc
    flat = torch.from_numpy(np.stack(planes, axis=1).reshape(-1).view("<f2").astype(np.float16))
    out, start = {}, 0
    for name, shape, size in zip(names, shapes, sizes, strict=True):
        out[name] = flat[start : start + size].reshape(shape)
        start += size
    return out
