"""Encode images to ``.kdl`` bytes and back with any kdlic model.

Colour handling (decided here, documented in docs/format.md):

* EXIF orientation is applied before coding, so the decoded image is upright.
* Grayscale images are coded as RGB with equal channels and decoded back to ``L``.
* Alpha is kept losslessly: zlib-compressed in its own stream (modes ``RGBA``, ``LA``).
* 16-bit grayscale is reduced to 8 bits (value / 257, rounded); Pillow itself reads
  16-bit RGB(A) files as 8 bits per channel (the high byte). The models are 8-bit.

Decoding is deterministic by construction where it has to be (see
:mod:`kdlic.codec.fixedpoint`, :mod:`kdlic.codec.tables`, :mod:`kdlic.codec.rans`):
with the exact coders (:class:`Codec` for the scale hyperprior, :class:`MeanScaleCodec`
for the mean-scale hyperprior) the latents a file decodes to are the same on any
machine, device and thread count. :class:`CompressAICodec` serves the other
architectures without that guarantee.
"""

from __future__ import annotations

import time
import zlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from kdlic.codec import rans
from kdlic.codec.fixedpoint import (
    ACT_BITS,
    FRAC_BITS,
    FixedPointSequential,
    TableSelector,
    to_fixed,
)
from kdlic.codec.format import (
    ALPHA_MODES,
    CODERS,
    MAX_PIXELS,
    MAX_SIDE,
    Header,
    mask_bytes,
    pack,
    unpack,
)
from kdlic.codec.synthesis import Synthesis, one_thread, worker_pool
from kdlic.codec.tables import SCALE_TABLE, Tables, bottleneck_tables, gaussian_tables
from kdlic.data.images import open_image, padded_size, split_channels
from kdlic.data.sampling import padded_input
from kdlic.errors import KdlicError
from kdlic.models.identity import check_encoder, encoder_id, is_decoder_only, model_id
from kdlic.models.registry import adopt, architecture_of
from kdlic.utils.device import fast_bf16, parse_device

if TYPE_CHECKING:  # (imported when used: onnx and onnxruntime are an optional extra)
    from kdlic.codec.export import OnnxExport, OnnxHyper

BACKENDS = ("torch", "onnxruntime")  # what runs the transforms (the coder is the same)


def model_name(model: nn.Module) -> str:
    """What the model was loaded as: zoo name or ``compressai:`` spec, else a file name.

    Stored in the container so that errors can name the model a file needs (and
    ``kdlic decompress`` can load zoo models by themselves). Never a directory path.
    """
    source = str(getattr(model, "source", "") or "")
    if not source:
        return f"{model.arch}({', '.join(f'{k}={v}' for k, v in model.arch_args.items())})"
    if source.startswith("compressai:"):
        return ":".join(source.split(":", 3)[:3])
    return Path(source).name


@lru_cache(maxsize=1)
def _gaussian() -> rans.PreparedTables:
    return rans.PreparedTables(gaussian_tables())


