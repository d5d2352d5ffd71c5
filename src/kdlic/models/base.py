"""The architecture registry: one decorated class per architecture.

An architecture is a CompressAI ``CompressionModel`` subclass (its layers, entropy
models, ``forward``, ``compress`` and ``decompress`` unchanged) plus what kdlic needs to
rebuild it from a checkpoint: its name (``arch``), the constructor arguments that size it
(``arch_args``) and how to read them off a state dict (``args_from_state``). Adding one
is one class::

    @register_architecture("mbt2018-mean")
    class MeanScaleHyperprior(Architecture, compressai.models.MeanScaleHyperprior):
        pass
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

# kdlic name -> class; CompressAI zoo name -> kdlic name (compressai:NAME:QUALITY specs)
ARCHITECTURES: dict[str, type[nn.Module]] = {}
COMPRESSAI_NAMES: dict[str, str] = {}


class Architecture:
    """Mixin for registered architectures (listed first among the bases).

    ``arg_names``: the constructor arguments, in order; their values are read back
    from the attributes of the same name (CompressAI stores ``N`` and ``M``).
    """

    arch: str = ""
    arg_names: tuple[str, ...] = ("N", "M")

    @property
    def arch_args(self) -> dict[str, int]:
        """Constructor arguments: enough to rebuild this model from a checkpoint."""
        return {k: int(getattr(self, k)) for k in self.arg_names}

    @classmethod
    def args_from_state(cls, state: Mapping[str, Tensor]) -> dict[str, int]:
        """The constructor arguments a state dict was made with (CompressAI's layout:
        N channels out of g_a's first convolution, M out of its last)."""
        return {"N": state["g_a.0.weight"].size(0), "M": state["g_a.6.weight"].size(0)}

    @classmethod
    def compressai_class(cls) -> type[nn.Module]:
        """The CompressAI class this architecture extends."""
        return cls.__bases__[-1]


def register_architecture(name: str, compressai_name: str | None = None
                          ) -> Callable[[type[Any]], type[Any]]:
    """Class decorator: make ``name`` buildable and loadable (``compressai_name``: the
    CompressAI zoo name its pre-trained weights use, if it differs)."""
    def add(cls: type[Any]) -> type[Any]:
        if not (issubclass(cls, Architecture) and issubclass(cls, nn.Module)):
            raise TypeError(f"{cls.__name__} must subclass Architecture and a CompressAI model")
        cls.arch = name
        ARCHITECTURES[name] = cls
        COMPRESSAI_NAMES[compressai_name or name] = name
        return cls
    return add
