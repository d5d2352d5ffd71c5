"""Distillation loss terms and the paper's presets.

Each term compares a student output with the teacher's, in the tensors' own units:

``latent``     MSE(y_hat_s, y_hat_t), latent units (B, M, H/16, W/16)
``latent_kl``  KL(softmax(y_hat_t / T) || softmax(y_hat_s / T)) over channels, times T^2
               (Hinton's scaling keeps gradients comparable across temperatures)
``hyper``      MSE(z_hat_s, z_hat_t), hyper-latent units (B, Cz, H/64, W/64)
``output``     MSE(x_hat_s, x_hat_t), images in [0, 1] (B, 3, H, W)
``rd``         the student's own RD loss, lambda * 255^2 * MSE(x_hat_s, x) + bpp

The total is sum(weight * term); terms with weight 0 are not computed.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

TERMS = ("latent", "latent_kl", "hyper", "output", "rd")
# Which teacher output each term needs.
TERM_TARGET = {"latent": "y_hat", "latent_kl": "y_hat", "hyper": "z_hat", "output": "x_hat"}

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
    # Plain RD training of the student: the baseline for every KD result.
    "none": {"rd": 1.0},
}


def latent_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Channel-wise KL divergence per latent position, mean over positions, times T^2."""
    log_p_s = F.log_softmax(student / temperature, dim=1)
    log_p_t = F.log_softmax(teacher / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return kl.mean() * temperature**2


def term_value(name: str, student: dict[str, Tensor], teacher: dict[str, Tensor],
               temperature: float) -> Tensor:
    """The value of KD term ``name`` (not ``rd``) for one batch."""
    key = TERM_TARGET[name]
    if name == "latent_kl":
        return latent_kl(student[key], teacher[key], temperature)
    return F.mse_loss(student[key], teacher[key])
