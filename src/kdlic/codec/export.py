"""ONNX exports: a model's codec as three graphs and its entropy tables, and their
ONNX Runtime execution (``Codec(model, backend="onnxruntime")``, ``Codec.from_export``).

An export is a folder (docs/format.md, *ONNX export*)::

    manifest.json     format version, architecture, coder, encoder id, latent sizes,
                      fixed-point constants, the graph files
    analysis.onnx     x -> y, z                 (float32; the encoder's transforms)
    hyper.onnx        z_fixed -> params_fixed   (float64, exact; both sides)
    synthesis.onnx    y_hat -> pixels           (float32 -> uint8; the decoder's)
    synthesis-int8.onnx   the same, convolutions quantised to int8 (``--int8``)
    tables.json       the hyper-latent and Gaussian rANS tables, medians, thresholds

which is everything a decoder outside Python needs besides the rANS decoder and the
container parser. kdlic reads it back as a codec (:func:`read_export`), which is how
the tests check that nothing is missing.

**int8 synthesis** (:func:`quantize_synthesis`): post-training static quantisation with
ONNX Runtime's quantiser, QDQ format, int8 weights per output channel, uint8
activations calibrated on the latents of training crops (each activation's range cut at
its 0.001st / 99.999th percentiles: min/max let a few outliers set the step). Only g_s's
convolutions after the first are quantised: GDN's normalisation (a 1x1 convolution of
squared activations, whose range spans many octaves) stays float, and so does the first
layer, whose input is the integer latents (a uint8 step over their range of about
+-50 would move each latent by up to a quarter; the layer runs at the latents'
resolution, so it is cheap). Before quantising, each inverse GDN's output channels are
rescaled (:func:`equalised_gdn_outputs`, exact in real arithmetic) so that one uint8
step per tensor fits all of them: in the teacher, one layer's input channels span
ranges too unequal for that (docs/format.md has the int8 cost per model). The latents and hence the
file's meaning are untouched; only the pixels change.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdlic.codec.fixedpoint import (
    ACT_BITS,
    FRAC_BITS,
    FixedPointSequential,
    scale_thresholds,
)
from kdlic.codec.tables import SCALE_TABLE, Tables, bottleneck_tables, gaussian_tables
from kdlic.errors import KdlicError
from kdlic.utils.files import current_umask

FORMAT = "kdlic-onnx"
VERSION = 1
GRAPHS = {"analysis": "analysis.onnx", "hyper": "hyper.onnx",
          "synthesis": "synthesis.onnx", "synthesis_int8": "synthesis-int8.onnx"}
CALIBRATION_CROP = 256  # pixels (latents of 16 x 16), or less for smaller images
CALIBRATION_IMAGES = 32  # central crops of the first 32 images (sorted names)


@dataclass
class OnnxExport:
    """An export in memory: ``manifest`` (JSON-able), ``graphs`` (name -> serialised
    ONNX model; ``synthesis_int8`` only when quantised) and ``tables`` (JSON-able)."""

    manifest: dict[str, Any]
    graphs: dict[str, bytes]
    tables: dict[str, Any] = field(repr=False)

    @property
    def arch(self) -> str:
        return self.manifest["arch"]


def _tables_json(tables: Tables) -> dict[str, Any]:
    return {"lo": tables.lo.tolist(), "hi": tables.hi.tolist(),
            "cdfs": [list(c) for c in tables.cdfs],
            "orders": [o.tolist() for o in tables.orders]}


def tables_from_json(data: dict[str, Any]) -> Tables:
    return Tables(tuple(tuple(int(v) for v in c) for c in data["cdfs"]),
                  tuple(np.asarray(o, np.int64) for o in data["orders"]),
                  np.asarray(data["lo"], np.int64), np.asarray(data["hi"], np.int64))


def build_export(model: nn.Module, calibration: Iterable[str | Path] | None = None
                 ) -> OnnxExport:
    """The export of ``model`` (a scale or mean-scale hyperprior, or a decoder-only
    student) in memory; with ``calibration`` (image files or folders, e.g. training
    photos) also the int8 synthesis."""
    from kdlic.codec.codec import _EXACT_CODECS, model_name
    from kdlic.codec.onnx_graphs import analysis_graph, hyper_graph, synthesis_graph
    from kdlic.models.identity import check_encoder, encoder_id, is_decoder_only
    from kdlic.models.registry import adopt

    # a copy: the caller's model keeps its device and mode
    model = copy.deepcopy(adopt(model)).cpu().eval()
    check_encoder(model, model_name(model))
    codec_cls = _EXACT_CODECS.get(model.arch)
    if codec_cls is None:
        raise KdlicError(f"ONNX export exists for the architectures with an exact coder "
                         f"({', '.join(sorted(a for a in _EXACT_CODECS if a))}), not "
                         f"{model.arch}")
    mean_scale = codec_cls.hyper_outputs == 2
    z_channels = int(model.entropy_bottleneck.channels)
    try:  # (a decoder-only student's g_a and h_a are its teacher's: it encodes as well)
        graphs = {"analysis": analysis_graph(model, mean_scale),
                  "hyper": hyper_graph(model.h_s, z_channels),
                  "synthesis": synthesis_graph(model.g_s, int(model.M))}
        z_tables, medians = bottleneck_tables(model.entropy_bottleneck)
        out_channels = FixedPointSequential(model.h_s).out_channels
    except ValueError as exc:
        raise KdlicError(f"model {model_name(model)} cannot be exported: {exc}") from exc
    if out_channels != codec_cls.hyper_outputs * int(model.M):
        raise KdlicError(f"model {model_name(model)} cannot be exported: h_s outputs "
                         f"{out_channels} channels, its coder needs "
                         f"{codec_cls.hyper_outputs} x {model.M}")
    tables = {
        # medians (the model's float32 values) for the encoder's round(z - median); their
        # fixed-point integers rint(median * 2**12) for the decoder's z_fixed
        "z": {"medians": medians.tolist(),
              "medians_fixed": [int(v) for v in np.rint(medians * 2.0**FRAC_BITS)],
              "tables": _tables_json(z_tables)},
        "y": {"scale_table": list(SCALE_TABLE),
              "thresholds": scale_thresholds(SCALE_TABLE),
              "tables": _tables_json(gaussian_tables())},
    }
    manifest = {
        "format": FORMAT, "version": VERSION, "arch": model.arch,
        "arch_args": dict(model.arch_args), "coder": codec_cls.coder,
        "model_id": encoder_id(model).hex(), "model_name": model_name(model),
        "decoder_only": is_decoder_only(model),
        "y_channels": int(model.M), "z_channels": z_channels,
        "hyper_outputs": codec_cls.hyper_outputs,
        "frac_bits": FRAC_BITS, "act_bits": ACT_BITS,
        "graphs": {k: GRAPHS[k] for k in graphs},
    }
    export = OnnxExport(manifest, {k: g.SerializeToString() for k, g in graphs.items()},
                        tables)
    if calibration is not None:
        latents = calibration_latents(model, calibration)
        export.graphs["synthesis_int8"] = quantize_synthesis(export.graphs["synthesis"],
                                                            latents)
        export.manifest["graphs"]["synthesis_int8"] = GRAPHS["synthesis_int8"]
        export.manifest["int8_calibration"] = {"latents": len(latents),
                                               "crop": CALIBRATION_CROP}
    return export


def write_export(export: OnnxExport, out_dir: str | Path, force: bool = False) -> Path:
    """Write ``export`` to the folder ``out_dir``, whole or not at all: written beside it,
    then renamed into place (an existing export, replaced only with ``force``, is moved
    aside first and put back if the rename fails)."""
    out = Path(out_dir).expanduser()
    if out.exists() and not force:
        raise KdlicError(f"{out} exists (use --force to replace it)")
    if out.exists() and not is_export(out):
        raise KdlicError(f"{out} exists and is not a kdlic ONNX export; not replacing it")
    tmp = old = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide it from others
        for name, data in export.graphs.items():
            (tmp / GRAPHS[name]).write_bytes(data)
        (tmp / "tables.json").write_text(json.dumps(export.tables))
        (tmp / "manifest.json").write_text(json.dumps(export.manifest, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:
                os.replace(old, out)
                old = None
            raise
        tmp = None
    except OSError as exc:
        raise KdlicError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        for leftover in (tmp, old):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
    return out


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an export folder (never an error: a model name may be any
    string, e.g. one too long for a file name)."""
    try:
        return (Path(path).expanduser() / "manifest.json").is_file()
    except (OSError, ValueError):
        return False


