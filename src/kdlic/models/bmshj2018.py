"""Balle et al., "Variational image compression with a scale hyperprior" (ICLR 2018):
the factorized prior and the scale hyperprior, of any size.

CompressAI's classes (same layers and parameter names, so its pre-trained weights load
unchanged), with one addition to the scale hyperprior for distillation:

* ``z_channels``: the hyper-latent ``z`` may have a channel count other than ``N``.
  A student distilled on ``z_hat`` ends its hyper-analysis in the teacher's ``z``
  channels so the two hyper-latents have the same shape (paper, loss 2).

and one more architecture, ``scale-hyperprior-decoder``: a teacher's encoder side with a
synthesis of its own width (decoder-only distillation, :class:`DecoderOnlyScaleHyperprior`).
"""

from __future__ import annotations

from collections.abc import Mapping

import compressai.models as cm
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from kdlic.models.base import Architecture, register_architecture
from kdlic.models.identity import ENCODER_MODULES


@register_architecture("bmshj2018-factorized")
class FactorizedPrior(Architecture, cm.FactorizedPrior):
    """Factorized prior: ``N`` transform channels, ``M`` latent channels, no hyperprior."""


@register_architecture("scale-hyperprior", compressai_name="bmshj2018-hyperprior")
class ScaleHyperprior(Architecture, cm.ScaleHyperprior):
    """Scale hyperprior with ``N`` transform channels, ``M`` latent channels.

    Args:
        N: channels inside g_a, g_s, h_a, h_s.
        M: channels of the latent ``y`` (1/16 of the image resolution).
        z_channels: channels of the hyper-latent ``z`` (1/64 of the resolution);
            defaults to ``N`` as in CompressAI.
    """

    arg_names = ("N", "M", "z_channels")

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

    @classmethod
    def args_from_state(cls, state: Mapping[str, Tensor]) -> dict[str, int]:
        return {**super().args_from_state(state), "z_channels": state["h_a.4.weight"].size(0)}


def synthesis(M: int, N: int) -> nn.Sequential:
    """The scale hyperprior's g_s (CompressAI's layers) from M latent channels, width N."""
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True),
        deconv(N, 3),
    )


@register_architecture("scale-hyperprior-decoder")
class DecoderOnlyScaleHyperprior(ScaleHyperprior):
    """A decoder-only student: a scale hyperprior's encoder side (g_a, h_a, h_s and the
    entropy models, ``encoder_N`` channels wide, copied from the teacher and frozen) with
    a synthesis g_s of its own width ``N``. Its bitstream is the teacher's, so it decodes
    the teacher's files (docs/format.md, *Encoder identity*).

    Args:
        N: channels of g_s, the only transform it trains.
        M, z_channels: the teacher's latent and hyper-latent channels.
        encoder_N: the teacher's N (g_a, h_a, h_s); defaults to ``N``.

    The encoder side never trains: its parameters do not require gradients and it stays
    in eval mode (the latents are rounded as at coding time, so g_s learns from exactly
    what the decoder will give it), whatever ``train()`` says. Two 8-byte buffers record
    the encoder: ``encoder_id``, the id the teacher's files carry, and ``encoder_hash``,
    :func:`kdlic.models.identity.encoder_hash` of the teacher, which the codec checks
    against the student's own encoder side.
    """

    arg_names = ("N", "M", "z_channels", "encoder_N")

    def __init__(self, N: int, M: int, z_channels: int | None = None,
                 encoder_N: int | None = None) -> None:
        encoder_N = int(encoder_N or N)
        super().__init__(encoder_N, M, z_channels)
        self.encoder_N = encoder_N
        self.N = int(N)
        self.g_s = synthesis(M, self.N)
        self.register_buffer("encoder_id", torch.zeros(8, dtype=torch.uint8))
        self.register_buffer("encoder_hash", torch.zeros(8, dtype=torch.uint8))
        for name in ENCODER_MODULES:
            getattr(self, name).requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> DecoderOnlyScaleHyperprior:
        super().train(mode)
        for name in (*ENCODER_MODULES, "gaussian_conditional"):
            getattr(self, name).train(False)
        return self

    @classmethod
    def args_from_state(cls, state: Mapping[str, Tensor]) -> dict[str, int]:
        args = super().args_from_state(state)
        return {**args, "N": state["g_s.0.weight"].size(1), "encoder_N": args["N"]}
