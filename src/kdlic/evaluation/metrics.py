"""Image quality metrics on 8-bit images, as the field reports them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from pytorch_msssim import ms_ssim

# 5-scale MS-SSIM with an 11-px window needs sides > (11 - 1) * 2**4 = 160.
MS_SSIM_MIN_SIDE = 161


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (peak 255); ``inf`` when identical."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def mean_of_measured(values: Sequence[float | None]) -> float | None:
    """Mean over the values that could be measured (not None), None if none could.

    One rule for every mean we report: an image too small for MS-SSIM is left out of
    the MS-SSIM mean rather than voiding it. ``inf`` (lossless PSNR) propagates.
    """
    measured = [v for v in values if v is not None]
    return float(np.mean(measured)) if measured else None


def msssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images, or None if a side is under 161 px."""
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    ta, tb = (torch.from_numpy(np.array(v, dtype=np.float32)).permute(2, 0, 1)[None]
              for v in (a, b))
    return float(ms_ssim(ta, tb, data_range=255.0))


def rd_cost(per_image: Sequence[dict], lmbda: float) -> float:
    """Mean over images of ``bpp + lambda * 255^2 * MSE`` (MSE of 8-bit pixels scaled to
    [0, 1], from each image's ``psnr-rgb``): the cost training minimises, averaged over
    images as the loss averages over crops. Lower is better."""
    return sum(r["bpp"] + lmbda * 255**2 * 10 ** (-r["psnr-rgb"] / 10)
               for r in per_image) / len(per_image)
