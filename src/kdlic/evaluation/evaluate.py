"""Real-bitstream evaluation of models on an image folder.

Every image is really compressed to a ``.kdl`` container and decompressed
(:mod:`kdlic.codec`); bpp is 8 x file bytes / pixels of the original image, PSNR
and MS-SSIM are measured on the decoded 8-bit image. The likelihood estimate of
the rate is reported next to it (``bpp_estimated``), as a sanity check of the
entropy coder. Results use CompressAI's JSON layout, one curve point per model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdlic.codec import Codec, model_name
from kdlic.data.images import open_image, split_channels
from kdlic.data.sampling import padded_input
from kdlic.evaluation.metrics import mean_of_measured, msssim, psnr
from kdlic.models import adopt, load_model
from kdlic.training.losses import bpp
from kdlic.utils.checkpoint import training_record
from kdlic.utils.progress import progress_bar

METRICS = ("psnr-rgb", "ms-ssim-rgb", "bpp", "bpp_estimated", "encoding_time", "decoding_time")


@torch.no_grad()
def estimated_bpp(model: nn.Module, rgb: np.ndarray) -> float:
    """Rate from the model's likelihoods (eval mode), bits per original pixel."""
    h, w = rgb.shape[:2]
    x = padded_input(rgb)
    return float(bpp(model(x.to(next(model.parameters()).device))["likelihoods"], h * w))


def evaluate_image(codec: Codec, path: Path) -> dict[str, Any]:
    """Compress and decompress one image; its metrics (bpp from the file size)."""
    _, rgb, _ = split_channels(open_image(path))
    t0 = time.perf_counter()
    data = codec.encode(rgb)
    t1 = time.perf_counter()
    decoded = np.asarray(codec.decode(data).convert("RGB"))
    t2 = time.perf_counter()
    h, w = rgb.shape[:2]
    return {
        "image": path.name,
        "width": w,
        "height": h,
        "bytes": len(data),
        "bpp": 8 * len(data) / (w * h),
        "bpp_estimated": estimated_bpp(codec.model, rgb),
        "psnr-rgb": psnr(rgb, decoded),
        "ms-ssim-rgb": msssim(rgb, decoded),
        "encoding_time": t1 - t0,
        "decoding_time": t2 - t1,
    }


def mean_metrics(per_image: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Mean of each metric over images (None where a metric was not measurable)."""
    return {key: mean_of_measured([r[key] for r in per_image]) for key in METRICS}


def model_summary(model: nn.Module, spec: str) -> dict[str, Any]:
    meta = getattr(model, "meta", {}) or {}
    return {
        "model": spec,
        "arch": model.arch,
        "arch_args": model.arch_args,
        "lmbda": meta.get("lmbda"),
        "steps": meta.get("step"),
        "params": sum(p.numel() for p in model.parameters()),
        # how it was made (the report draws one curve per kind, preset and teacher); a
        # results JSON keeps it once the checkpoint is gone
        **training_record(meta),
    }


def evaluate_models(
    specs: Sequence[str | nn.Module],
    images: Sequence[Path],
    name: str,
    description: str = "kdlic real-bitstream evaluation",
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate each model spec on ``images``; CompressAI-format results.

    ``results[metric]`` has one entry per model (an RD curve in the given order);
    ``models[i]`` holds model ``i``'s description and per-image results.
    """
    results: dict[str, list[Any]] = {k: [] for k in METRICS}
    models = []
    for spec in specs:
        model = adopt(spec) if isinstance(spec, nn.Module) else load_model(spec)
        spec = getattr(model, "source", None) or model_name(model) \
            if isinstance(spec, nn.Module) else spec
        codec = Codec(model, device)
        per_image = [
            evaluate_image(codec, path)
            for path in progress_bar(images, desc=str(spec), unit="img", disable=not progress,
                                     leave=False)
        ]
        for key, value in mean_metrics(per_image).items():
            results[key].append(value)
        models.append({**model_summary(model, str(spec)), "per_image": per_image})
    return {"name": name, "description": description, "results": results, "models": models}
