"""Flags shared by the training commands, how they map onto config keys; the help format."""

from __future__ import annotations

import argparse
import logging
import warnings
from typing import Any

from kdlic.training.config import nested, parse_override


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's default-showing help, without the meaningless or repeated parts.

    Appends ``(default: X)`` only where it says something: not where the help already
    names its default (``default: ...``, ``%(default)s``), not for a default of None (an
    unset option: the help says what happens), an on/off flag's False or an empty list
    (a repeatable option given no times).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is argparse.SUPPRESS
                or (default is False and action.nargs == 0)
                or (isinstance(default, (list, tuple, dict, str)) and not default)):
            return text
        return super()._get_help_string(action)


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: a long one keeps its start and its end
    around "..." (``compressai:mbt2018-mean...ts/mbt2018-mean-q3.pth``), so both the kind
    of model and its file stay readable. For the name columns of the CLI's tables."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    head = (width - 3 + 1) // 2
    return text[:head] + "..." + text[len(text) - (width - 3 - head):]


# flag dest -> config key path
RUN_FLAGS = {
    "run_dir": "run_dir",
    "lmbda": "lmbda",
    "steps": "schedule.steps",
    "minutes": "schedule.minutes",
    "val_every": "schedule.val_every",
    "data": "data.train",
    "val_data": "data.val",
    "crop": "data.crop",
    "batch_size": "data.batch_size",
    "lr": "optim.lr",
    "device": "runtime.device",
    "threads": "runtime.threads",
    "seed": "runtime.seed",
    "bf16": "runtime.bf16",
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags common to `train` and `distill`; each overrides one config key."""
    parser.add_argument("--config", "-c", help="YAML experiment config (flags override it)")
    parser.add_argument("--run-dir", help="where checkpoints and logs go [run_dir]")
    parser.add_argument("--lmbda", type=float, help="RD trade-off lambda [lmbda]")
    parser.add_argument("--steps", type=int, help="total training steps [schedule.steps]")
    parser.add_argument("--minutes", type=float,
                        help="wall-clock budget over all resumes [schedule.minutes]")
    parser.add_argument("--val-every", type=int, help="validate every K steps")
    parser.add_argument("--data", help="training image folder or Vimeo90K root [data.train]")
    parser.add_argument("--val-data", help="validation folder (default: hold out data.val_count "
                        "images of --data) [data.val]")
    parser.add_argument("--crop", type=int, help="training crop size, multiple of 64 [data.crop]")
    parser.add_argument("--batch-size", type=int, help="global batch size [data.batch_size]")
    parser.add_argument("--lr", type=float, help="learning rate [optim.lr]")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... [runtime.device]")
    parser.add_argument("--threads", type=int, help="torch CPU threads [runtime.threads]")
    parser.add_argument("--seed", type=int, help="random seed [runtime.seed]")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast for the transforms; entropy models stay fp32 "
                        "(default: auto, i.e. on where the device has native bf16 "
                        "kernels) [runtime.bf16]")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set optim.clip_grad=0.5")


def run_overrides(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Config overrides from the flags that were given, in a fixed order (--set last)."""
    overrides = []
    for dest, key in RUN_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides.append(nested(key, value))
    if args.no_progress:
        overrides.append({"runtime": {"progress": False}})
    overrides.extend(parse_override(s) for s in args.set)
    return overrides


def quiet_logging() -> None:
    """INFO logs on stderr; silence third-party deprecation noise."""
    from PIL import Image

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    # Pillow warns above 89 Mpx; the codec's limit (2^26 = 67 Mpx) is checked from the
    # header and refused in one line, so the warning would only add three lines to it.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
