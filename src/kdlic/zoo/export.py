"""Put a trained checkpoint into the zoo: fp16 weights, verified, with Kodak figures."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from kdlic.errors import KdlicError
from kdlic.evaluation.evaluate import evaluate_models
from kdlic.models import load_model
from kdlic.models.identity import TEACHER_MODULES, encoder_hash, is_decoder_only
from kdlic.utils.checkpoint import save_checkpoint
from kdlic.zoo import BUDGET_BYTES, WEIGHTS_DIR, load_zoo_model, zoo_bytes, zoo_info, zoo_names

# fp16 storage must not change what users get: max PSNR / bpp drift allowed on export.
MAX_PSNR_DRIFT_DB = 0.05
MAX_BPP_DRIFT = 0.01  # relative


def _zoo_teacher_of(model: nn.Module, name: str) -> str | None:
    """The zoo model whose encoder side a decoder-only ``model`` is (None: not a decoder,
    or its teacher is not in the zoo): its file then leaves the encoder out, ~10 MB."""
    if not is_decoder_only(model):
        return None
    wanted = bytes(model.encoder_hash.tolist())
    for other in zoo_names():
        info = zoo_info(other)
        if (other != name and info["arch"] == model.teacher_arch
                and info["N"] == model.encoder_N
                and encoder_hash(load_zoo_model(other)) == wanted):
            return other
    return None


def export_to_zoo(source: str, name: str, images: Sequence[Path], teacher: str | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Write ``source`` (a checkpoint) as zoo model ``name`` with fp16 weights.

    Both the fp32 original and the fp16 copy are evaluated on ``images`` with real
    bitstreams; the export is refused if fp16 moves PSNR or bpp beyond the tolerances
    above. The fp16 figures are stored in ``meta["kodak"]``. ``teacher`` replaces the
    teacher recorded in the config (e.g. a local path by the teacher's zoo name).
    """
    model = load_model(source)
    meta = dict(model.meta)
    if teacher is not None:
        meta["config"] = {**meta.get("config", {}), "teacher": teacher}
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / f"{name}.pt"
        save_checkpoint(half, model, meta, half=True)
        res = evaluate_models([source, str(half)], images, name, progress=progress)
    r = res["results"]
    psnr32, psnr16 = r["psnr-rgb"]
    bpp32, bpp16 = r["bpp"]
    if abs(psnr16 - psnr32) > MAX_PSNR_DRIFT_DB or abs(bpp16 / bpp32 - 1) > MAX_BPP_DRIFT:
        raise KdlicError(f"fp16 changes {name}: PSNR {psnr32:.3f} -> {psnr16:.3f} dB, "
                         f"bpp {bpp32:.4f} -> {bpp16:.4f}")
    meta["kodak"] = {"images": len(images), "bpp": bpp16, "psnr-rgb": psnr16,
                     "ms-ssim-rgb": r["ms-ssim-rgb"][1], "fp32_psnr-rgb": psnr32,
                     "fp32_bpp": bpp32}
    leave_out: tuple[str, ...] = ()
    teacher_name = _zoo_teacher_of(model, name)
    if teacher_name is not None:  # a decoder of a zoo teacher: its encoder is that file's
        meta["encoder_from"], leave_out = teacher_name, TEACHER_MODULES
    with tempfile.TemporaryDirectory(dir=WEIGHTS_DIR) as tmp:
        packed = Path(tmp) / f"{name}.pt"
        save_checkpoint(packed, model, meta, half=True, pack=True, leave_out=leave_out)
        if leave_out:  # it must load back with the zoo teacher's encoder, as it was
            load_model(packed)
        total = zoo_bytes(replacing=name) + packed.stat().st_size
        if total > BUDGET_BYTES:
            raise KdlicError(f"with {name} the zoo's weights would take {total / 1e6:.1f} MB, "
                             f"over the {BUDGET_BYTES / 1e6:.0f} MB budget (PyPI's wheels "
                             "take 100 MB): drop a superseded model first")
        packed.replace(WEIGHTS_DIR / f"{name}.pt")
    return meta["kodak"]
