"""kdlic from Python: train, distil, evaluate, profile, export, compress, decompress.

Every CLI command is a thin layer over one function here. Models may be spec strings
(checkpoint path, zoo name, ``compressai:ARCH:QUALITY[:FILE]``) or ``nn.Module``s (a
``compressai.models`` instance works as is); data may be image folders, a ``Dataset``
or a ``DataLoader`` (:mod:`kdlic.data.user`). A run is described by a config (the
defaults, a YAML file or dict, then overrides) that every checkpoint records::

    import kdlic
    from compressai.zoo import mbt2018_mean

    teacher = mbt2018_mean(quality=3, pretrained=True)  # or your own trained model
    run = kdlic.distill(teacher, student={"N": 64}, data="photos/", preset="L1",
                        steps=20_000, run_dir="runs/mbt-n64")
    results = kdlic.evaluate([teacher, run.model], "kodak/")
    data = kdlic.compress("photo.png", run.model)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from kdlic.data.images import collect_images, find_images
from kdlic.data.sampling import CropSource
from kdlic.data.user import is_user_data
from kdlic.distillation.cache import CachedTeacherCrops
from kdlic.distillation.config import DISTILL_DEFAULTS, check_distill_config, kd_weights
from kdlic.distillation.objective import Distillation
from kdlic.distillation.teacher import FrozenTeacher, teacher_record
from kdlic.distillation.terms import TERMS
from kdlic.errors import KdlicError
from kdlic.models import (
    ARCHITECTURES,
    DecoderOnly,
    adopt,
    display_name,
    latent_shapes,
    load_model,
)
from kdlic.models.identity import bind_encoder, encoder_args, encoder_id, is_decoder_only
from kdlic.models.registry import architecture_of
from kdlic.training.config import (
    TRAIN_DEFAULTS,
    check_train_config,
    load_yaml,
    nested,
    parse_override,
    resolve_config,
)
from kdlic.training.lineage import warm_start_record
from kdlic.training.losses import RateDistortion
from kdlic.training.trainer import Trainer, init_model

ModelLike = str | Path | nn.Module
ConfigLike = str | Path | dict[str, Any] | None
Overrides = Sequence[str | dict[str, Any]]


@dataclass
class RunResult:
    """What a training or distillation run leaves.

    ``model`` is the best validation checkpoint's model (eval mode, fp32, on the CPU);
    ``metrics`` the last validation (``rd_loss``, ``bpp``, ``mse``, ``psnr``, ...).
    Under torchrun every process gets one; ``main_process`` marks the one that wrote
    the checkpoints (the others' ``model`` is their in-memory copy).
    """

    model: nn.Module
    run_dir: Path
    best: Path
    last: Path
    steps: int
    metrics: dict[str, float]
    config: dict[str, Any]
    main_process: bool = True


def run_config(defaults: dict[str, Any], config: ConfigLike,
               overrides: Overrides = ()) -> dict[str, Any]:
    """``defaults`` <- ``config`` (YAML path or dict) <- overrides (``"key.path=value"``
    strings or nested dicts); unknown keys are errors."""
    layers = [] if config is None else [config if isinstance(config, dict) else load_yaml(config)]
    layers += [parse_override(o) if isinstance(o, str) else o for o in overrides]
    return resolve_config(defaults, None, layers)


def _keyword_overrides(**values: Any) -> list[dict[str, Any]]:
    """Keyword arguments given (not None) as overrides: ``steps=10`` -> schedule.steps."""
    return [nested(key, value) for key, value in values.items() if value is not None]


def _data_overrides(data: Any) -> tuple[list[dict[str, Any]], Any]:
    """(config overrides, user data): folders go into the config, datasets are passed on."""
    if data is None:
        return [], None
    if is_user_data(data):
        return [], data
    if isinstance(data, (str, Path)):
        return [nested("data.train", str(data))], None
    if isinstance(data, (list, tuple)) and all(isinstance(d, (str, Path)) for d in data):
        return [nested("data.train", [str(d) for d in data])], None
    raise KdlicError(f"data must be a folder, a list of folders, a Dataset or a DataLoader, "
                     f"not {type(data).__name__}")


def _model(spec: ModelLike) -> nn.Module:
    return adopt(spec) if isinstance(spec, nn.Module) else load_model(spec)


def _spec_name(model: ModelLike) -> str:
    """What the config records for a model: its spec, or a description of an instance."""
    if not isinstance(model, nn.Module):
        return str(model)
    source = getattr(model, "source", None)
    if source:
        return str(source)
    cls = architecture_of(model)
    if cls is None:
        return f"<{type(model).__name__} instance>"
    args = ", ".join(f"{k}={v}" for k, v in cls.args_from_state(model.state_dict()).items())
    return f"<{cls.arch}({args}) instance>"


def _finish(trainer: Trainer, metrics: dict[str, float]) -> RunResult:
    best, last = trainer.run_dir / "best.pt", trainer.run_dir / "last.pt"
    if trainer.ddp.is_main:
        model = load_model(best if best.is_file() else last)
    else:
        model = trainer.eval_model.cpu().eval()
    return RunResult(model, trainer.run_dir, best, last, trainer.step, metrics, trainer.cfg,
                     trainer.ddp.is_main)


def train(
    model: ModelLike | dict[str, Any] | None = None,
    data: Any = None,
    *,
    lmbda: float | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    run_dir: str | Path | None = None,
    config: ConfigLike = None,
    overrides: Overrides = (),
    val_data: Any = None,
    resume: bool = False,
) -> RunResult:
    """Rate-distortion training (``lambda * 255^2 * MSE + bpp``) of one model.

    Args:
        model: what to train: a model (its weights are the start), a spec whose weights
            start the run (``init``), a dict of ``model`` config keys (``{"arch":
            "mbt2018-mean", "N": 128, "M": 192}``), or None (the config's ``model``).
        data: image folder(s), a ``Dataset`` or a ``DataLoader`` (None: the config's).
        lmbda, steps, minutes, run_dir: shortcuts for those config keys.
        config: YAML file or dict over :data:`kdlic.training.config.TRAIN_DEFAULTS`.
        overrides: further ``"key.path=value"`` strings or nested dicts, applied last.
        val_data: validation images for a ``Dataset``/``DataLoader`` (see
            :func:`kdlic.data.user.user_batches`).
        resume: continue the run in ``run_dir`` from its ``last.pt``.
    """
    data_layers, user_data = _data_overrides(data)
    start: nn.Module | None = None
    layers: list[dict[str, Any]] = []
    if isinstance(model, dict):
        # another architecture: its other sizes are its defaults, not the config's
        unset = dict.fromkeys(("N", "M", "z_channels")) if "arch" in model else {}
        layers.append({"model": {**unset, **model}})
    elif isinstance(model, nn.Module):
        start = adopt(model)
        layers.append({"model": {"arch": start.arch, "N": None, "M": None, "z_channels": None,
                                 **start.arch_args}})
    elif model is not None:  # a spec: its weights start the run, in its architecture
        start = load_model(model)
        layers.append({"init": str(model), "model": {
            "arch": start.arch, "N": None, "M": None, "z_channels": None, **start.arch_args}})
    cfg = run_config(TRAIN_DEFAULTS, config, [
        *layers, *data_layers, *_keyword_overrides(
            lmbda=lmbda, **{"schedule.steps": steps, "schedule.minutes": minutes,
                            "run_dir": None if run_dir is None else str(run_dir)}),
        *overrides])
    check_train_config(cfg)
    meta: dict[str, Any] = {}
    if start is None:
        start = init_model(cfg["model"], cfg["runtime"]["seed"])
        meta = _warm_start(cfg, start, "model", resume)
    elif getattr(start, "meta", None) and not resume:  # a trained kdlic model
        meta["warm_start"] = warm_start_record(start)
    trainer = Trainer(cfg, start, RateDistortion(cfg["lmbda"]), kind="train", resume=resume,
                      data=user_data, val_data=val_data, meta=meta)
    return _finish(trainer, trainer.fit())


def _warm_start(cfg: dict[str, Any], start: nn.Module, section: str, resume: bool
                ) -> dict[str, Any]:
    """Load ``cfg["init"]``'s weights into ``start`` (built from the config's ``section``,
    ``model`` or ``student``), unless resuming; the checkpoint meta that records it.
    An init of another architecture or size is refused, not reshaped."""
    if not cfg["init"] or resume:
        return {}
    init = _model(cfg["init"])
    if (init.arch, init.arch_args) != (start.arch, start.arch_args):
        raise KdlicError(f"init {cfg['init']} is {init.arch}{init.arch_args}, but the "
                         f"config's {section} is {start.arch}{start.arch_args}")
    start.load_state_dict(init.state_dict())
    return {"warm_start": warm_start_record(init)}


def _student_args(cfg: dict[str, Any], teacher: nn.Module, hyper_teacher: nn.Module | None
                  ) -> dict[str, Any]:
    """The student's constructor arguments: the config's, with the teacher's architecture,
    latent channels (M) and, for a hyper-latent term, hyper-latent channels as defaults."""
    s = {k: v for k, v in cfg["student"].items() if v is not None and k != "decoder_only"}
    arch = s.pop("arch", teacher.arch)
    names = ARCHITECTURES[arch].arg_names if arch in ARCHITECTURES else ()
    if "M" in names and "M" not in s:
        s["M"] = latent_shapes(teacher)["y_hat"][0]
    if "z_channels" in names and "z_channels" not in s and hyper_teacher is not None:
        s["z_channels"] = latent_shapes(hyper_teacher).get("z_hat", (None,))[0]
    return {"arch": arch, **s}


def _student_layer(model: nn.Module) -> dict[str, Any]:
    """The ``student`` config keys that describe ``model`` (architecture and sizes)."""
    return {"student": {"arch": model.arch, **{
        k: v for k, v in model.arch_args.items() if k in DISTILL_DEFAULTS["student"]}}}


def _decoder_class(teacher: nn.Module) -> type[nn.Module]:
    """The decoder-only architecture of ``teacher``'s family (a teacher may itself be a
    decoder-only student); refused for families without an exact coder."""
    family = getattr(teacher, "teacher_arch", "") or teacher.arch
    for cls in ARCHITECTURES.values():
        if issubclass(cls, DecoderOnly) and cls.teacher_arch == family:
            return cls
    known = sorted(c.teacher_arch for c in ARCHITECTURES.values() if issubclass(c, DecoderOnly))
    raise KdlicError(f"decoder-only distillation needs a teacher with an exact coder "
                     f"({', '.join(known)}); the teacher is {teacher.arch}")


def _decoder_student(cfg: dict[str, Any], teacher: nn.Module, start: nn.Module | None
                     ) -> nn.Module:
    """A decoder-only student of ``teacher``: ``start`` (a decoder-only model of the
    teacher's family) or a new one with the config's N, bound to the teacher's encoder
    (its encoder side copied bit for bit, frozen; its encoder id recorded). Refuses,
    before training, teachers and students that cannot share a bitstream."""
    cls = _decoder_class(teacher)
    s = cfg["student"]
    # (the teacher's architecture too: a student config's usual arch, the decoder's family)
    if s["arch"] not in (None, cls.arch, cls.teacher_arch):
        raise KdlicError(f"a decoder-only student of {teacher.arch} is a {cls.arch} (the "
                         f"teacher's encoder, its own g_s), not {s['arch']}: leave "
                         "student.arch unset")
    enc = encoder_args(teacher)
    for key, theirs in (("M", enc["M"]), ("z_channels", enc["z_channels"])):
        if s[key] is not None and s[key] != theirs:
            raise KdlicError(f"a decoder-only student keeps the teacher's {key} ({theirs}); "
                             f"student.{key} is {s[key]}")
    if start is None:
        args = {"N": s["N"], "M": enc["M"], "z_channels": enc["z_channels"],
                "encoder_N": enc["N"]}
        start = init_model({"arch": cls.arch, **{k: args[k] for k in cls.arg_names}},
                           cfg["runtime"]["seed"])
    elif not isinstance(start, cls) or encoder_args(start) != enc:
        args = ", ".join(f"{k}={v}" for k, v in start.arch_args.items())
        raise KdlicError(f"a decoder-only student must be a {cls.arch} with the teacher's "
                         f"encoder sizes {enc}, not {start.arch}({args})")
    elif is_decoder_only(start) and encoder_id(start) != encoder_id(teacher):
        raise KdlicError(f"the student decodes the encoder {encoder_id(start).hex()}, the "
                         f"teacher's is {encoder_id(teacher).hex()}")
    bind_encoder(start, teacher)
    return start


def check_latent_shapes(student: nn.Module, teachers: list[nn.Module],
                        objective: Distillation) -> None:
    """Refuse, before training, KD terms whose student and teacher outputs differ in
    shape or that a model cannot provide (a factorized prior has no ``z_hat``)."""
    shapes = [latent_shapes(t) for t in teachers]
    mine = latent_shapes(student)
    for name in objective.kd_terms:
        key = TERMS[name].needs
        teacher = teachers[objective.term_teacher[name]]
        theirs = shapes[objective.term_teacher[name]]
        for who, model, got in (("teacher", teacher, theirs), ("student", student, mine)):
            if key not in got:
                raise KdlicError(f"KD term {name!r} compares {key}, which the {who} "
                                 f"({model.arch}) does not have")
        if mine[key] != theirs[key]:
            size = "M" if key == "y_hat" else "z_channels"
            fix = (f"set the student's {size} to {theirs[key][0]}" if size in student.arg_names
                   else f"{student.arch} takes no {size}: its latent has N channels")
            raise KdlicError(
                f"KD term {name!r} compares {key}, but the student's has {mine[key][0]} "
                f"channels and the teacher's {theirs[key][0]} ({fix}; or use a preset "
                "without the term, or another student architecture)")


def distill(
    teacher: ModelLike | None = None,
    student: ModelLike | dict[str, Any] | int | None = None,
    data: Any = None,
    *,
    preset: str | None = None,
    lmbda: float | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    run_dir: str | Path | None = None,
    teacher2: ModelLike | None = None,
    config: ConfigLike = None,
    overrides: Overrides = (),
    val_data: Any = None,
    resume: bool = False,
    decoder_only: bool | None = None,
) -> RunResult:
    """Distil ``teacher`` into a smaller ``student`` (Allemand et al. 2025).

    Args:
        teacher: the trained model (spec or module; any registered architecture).
        student: the model to train: an int (its ``N``, the teacher's architecture and
            latent channels), a dict of ``student`` config keys (``{"arch":
            "mbt2018-mean", "N": 64, "M": 192}``), a module or a spec (checkpoint or zoo
            name; its weights start the run, ``init``: e.g. a student of another lambda
            to fine-tune), or None (the config's ``student``: N=32, the teacher's
            architecture; its ``init``, if any, must have the same sizes).
        data: image folder(s), a ``Dataset`` or a ``DataLoader`` (None: the config's).
        preset: the loss (``L1``, ``L2``, ``kld``, ``output-only``, ``hybrid``, ``none``;
            :data:`kdlic.distillation.terms.PRESETS`); per-term weights go in
            ``overrides`` (``"kd.weights.latent=0.3"``).
        lmbda: the student's RD lambda (default: the teacher's).
        steps, minutes, run_dir: shortcuts for those config keys.
        teacher2: the hybrid preset's second (low-rate) teacher.
        config: YAML file or dict over
            :data:`kdlic.distillation.config.DISTILL_DEFAULTS`.
        overrides: further ``"key.path=value"`` strings or nested dicts, applied last.
        val_data: validation images for a ``Dataset``/``DataLoader``.
        resume: continue the run in ``run_dir`` from its ``last.pt``.
        decoder_only: the ``student.decoder_only`` config key: the student keeps the
            teacher's encoder side (g_a, h_a, h_s, entropy models) bit for bit, frozen,
            and learns only a synthesis g_s of width N (``student``'s N), trained on KD
            terms on x_hat plus the distortion, without a rate term; it decodes the
            teacher's ``.kdl`` files (a ``scale-hyperprior-decoder`` or
            ``mbt2018-mean-decoder``; the teacher must be a scale or mean-scale
            hyperprior). The default preset is then ``decoder``.

    Returns:
        the run's :class:`RunResult`; ``result.model`` is the best student.
    """
    data_layers, user_data = _data_overrides(data)
    start: nn.Module | None = None
    layers: list[dict[str, Any]] = []
    if isinstance(student, int) and not isinstance(student, bool):
        layers.append({"student": {"N": student}})
    elif isinstance(student, dict):
        layers.append({"student": student})
    elif isinstance(student, nn.Module):
        start = adopt(student)
        layers.append(_student_layer(start))
    elif isinstance(student, (str, Path)):  # a spec: its weights start the run
        start = load_model(student)
        layers.append({"init": str(student), **_student_layer(start)})
    elif student is not None:
        raise KdlicError(f"student must be an int (N), a dict, a model, a spec or None, "
                         f"not {type(student).__name__}")
    cfg = run_config(DISTILL_DEFAULTS, config, [
        *layers, *data_layers, *_keyword_overrides(
            teacher=None if teacher is None else _spec_name(teacher),
            teacher2=None if teacher2 is None else _spec_name(teacher2),
            lmbda=lmbda, run_dir=None if run_dir is None else str(run_dir),
            **{"kd.preset": preset, "schedule.steps": steps, "schedule.minutes": minutes,
               "student.decoder_only": decoder_only}),
        *overrides])
    check_distill_config(cfg)
    weights = kd_weights(cfg)
    device = cfg["teacher_device"] or cfg["runtime"]["device"]
    bf16 = cfg["runtime"]["bf16"] if cfg["teacher_bf16"] is None else cfg["teacher_bf16"]
    teachers = [FrozenTeacher(_model(teacher if teacher is not None else cfg["teacher"]),
                              device, bf16)]
    term_teacher = {}
    if cfg["kd"]["preset"] == "hybrid":
        teachers.append(FrozenTeacher(_model(teacher2 if teacher2 is not None
                                             else cfg["teacher2"]), device, bf16))
        term_teacher["hyper"] = 1
    main = teachers[0].model
    if cfg["lmbda"] is None:
        cfg["lmbda"] = getattr(main, "meta", {}).get("lmbda")
        if cfg["lmbda"] is None:
            raise KdlicError("the teacher records no lambda: give the student's lmbda")
    check_train_config(cfg)
    decoder = cfg["student"]["decoder_only"]
    objective = Distillation(teachers, weights, cfg["lmbda"], term_teacher,
                             cfg["kd"]["temperature"], rate=not decoder)
    meta: dict[str, Any] = {"teachers": [teacher_record(t.model) for t in teachers]}
    if getattr(start, "meta", None) and not resume:  # a trained kdlic model given as student
        meta["warm_start"] = warm_start_record(start)
    if decoder:
        if start is None and cfg["init"] and not resume:  # checked by _decoder_student
            start = _model(cfg["init"])
            meta["warm_start"] = warm_start_record(start)
        start = _decoder_student(cfg, main, start)
    else:
        if start is None:
            hyper = teachers[term_teacher.get("hyper", 0)].model \
                if "hyper" in objective.kd_terms else None
            args = _student_args(cfg, main, hyper)
        else:
            args = {"arch": start.arch}
        if issubclass(ARCHITECTURES.get(args["arch"], nn.Module), DecoderOnly):
            raise KdlicError(f"a {args['arch']} student keeps its teacher's encoder: distil "
                             "it with decoder_only (--decoder-only), or choose another "
                             "student architecture")
        if start is None:
            start = init_model(args, cfg["runtime"]["seed"])
            meta |= _warm_start(cfg, start, "student", resume)
    cfg["student"] = {"arch": start.arch, **{k: None for k in ("N", "M", "z_channels")},
                      **{k: v for k, v in start.arch_args.items() if k in cfg["student"]},
                      "decoder_only": decoder}
    check_latent_shapes(start, [t.model for t in teachers], objective)

    wrap = None
    if cfg["kd"]["cache"] != "none" and objective.kd_terms:
        if user_data is not None:
            raise KdlicError("kd.cache needs image folders; with a Dataset or DataLoader "
                             "the teacher runs live (kd.cache none)")
        cache_dir = cfg["kd"]["cache_dir"] if cfg["kd"]["cache"] == "disk" else None

        def wrap(source: CropSource) -> CropSource:
            return CachedTeacherCrops(source, list(zip(teachers, objective.needs(), strict=True)),
                                      cache_dir, progress=cfg["runtime"]["progress"])

    trainer = Trainer(cfg, start, objective, kind="distill", resume=resume, wrap_source=wrap,
                      data=user_data, val_data=val_data, meta=meta)
    return _finish(trainer, trainer.fit())


def evaluate(models: ModelLike | Sequence[ModelLike], images: str | Path | Sequence[str | Path],
             *, name: str | None = None, device: str = "cpu", progress: bool = False
             ) -> dict[str, Any]:
    """Real-bitstream evaluation: every image is compressed to a ``.kdl`` file and
    decoded; CompressAI's results JSON (one RD point per model, per-image figures).

    Args:
        models: one model or several (specs or modules).
        images: a folder (searched recursively), one image, or a list of image paths.
    """
    from kdlic.evaluation.evaluate import evaluate_models

    models = [models] if isinstance(models, (str, Path, nn.Module)) else list(models)
    if isinstance(images, (str, Path)):
        paths = find_images(images, "test")
    else:
        paths = collect_images(images)
    return evaluate_models([m if isinstance(m, nn.Module) else str(m) for m in models], paths,
                           name or _spec_name(models[0]), device=device, progress=progress)


def profile(models: ModelLike | Sequence[ModelLike], **options: Any) -> dict[str, Any]:
    """Parameters, memory, FLOPs per transform, latency and energy (where metered) of
    each model; ``options`` are :func:`kdlic.evaluation.profile.profile_models`'s."""
    import tempfile

    from kdlic.evaluation.profile import profile_models
    from kdlic.utils.checkpoint import save_checkpoint

    models = [models] if isinstance(models, (str, Path, nn.Module)) else list(models)
    options.setdefault("progress", False)
    with tempfile.TemporaryDirectory(prefix="kdlic-profile-") as tmp:
        # The peak-memory probe loads each model in a fresh process: modules go by file.
        specs = []
        for i, m in enumerate(models):
            if isinstance(m, nn.Module):
                m = adopt(m)
                path = Path(tmp) / f"{display_name(_spec_name(m)) or m.arch}-{i}.pt"
                save_checkpoint(path, m, dict(getattr(m, "meta", {})))
                m = path
            specs.append(str(m))
        return profile_models(specs, **options)


def baselines(images: str | Path | Sequence[str | Path], out_dir: str | Path,
              codecs: Sequence[str] | None = None,
              qualities: dict[str, list[float]] | None = None, progress: bool = False
              ) -> dict[str, dict[str, Any]]:
    """Classic codecs' RD curves on the same images (``OUT_DIR/CODEC.json``, CompressAI's
    JSON layout); the documents by codec name. ``codecs`` None: every one available."""
    from kdlic.evaluation.classic import available_codecs, run_baselines

    codecs = available_codecs() if codecs is None else codecs
    paths = collect_images([images] if isinstance(images, (str, Path)) else images)
    return run_baselines(paths, list(codecs), qualities, Path(out_dir), progress=progress)


def report(results: Sequence[str | Path], out_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Tables, plots, crops and ``OUT_DIR/index.html`` from result JSONs (evaluation,
    baselines, profile); ``options`` are :func:`kdlic.report.build_report`'s."""
    from kdlic.report import build_report

    options.setdefault("progress", False)
    return build_report([str(r) for r in results], Path(out_dir), **options)


def export(model: ModelLike, out_dir: str | Path, *, format: str = "onnx",
           calibration: str | Path | Sequence[str | Path] | None = None,
           force: bool = False) -> Path:
    """Write ``model``'s codec as ONNX graphs and entropy tables to the folder ``out_dir``
    (docs/format.md, *ONNX export*); with ``calibration`` (image folders or files, e.g.
    training photos) also an int8 synthesis. Decode with it:
    ``kdlic.codec.Codec.from_export(out_dir)`` or ``kdlic decompress -m OUT_DIR``."""
    from kdlic.codec.export import build_export, write_export

    if format != "onnx":
        raise KdlicError(f"unknown export format {format!r} (onnx)")
    if isinstance(calibration, (str, Path)):
        calibration = [calibration]
    return write_export(build_export(_model(model), calibration), out_dir, force=force)


def compress(image: str | Path | Image.Image | np.ndarray, model: ModelLike) -> bytes:
    """Compress ``image`` with ``model``; the ``.kdl`` file's bytes (docs/format.md)."""
    from kdlic import codec

    return codec.encode(image, _model(model) if isinstance(model, nn.Module) else model)


def decompress(data: bytes, model: ModelLike | None = None) -> Image.Image:
    """Decode ``.kdl`` bytes; ``model`` None loads the zoo model the file names (``model``
    may also be an ONNX export folder: :func:`export`)."""
    from kdlic import codec

    if model is None:  # only a zoo model: a file's name never chooses a path to load
        from kdlic.codec.files import open_codec, zoo_model_of
        from kdlic.codec.format import unpack

        return open_codec(zoo_model_of(unpack(data)[0]), zoo_only=True).decode(data)
    return codec.decode(data, _model(model) if isinstance(model, nn.Module) else model)
