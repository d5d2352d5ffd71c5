"""Encode images to ``.kdl`` bytes and back with any kdlic model.

Colour handling (decided here, documented in docs/format.md):

* EXIF orientation is applied before coding, so the decoded image is upright.
* Grayscale images are coded as RGB with equal channels and decoded back to ``L``.
* Alpha is kept losslessly: zlib-compressed in a third stream (mode ``RGBA``).
* 16-bit images are reduced to 8 bits per channel (value / 257, rounded): the
  models are trained on 8-bit images.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor, nn

from kdlic.codec.format import Header, pack, padded_size, unpack
from kdlic.errors import KdlicError


def model_id(model: nn.Module) -> bytes:
    """8-byte identity of a model: SHA-256 over its architecture and fp32 parameters."""
    h = hashlib.sha256(f"{model.arch}{sorted(model.arch_args.items())}".encode())
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.digest()[:8]


def open_image(source: str | Path | Image.Image | np.ndarray) -> Image.Image:
    """A PIL image from a path, a PIL image or an (H, W[, C]) uint8 array, upright."""
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    if isinstance(source, Image.Image):
        return ImageOps.exif_transpose(source)
    path = Path(source)
    if path.is_dir():
        raise KdlicError(f"{path} is a directory, not an image")
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise KdlicError(f"cannot read image {path}: {exc}") from exc


def split_channels(img: Image.Image) -> tuple[str, np.ndarray, np.ndarray | None]:
    """(mode, rgb (H, W, 3) uint8, alpha (H, W) uint8 or None) as the container codes it."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        gray = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
        return "L", np.repeat(gray[..., None], 3, axis=2), None
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        return "RGBA", np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    if img.mode in ("1", "L", "F"):
        gray = np.asarray(img.convert("L"))
        return "L", np.repeat(gray[..., None], 3, axis=2), None
    return "RGB", np.asarray(img.convert("RGB")), None


class Codec:
    """A model made ready for real entropy coding (tables built once).

    ``timings`` holds the seconds spent in each stage of the last encode/decode:
    ``transform`` (g_a/h_a or g_s), ``hyper`` (h_s and table indexes) and ``entropy``
    (rANS coding), so benchmarks can show the entropy-coding share.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.model.update(force=True)
        self.id = model_id(model)
        self.timings: dict[str, float] = {}

    def _tick(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - start
        return now

    def scale_indexes(self, z_hat: Tensor) -> Tensor:
        """Gaussian table index of every latent element, from the decoded hyper-latent."""
        return self.model.gaussian_conditional.build_indexes(self.model.h_s(z_hat))

    @torch.no_grad()
    def encode(self, image: str | Path | Image.Image | np.ndarray) -> bytes:
        """Compress an image (path, PIL image or uint8 array) to container bytes."""
        mode, rgb, alpha = split_channels(open_image(image))
        height, width = rgb.shape[:2]
        self.timings = {}
        t = time.perf_counter()
        x = torch.from_numpy(np.array(rgb)).to(self.device).permute(2, 0, 1)[None].float().div_(255)
        # Replicate padding: flat borders cost fewer bits than zeros.
        x = F.pad(x, (0, padded_size(width) - width, 0, padded_size(height) - height),
                  mode="replicate")
        m = self.model
        y = m.g_a(x)
        z = m.h_a(torch.abs(y))
        t = self._tick("transform", t)
        z_strings = m.entropy_bottleneck.compress(z)
        z_hat = m.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        t = self._tick("entropy", t)
        indexes = self.scale_indexes(z_hat)
        t = self._tick("hyper", t)
        y_strings = m.gaussian_conditional.compress(y, indexes)
        self._tick("entropy", t)
        streams = [z_strings[0], y_strings[0]]
        if alpha is not None:
            streams.append(zlib.compress(alpha.tobytes(), 9))
        header = Header(mode, self.id, width, height, tuple(z.shape[-2:]))
        return pack(header, streams)

    @torch.no_grad()
    def decode(self, data: bytes) -> Image.Image:
        """Decompress container bytes to a PIL image (mode RGB, L or RGBA)."""
        header, streams = unpack(data)
        if header.model_id != self.id:
            raise KdlicError(
                f"the file was encoded with another model (id {header.model_id.hex()}, "
                f"this model is {self.id.hex()})"
            )
        alpha = _inflate_alpha(streams[2], header) if header.mode == "RGBA" else None
        self.timings = {}
        t = time.perf_counter()
        m = self.model
        z_hat = m.entropy_bottleneck.decompress([streams[0]], header.z_shape).to(self.device)
        t = self._tick("entropy", t)
        indexes = self.scale_indexes(z_hat)
        t = self._tick("hyper", t)
        y_hat = m.gaussian_conditional.decompress([streams[1]], indexes, z_hat.dtype)
        t = self._tick("entropy", t)
        x_hat = m.g_s(y_hat.to(self.device))[0, :, : header.height, : header.width]
        rgb = x_hat.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        self._tick("transform", t)
        if header.mode == "L":
            return Image.fromarray(rgb).convert("L")
        if header.mode == "RGBA":
            return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
        return Image.fromarray(rgb, "RGB")


def _inflate_alpha(stream: bytes, header: Header) -> np.ndarray:
    """The alpha plane, refusing streams that inflate to anything but width*height bytes."""
    size = header.width * header.height
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(stream, size)
        complete = inflater.eof and not inflater.unconsumed_tail
    except zlib.error as exc:
        raise KdlicError(f"corrupt alpha stream: {exc}") from exc
    if len(raw) != size or not complete:
        raise KdlicError("corrupt alpha stream: wrong size")
    return np.frombuffer(raw, np.uint8).reshape(header.height, header.width)
