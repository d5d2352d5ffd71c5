"""Build models by architecture name; load them from a checkpoint, the zoo or CompressAI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from kdlic.errors import KdlicError
from kdlic.models import bmshj2018, cheng2020, mbt2018  # noqa: F401 - they register themselves
from kdlic.models.base import ARCHITECTURES, COMPRESSAI_NAMES, Architecture
from kdlic.models.identity import TEACHER_MODULES, encoder_hash
from kdlic.utils.checkpoint import read_checkpoint

# Checkpoint file names that say nothing about the model: its folder names it instead.
GENERIC_STEMS = {"best", "last", "model", "checkpoint", "final", "weights"}
# Constructor arguments with a default derived from N (the hyper-latent's channels, a
# decoder-only student's encoder width).
OPTIONAL_ARGS = ("z_channels", "encoder_N")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise KdlicError(f"{name} must be a positive integer, got {value!r}")
    return value


def build_model(arch: str, N: int, M: int | None = None, **arch_args: int | None) -> nn.Module:
    """A freshly initialised ``arch`` of the given size; :class:`KdlicError` for unknown
    names, arguments the architecture does not take, or sizes that are not positive
    integers. Arguments given as None take the architecture's default.

    Example: ``build_model("mbt2018-mean", N=64, M=96)``, ``build_model("cheng2020-anchor",
    N=64)``, ``build_model("scale-hyperprior", 32, 192, z_channels=128)``.
    """
    if arch not in ARCHITECTURES:
        raise KdlicError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    cls = ARCHITECTURES[arch]
    given = {k: v for k, v in {"N": N, "M": M, **arch_args}.items() if v is not None}
    unknown = sorted(set(given) - set(cls.arg_names))
    if unknown:
        raise KdlicError(f"{arch} takes {', '.join(cls.arg_names)}, not {', '.join(unknown)}")
    args = {k: _positive_int(k, v) for k, v in given.items()}
    missing = [k for k in cls.arg_names if k not in args and k not in OPTIONAL_ARGS]
    if missing:
        raise KdlicError(f"{arch} needs {', '.join(missing)}")
    return cls(**args)


def architecture_of(model: nn.Module) -> type[nn.Module] | None:
    """The registered class of ``model``: its own, or the one that extends its CompressAI
    class (a plain ``compressai.models`` instance); None if kdlic has none."""
    if isinstance(model, Architecture):
        return type(model)
    return next((cls for cls in ARCHITECTURES.values()
                 if cls.compressai_class() is type(model)), None)


def adopt(model: nn.Module) -> nn.Module:
    """A kdlic model for ``model``: itself if its architecture is registered, else (a plain
    CompressAI instance, e.g. from ``compressai.zoo``) the registered class built to its
    size with its weights copied (same parameter names; it stays an instance of the
    CompressAI class). Keeps ``meta``, ``source`` and the train/eval mode.

    Raises:
        KdlicError: no registered architecture extends ``type(model)``.
    """
    if isinstance(model, Architecture):
        return model
    cls = architecture_of(model)
    if cls is not None:
        state = model.state_dict()
        kdlic_model = cls(**cls.args_from_state(state))
        kdlic_model.load_state_dict(state)
        kdlic_model.train(model.training)
        for attr in ("meta", "source"):
            if hasattr(model, attr):
                setattr(kdlic_model, attr, getattr(model, attr))
        return kdlic_model.to(next(model.parameters()).device)
    known = ", ".join(cls.compressai_class().__name__ for cls in ARCHITECTURES.values())
    raise KdlicError(f"kdlic has no architecture for {type(model).__name__} (it reads {known}; "
                     "register one with kdlic.models.register_architecture)")


def model_from_state(
    arch: str, arch_args: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str
) -> nn.Module:
    """Build ``arch(**arch_args)`` and load ``state_dict`` into it (fp16 -> fp32).

    A file is checked before anything of the model's size is allocated: its arguments
    against the constructor's, then its weights against a model built from fake tensors
    (shapes only, no memory), so ``N=20000`` with a small state dict costs nothing.
    Non-finite weights are refused: a NaN makes the codec fail deep in its entropy
    coder, or write files that cannot be decoded, or decode to black.
    """
    _check_finite(state_dict, source)
    with FakeTensorMode(allow_non_fake_inputs=True):
        _load_weights(_build(arch, arch_args, source), arch, arch_args, state_dict, source)
    model = _load_weights(_build(arch, arch_args, source), arch, arch_args, state_dict, source)
    return model.float().eval()


def _check_finite(state_dict: dict[str, Any], source: str) -> None:
    for name, value in state_dict.items():
        if (isinstance(value, torch.Tensor) and value.is_floating_point()
                and not bool(torch.isfinite(value).all())):
            raise KdlicError(f"{source}: weight tensor {name!r} holds NaN or infinite values")


def _build(arch: str, arch_args: dict[str, Any], source: str) -> nn.Module:
    try:
        return build_model(arch, **arch_args)
    except KdlicError as exc:
        raise KdlicError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:  # an argument of a type the constructor chokes on
        raise KdlicError(f"{source}: cannot build {arch} from {arch_args!r}: {exc}") from None


def _load_weights(model: nn.Module, arch: str, arch_args: dict[str, Any],
                  state_dict: dict[str, Any], source: str) -> nn.Module:
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError, AttributeError, TypeError, ValueError) as exc:
        args = ", ".join(f"{k}={v}" for k, v in arch_args.items())
        first = str(exc).strip().splitlines() or [type(exc).__name__]
        detail = (first[1].strip() if len(first) > 1 else first[0])[:200]
        raise KdlicError(f"{source}: weights do not fit {arch}({args}): {detail}") from exc
    return model


def _compressai_model(spec: str) -> nn.Module:
    """``compressai:ARCH:QUALITY[:FILE]`` from FILE or the torch hub cache, never the network."""
    from compressai.zoo import image as cai_zoo
    from compressai.zoo.pretrained import load_pretrained

    parts = spec.split(":", 3)
    if len(parts) < 3:
        raise KdlicError(f"bad CompressAI model name {spec!r}; expected compressai:ARCH:QUALITY")
    _, name, quality = parts[:3]
    if name not in COMPRESSAI_NAMES:
        raise KdlicError(
            f"CompressAI architecture {name!r} is not supported "
            f"(supported: {', '.join(COMPRESSAI_NAMES)})"
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
        arch = COMPRESSAI_NAMES[name]
        arch_args = ARCHITECTURES[arch].args_from_state(state)
    except (KeyError, AttributeError, TypeError, IndexError):
        raise KdlicError(f"{weights} does not hold {name} weights") from None
    model = model_from_state(arch, arch_args, state, str(weights))
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
    model = build_model("scale-hyperprior", values["N"], values["M"], z_channels=values.get("Z"))
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


def _zoo_encoder(teacher: str, path: Path) -> dict[str, torch.Tensor]:
    """The encoder side (g_a, h_a, h_s, entropy models) of zoo teacher ``teacher``, fp32:
    a zoo decoder-only student's file leaves it out and names its teacher instead."""
    from kdlic.zoo import zoo_path

    teacher_path = zoo_path(teacher)
    if teacher_path is None:
        raise KdlicError(f"{path} decodes zoo model {teacher!r}'s files and takes its encoder "
                         "from it, but the zoo has no such model")
    return {k: v.float() if v.is_floating_point() else v
            for k, v in read_checkpoint(teacher_path)["state_dict"].items()
            if k.split(".", 1)[0] in TEACHER_MODULES}


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
    path = Path(spec).expanduser()  # configs name run directories as ~/.cache/...
    try:
        exists = path.exists()
    except OSError:  # e.g. a name too long to be a file: it can still be a zoo name
        exists = False
    if not exists:
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
    state, teacher = ckpt["state_dict"], ckpt["meta"].get("encoder_from")
    if teacher:  # a zoo decoder: its encoder side is in its teacher's file
        state = {**_zoo_encoder(teacher, path), **state}
    model = model_from_state(ckpt["arch"], ckpt["arch_args"], state, str(path))
    if teacher and encoder_hash(model) != bytes(model.encoder_hash.tolist()):
        raise KdlicError(f"{path} decodes the files of the zoo's {teacher} as it was when "
                         f"the decoder was distilled, and the zoo's {teacher} has been "
                         "replaced since: distil the decoder again from the new one")
    model.meta = ckpt["meta"]
    model.source = spec
    return model
