"""Build models by architecture name; load them from a checkpoint, the zoo or CompressAI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlic.errors import KdlicError
from kdlic.models.hyperprior import ScaleHyperprior
from kdlic.utils.checkpoint import read_checkpoint

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "scale-hyperprior": ScaleHyperprior,
}
# Checkpoint file names that say nothing about the model: its folder names it instead.
GENERIC_STEMS = {"best", "last", "model", "checkpoint", "final", "weights"}
# CompressAI zoo names -> our architecture (same parameter names, so weights load as-is).
COMPRESSAI_ARCHITECTURES = {"bmshj2018-hyperprior": "scale-hyperprior"}


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise KdlicError(f"{name} must be a positive integer, got {value!r}")
    return value


def build_model(arch: str, N: int, M: int, z_channels: int | None = None) -> nn.Module:
    """A freshly initialised model; :class:`KdlicError` for unknown names or bad sizes."""
    if arch not in ARCHITECTURES:
        raise KdlicError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    N = _positive_int("N", N)
    M = _positive_int("M", M)
    if z_channels is not None:
        z_channels = _positive_int("z_channels", z_channels)
    return ARCHITECTURES[arch](N, M, z_channels)


def model_from_state(
    arch: str, arch_args: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str
) -> nn.Module:
    """Build ``arch(**arch_args)`` and load ``state_dict`` into it (fp16 -> fp32)."""
    model = build_model(arch, **arch_args)
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError) as exc:
        args = ", ".join(f"{k}={v}" for k, v in arch_args.items())
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0][:200]
        raise KdlicError(f"{source}: weights do not fit {arch}({args}): {detail}") from exc
    return model.float().eval()


def _compressai_model(spec: str) -> nn.Module:
    """``compressai:ARCH:QUALITY[:FILE]`` from FILE or the torch hub cache, never the network."""
    from compressai.zoo import image as cai_zoo
    from compressai.zoo.pretrained import load_pretrained

    parts = spec.split(":", 3)
    if len(parts) < 3:
        raise KdlicError(f"bad CompressAI model name {spec!r}; expected compressai:ARCH:QUALITY")
    _, name, quality = parts[:3]
    if name not in COMPRESSAI_ARCHITECTURES:
        raise KdlicError(
            f"CompressAI architecture {name!r} is not supported "
            f"(supported: {', '.join(COMPRESSAI_ARCHITECTURES)})"
        )
    try:
        url = cai_zoo.model_urls[name]["mse"][int(quality)]
    except (KeyError, ValueError):
        raise KdlicError(f"no pre-trained {name} at quality {quality!r} (1..8)") from None
    if len(parts) == 4:
        weights = Path(parts[3])
    else:
        weights = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not weights.is_file():
        raise KdlicError(
            f"pre-trained weights for {name} q{quality} not found at {weights}; kdlic does "
            f"not download. Fetch {url} into {weights.parent}/, or name a local copy as "
            f"compressai:{name}:{quality}:/path/to/file"
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: report it, never a traceback
        raise KdlicError(f"cannot read weights {weights}: {type(exc).__name__}") from exc
    try:
        state = load_pretrained(state)
        N = state["g_a.0.weight"].size(0)
        M = state["g_a.6.weight"].size(0)
    except (KeyError, AttributeError, TypeError):
        raise KdlicError(f"{weights} does not hold {name} weights") from None
    model = model_from_state(COMPRESSAI_ARCHITECTURES[name], {"N": N, "M": M}, state, str(weights))
    model.meta = {"source": spec, "lmbda": _compressai_lambda(int(quality))}
    return model


def _compressai_lambda(quality: int) -> float:
    return {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932,
            8: 0.1800}[quality]


def _random_model(spec: str) -> nn.Module:
    """``random:N=128,M=192[,Z=...]`` (or ``random:128,192``): a random-init scale hyperprior."""
    body = spec.split(":", 1)[1]
    values: dict[str, int] = {}
    try:
        for i, item in enumerate(filter(None, body.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip().upper() if sep else ("N", "M", "Z")[i]
            values[key] = int(value if sep else item)
    except (ValueError, IndexError):
        raise KdlicError(f"bad model {spec!r}: expected random:N=128,M=192[,Z=128]") from None
    if not {"N", "M"} <= set(values) or set(values) - {"N", "M", "Z"}:
        raise KdlicError(f"bad model {spec!r}: expected random:N=128,M=192[,Z=128]")
    torch.manual_seed(0)
    model = build_model("scale-hyperprior", values["N"], values["M"], values.get("Z"))
    model.meta = {"source": spec, "note": "random initialisation"}
    model.source = spec
    return model.eval()



def display_name(spec: str | Path) -> str:
    """A short display name for a model spec (profile and report tables).

    ``runs/s16/best.pt`` -> ``s16``; ``teacher.pt`` -> ``teacher``; other specs as given.
    """
    spec = str(spec)
    if spec.startswith(("compressai:", "random:")):
        return spec
    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".ckpt", ".tar"):
        if path.stem in GENERIC_STEMS and path.parent.name:
            return path.parent.name
        return path.stem
    return spec


def load_model(spec: str | Path) -> nn.Module:
    """Load a model by spec (checkpoint path, zoo name, ``compressai:...`` or, for sizes
    and timings, ``random:N=..,M=..``), in eval mode.

    The returned model carries ``model.meta`` (lambda, steps, config, metrics) and
    ``model.source`` (what it was loaded from).
    """
    spec = str(spec)
    if spec.startswith("random:"):
        return _random_model(spec)
    if spec.startswith("compressai:"):
        model = _compressai_model(spec)
        model.source = spec
        return model
    path = Path(spec)
    if not path.exists():
        from kdlic.zoo import zoo_path

        zoo_file = zoo_path(spec)
        if zoo_file is None:
            raise KdlicError(
                f"no checkpoint file or zoo model named {spec!r} "
                "(see `kdlic zoo list`, or compressai:bmshj2018-hyperprior:QUALITY)"
            )
        path = zoo_file
    ckpt = read_checkpoint(path)
    if ckpt["arch"] not in ARCHITECTURES:
        raise KdlicError(f"{path}: unknown architecture {ckpt['arch']!r}")
    model = model_from_state(ckpt["arch"], ckpt["arch_args"], ckpt["state_dict"], str(path))
    model.meta = ckpt["meta"]
    model.source = spec
    return model
