"""Minnen et al., "Joint autoregressive and hierarchical priors for learned image
compression" (NeurIPS 2018): the mean-scale hyperprior and the joint autoregressive
model, of any size (CompressAI's classes, registered); and ``mbt2018-mean-decoder``,
a mean-scale hyperprior's encoder side with a synthesis of its own width
(:mod:`kdlic.models.decoder_only`)."""

from __future__ import annotations

import compressai.models as cm

from kdlic.models.base import Architecture, register_architecture
from kdlic.models.decoder_only import DecoderOnly


@register_architecture("mbt2018-mean")
class MeanScaleHyperprior(Architecture, cm.MeanScaleHyperprior):
    """Mean-scale hyperprior: h_s predicts a mean and a scale per latent element."""


@register_architecture("mbt2018-mean-decoder")
class DecoderOnlyMeanScaleHyperprior(DecoderOnly, MeanScaleHyperprior):
    """A decoder-only student of a mean-scale hyperprior (:class:`DecoderOnly`).

    Args:
        N: channels of g_s, the only transform it trains.
        M: the teacher's latent channels.
        encoder_N: the teacher's N (g_a, h_a, h_s, and its hyper-latent's channels);
            defaults to ``N``.
    """

    arg_names = ("N", "M", "encoder_N")
    teacher_arch = "mbt2018-mean"

    def __init__(self, N: int, M: int, encoder_N: int | None = None) -> None:
        encoder_N = int(encoder_N or N)
        super().__init__(encoder_N, M)
        self._own_synthesis(N, encoder_N)


@register_architecture("mbt2018")
class JointAutoregressiveHierarchicalPriors(Architecture, cm.JointAutoregressiveHierarchicalPriors):
    """Mean-scale hyperprior plus a masked-convolution context model (serial decoding)."""
