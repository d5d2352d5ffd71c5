"""Real compression: the ``.kdl`` container and the encoder/decoder.

``encode(image, model) -> bytes`` and ``decode(data, model) -> PIL.Image`` are the
one-call API; :class:`Codec` keeps a model's entropy tables between calls.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from kdlic.codec.codec import Codec, model_id, open_image
from kdlic.codec.format import Header, pack, unpack

_codecs: weakref.WeakKeyDictionary[nn.Module, Codec] = weakref.WeakKeyDictionary()


def _codec(model: nn.Module) -> Codec:
    if model not in _codecs:
        _codecs[model] = Codec(model)
    return _codecs[model]


def encode(image: str | Path | Image.Image | np.ndarray, model: nn.Module) -> bytes:
    """Compress ``image`` with ``model``; returns the ``.kdl`` container bytes."""
    return _codec(model).encode(image)


def decode(data: bytes, model: nn.Module) -> Image.Image:
    """Decompress ``.kdl`` bytes made with ``model``."""
    return _codec(model).decode(data)


__all__ = ["Codec", "Header", "decode", "encode", "model_id", "open_image", "pack", "unpack"]