# what a reader needs (checked before any of it is used)
MANIFEST_KEYS = {"arch": str, "coder": int, "model_id": str, "model_name": str,
                 "decoder_only": bool, "y_channels": int, "z_channels": int,
                 "hyper_outputs": int, "frac_bits": int, "act_bits": int, "graphs": dict}
REQUIRED_GRAPHS = ("analysis", "hyper", "synthesis")


def read_export(path: str | Path) -> OnnxExport:
    """An export folder written by :func:`write_export`, checked: format and version, the
    manifest's fields, the graphs (read from their fixed names, never from paths in the
    manifest) and the tables' fields and sizes."""
    root = Path(path).expanduser()
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise KdlicError(f"{root} is not a kdlic ONNX export")
        if manifest.get("version") != VERSION:
            raise KdlicError(f"{root}: export version {manifest.get('version')}, this "
                             f"kdlic reads version {VERSION}")
        for key, kind in MANIFEST_KEYS.items():
            if not isinstance(manifest.get(key), kind):
                raise KdlicError(f"{root}: manifest.json lacks {key} ({kind.__name__})")
        missing = [g for g in REQUIRED_GRAPHS if g not in manifest["graphs"]]
        if missing:
            raise KdlicError(f"{root}: the manifest lists no {', '.join(missing)} graph")
        graphs = {k: (root / GRAPHS[k]).read_bytes() for k in manifest["graphs"]
                  if k in GRAPHS}
        tables = json.loads((root / "tables.json").read_text())
        z = tables["z"]
        if not (len(z["medians"]) == len(z["medians_fixed"]) == len(z["tables"]["cdfs"])
                == manifest["z_channels"]):
            raise KdlicError(f"{root}: tables.json's z tables and medians do not match "
                             f"the manifest's {manifest['z_channels']} z channels")
        y = tables["y"]  # constants of the format: an export must carry this kdlic's
        if (tables_from_json(y["tables"]).digest() != gaussian_tables().digest()
                or y["thresholds"] != scale_thresholds(SCALE_TABLE)):
            raise KdlicError(f"{root}: the Gaussian tables or scale thresholds are not this "
                             "kdlic's (docs/format.md, Tables)")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KdlicError(f"cannot read the ONNX export {root}: {exc}") from exc
    return OnnxExport(manifest, graphs, tables)


