"""Model architectures and how to build or load them by name.

Every CompressAI image architecture whose latent path is g_a / h_a / h_s / g_s is
registered (:data:`ARCHITECTURES`), at any size, as teacher or student:
``bmshj2018-factorized``, ``scale-hyperprior`` (CompressAI's ``bmshj2018-hyperprior``),
``mbt2018-mean``, ``mbt2018``, ``cheng2020-anchor``, ``cheng2020-attn``; and
``scale-hyperprior-decoder`` and ``mbt2018-mean-decoder``, a hyperprior's frozen
encoder side with a synthesis of its own width (decoder-only distillation).

A *model spec* names a model wherever the CLI or the API takes one:

* a path to a kdlic checkpoint (``runs/teacher/best.pt``);
* a zoo name shipped with kdlic (``kdlic zoo list``);
* a CompressAI pre-trained model, ``compressai:<architecture>:<quality>``
  (e.g. ``compressai:mbt2018-mean:3``), read from the torch hub cache
  or from a local file named as ``compressai:<architecture>:<quality>:<file>``;
* from Python, a model instance (a ``compressai.models`` one is adopted, see
  :func:`adopt`).
"""

from kdlic.models.base import ARCHITECTURES, Architecture, register_architecture
from kdlic.models.bmshj2018 import DecoderOnlyScaleHyperprior, FactorizedPrior, ScaleHyperprior
from kdlic.models.cheng2020 import Cheng2020Anchor, Cheng2020Attention
from kdlic.models.decoder_only import DecoderOnly
from kdlic.models.latents import forward_with_latents, latent_shapes
from kdlic.models.mbt2018 import (
    DecoderOnlyMeanScaleHyperprior,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
)
from kdlic.models.registry import adopt, build_model, display_name, load_model

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Cheng2020Anchor",
    "Cheng2020Attention",
    "DecoderOnly",
    "DecoderOnlyMeanScaleHyperprior",
    "DecoderOnlyScaleHyperprior",
    "FactorizedPrior",
    "JointAutoregressiveHierarchicalPriors",
    "MeanScaleHyperprior",
    "ScaleHyperprior",
    "adopt",
    "build_model",
    "display_name",
    "forward_with_latents",
    "latent_shapes",
    "load_model",
    "register_architecture",
]
