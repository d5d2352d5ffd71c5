"""The ``kdlic distill`` config: the train config plus teachers, student and KD terms."""

from __future__ import annotations

import copy
from typing import Any

from kdlic.distillation.terms import PRESETS, TERMS, term_names
from kdlic.training.config import TRAIN_DEFAULTS, check_number, check_train_config, require

DISTILL_DEFAULTS: dict[str, Any] = copy.deepcopy(TRAIN_DEFAULTS)
del DISTILL_DEFAULTS["model"]  # the student section replaces it; init stays
DISTILL_DEFAULTS.update(
    {
        "run_dir": "runs/distill",
        # Model specs: checkpoint path, zoo name or compressai:ARCH:QUALITY.
        "teacher": None,
        "teacher2": None,  # the hybrid preset's second (low-rate) teacher, for `hyper`
        "teacher_device": None,  # default: runtime.device
        "teacher_bf16": None,  # default: runtime.bf16
        # arch defaults to the teacher's; M to the teacher's latent channels (latent
        # terms need equal shapes); z_channels to the hyper-term teacher's when that
        # term is on, else N (architectures that take no M or z_channels ignore them).
        # decoder_only: keep the teacher's encoder side (g_a, h_a, h_s, entropy models)
        # bit for bit, frozen, and train only a synthesis g_s of width N: the student
        # decodes the teacher's files (a scale-hyperprior teacher; arch null, M and
        # z_channels null or the teacher's).
        "student": {"arch": None, "N": 32, "M": None, "z_channels": None,
                    "decoder_only": False},
        "kd": {
            "preset": None,  # null: L1, or `decoder` for a decoder-only student
            "weights": {},  # per-term overrides of the preset, e.g. {latent: 0.3}
            "temperature": 1.0,
            "cache": "none",  # none | memory | disk: precomputed teacher outputs
            "cache_dir": "~/.cache/kdlic/teacher-cache",
        },
    }
)
DISTILL_DEFAULTS["lmbda"] = None  # default: the teacher's lambda


def resolve_preset(cfg: dict[str, Any]) -> None:
    """Fill in the default preset (in place): ``decoder`` for a decoder-only student,
    else ``L1``; the resolved name is what the run records."""
    if cfg["kd"]["preset"] is None:
        cfg["kd"]["preset"] = "decoder" if cfg["student"]["decoder_only"] is True else "L1"


def kd_weights(cfg: dict[str, Any]) -> dict[str, float]:
    """The preset's weights with the config's overrides; validated."""
    kd = cfg["kd"]
    require(kd["preset"] in PRESETS,
            f"unknown KD preset {kd['preset']!r} (known: {', '.join(PRESETS)})")
    weights = dict(PRESETS[kd["preset"]])
    overrides = kd["weights"] or {}
    require(isinstance(overrides, dict), "kd.weights must be a mapping of term: weight")
    for name, w in overrides.items():
        require(name in term_names(),
                f"unknown KD term {name!r} (known: {', '.join(term_names())})")
        ok = isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
        require(ok, f"kd.weights.{name} must be a number >= 0, got {w!r}")
        weights[name] = float(w)
    require(any(w > 0 for w in weights.values()), "every KD weight is zero: nothing to train")
    return weights


def check_distill_config(cfg: dict[str, Any]) -> None:
    """Reject bad values before any model is loaded; fills in the default preset."""
    resolve_preset(cfg)
    require(bool(cfg["teacher"]), "no teacher: set `teacher` (checkpoint, zoo name or "
            "compressai:ARCH:QUALITY) or pass --teacher")
    require(cfg["kd"]["cache"] in ("none", "memory", "disk"),
            f"kd.cache must be none, memory or disk, got {cfg['kd']['cache']!r}")
    check_number(cfg, "kd.temperature")
    require(cfg["kd"]["cache"] == "none" or cfg["data"]["downscale"] is None,
            "data.downscale needs a live teacher (kd.cache none): cached teacher outputs "
            "exist only for unscaled, grid-aligned crops")
    hybrid = cfg["kd"]["preset"] == "hybrid"
    require(not hybrid or bool(cfg["teacher2"]),
            "the hybrid preset needs a second teacher: set `teacher2`")
    require(hybrid or not cfg["teacher2"], "`teacher2` is only used by the hybrid preset")
    weights = kd_weights(cfg)
    decoder_only = cfg["student"]["decoder_only"]
    require(isinstance(decoder_only, bool),
            f"student.decoder_only must be true or false, got {decoder_only!r}")
    if decoder_only:
        latent = [t for t, w in weights.items() if w > 0 and t in TERMS
                  and TERMS[t].needs != "x_hat"]
        require(not latent, f"decoder-only distillation trains g_s alone on the teacher's "
                f"latents, but preset {cfg['kd']['preset']!r} weights "
                f"{', '.join(f'{t} ({TERMS[t].needs})' for t in latent)}; use the decoder, "
                "output-only or none preset, or set those weights to 0")
    if cfg["lmbda"] is not None:
        check_train_config(cfg)
