"""The rate-distortion objective and the objective interface used by the trainer."""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from compressai.ops.bound_ops import LowerBoundFunction
from torch import Tensor, nn

from kdlic.utils.checkpoint import LIKELIHOOD_BOUND


class Objective(Protocol):
    """What the trainer optimises: ``terms = objective(model, batch)``.

    ``batch["x"]`` holds the images (B, 3, H, W) in [0, 1]; other entries are extra
    targets a data source may provide (e.g. cached teacher outputs).

    ``terms["loss"]`` is back-propagated; ``terms["rd_loss"]`` (the model's own RD
    loss) selects the best checkpoint; every entry is logged.
    """

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]: ...


def bpp(likelihoods: dict[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated rate in bits per pixel: sum of -log2(likelihood) / pixels, all images.

    Likelihoods are bounded below by 1e-9 (at most ~29.9 bits per symbol), as
    CompressAI's entropy models bound them, so the estimate is finite even for a model
    whose own bound is missing or zero (a likelihood that underflowed to 0 would give
    inf). The bound uses CompressAI's ``LowerBound`` operator: where a likelihood is
    at or above the bound (always, in a model whose entropy models keep their bound)
    value and gradient are unchanged, so the training loss is the same; below it the
    gradient still passes where it pushes the likelihood up. Computed in fp32 (1e-9
    underflows fp16).
    """
    total = 0
    for lik in likelihoods.values():
        lik = lik.float()
        bound = torch.full((1,), LIKELIHOOD_BOUND, dtype=lik.dtype, device=lik.device)
        total = total + -torch.log2(LowerBoundFunction.apply(lik, bound)).sum()
    return total / num_pixels


def psnr_from_mse(mse: Tensor | float) -> float:
    """PSNR in dB for images in [0, 1]."""
    mse = float(mse)
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def rd_terms(out: dict[str, Any], x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """RD loss ``lmbda * 255^2 * MSE + bpp`` for a batch (MSE on [0, 1] images).

    Returns ``rd_loss``, ``mse`` and ``bpp`` (per pixel, averaged over the batch).
    """
    num_pixels = x.size(0) * x.size(2) * x.size(3)
    mse = torch.mean((out["x_hat"] - x) ** 2)
    rate = bpp(out["likelihoods"], num_pixels)
    return {"rd_loss": lmbda * 255**2 * mse + rate, "mse": mse, "bpp": rate}


class RateDistortion:
    """Plain RD training: ``loss = rd_loss``."""

    def __init__(self, lmbda: float) -> None:
        self.lmbda = lmbda

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = batch["x"]
        terms = rd_terms(model(x), x, self.lmbda)
        terms["loss"] = terms["rd_loss"]
        return terms
