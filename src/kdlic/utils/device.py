"""Device names from the command line, checked before anything runs on them."""

from __future__ import annotations

import torch

from kdlic.errors import KdlicError


def parse_device(name: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` ... as a torch device that exists here."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise KdlicError(f"unknown device {name!r} (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise KdlicError(f"device {name!r}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise KdlicError(f"device {name!r}: only {torch.cuda.device_count()} CUDA "
                             "device(s) here")
    elif device.type != "cpu":
        raise KdlicError(f"device {name!r} is not supported (cpu or cuda)")
    return device
