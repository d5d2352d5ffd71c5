"""Experiment configs: one YAML file describes a run; CLI flags override it.

A config is a nested dict. :func:`resolve_config` starts from a command's defaults,
merges the YAML file, then ``key.path=value`` overrides, and rejects unknown keys,
so a typo in a config fails before any training step. The resolved config is
written next to the run (``config.yaml``) and stored in every checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path
from typing import Any

import yaml

from kdlic.errors import KdlicError

TRAIN_DEFAULTS: dict[str, Any] = {
    "run_dir": "runs/train",
    "model": {"arch": "scale-hyperprior", "N": 128, "M": 192, "z_channels": None},
    # Optional model spec (checkpoint, zoo name) whose weights start the run (fine-tune).
    "init": None,
    "lmbda": 0.0067,
    "data": {
        "train": "../shared/data/train",  # a folder, or a list of folders
        "val": None,  # a separate folder; else val_count images are held out of `train`
        "val_count": 4,
        "crop": 256,
        # Random downscaling before cropping: a factor drawn uniformly from [low, 1]
        # (null: off). Shows the codec more content per crop, as high-resolution
        # training sets downsampled to 256 px do.
        "downscale": None,
        "val_crop": 256,
        "batch_size": 8,
        "workers": 0,
        "cache_mb": 4096,
    },
    "optim": {
        "lr": 1e-4,
        "aux_lr": 1e-3,
        "clip_grad": 1.0,
        "plateau_patience": 10,  # validations without improvement before the lr halves
        "plateau_factor": 0.5,  # (null patience: no plateau reductions)
        "min_lr": 1e-6,
        # Linear warm-up from lr/warmup_steps: a fresh Adam at full lr jolts a
        # warm-started model (the first 20 steps of a teacher-q5 fine-tune at 3e-4 fell
        # from 28.8 to 23 dB on training crops).
        "warmup_steps": 0,
        # Cosine decay to min_lr over the last decay_steps of schedule.steps (0: none).
        "decay_steps": 0,
        # Exponential moving average of the weights (0: off). Validation, best.pt and
        # exports use the averaged weights; the raw ones live in the training state.
        "ema": 0.0,
    },
    # How the latents are quantised in training: "noise" (uniform noise everywhere,
    # Balle et al.) or "mixed" (noise for the rate terms, straight-through rounding for
    # what the synthesis transforms see; Minnen & Singh, ICIP 2020).
    "quantization": "noise",
    "schedule": {
        "steps": 100_000,
        "minutes": None,  # wall-clock budget over all resumes; None = no limit
        "val_every": 500,
        "checkpoint_minutes": 5.0,
        # Keep the eval weights (fp16, no training state) every K steps in
        # run_dir/snapshots/ for a learning curve (benchmarks/learning_curve.py); 0: off.
        "snapshot_every": 0,
        "log_every": 20,
    },
    "runtime": {
        "device": "cpu",
        "threads": None,
        "seed": 0,
        # bf16 transforms: 2.1x the steps and +3.3 dB on Kodak after 20 min of teacher
        # training on a 2-core AVX-512-bf16 CPU (benchmarks/train_teacher.py); on a CPU
        # without oneDNN's bf16 kernels (AVX2) it is ~25x slower than fp32. "auto": bf16
        # where the device runs it natively (kdlic.utils.device.fast_bf16).
        "bf16": "auto",
        "channels_last": False,
        "progress": True,
    },
}


def _merge(base: dict[str, Any], update: dict[str, Any], defaults: dict[str, Any],
           where: str = "") -> None:
    """Merge ``update`` into ``base``; keys must exist in ``defaults``, except inside a
    mapping whose default is empty (free-form, e.g. kd.weights; checked later), which
    stays free-form however many overrides fill it."""
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in defaults:
            raise KdlicError(f"unknown config key {path!r}")
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise KdlicError(f"config key {path!r} must be a mapping, got {value!r}")
            if defaults[key]:
                _merge(base[key], value, defaults[key], f"{path}.")
            else:
                base[key] = {**(base[key] or {}), **value}
        else:
            base[key] = value


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b=3"`` -> ``{"a": {"b": 3}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise KdlicError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:  # invalid YAML, or a tag such as !!python/... (unsafe)
        raise KdlicError(f"override {text!r}: the value is not plain YAML "
                         f"({yaml_problem(exc)})") from exc
    if isinstance(value, str):
        # YAML 1.1 reads "3e-4" (no dot) as a string; a user writing it means a number
        with contextlib.suppress(ValueError):
            value = float(value)
    return nested(key.strip(), value)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and where it is."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def nested(key: str, value: Any) -> dict[str, Any]:
    """``("a.b", 3)`` -> ``{"a": {"b": 3}}``."""
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise KdlicError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise KdlicError(f"config {path} is not valid YAML: {yaml_problem(exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KdlicError(f"config {path} must be a mapping at the top level")
    return data


def resolve_config(
    defaults: dict[str, Any],
    path: str | Path | None = None,
    overrides: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Defaults <- YAML file <- overrides, with unknown keys rejected."""
    cfg = copy.deepcopy(defaults)
    if path is not None:
        _merge(cfg, load_yaml(path), defaults)
    for override in overrides or []:
        _merge(cfg, override, defaults)
    return cfg


