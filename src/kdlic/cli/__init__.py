"""The ``kdlic`` command line: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed namespace, returns an exit code or None).
Problems with the user's input are raised as :class:`kdlic.errors.KdlicError` and
printed as one line, exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kdlic.cli.common import HelpFormatter
from kdlic.errors import KdlicError

# Order here is the order in `kdlic --help`.
SUBCOMMANDS = ["train", "distill", "evaluate", "compress", "decompress", "export", "baselines",
               "bdrate", "profile", "report", "zoo", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdlic",
        description="Knowledge distillation for learned image compression (CompressAI models).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"kdlic.cli.{name.replace('-', '_')}").register(subparsers)
    # One help format for every subcommand: defaults shown where they say something,
    # never "(default: None)" or a second "(default: ...)" after the help's own.
    for sub in subparsers.choices.values():
        sub.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KdlicError as exc:
        print(f"kdlic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kdlic {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left early (`kdlic zoo list | head`): nothing of ours failed. Point
        # stdout at /dev/null so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by the pipe
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
