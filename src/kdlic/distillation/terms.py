"""Distillation loss terms (registered data) and the paper's presets.

Each KD term compares a student output with the teacher's, in the tensors' own units,
and declares which output it needs (``needs``): the teacher, the teacher-output cache
and the pre-training shape check read that declaration.

``latent``     MSE(y_hat_s, y_hat_t), latent units (B, M, H/16, W/16)
``latent_kl``  KL(softmax(y_hat_t / T) || softmax(y_hat_s / T)) over channels, times T^2
               (Hinton's scaling keeps gradients comparable across temperatures)
``hyper``      MSE(z_hat_s, z_hat_t), hyper-latent units (B, Cz, H/64, W/64)
``output``     MSE(x_hat_s, x_hat_t), images in [0, 1] (B, 3, H, W)
``rd``         the student's own RD loss, lambda * 255^2 * MSE(x_hat_s, x) + bpp (not a KD
               term: it needs no teacher); for a decoder-only student its distortion
               lambda * 255^2 * MSE alone (the rate is the teacher's, fixed)

The total is sum(weight * term); terms with weight 0 are not computed. A new term is one
decorated function::

    @register_term("output_l1", needs="x_hat")
    def output_l1(student, teacher, temperature):
        return (student - teacher).abs().mean()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

TermFn = Callable[[Tensor, Tensor, float], Tensor]


@dataclass(frozen=True)
class Term:
    """A registered KD term: ``fn(student_output, teacher_output, temperature)``."""

    name: str
    needs: str  # the model output it compares: "y_hat", "z_hat" or "x_hat"
    fn: TermFn


# KD terms by name; RD is the student's own loss, weighted like them.
TERMS: dict[str, Term] = {}
RD = "rd"


def register_term(name: str, needs: str) -> Callable[[TermFn], TermFn]:
    """Function decorator: make ``name`` usable in ``kd.weights`` and presets."""
    if needs not in ("y_hat", "z_hat", "x_hat"):
        raise ValueError(f"a KD term needs y_hat, z_hat or x_hat, not {needs!r}")

    def add(fn: TermFn) -> TermFn:
        TERMS[name] = Term(name, needs, fn)
        return fn
    return add


def term_names() -> list[str]:
    """Every name a weight may be given for: the KD terms and ``rd``."""
    return [*TERMS, RD]


@register_term("latent", needs="y_hat")
def latent_mse(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    return F.mse_loss(student, teacher)


@register_term("latent_kl", needs="y_hat")
def latent_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Channel-wise KL divergence per latent position, mean over positions, times T^2."""
    log_p_s = F.log_softmax(student / temperature, dim=1)
    log_p_t = F.log_softmax(teacher / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return kl.mean() * temperature**2


@register_term("hyper", needs="z_hat")
def hyper_mse(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    return F.mse_loss(student, teacher)


@register_term("output", needs="x_hat")
def output_mse(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    return F.mse_loss(student, teacher)


PRESETS: dict[str, dict[str, float]] = {
    # Paper loss 1, their default weights (0.2, 0.2, 0.4).
    "L1": {"latent": 0.2, "output": 0.2, "rd": 0.4},
    # Paper loss 2: adds the hyper-latent term.
    "L2": {"latent": 0.2, "hyper": 0.2, "output": 0.2, "rd": 0.4},
    # KL divergence over channels instead of the latent MSE.
    "kld": {"latent_kl": 0.2, "output": 0.2, "rd": 0.4},
    # The student as a plain auto-encoder of the teacher's reconstruction: no rate.
    "output-only": {"output": 1.0},
    # Two teachers: the second (low-rate) one for the hyper-latent term.
    "hybrid": {"latent": 0.2, "hyper": 0.2, "output": 0.2, "rd": 0.4},
    # Decoder-only distillation's default (kd.preset null with student.decoder_only): the
    # output term plus the distortion (rd without the rate: the bitstream is the teacher's).
    "decoder": {"output": 0.2, "rd": 0.4},
    # Plain RD training of the student: the baseline for every KD result.
    "none": {"rd": 1.0},
}
