"""Model architectures and how to build or load them by name.

A *model spec* names a model wherever the CLI takes one:

* a path to a kdlic checkpoint (``runs/teacher/best.pt``);
* a zoo name shipped with kdlic (``kdlic zoo list``);
* a CompressAI pre-trained model, ``compressai:<architecture>:<quality>``
  (e.g. ``compressai:bmshj2018-hyperprior:5``), read from the torch hub cache
  or from a local file named as ``compressai:<architecture>:<quality>:<file>``.
"""

from kdlic.models.hyperprior import ScaleHyperprior
from kdlic.models.registry import ARCHITECTURES, build_model, display_name, load_model

__all__ = ["ARCHITECTURES", "ScaleHyperprior", "build_model", "display_name", "load_model"]
