"""Training data a user brings from Python: a ``Dataset`` or a ``DataLoader`` of images.

kdlic's own data (image folders) is served by :mod:`kdlic.data.sampling` with
reproducible crops per step. A user's dataset keeps its own sampling and
augmentation; kdlic only reads images out of its items:

* an item (or batch) may be a tensor (3, H, W) / (B, 3, H, W) in [0, 1], a dict with
  ``"x"``, or a tuple/list whose first element is the image (``torchvision``'s
  ``ImageFolder`` gives ``(image, label)``);
* H and W must be multiples of 64 (the latent grid of every architecture here).

A resumed run continues the step count, not the user loader's order: exact resumption
holds for folders only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from kdlic.errors import KdlicError

UserData = Dataset | DataLoader


def is_user_data(data: Any) -> bool:
    return isinstance(data, (Dataset, DataLoader))


def images_of(item: Any, what: str) -> Tensor:
    """The image tensor of a dataset item or batch (see the module docstring)."""
    if isinstance(item, dict):
        if "x" not in item:
            raise KdlicError(f"{what} is a dict without an 'x' entry (the images)")
        item = item["x"]
    elif isinstance(item, (tuple, list)) and item:
        item = item[0]
    if not isinstance(item, Tensor) or not item.is_floating_point():
        raise KdlicError(f"{what} holds {type(item).__name__}, not a float image tensor in "
                         "[0, 1] (e.g. torchvision.transforms.ToTensor())")
    if item.dim() not in (3, 4) or item.shape[-3] != 3:
        raise KdlicError(f"{what} has shape {tuple(item.shape)}; expected (3, H, W) or "
                         "(B, 3, H, W) RGB images")
    h, w = item.shape[-2:]
    if h % 64 or w % 64:
        raise KdlicError(f"{what} is {h}x{w}; crop or pad images to multiples of 64 px "
                         "(e.g. torchvision.transforms.RandomCrop(256))")
    return item


def user_batches(data: UserData, val_data: Any, batch_size: int, val_count: int,
                 seed: int) -> tuple[Iterator[dict[str, Tensor]], Tensor]:
    """(endless training batches ``{"x": (B, 3, H, W)}``, validation images (n, 3, H, W)).

    Validation: ``val_data`` (a Dataset, a DataLoader or a tensor) if given; else the first
    ``val_count`` items of a Dataset, held out of its training batches; a DataLoader
    without ``val_data`` validates on the first ``val_count`` items of its dataset,
    which it also trains on (pass ``val_data`` for a clean split).
    """
    if isinstance(data, IterableDataset):
        data = DataLoader(data, batch_size=batch_size)
    if isinstance(data, DataLoader):
        loader, pool = data, data.dataset
    else:
        if val_data is None:
            if len(data) <= val_count:
                raise KdlicError(f"the dataset has {len(data)} items: too few to hold out "
                                 f"{val_count} for validation (pass val_data)")
            pool = data
            data = Subset(data, range(val_count, len(data)))
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(seed))
    val = validation_images(val_data if val_data is not None else pool, val_count)

    def endless() -> Iterator[dict[str, Tensor]]:
        for epoch in itertools.count():
            empty = True
            for batch in loader:
                empty = False
                yield {"x": _as_batch(images_of(batch, f"a training batch (epoch {epoch})"))}
            if empty:
                raise KdlicError("the training data gave no batch (empty, or fewer items "
                                 "than one batch with drop_last)")
    return endless(), val


def validation_images(val: Any, count: int) -> Tensor:
    """Up to ``count`` images of ``val`` (a tensor, Dataset or DataLoader), stacked."""
    if isinstance(val, Tensor):
        x = images_of(val, "val_data")
        return (x if x.dim() == 4 else x.unsqueeze(0))[:count]
    if isinstance(val, DataLoader):
        items = (image for b in val for image in _as_batch(images_of(b, "a validation batch")))
    elif isinstance(val, Dataset):
        items = (images_of(val[i], f"validation item {i}") for i in range(len(val)))
    else:
        raise KdlicError(f"val_data must be a tensor, Dataset or DataLoader, not "
                         f"{type(val).__name__}")
    images = list(itertools.islice(items, count))
    if not images:
        raise KdlicError("no validation images")
    if len({tuple(t.shape) for t in images}) > 1:
        raise KdlicError("validation images differ in size; crop them to one size")
    return torch.stack(images)


def _as_batch(x: Tensor) -> Tensor:
    return x if x.dim() == 4 else x.unsqueeze(0)
