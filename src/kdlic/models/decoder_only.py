"""Decoder-only students: a teacher's encoder side with a synthesis of their own width.

A decoder-only student keeps its teacher's g_a, h_a, h_s and entropy models (copied
and frozen: :func:`kdlic.models.identity.bind_encoder`) and learns only g_s, so its
bitstream is the teacher's and it decodes the teacher's files (docs/format.md,
*Encoder identity*). One registered class per hyperprior with an exact coder:
``scale-hyperprior-decoder`` (:mod:`kdlic.models.bmshj2018`) and
``mbt2018-mean-decoder`` (:mod:`kdlic.models.mbt2018`), each this mixin and its
teacher's class.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from compressai.layers import GDN
from compressai.models.utils import deconv
from torch import Tensor, nn

from kdlic.models.identity import ENCODER_MODULES, TEACHER_MODULES


def synthesis(M: int, N: int) -> nn.Sequential:
    """The hyperpriors' g_s (CompressAI's layers) from M latent channels, width N."""
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True),
        deconv(N, 3),
    )


class DecoderOnly:
    """Mixin (listed first) for a teacher class ``T``: ``T``'s encoder side,
    ``encoder_N`` channels wide, with a g_s of width ``N``.

    The encoder side never trains: its parameters do not require gradients and it stays
    in eval mode (the latents are rounded as at coding time, so g_s learns from exactly
    what the decoder will give it), whatever ``train()`` says. Two 8-byte buffers record
    the encoder: ``encoder_id``, the id the teacher's files carry, and ``encoder_hash``,
    :func:`kdlic.models.identity.encoder_hash` of the teacher, which the codec checks
    against the student's own encoder side.
    """

    teacher_arch: str = ""  # the architecture whose encoder side it keeps

    def _own_synthesis(self, N: int, encoder_N: int) -> None:
        """Called at the end of ``__init__``, after ``T.__init__(encoder_N, ...)``."""
        self.encoder_N = encoder_N
        self.N = int(N)
        self.g_s = synthesis(self.M, self.N)
        self.register_buffer("encoder_id", torch.zeros(8, dtype=torch.uint8))
        self.register_buffer("encoder_hash", torch.zeros(8, dtype=torch.uint8))
        for name in ENCODER_MODULES:
            getattr(self, name).requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for name in TEACHER_MODULES:
            getattr(self, name).train(False)
        return self

    @classmethod
    def args_from_state(cls, state: Mapping[str, Tensor]) -> dict[str, int]:
        args = super().args_from_state(state)
        return {**args, "N": state["g_s.0.weight"].size(1), "encoder_N": args["N"]}
