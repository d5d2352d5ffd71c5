"""Models trained by the kdlic project and shipped with the package.

Each zoo model is a kdlic checkpoint with fp16 weights in ``zoo/weights/NAME.pt``;
its ``meta`` records how it was trained (config, steps, data) and ``meta["kodak"]``
its measured Kodak figures (real bitstreams), which a test re-checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdlic.errors import KdlicError
from kdlic.models.identity import ENCODER_MODULES
from kdlic.utils.checkpoint import read_checkpoint, training_record

WEIGHTS_DIR = Path(__file__).parent / "weights"
# The zoo ships inside the wheel, and PyPI takes wheels of up to 100 MB: the weights keep
# 5 MB clear for the code and the packaging.
BUDGET_BYTES = 95_000_000


def zoo_bytes(replacing: str | None = None) -> int:
    """Bytes of the shipped weights (without model ``replacing``, which is being re-exported)."""
    return sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*.pt") if p.stem != replacing)


def zoo_names() -> list[str]:
    """Names of the shipped models, sorted."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def zoo_path(name: str) -> Path | None:
    """The weights file of zoo model ``name``, or None if there is none.

    ``name`` is only compared with the shipped names, never used as a path: it may come
    from a file (a ``.kdl`` header), and be anything (``../x``, 300 bytes long).
    """
    return WEIGHTS_DIR / f"{name}.pt" if name in zoo_names() else None


def _zoo_file(name: str) -> Path:
    path = zoo_path(name)
    if path is None:
        raise KdlicError(f"no zoo model {name!r} (known: {', '.join(zoo_names()) or 'none'})")
    return path


def load_zoo_model(name: str) -> Any:
    """Zoo model ``name``, from the package's weights and nowhere else (not even a file
    of that name in the current folder, as :func:`kdlic.models.load_model` would prefer):
    for names that come from files, such as a ``.kdl`` header."""
    from kdlic.models import load_model

    model = load_model(_zoo_file(name))
    model.source = name
    return model


def zoo_info(name: str) -> dict[str, Any]:
    """Architecture, sizes, training facts and Kodak figures of zoo model ``name``."""
    return checkpoint_info(_zoo_file(name), name)


def checkpoint_info(path: str | Path, name: str | None = None) -> dict[str, Any]:
    """:func:`zoo_info` of any kdlic checkpoint (a run's ``best.pt``, say); ``name``
    defaults to its display name (``runs/s16/best.pt`` -> ``s16``). A decoder-only zoo
    export's encoder is counted from its zoo teacher's file."""
    from kdlic.models import display_name

    path = Path(path)
    ckpt = read_checkpoint(path)
    meta = ckpt["meta"]
    cfg = meta.get("config", {})
    return {
        "name": name or display_name(path),
        "arch": ckpt["arch"],
        **ckpt["arch_args"],
        "lmbda": meta.get("lmbda"),
        "steps": meta.get("step"),
        "train_s": meta.get("elapsed_s"),  # training wall-clock up to the shipped step
        **training_record(meta),  # kind, teacher (and its step), preset, total_steps...
        "data": cfg.get("data", {}).get("train"),
        "params": _params(ckpt["state_dict"]) + (  # a decoder's encoder: its teacher's file
            _params(read_checkpoint(_zoo_file(meta["encoder_from"]))["state_dict"],
                    ENCODER_MODULES) if meta.get("encoder_from") else 0),
        "file_mb": path.stat().st_size / 2**20,
        "kodak": meta.get("kodak", {}),
    }


def _params(state: dict[str, Any], modules: tuple[str, ...] | None = None) -> int:
    """Weights in a state dict (of ``modules`` only, if given), entropy tables aside."""
    return sum(v.numel() for k, v in state.items()
               if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length"))
               and (modules is None or k.split(".", 1)[0] in modules))


def zoo_teacher(lmbda: float = 0.025) -> str:
    """The zoo teacher whose lambda is closest to ``lmbda`` (0.025: the paper's teacher,
    the one the lambda-0.025 students were distilled from)."""
    teachers = [n for n in zoo_names() if zoo_info(n)["kind"] == "train"]
    if not teachers:
        raise KdlicError("the zoo holds no teacher (kdlic zoo list)")
    return min(teachers, key=lambda n: abs(zoo_info(n)["lmbda"] - lmbda))
