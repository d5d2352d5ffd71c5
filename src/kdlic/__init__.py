"""kdlic: small, fast learned image codecs through knowledge distillation.

The Python API (:mod:`kdlic.api`), re-exported here::

    import kdlic

    run = kdlic.distill("compressai:mbt2018-mean:3", student=64, data="photos/")
    kdlic.evaluate([run.model], "kodak/")
    data = kdlic.compress("photo.png", run.model)
    image = kdlic.decompress(data, run.model)
"""

from kdlic import _quiet_imports  # noqa: F401  (first: before CompressAI is imported)
from kdlic.api import (
    RunResult,
    baselines,
    compress,
    decompress,
    distill,
    evaluate,
    export,
    profile,
    report,
    train,
)
from kdlic.distillation.terms import PRESETS, register_term
from kdlic.errors import KdlicError
from kdlic.models import (
    ARCHITECTURES,
    adopt,
    build_model,
    forward_with_latents,
    load_model,
    register_architecture,
)

__all__ = [
    "ARCHITECTURES",
    "PRESETS",
    "KdlicError",
    "RunResult",
    "adopt",
    "baselines",
    "build_model",
    "compress",
    "decompress",
    "distill",
    "evaluate",
    "export",
    "forward_with_latents",
    "load_model",
    "profile",
    "register_architecture",
    "register_term",
    "report",
    "train",
]
