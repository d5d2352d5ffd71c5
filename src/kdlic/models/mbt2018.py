"""Minnen et al., "Joint autoregressive and hierarchical priors for learned image
compression" (NeurIPS 2018): the mean-scale hyperprior and the joint autoregressive
model, of any size (CompressAI's classes, registered)."""

from __future__ import annotations

import compressai.models as cm

from kdlic.models.base import Architecture, register_architecture


@register_architecture("mbt2018-mean")
class MeanScaleHyperprior(Architecture, cm.MeanScaleHyperprior):
    """Mean-scale hyperprior: h_s predicts a mean and a scale per latent element."""


@register_architecture("mbt2018")
class JointAutoregressiveHierarchicalPriors(Architecture, cm.JointAutoregressiveHierarchicalPriors):
    """Mean-scale hyperprior plus a masked-convolution context model (serial decoding)."""
