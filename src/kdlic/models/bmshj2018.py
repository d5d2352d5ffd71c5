"""Balle et al., "Variational image compression with a scale hyperprior" (ICLR 2018):
the factorized prior and the scale hyperprior, of any size.

CompressAI's classes (same layers and parameter names, so its pre-trained weights load
unchanged), with one addition to the scale hyperprior for distillation:

* ``z_channels``: the hyper-latent ``z`` may have a channel count other than ``N``.
  A student distilled on ``z_hat`` ends its hyper-analysis in the teacher's ``z``
  channels so the two hyper-latents have the same shape (paper, loss 2).

and one more architecture, ``scale-hyperprior-decoder``: a teacher's encoder side with a
synthesis of its own width (decoder-only distillation, :mod:`kdlic.models.decoder_only`).
"""

from __future__ import annotations

from collections.abc import Mapping

import compressai.models as cm
from compressai.entropy_models import EntropyBottleneck
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from kdlic.models.base import Architecture, register_architecture
from kdlic.models.decoder_only import DecoderOnly


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


@register_architecture("scale-hyperprior-decoder")
class DecoderOnlyScaleHyperprior(DecoderOnly, ScaleHyperprior):
    """A decoder-only student of a scale hyperprior (:class:`DecoderOnly`).

    Args:
        N: channels of g_s, the only transform it trains.
        M, z_channels: the teacher's latent and hyper-latent channels.
        encoder_N: the teacher's N (g_a, h_a, h_s); defaults to ``N``.
    """

    arg_names = ("N", "M", "z_channels", "encoder_N")
    teacher_arch = "scale-hyperprior"

    def __init__(self, N: int, M: int, z_channels: int | None = None,
                 encoder_N: int | None = None) -> None:
        encoder_N = int(encoder_N or N)
        super().__init__(encoder_N, M, z_channels)
        self._own_synthesis(N, encoder_N)