class Codec:
    """A model made ready for real entropy coding (tables built once).

    ``Codec(model)`` is the architecture's coder: this class, the exact coder of the
    scale hyperprior (container coder 0, version 1); :class:`MeanScaleCodec` for
    ``mbt2018-mean``; :class:`CompressAICodec` for the others.

    ``timings`` holds the seconds spent in each stage of the last encode/decode:
    ``transform`` (g_a/h_a or g_s), ``hyper`` (fixed-point h_s and table indexes) and
    ``entropy`` (rANS coding, with its Python-side conversions), so benchmarks can
    show the entropy-coding share. ``clock`` is the timer used (a benchmark on a busy
    machine may set ``time.process_time``).

    ``bf16_synthesis``: decode with g_s in bfloat16 (faster where the device has native
    bf16 kernels, a few hundredths of a dB lower PSNR; files are unchanged). Refused
    where bf16 would be emulated, which is slower than float32.
    """

    clock = staticmethod(time.perf_counter)
    coder = 0  # format.CODERS
    arch = "scale-hyperprior"  # the architecture this coder is made for
    hyper_outputs = 1  # h_s outputs per latent channel: the scale

    def __new__(cls, model: nn.Module, *args: object, **kwargs: object) -> Codec:
        if cls is Codec:  # the architecture's coder (the exact ones, else CompressAI's)
            arch = architecture_of(model)  # (no weight copy: __init__ adopts the model)
            cls = _EXACT_CODECS.get(getattr(arch, "arch", None), CompressAICodec)
        return super().__new__(cls)

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu",
                 bf16_synthesis: bool = False, backend: str = "torch") -> None:
        if backend not in BACKENDS:
            raise KdlicError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        model = adopt(model)
        self.device = parse_device(device)
        if bf16_synthesis and backend != "torch":
            raise KdlicError("bf16 synthesis exists for the torch backend only")
        if bf16_synthesis and not fast_bf16(self.device):
            raise KdlicError(f"bf16 synthesis: no native bf16 kernels on {self.device} "
                             "(oneDNN reports no bf16 support, or a GPU without native bf16); "
                             "it would be slower than fp32")
        if backend == "onnxruntime":
            if self.device.type != "cpu":
                raise KdlicError("the onnxruntime backend runs on the CPU (--device cpu)")
            from kdlic.codec.export import build_export

            self._init_export(build_export(model), int8=False)  # (checks the encoder too)
            return
        self.model = model.to(self.device).eval()
        # CompressAI's own tables, for code that calls the model's compress()/decompress();
        # this codec uses the deterministic tables below.
        self.model.update(force=True)
        self.id = encoder_id(model)  # what files carry: docs/format.md, *Encoder identity*
        self.name = model_name(model)
        self.decoder_only = is_decoder_only(model)
        check_encoder(model, self.name)
        try:
            z_tables, medians = bottleneck_tables(self.model.entropy_bottleneck)
            hyper = FixedPointSequential(self.model.h_s, self.device)
        except ValueError as exc:
            raise KdlicError(f"model {self.name} cannot be used for coding: {exc}") from exc
        self._setup(int(self.model.M), z_tables,
                    self.model.entropy_bottleneck._get_medians().detach().reshape(-1),
                    np.rint(medians * 2.0**FRAC_BITS), hyper)
        self._synthesis = Synthesis(self.model.g_s, bf16=bf16_synthesis)
        self._analysis = self._torch_analysis

    @classmethod
    def from_export(cls, export: str | Path | OnnxExport, int8: bool = False) -> Codec:
        """The codec of an ONNX export (a folder from ``kdlic export`` or an
        :class:`~kdlic.codec.export.OnnxExport`), run by ONNX Runtime on the CPU; no
        PyTorch model is involved. ``int8``: decode with the int8 synthesis (an export
        made with calibration images)."""
        from kdlic.codec.export import OnnxExport, read_export

        if not isinstance(export, OnnxExport):
            export = read_export(export)
        codec_cls = _EXACT_CODECS.get(export.arch)
        if codec_cls is None or codec_cls.coder != export.manifest["coder"]:
            raise KdlicError(f"an export of {export.arch} (coder {export.manifest['coder']}) "
                             "has no exact coder in this kdlic")
        codec = object.__new__(codec_cls)
        codec._init_export(export, int8)
        return codec

    def _init_export(self, export: OnnxExport, int8: bool) -> None:
        from kdlic.codec.export import OnnxAnalysis, OnnxHyper, OnnxSynthesis, tables_from_json

        m = export.manifest
        if (m["frac_bits"], m["act_bits"]) != (FRAC_BITS, ACT_BITS):
            raise KdlicError(f"the export's fixed point ({m['frac_bits']}, {m['act_bits']} "
                             f"bits) is not this kdlic's ({FRAC_BITS}, {ACT_BITS})")
        if int8 and "synthesis_int8" not in export.graphs:  # (read_export checks the rest)
            raise KdlicError("the export has no int8 synthesis: make it with "
                             "kdlic export MODEL --format onnx --int8 --calibration FOLDER")
        self.device = torch.device("cpu")
        try:
            self.id = bytes.fromhex(m["model_id"])
        except ValueError as exc:
            raise KdlicError(f"the export's model_id is not 16 hex digits: {exc}") from exc
        self.name = m["model_name"]
        self.decoder_only = bool(m["decoder_only"])
        z = export.tables["z"]
        self._setup(int(m["y_channels"]), tables_from_json(z["tables"]),
                    torch.tensor(z["medians"], dtype=torch.float32),
                    np.asarray(z["medians_fixed"], np.float64),
                    OnnxHyper(export.graphs["hyper"], m["hyper_outputs"] * m["y_channels"]))
        self._synthesis = OnnxSynthesis(export.graphs["synthesis_int8" if int8 else "synthesis"])
        self._analysis = OnnxAnalysis(export.graphs["analysis"])

    def _setup(self, y_channels: int, z_tables: Tables, medians: Tensor,
               medians_fixed: np.ndarray, hyper: FixedPointSequential | OnnxHyper) -> None:
        """What both backends share: sizes, rANS tables, medians (float32, the encoder's
        ``round(z - median)``) and their fixed-point integers ``rint(median * 2**F)``
        (float64, the decoder's z_fixed), h_s, table selector."""
        self.y_channels = y_channels
        self.z_channels = len(z_tables)
        self.hyper = hyper
        if hyper.out_channels != self.hyper_outputs * self.y_channels:
            raise KdlicError(f"model {self.name} cannot be used for coding: h_s outputs "
                             f"{hyper.out_channels} channels, the {self.arch} coder needs "
                             f"{self.hyper_outputs} x {self.y_channels}")
        self.z_tables = rans.PreparedTables(z_tables)
        self.y_tables = _gaussian()
        self._medians = medians.to(self.device)
        self._medians_fixed = torch.from_numpy(np.asarray(medians_fixed, np.float64))
        self._select = TableSelector(SCALE_TABLE, self.device)
        self.timings: dict[str, float] = {}

    def _torch_analysis(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(y, z) of a padded image: g_a, then h_a of |y| (scale hyperprior, as
        CompressAI's ScaleHyperprior) or of y (:class:`MeanScaleCodec`)."""
        y = self.model.g_a(x)
        return y, self.model.h_a(y if self.hyper_outputs == 2 else torch.abs(y))

    def _tick(self, stage: str, start: float) -> float:
        now = self.clock()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - start
        return now

    def scale_indexes(self, z_hat: Tensor) -> Tensor:
        """Gaussian table index of every latent element, from a decoded hyper-latent.

        ``z_hat`` (B, C, h, w) float; the result is int64 (B, M, 4h, 4w) on the codec's
        device, computed exactly (fixed point), so equal wherever it runs.
        """
        scales = None if self.hyper_outputs == 1 else torch.arange(self.y_channels)
        return self._select(self.hyper(to_fixed(z_hat), scales))

    def _hyper(self, z_symbols: np.ndarray, channels: np.ndarray | None,
               workers: int = 1) -> Tensor:
        """The fixed-point h_s outputs ``channels`` (all when None) from the z symbols
        (C, h, w): float64 integers in units of 2**-FRAC_BITS, (len(channels), 4h, 4w),
        on the codec's device.

        ``workers`` > 1 (CPU): h_s's last layer, the costly one, is split by channels
        over the synthesis's worker threads, each writing its part of one result (the
        layers before it run once). The result is exact, so it does not depend on the
        split."""
        fixed = self._z_fixed(z_symbols)
        if channels is None:
            return self.hyper(fixed)[0]
        channels = torch.from_numpy(np.asarray(channels, np.int64))
        if not (workers > 1 and len(channels) >= 2 * workers and self.device.type == "cpu"
                and isinstance(self.hyper, FixedPointSequential)):
            return self.hyper(fixed, channels)[0]
        head = self.hyper.head(fixed)
        out = torch.empty(self.hyper.out_shape(head, len(channels)), dtype=torch.float64)
        bounds = [len(channels) * i // workers for i in range(workers + 1)]
        list(worker_pool(workers).map(
            lambda a, b: self.hyper.tail(head, channels[a:b], out[:, a:b]),
            bounds[:-1], bounds[1:]))
        return out[0]

    def _z_fixed(self, z_symbols: np.ndarray) -> Tensor:
        """h_s's input (1, C, h, w): the z symbols (C, h, w) plus the medians, float64
        integers in units of 2**-FRAC_BITS."""
        return (torch.from_numpy(z_symbols).double() * 2.0**FRAC_BITS
                + self._medians_fixed.view(-1, 1, 1))[None]

    def _indexes(self, z_symbols: np.ndarray, channels: np.ndarray, workers: int = 1
                 ) -> np.ndarray:
        """Table indexes (len(channels), 4h, 4w) int64 of the given y channels, exactly,
        from the z symbols (C, h, w). Channels that are not coded are not computed."""
        if len(channels) == 0:
            return np.zeros((0, 4 * z_symbols.shape[1], 4 * z_symbols.shape[2]), np.int64)
        return self._select(self._hyper(z_symbols, channels, workers)).cpu().numpy()

    def _symbols(self, y: Tensor, z_symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
        """Encoder: the y symbols (M, H, W) int64 of the latent ``y`` (M, H, W), the coded
        channels (those not all zero) and their table indexes (coded, H, W).

        Scale hyperprior: the symbols are ``round(y)``."""
        limit = rans.ESCAPE_LIMIT - 1
        y_sym = torch.round(y).clamp_(-limit, limit).to(torch.int64).cpu().numpy()
        coded = np.flatnonzero(np.abs(y_sym).reshape(len(y_sym), -1).max(axis=1))
        return y_sym, coded, self._indexes(z_symbols, coded)

    def _gaussian_params(self, z_symbols: np.ndarray, coded: np.ndarray, workers: int = 1
                         ) -> tuple[np.ndarray, Tensor | None]:
        """Decoder: the fixed-point scales (coded, H, W) float64 of the coded channels
        (the rANS decoder picks their tables), and the means every channel's symbols are
        added to (None: zero-mean)."""
        if len(coded) == 0:
            return np.zeros((0, 4 * z_symbols.shape[1], 4 * z_symbols.shape[2])), None
        return self._hyper(z_symbols, coded, workers).cpu().numpy(), None

    def _latents(self, values: np.ndarray, coded: np.ndarray, means: Tensor | None
                 ) -> tuple[Tensor, Tensor | None]:
        """Decoder: y_hat (1, M, H, W) float32 on the device from the decoded symbols of
        the coded channels (coded, H, W), and the channels g_s must read (None: all).

        Scale hyperprior: y_hat is the symbols; a channel that is not coded is zero, so
        g_s's first layer skips it."""
        y_sym = np.zeros((self.y_channels, *values.shape[1:]), dtype=np.float32)
        y_sym[coded] = values
        return (torch.from_numpy(y_sym)[None].to(self.device),
                torch.from_numpy(coded).to(self.device))

    def _z_indexes(self, shape: tuple[int, int]) -> np.ndarray:
        return np.repeat(np.arange(self.z_channels, dtype=np.int64), shape[0] * shape[1])

    @torch.no_grad()
    def encode(self, image: str | Path | bytes | Image.Image | np.ndarray) -> bytes:
        """Compress an image (path, file bytes, PIL image or uint8 array) to container
        bytes. A file too large for the format is refused before its pixels are decoded."""
        image = open_image(image, max_pixels=MAX_PIXELS)
        with one_thread(self.device):
            return self._encode(image)

    def _encode(self, image: Image.Image) -> bytes:
        mode, rgb, alpha = _codable_channels(image)
        height, width = rgb.shape[:2]
        self.timings = {}
        t = self.clock()
        x = padded_input(rgb).to(self.device)
        y, z = self._analysis(x)
        limit = rans.ESCAPE_LIMIT - 1
        z_sym = torch.round(z - self._medians.view(1, -1, 1, 1)).clamp_(-limit, limit)
        z_sym = z_sym[0].to(torch.int64).cpu().numpy()
        t = self._tick("transform", t)
        y_sym, coded, indexes = self._symbols(y[0], z_sym)
        t = self._tick("hyper", t)
        z_stream, z_esc = rans.encode(z_sym, self._z_indexes(z_sym.shape[1:]), self.z_tables)
        y_stream, y_esc = rans.encode(y_sym[coded], indexes, self.y_tables)
        streams = [z_stream, y_stream, rans.pack_escapes(np.concatenate([z_esc, y_esc]))]
        self._tick("entropy", t)
        if alpha is not None:
            streams.append(zlib.compress(alpha.tobytes(), 9))
        mask = np.zeros(self.y_channels, dtype=bool)
        mask[coded] = True
        header = Header(mode, self.id, width, height, tuple(z_sym.shape[1:]), self.y_channels,
                        self.z_channels, mask_bytes(mask.tolist()), self.name,
                        coder=self.coder)
        return pack(header, streams)

    def check_header(self, header: Header) -> None:
        """Refuse a file made with another model (before decoding anything)."""
        if header.coder != self.coder:
            raise KdlicError(f"the file was written by the {CODERS[header.coder]} coder; "
                             f"'{self.name}' ({self.arch}) uses the "
                             f"{CODERS[self.coder]} coder")
        if header.model_id != self.id and self.decoder_only:
            made = f"'{header.model_name}' " if header.model_name else "a model "
            raise KdlicError(
                f"the file was encoded with {made}(encoder id {header.model_id.hex()}), but "
                f"'{self.name}' is a decoder-only model for the encoder {self.id.hex()}; "
                "decode it with that file's model or a decoder distilled from it")
        if header.model_id != self.id:
            made = f"'{header.model_name}' " if header.model_name else ""
            raise KdlicError(
                f"the file was encoded with model {made}(id {header.model_id.hex()}), not "
                f"with '{self.name}' (id {self.id.hex()}); decode it with that model"
            )
        if (header.y_channels, header.z_channels) != (self.y_channels, self.z_channels):
            raise KdlicError(
                f"the file declares {header.y_channels}/{header.z_channels} latent channels; "
                f"the model has {self.y_channels}/{self.z_channels}"
            )

    @torch.no_grad()
    def decode(self, data: bytes, max_pixels: int | None = None) -> Image.Image:
        """Decompress container bytes to a PIL image (mode RGB, L, RGBA or LA).

        ``max_pixels``: refuse, from the header, files declaring more pixels (the
        format allows 2^26; decoding takes time and memory in proportion).
        """
        header, streams = unpack(data, max_pixels)
        self.check_header(header)
        workers = torch.get_num_threads()  # g_s stripes in parallel; the pixels do not vary
        with one_thread(self.device):
            return self._decode(header, streams, workers)

    def _decode(self, header: Header, streams: list[bytes], workers: int) -> Image.Image:
        alpha = _inflate_alpha(streams[3], header) if header.mode in ALPHA_MODES else None
        self.timings = {}
        t = self.clock()
        escapes = rans.EscapeReader(streams[2])
        zh, zw = header.z_shape
        z_sym = rans.decode(streams[0], self._z_indexes((zh, zw)), self.z_tables, escapes)
        z_sym = z_sym.reshape(self.z_channels, zh, zw)
        t = self._tick("entropy", t)
        coded = np.asarray(header.coded_channels(), dtype=np.int64)
        scales, means = self._gaussian_params(z_sym, coded, workers)
        t = self._tick("hyper", t)
        values = rans.decode_scaled(streams[1], scales, self._select, self.y_tables, escapes)
        escapes.finish()
        t = self._tick("entropy", t)
        y_hat, read = self._latents(values.reshape(scales.shape), coded, means)
        padded = self._synthesis.pixels(y_hat, read, workers).cpu().numpy()
        image = _rgb_image(padded, header.width, header.height)
        self._tick("transform", t)
        return _with_mode(image, header, alpha)


class MeanScaleCodec(Codec):
    """The exact coder of the mean-scale hyperprior (``mbt2018-mean``; container coder 2).

    h_s outputs 2 M channels, scales then means (CompressAI's
    ``gaussian_params.chunk(2, 1)``), both computed by the fixed-point h_s, so a file's
    tables *and* means are the same wherever it is decoded:

    * means: the fixed-point outputs ``q`` read as ``q * 2**-FRAC_BITS``, exact in float64;
    * encoder: symbols ``round(y - means)`` (float64), tables from the scales exactly as
      for the scale hyperprior (:class:`Codec`);
    * decoder: ``y_hat = symbols + means`` in float64, exact (integers below 2**24 plus
      multiples of 2**-12 below 2**14), then one correctly-rounded conversion to float32
      for g_s. A channel whose symbols are all zero is still left out of the y stream
      (mask bit 0), but its ``y_hat`` is its means, not zero: the decoder computes the
      means of every channel (the scales of the coded ones only) and g_s reads them all.

    h_a reads ``y`` itself (not ``|y|``), as in CompressAI's MeanScaleHyperprior
    (:meth:`Codec._torch_analysis`).
    """

    coder = 2
    arch = "mbt2018-mean"
    hyper_outputs = 2  # scales, then means

    def means(self, z_hat: Tensor) -> Tensor:
        """The means (B, M, 4h, 4w) float64 (exact multiples of 2**-FRAC_BITS) that the
        codec adds to the symbols, from a decoded hyper-latent ``z_hat`` (B, C, h, w)."""
        means = torch.arange(self.y_channels, 2 * self.y_channels)
        return self.hyper(to_fixed(z_hat), means) * 2.0**-FRAC_BITS

    def _symbols(self, y: Tensor, z_symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
        """Symbols ``round(y - means)``; all 2 M outputs of h_s are needed (the means of
        every channel decide which channels are all zero)."""
        params = self._hyper(z_symbols, None)
        scales, means = params[: self.y_channels], params[self.y_channels :]
        limit = rans.ESCAPE_LIMIT - 1
        y_sym = torch.round(y.to(self.device, torch.float64) - means * 2.0**-FRAC_BITS)
        y_sym = y_sym.clamp_(-limit, limit).to(torch.int64).cpu().numpy()
        coded = np.flatnonzero(np.abs(y_sym).reshape(len(y_sym), -1).max(axis=1))
        indexes = self._select(scales[torch.from_numpy(coded).to(scales.device)])
        return y_sym, coded, indexes.cpu().numpy()

    def _gaussian_params(self, z_symbols: np.ndarray, coded: np.ndarray, workers: int = 1
                         ) -> tuple[np.ndarray, Tensor]:
        """One h_s call: the scales of the coded channels, the means of all M."""
        channels = np.concatenate([coded, np.arange(self.y_channels, 2 * self.y_channels)])
        params = self._hyper(z_symbols, channels, workers)
        return params[: len(coded)].cpu().numpy(), params[len(coded) :] * 2.0**-FRAC_BITS

    def _latents(self, values: np.ndarray, coded: np.ndarray, means: Tensor | None
                 ) -> tuple[Tensor, None]:
        """y_hat = symbols + means for every channel (uncoded ones: the means), exact in
        float64, then float32; g_s reads every channel."""
        assert means is not None
        y_hat = means.clone()
        y_hat[torch.from_numpy(coded).to(y_hat.device)] += torch.from_numpy(values).to(
            y_hat.device, torch.float64)
        return y_hat.float()[None], None


class CompressAICodec(Codec):
    """Any registered architecture through its own CompressAI ``compress()`` and
    ``decompress()`` (container coder 1).

    What holds: the same ``.kdl`` container (checked header, model id, alpha, CRC) and the
    same pixels when decoded where it was encoded. What does not: CompressAI computes
    the entropy parameters (h_s, the context model) in floating point, so decoding on
    another machine, device or thread count may fail or give other pixels, and the
    autoregressive models (mbt2018, cheng2020) decode one latent position at a time
    (seconds per image). The scale and mean-scale hyperpriors have exact coders
    (:class:`Codec`, :class:`MeanScaleCodec`).
    """

    coder = 1
    arch = None  # every architecture without an exact coder

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu",
                 bf16_synthesis: bool = False, backend: str = "torch") -> None:
        if backend not in BACKENDS:
            raise KdlicError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        if bf16_synthesis or backend != "torch":
            what = "bf16 synthesis" if bf16_synthesis else f"the {backend} backend"
            raise KdlicError(f"{what} exists for the exact coders only (scale-hyperprior, "
                             "mbt2018-mean and their decoder-only students)")
        model = adopt(model)
        self.device = parse_device(device)
        self.model = model.to(self.device).eval()
        self.model.update(force=True)
        self.id = model_id(model)
        self.name = model_name(model)
        self.z_channels = int(self.model.entropy_bottleneck.channels)
        self.y_channels = int(getattr(self.model, "M", self.z_channels))
        self.hyperprior = hasattr(self.model, "h_s")
        self.timings = {}

    def _encode(self, image: Image.Image) -> bytes:
        mode, rgb, alpha = _codable_channels(image)
        height, width = rgb.shape[:2]
        self.timings = {}
        t = self.clock()
        out = self.model.compress(padded_input(rgb).to(self.device))
        streams = [strings[0] for strings in out["strings"]]
        self._tick("transform", t)
        if alpha is not None:
            streams.append(zlib.compress(alpha.tobytes(), 9))
        z_shape = (padded_size(height) // 64, padded_size(width) // 64)
        header = Header(mode, self.id, width, height, z_shape, self.y_channels,
                        self.z_channels, mask_bytes([True] * self.y_channels), self.name,
                        coder=self.coder)
        return pack(header, streams)

    def _decode(self, header: Header, streams: list[bytes], workers: int) -> Image.Image:
        alpha = _inflate_alpha(streams[-1], header) if header.mode in ALPHA_MODES else None
        latent = streams[:-1] if alpha is not None else streams
        if len(latent) != (2 if self.hyperprior else 1):
            raise KdlicError(f"the file holds {len(latent)} latent streams; "
                             f"{self.name} writes {2 if self.hyperprior else 1}")
        self.timings = {}
        t = self.clock()
        # CompressAI's decompress() takes the grid of its last entropy model's latent.
        shape = header.z_shape if self.hyperprior else header.y_shape
        try:
            x_hat = self.model.decompress([[s] for s in latent], list(shape))["x_hat"]
        except (RuntimeError, ValueError, IndexError) as exc:  # a stream that lies
            raise KdlicError(f"corrupt latent stream ({type(exc).__name__})") from None
        pixels = x_hat.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0)
        image = _rgb_image(np.ascontiguousarray(pixels.cpu().numpy()), header.width,
                           header.height)
        self._tick("transform", t)
        return _with_mode(image, header, alpha)


# the exact coder of each architecture that has one; Codec(model) picks it
_EXACT_CODECS: dict[str | None, type[Codec]] = {c.arch: c for c in (Codec, MeanScaleCodec)}
# decoder-only students: their teacher's encoder side (hence its coder), their own g_s
_EXACT_CODECS["scale-hyperprior-decoder"] = Codec
_EXACT_CODECS["mbt2018-mean-decoder"] = MeanScaleCodec


def _codable_channels(image: Image.Image) -> tuple[str, np.ndarray, np.ndarray | None]:
    """(mode, RGB, alpha) of an image, refused if the format cannot hold its size."""
    mode, rgb, alpha = split_channels(image)
    height, width = rgb.shape[:2]
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise KdlicError(f"image {width}x{height} is too large for the format "
                         f"(at most {MAX_SIDE} per side and {MAX_PIXELS} pixels)")
    return mode, rgb, alpha


def _with_mode(image: Image.Image, header: Header, alpha: np.ndarray | None) -> Image.Image:
    """The decoded RGB image in the file's colour mode (L, LA, RGBA or RGB)."""
    if header.mode == "L":
        return image.convert("L")
    if header.mode == "LA":
        gray = np.asarray(image.convert("L"))
        return Image.fromarray(np.dstack([gray, alpha]), "LA")
    if header.mode == "RGBA":
        return Image.fromarray(np.dstack([np.asarray(image), alpha]), "RGBA")
    return image


def _rgb_image(padded: np.ndarray, width: int, height: int) -> Image.Image:
    """The top-left ``width`` x ``height`` of a padded (H, W, 3 or 4) uint8 array as an RGB
    image; Pillow's raw decoder crops and drops the padding byte in one pass."""
    rawmode = "RGBX" if padded.shape[2] == 4 else "RGB"
    return Image.frombytes("RGB", (width, height), padded, "raw", rawmode,
                            padded.shape[1] * padded.shape[2], 1)


def _inflate_alpha(stream: bytes, header: Header) -> np.ndarray:
    """The alpha plane, refusing streams that inflate to anything but width*height bytes."""
    size = header.width * header.height
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(stream, size)
        complete = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    except zlib.error as exc:
        raise KdlicError(f"corrupt alpha stream: {exc}") from exc
    if len(raw) != size or not complete:
        raise KdlicError("corrupt alpha stream: wrong size")
    return np.frombuffer(raw, np.uint8).reshape(header.height, header.width)
