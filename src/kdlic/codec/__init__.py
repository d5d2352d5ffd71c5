"""Real compression: the ``.kdl`` container and the encoder/decoder.

``encode(image, model) -> bytes`` and ``decode(data, model) -> PIL.Image`` are the
one-call API (``model``: a loaded model, a spec for :func:`kdlic.models.load_model`, or
an ONNX export folder);
:class:`Codec` keeps a model's entropy tables between calls. The format is described
in docs/format.md.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from kdlic.codec.codec import Codec, model_id, model_name
from kdlic.codec.format import Header, pack, peek_model, unpack
from kdlic.data.images import open_image

_codecs: weakref.WeakKeyDictionary[nn.Module, Codec] = weakref.WeakKeyDictionary()
_by_spec: dict[str, Codec] = {}
_lock = threading.Lock()


def _codec(model: nn.Module | str | Path) -> Codec:
    """The codec of a model or a spec (checkpoint, zoo name, ``compressai:`` spec or ONNX
    export folder: :func:`kdlic.codec.files.open_codec`), made once."""
    with _lock:
        if not isinstance(model, nn.Module):
            from kdlic.codec.files import open_codec

            spec = str(model)
            if spec not in _by_spec:
                _by_spec[spec] = open_codec(spec)
            return _by_spec[spec]
        if model not in _codecs:
            _codecs[model] = Codec(model, next(model.parameters()).device)
        return _codecs[model]


def encode(image: str | Path | Image.Image | np.ndarray, model: nn.Module | str | Path) -> bytes:
    """Compress ``image`` with ``model``; returns the ``.kdl`` container bytes."""
    return _codec(model).encode(image)


def decode(data: bytes, model: nn.Module | str | Path) -> Image.Image:
    """Decompress ``.kdl`` bytes made with ``model``."""
    return _codec(model).decode(data)


__all__ = ["Codec", "Header", "decode", "encode", "model_id", "model_name", "open_image",
           "pack", "peek_model", "unpack"]
