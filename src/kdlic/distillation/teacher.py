"""Frozen teachers: eval mode, no gradients, only the outputs the loss terms need."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from kdlic.models import adopt
from kdlic.models.latents import LATENTS, forward_with_latents, set_transform_dtype
from kdlic.utils.checkpoint import total_steps
from kdlic.utils.device import parse_device, resolve_bf16


def teacher_record(model: nn.Module) -> dict[str, Any]:
    """What identifies a teacher in its student's checkpoint (``meta["teachers"]``): the
    name it was loaded by, and its training step, lambda and Kodak figures where its own
    checkpoint records them. A zoo name alone does not: a zoo model may be retrained."""
    meta = getattr(model, "meta", None) or {}
    kodak = meta.get("kodak") or {}
    return {"source": getattr(model, "source", None), "step": meta.get("step"),
            "total_steps": total_steps(meta) if meta else None,
            "lmbda": meta.get("lmbda"),
            "kodak": {k: kodak[k] for k in ("bpp", "psnr-rgb") if k in kodak} or None}


class FrozenTeacher:
    """A trained model used only for inference.

    The teacher runs its own forward in eval mode (latents rounded, as at real coding
    time) under ``torch.inference_mode()``; its ``y_hat``, ``z_hat`` and ``x_hat`` are
    read as :func:`kdlic.models.forward_with_latents` reads any architecture's. It may
    live on its own device; outputs come back on ``out_device``.

    Args:
        model: the teacher, any registered architecture or CompressAI instance (its
            parameters are frozen in place).
        device: where the teacher runs.
        bf16: bf16 autocast for its transforms: true, false or "auto" (where native).
    """

    def __init__(self, model: nn.Module, device: str | torch.device,
                 bf16: bool | str = False) -> None:
        self.device = parse_device(device)
        self.model = adopt(model).to(self.device).eval().requires_grad_(False)
        set_transform_dtype(self.model, torch.bfloat16 if resolve_bf16(bf16, self.device) else None)

    def __call__(self, x: Tensor, needed: set[str], out_device: torch.device) -> dict[str, Tensor]:
        """Teacher outputs for images ``x`` (B, 3, H, W): a dict of the ``needed`` LATENTS."""
        with torch.inference_mode():
            out = forward_with_latents(self.model, x.to(self.device))
        # Inference tensors cannot enter autograd; a copy outside inference mode can.
        return {k: out[k].to(out_device).clone() for k in needed if k in LATENTS}
