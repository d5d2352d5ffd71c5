"""Models trained by the kdlic project and shipped with the package."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


def zoo_names() -> list[str]:
    """Names of the shipped models, sorted."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def zoo_path(name: str) -> Path | None:
    """The weights file of zoo model ``name``, or None if there is none."""
    path = WEIGHTS_DIR / f"{name}.pt"
    return path if "/" not in name and path.is_file() else None
