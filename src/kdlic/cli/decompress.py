"""``kdlic decompress``: ``.kdl`` files back to images (implemented with ``compress``)."""

from kdlic.cli.compress import register_decompress as register

__all__ = ["register"]
