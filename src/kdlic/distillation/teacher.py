"""Frozen teachers: eval mode, no gradients, only the outputs the loss terms need."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdlic.utils.device import parse_device, resolve_bf16

TARGETS = ("y_hat", "z_hat", "x_hat")


class FrozenTeacher:
    """A trained model used only for inference.

    The teacher runs in eval mode (latents rounded, as at real coding time) under
    ``torch.inference_mode()`` and computes only the requested outputs: ``y_hat``
    needs g_a; ``z_hat`` adds h_a; ``x_hat`` adds g_s. h_s and the likelihoods are
    never computed. It may live on its own device; outputs come back on ``out_device``.

    Args:
        model: the teacher (its parameters are frozen in place).
        device: where the teacher runs.
        bf16: bf16 autocast for its transforms: true, false or "auto" (where native).
    """

    def __init__(self, model: nn.Module, device: str | torch.device,
                 bf16: bool | str = False) -> None:
        self.device = parse_device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.model.autocast_dtype = torch.bfloat16 if resolve_bf16(bf16, self.device) else None

    def __call__(self, x: Tensor, needed: set[str], out_device: torch.device) -> dict[str, Tensor]:
        """Teacher outputs for images ``x`` (B, 3, H, W): a dict of the ``needed`` TARGETS."""
        m = self.model
        with torch.inference_mode():
            y = m._transform(m.g_a, x.to(self.device))
            out = {}
            y_hat = m.gaussian_conditional.quantize(y, "dequantize")
            if "y_hat" in needed:
                out["y_hat"] = y_hat
            if "z_hat" in needed:
                z = m._transform(m.h_a, torch.abs(y))
                eb = m.entropy_bottleneck
                out["z_hat"] = eb.quantize(z, "dequantize", eb._get_medians())
            if "x_hat" in needed:
                out["x_hat"] = m._transform(m.g_s, y_hat)
        # Inference tensors cannot enter autograd; a copy outside inference mode can.
        return {k: v.to(out_device).clone() for k, v in out.items()}
