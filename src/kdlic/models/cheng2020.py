"""Cheng et al., "Learned image compression with discretized Gaussian mixture
likelihoods and attention modules" (CVPR 2020), as CompressAI implements it (Gaussian
likelihoods, residual blocks, optionally attention), of any width ``N`` (the latent has
``N`` channels too)."""

from __future__ import annotations

from collections.abc import Mapping

import compressai.models as cm
from torch import Tensor

from kdlic.models.base import Architecture, register_architecture


@register_architecture("cheng2020-anchor")
class Cheng2020Anchor(Architecture, cm.Cheng2020Anchor):
    """Residual-block transforms with a context model; ``N`` channels throughout."""

    arg_names = ("N",)

    @classmethod
    def args_from_state(cls, state: Mapping[str, Tensor]) -> dict[str, int]:
        return {"N": state["g_a.0.conv1.weight"].size(0)}


@register_architecture("cheng2020-attn")
class Cheng2020Attention(Cheng2020Anchor, cm.Cheng2020Attention):
    """``cheng2020-anchor`` with simplified attention modules in g_a and g_s."""