# -- int8 synthesis ------------------------------------------------------------------------
@torch.no_grad()
def calibration_latents(model: nn.Module, images: Iterable[str | Path],
                        crop: int = CALIBRATION_CROP) -> list[np.ndarray]:
    """Rounded latents (1, M, c/16, c/16) float32 of the central ``c`` x ``c`` crop of the
    first :data:`CALIBRATION_IMAGES` images (files, or folders searched), ``c`` = ``crop``
    or, for a smaller image, its shorter side down to a multiple of 64 (images under 64
    pixels are skipped). For a mean-scale model rounding ``y`` rather than ``y - means``
    moves values by less than one level: ranges, not values, are what calibration
    measures."""
    from kdlic.data.images import collect_images, load_rgb
    from kdlic.data.sampling import to_tensor

    latents = []
    for path in sorted(collect_images(images))[:CALIBRATION_IMAGES]:
        img = load_rgb(path)
        h, w = img.shape[:2]
        side = min(crop, h, w) // 64 * 64
        if side == 0:
            continue
        top, left = (h - side) // 2, (w - side) // 2
        x = to_tensor(img[top : top + side, left : left + side])[None]
        latents.append(torch.round(model.g_a(x)).numpy())
    if not latents:
        raise KdlicError("int8 calibration: no image of at least 64x64 pixels")
    return latents


