"""Scale hyperprior (Balle et al., ICLR 2018) of any size, built from CompressAI layers.

Same layers and parameter names as CompressAI's ``bmshj2018-hyperprior`` (so its
pre-trained weights load unchanged), with two additions for distillation:

* ``z_channels``: the hyper-latent ``z`` may have a channel count other than ``N``.
  A student distilled on ``z_hat`` ends its hyper-analysis in the teacher's ``z``
  channels so the two hyper-latents have the same shape (paper, loss 2).
* the forward pass returns ``y_hat`` and ``z_hat`` next to ``x_hat``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.models import ScaleHyperprior as _CompressAIScaleHyperprior
from compressai.models.utils import conv, deconv
from torch import Tensor, nn


def straight_through_round(x: Tensor) -> Tensor:
    """``round(x)`` in the forward pass, the identity's gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


class ScaleHyperprior(_CompressAIScaleHyperprior):
    """Scale hyperprior with ``N`` transform channels, ``M`` latent channels.

    Args:
        N: channels inside g_a, g_s, h_a, h_s.
        M: channels of the latent ``y`` (1/16 of the image resolution).
        z_channels: channels of the hyper-latent ``z`` (1/64 of the resolution);
            defaults to ``N`` as in CompressAI.
    """

    arch = "scale-hyperprior"

    def __init__(self, N: int, M: int, z_channels: int | None = None) -> None:
        super().__init__(N, M)
        self.z_channels = int(z_channels or N)
        if self.z_channels != N:
            self.entropy_bottleneck = EntropyBottleneck(self.z_channels)
            self.h_a = nn.Sequential(
                conv(M, N, stride=1, kernel_size=3),
                nn.ReLU(inplace=True),
                conv(N, N),
                nn.ReLU(inplace=True),
                conv(N, self.z_channels),
            )
            self.h_s = nn.Sequential(
                deconv(self.z_channels, N),
                nn.ReLU(inplace=True),
                deconv(N, N),
                nn.ReLU(inplace=True),
                conv(N, M, stride=1, kernel_size=3),
                nn.ReLU(inplace=True),
            )
        # Reduced-precision compute for the transforms only (None = fp32). The entropy
        # models always run in fp32: their likelihoods are differences of CDFs, which
        # bf16's 8-bit mantissa would ruin. Set by the trainer, not saved.
        self.autocast_dtype: torch.dtype | None = None
        # Training quantisation, set by the trainer, not saved: "noise" (uniform noise
        # for rate and synthesis) or "mixed" (noise for the rate, straight-through
        # rounding for what h_s and g_s see; Minnen & Singh, ICIP 2020). Eval rounds.
        self.quantization = "noise"

    @property
    def arch_args(self) -> dict[str, Any]:
        """Constructor arguments: enough to rebuild this model from a checkpoint."""
        return {"N": self.N, "M": self.M, "z_channels": self.z_channels}

    def _transform(self, module: nn.Module, x: Tensor) -> Tensor:
        ctx = (
            torch.autocast(x.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            out = module(x)
        return out.float()

    def forward(self, x: Tensor) -> dict[str, Any]:
        """Training/distillation pass (noise or rounding per train/eval mode).

        Args:
            x: images, (B, 3, H, W) in [0, 1], H and W multiples of 64.

        Returns:
            ``x_hat`` (B, 3, H, W); ``y_hat`` (B, M, H/16, W/16);
            ``z_hat`` (B, z_channels, H/64, W/64); ``likelihoods`` ``{"y", "z"}``
            with the shapes of ``y_hat`` and ``z_hat`` (probabilities in (0, 1]).
        """
        y = self._transform(self.g_a, x)
        z = self._transform(self.h_a, torch.abs(y))
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        if self.training and self.quantization == "mixed":
            # Round z around its medians, as compress() does.
            medians = self.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
            z_hat = straight_through_round(z - medians) + medians
        scales_hat = self._transform(self.h_s, z_hat)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales_hat)
        if self.training and self.quantization == "mixed":
            y_hat = straight_through_round(y)
        x_hat = self._transform(self.g_s, y_hat)
        return {
            "x_hat": x_hat,
            "y_hat": y_hat,
            "z_hat": z_hat,
            "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
        }
