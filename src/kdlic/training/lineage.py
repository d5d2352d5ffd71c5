"""What a warm-started run records about the weights it started from.

A run that starts from trained weights (``init``) writes ``meta["warm_start"]`` into
every checkpoint: the start's name and model id, and the training steps and hours behind
it, its own warm starts included. Learning curves count from there, and the record stays
true when a zoo name is later given to a retrained model (a name alone does not).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from kdlic.models.identity import model_id


def warm_start_record(model: nn.Module) -> dict[str, Any]:
    """``meta["warm_start"]`` of a run started from ``model``: its source (the name or
    path it was loaded by), model id (hex), and the steps and hours of training behind it.

    Checkpoints written before kdlic kept this record name their own start only by
    ``config.init``, and a name may since hold other weights: that start's training is
    not counted, and ``unrecorded`` names it (None when the count is complete).
    """
    meta = getattr(model, "meta", None) or {}
    steps, hours = meta.get("step", 0), meta.get("elapsed_s", 0.0) / 3600
    if "warm_start" in meta:
        before = meta["warm_start"]
        steps, hours = steps + before["steps"], hours + before["hours"]
        unrecorded = before["unrecorded"]
    else:
        unrecorded = meta.get("config", {}).get("init")
    return {"source": getattr(model, "source", None), "model_id": model_id(model).hex(),
            "steps": int(steps), "hours": round(hours, 4), "unrecorded": unrecorded}