def equalised_gdn_outputs(graph: bytes, latents: list[np.ndarray], alpha: float = 0.5
                          ) -> bytes:
    """The synthesis graph with every GDN output channel ``c`` divided by a scale ``s_c``
    and the next convolution's input channel ``c`` multiplied by it: the same function,
    up to float rounding, with activation and weight ranges balanced for per-tensor
    quantisation (cross-layer equalisation, Nagel et al. 2019; the balance
    ``s_c = a_c^alpha / w_c^(1 - alpha)`` is SmoothQuant's, Xiao et al. 2023), where
    ``a_c`` is the channel's largest magnitude on ``latents`` and ``w_c`` the next
    convolution's largest weight on it.

    A GDN here is ``x * sqrt(Conv(x * x))`` (its exported form): dividing its output by
    ``s_c`` divides the normalisation Conv's output channel (weights and bias) by
    ``s_c**2``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    nodes = list(model.graph.node)
    weights = {i.name: i for i in model.graph.initializer}

    def reader(tensor: str, op: str):  # the node of type op that reads tensor, if any
        return next((n for n in nodes if n.op_type == op and tensor in n.input), None)

    layers = []  # (normalisation Conv, the Mul it feeds, the Conv that reads the GDN)
    for norm in nodes:
        if norm.op_type != "Conv" or "gdn" not in norm.name or len(norm.input) < 3:
            continue
        root = reader(norm.output[0], "Sqrt")
        mul = root and reader(root.output[0], "Mul")
        conv = mul and reader(mul.output[0], "Conv")
        if conv is not None and conv.input[1] in weights:
            layers.append((norm, mul, conv))
    if not layers:
        return graph
    probe = onnx.load_from_string(graph)  # the GDN outputs as extra graph outputs
    for _, mul, _ in layers:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(
            mul.output[0], onnx.TensorProto.FLOAT, None))
    run = session(probe.SerializeToString(), 1)
    peaks: list[np.ndarray] = []  # per GDN, each channel's largest magnitude
    for y in latents:
        outputs = [np.abs(o).max(axis=(0, 2, 3))
                   for o in run.run(None, {run.get_inputs()[0].name: y})[1:]]
        peaks = [np.maximum(p, o) for p, o in zip(peaks, outputs, strict=True)] if peaks \
            else outputs
    for (norm, _, conv), peak in zip(layers, peaks, strict=True):
        w = numpy_helper.to_array(weights[conv.input[1]]).astype(np.float64)
        balance = (np.maximum(peak, 1e-6) ** alpha
                   / np.maximum(np.abs(w).max(axis=(0, 2, 3)), 1e-6) ** (1 - alpha))
        scale = balance / np.exp(np.log(balance).mean())  # geometric mean 1
        gamma = numpy_helper.to_array(weights[norm.input[1]]).astype(np.float64)
        beta = numpy_helper.to_array(weights[norm.input[2]]).astype(np.float64)
        changed = {norm.input[1]: gamma / (scale**2)[:, None, None, None],
                   norm.input[2]: beta / scale**2,
                   conv.input[1]: w * scale[None, :, None, None]}
        for name, value in changed.items():
            weights[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    return model.SerializeToString()


def quantize_synthesis(graph: bytes, latents: list[np.ndarray]) -> bytes:
    """The synthesis graph with its convolutions quantised (see the module docstring)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(latents)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            return None if item is None else {"y_hat": item}

    model = onnx.load_from_string(graph)
    inputs = {i.name for i in model.graph.input}
    # float: GDN's normalisations and the layer that reads the latents (module docstring)
    keep = [n.name for n in model.graph.node if n.op_type == "Conv"
            and ("gdn" in n.name or inputs.intersection(n.input))]
    # (the quantiser logs a suggestion to pre-process the graph on the root logger)
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        src, dst = Path(tmp, "f32.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(equalised_gdn_outputs(graph, latents))
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=keep, calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": 99.999})
        return dst.read_bytes()


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# -- execution -------------------------------------------------------------------------------
def session(graph: bytes, threads: int):
    """An ONNX Runtime CPU session: ``threads`` intra-op threads that sleep when idle
    (spinning threads would take the cores from everything else)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise KdlicError("the onnxruntime backend needs the export extra: "
                         "pip install 'kdlic[export]'") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own errors (InvalidProtobuf, Fail ...)
        raise KdlicError(f"cannot load an ONNX graph of the export: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         ) from exc


class OnnxAnalysis:
    """``(y, z) = analysis(x)`` with the analysis graph (float32 tensors); its session is
    made at the first encode (a decoder never needs it)."""

    def __init__(self, graph: bytes) -> None:
        self.graph = graph
        self._session = None
        self._lock = threading.Lock()

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with self._lock:
            if self._session is None:
                self._session = session(self.graph, 1)
        y, z = self._session.run(["y", "z"], {"x": x.cpu().numpy()})
        return torch.from_numpy(y), torch.from_numpy(z)


class OnnxHyper:
    """The exact h_s graph with :class:`~kdlic.codec.fixedpoint.FixedPointSequential`'s
    interface (all outputs are computed; ``channels`` picks some)."""

    def __init__(self, graph: bytes, out_channels: int) -> None:
        self.session = session(graph, 1)
        self.out_channels = out_channels

    def __call__(self, x: Tensor, channels: Tensor | None = None) -> Tensor:
        (out,) = self.session.run(None, {"z_fixed": x.cpu().double().numpy()})
        out = torch.from_numpy(out)
        return out if channels is None else out.index_select(1, channels.cpu())


class OnnxSynthesis:
    """g_s with :class:`~kdlic.codec.synthesis.Synthesis`'s ``pixels`` interface; one
    session per worker count (ONNX Runtime's threads are fixed per session)."""

    def __init__(self, graph: bytes) -> None:
        self.graph = graph
        self._sessions: dict[int, Any] = {1: session(graph, 1)}  # a bad graph fails here
        self._lock = threading.Lock()

    def pixels(self, y_hat: Tensor, coded: Tensor | None, workers: int = 1) -> Tensor:
        with self._lock:
            if workers not in self._sessions:
                self._sessions[workers] = session(self.graph, workers)
            run = self._sessions[workers].run
        (img,) = run(None, {"y_hat": y_hat.cpu().float().numpy()})
        return torch.from_numpy(np.ascontiguousarray(img[0].transpose(1, 2, 0)))