def require(cond: bool, message: str) -> None:
    """Raise :class:`KdlicError` with ``message`` unless ``cond``."""
    if not cond:
        raise KdlicError(message)


def check_number(cfg: dict[str, Any], path: str, integer: bool = False, zero_ok: bool = False,
                 none_ok: bool = False) -> None:
    """Require the config value at ``path`` (dotted) to be a positive (or >= 0) number."""
    node: Any = cfg
    for part in path.split("."):
        node = node[part]
    if node is None and none_ok:
        return
    ok = (isinstance(node, int if integer else (int, float)) and not isinstance(node, bool)
          and math.isfinite(node))
    kind = "integer" if integer else "finite number"
    require(ok and (node >= 0 if zero_ok else node > 0),
            f"{path} must be a {'non-negative' if zero_ok else 'positive'} {kind}, got {node!r}")


def check_train_config(cfg: dict[str, Any]) -> None:
    """Reject values that would fail (or silently misbehave) later in the run."""
    require(isinstance(cfg["run_dir"], str) and bool(cfg["run_dir"]), "run_dir must be a path")
    train = cfg["data"]["train"]
    require((isinstance(train, str) and bool(train)) or (
        isinstance(train, list) and bool(train) and all(isinstance(t, str) and t for t in train)),
        "data.train must be a path or a list of paths")
    check_number(cfg, "lmbda")
    for key in ("batch_size", "crop", "val_crop"):
        check_number(cfg, f"data.{key}", integer=True)
    for key in ("val_count", "workers"):
        check_number(cfg, f"data.{key}", integer=True, zero_ok=True)
    check_number(cfg, "data.cache_mb", zero_ok=True)
    for key in ("lr", "aux_lr", "clip_grad", "plateau_factor"):
        check_number(cfg, f"optim.{key}")
    check_number(cfg, "optim.plateau_patience", integer=True, zero_ok=True, none_ok=True)
    for key in ("warmup_steps", "decay_steps"):
        check_number(cfg, f"optim.{key}", integer=True, zero_ok=True)
    ema = cfg["optim"]["ema"]
    require(isinstance(ema, (int, float)) and not isinstance(ema, bool) and 0 <= ema < 1,
            f"optim.ema must be a number in [0, 1), got {ema!r}")
    require(cfg["quantization"] in ("noise", "mixed"),
            f"quantization must be noise or mixed, got {cfg['quantization']!r}")
    low = cfg["data"]["downscale"]
    require(low is None or (isinstance(low, (int, float)) and not isinstance(low, bool)
                            and 0 < low <= 1),
            f"data.downscale must be null or a number in (0, 1], got {low!r}")
    check_number(cfg, "optim.min_lr", zero_ok=True)
    for key in ("steps", "val_every", "log_every"):
        check_number(cfg, f"schedule.{key}", integer=True)
    check_number(cfg, "schedule.checkpoint_minutes")
    check_number(cfg, "schedule.snapshot_every", integer=True, zero_ok=True)
    check_number(cfg, "schedule.minutes", none_ok=True)
    check_number(cfg, "runtime.threads", integer=True, none_ok=True)
    require(cfg["runtime"]["bf16"] in (True, False, "auto"),
            f"runtime.bf16 must be true, false or auto, got {cfg['runtime']['bf16']!r}")
