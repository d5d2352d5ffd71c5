"""What distillation reads from any CompressAI-style model, without forking its forward.

Every architecture kdlic knows computes ``x_hat = g_s(y_hat)`` and, where it has a
hyperprior, ``h_s(z_hat)``: the latents are the inputs of the synthesis transforms.
Forward pre-hooks on ``g_s`` and ``h_s`` capture them (torchdistill's approach), so
CompressAI's own ``forward`` runs unchanged, for kdlic's classes and for a plain
``compressai.models`` instance alike.

Two training behaviours are installed the same way, as hooks that a checkpoint never
stores (``state_dict`` is unchanged):

* :func:`set_transform_dtype`: bf16 autocast for the transforms g_a, h_a, h_s, g_s only;
  the entropy models and the context model stay fp32 (likelihoods are differences of
  CDFs, which bf16's 8-bit mantissa would ruin);
* :func:`set_quantization` ``"mixed"``: noise for the rate terms, straight-through
  rounding for what h_s and g_s see (Minnen & Singh, ICIP 2020), by replacing the noisy
  output of the entropy models' forward in training mode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from kdlic.errors import KdlicError

TRANSFORMS = ("g_a", "h_a", "h_s", "g_s")
LATENTS = ("y_hat", "z_hat", "x_hat")
QUANTIZATIONS = ("noise", "mixed")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or any ``.module`` wrapper)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def forward_with_latents(model: nn.Module, x: Tensor) -> dict[str, Any]:
    """``model(x)`` plus the latents its synthesis transforms saw.

    Args:
        model: a CompressAI-style model (or a DDP wrapper of one).
        x: images (B, 3, H, W) in [0, 1], H and W multiples of 64.

    Returns:
        the model's own outputs (``x_hat`` (B, 3, H, W), ``likelihoods``) and
        ``y_hat`` (B, M, H/16, W/16), the input of g_s, and, where the model has a
        hyper-synthesis, ``z_hat`` (B, Cz, H/64, W/64), the input of h_s.
    """
    core = unwrap(model)
    seen: dict[str, Tensor] = {}

    def grab(key: str):
        def hook(module: nn.Module, args: tuple) -> None:
            seen.setdefault(key, args[0])  # the first call: the one on the full latent
        return hook

    handles = [core.g_s.register_forward_pre_hook(grab("y_hat"))]
    if isinstance(getattr(core, "h_s", None), nn.Module):
        handles.append(core.h_s.register_forward_pre_hook(grab("z_hat")))
    try:
        out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {**out, **seen}


@torch.no_grad()
def latent_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Shapes per image of ``y_hat``/``z_hat``/``x_hat`` for a 64x64 input (one dry run)."""
    core = unwrap(model)
    was_training = core.training
    core.eval()
    try:
        device = next(core.parameters()).device
        out = forward_with_latents(core, torch.zeros(1, 3, 64, 64, device=device))
    finally:
        core.train(was_training)
    return {k: tuple(out[k].shape[1:]) for k in LATENTS if k in out}


def _remove_hooks(model: nn.Module, attr: str) -> None:
    for handle in getattr(model, attr, []):
        handle.remove()
    model.__dict__[attr] = []


def set_transform_dtype(model: nn.Module, dtype: torch.dtype | None) -> None:
    """Run the transforms (g_a, h_a, h_s, g_s) under autocast to ``dtype`` (None: fp32).

    Their outputs are cast back to fp32, so the entropy models see fp32 tensors. The
    setting is not saved with the model; ``model.autocast_dtype`` records it.
    """
    _remove_hooks(model, "_kdlic_autocast_hooks")
    model.__dict__["autocast_dtype"] = dtype
    if dtype is None:
        return
    for name in TRANSFORMS:
        module = getattr(model, name, None)
        if not isinstance(module, nn.Module):
            continue
        contexts: list[Any] = []  # a stack: no state tied to this module (deepcopy-safe)

        def enter(module: nn.Module, args: tuple, contexts: list = contexts) -> None:
            ctx = torch.autocast(args[0].device.type, dtype=dtype)
            ctx.__enter__()
            contexts.append(ctx)

        def leave(module: nn.Module, args: tuple, out: Tensor, contexts: list = contexts) -> Tensor:
            contexts.pop().__exit__(None, None, None)
            return out.float()

        model._kdlic_autocast_hooks += [
            module.register_forward_pre_hook(enter),
            module.register_forward_hook(leave, always_call=True),
        ]


def straight_through_round(x: Tensor) -> Tensor:
    """``round(x)`` in the forward pass, the identity's gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def set_quantization(model: nn.Module, mode: str) -> None:
    """How latents are quantised in training mode: ``"noise"`` (uniform noise everywhere,
    Balle et al.) or ``"mixed"`` (noise for the rate, straight-through rounding around the
    medians / means for what the synthesis transforms see). Eval mode always rounds.

    Raises:
        KdlicError: ``mixed`` on an autoregressive model (its context model reads a
            latent quantised outside the entropy models' forward).
    """
    if mode not in QUANTIZATIONS:
        raise KdlicError(f"quantization must be noise or mixed, got {mode!r}")
    _remove_hooks(model, "_kdlic_quantization_hooks")
    model.__dict__["quantization"] = mode
    if mode == "noise":
        return
    if hasattr(model, "context_prediction"):
        raise KdlicError(f"quantization: mixed is not available for {getattr(model, 'arch', '')} "
                         "(autoregressive context model); use noise")

    def rounded_y(module: nn.Module, args: tuple, kwargs: dict, out: tuple) -> tuple | None:
        if not module.training:
            return None
        means = kwargs.get("means", args[2] if len(args) > 2 else None)
        y = args[0] if means is None else args[0] - means
        y_hat = straight_through_round(y)
        return (y_hat if means is None else y_hat + means, out[1])

    def rounded_z(module: nn.Module, args: tuple, out: tuple) -> tuple | None:
        if not module.training:
            return None
        # Round around the medians, as compress() does.
        medians = module._get_medians().detach()
        medians = medians.reshape(1, -1, *([1] * (args[0].dim() - 2)))
        return (straight_through_round(args[0] - medians) + medians, out[1])

    hooks = [model.entropy_bottleneck.register_forward_hook(rounded_z)]
    if hasattr(model, "gaussian_conditional"):
        hooks.append(model.gaussian_conditional.register_forward_hook(rounded_y,
                                                                      with_kwargs=True))
    model._kdlic_quantization_hooks += hooks
