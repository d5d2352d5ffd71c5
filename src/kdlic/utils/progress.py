"""Progress that reads well in a terminal and in a log file.

:func:`progress_bar` returns a tqdm bar when its stream is a terminal and a
:class:`PlainProgress` otherwise (a log file, CI, a pipe): one plain line every
``interval`` seconds and one at the end, never tqdm's ``\\r`` frames, e.g. (one line)::

    train: 1200/20000 step (6%), loss=1.234 bpp=0.456 psnr=30.12, 2.31 step/s,
    elapsed 08:40, ETA 2:15:40

Both share the subset of tqdm's interface kdlic uses: iteration, ``update()``,
``set_postfix()``, ``set_postfix_str()``, ``close()``, ``write()`` and ``with``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

# Seconds between two plain lines: a few lines a minute in a log.
DEFAULT_INTERVAL = 10.0


def is_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is an interactive terminal (False when it cannot say)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    disable: bool = False,
    leave: bool = True,
    file: IO[str] | None = None,
    interval: float = DEFAULT_INTERVAL,
    budget_s: float | None = None,
    **tqdm_kwargs: Any,
) -> tqdm | PlainProgress:
    """A progress display on ``file`` (default ``sys.stderr``), tqdm-like either way.

    Args:
        iterable, total, desc, unit, initial, disable, leave: as for tqdm (``total`` is
            taken from ``len(iterable)`` where it has one).
        interval: seconds between plain lines (not a terminal).
        budget_s: the loop stops at the latest this many seconds from now (a time
            budget): the plain line's ETA is never later than that.
        tqdm_kwargs: passed to tqdm on a terminal (e.g. ``dynamic_ncols``), ignored
            otherwise.
    """
    stream = sys.stderr if file is None else file
    if is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial,
                    disable=disable, leave=leave, file=file, **tqdm_kwargs)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                         disable=disable, file=stream, interval=interval, budget_s=budget_s)


def write(message: str, file: IO[str] | None = None) -> None:
    """Print a line (default: stdout) without breaking a terminal bar (tqdm.write)."""
    tqdm.write(message, file=file)


class PlainProgress:
    """Progress as plain lines: at most one per ``interval`` seconds, and one on close
    if anything happened since the last (see :func:`progress_bar`)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: float | None = None,
                 desc: str = "", unit: str = "it", initial: int = 0, disable: bool = False,
                 file: IO[str] | None = None, interval: float = DEFAULT_INTERVAL,
                 budget_s: float | None = None) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = self.initial = initial
        self.disable = disable
        self.file = file
        self.interval = interval
        self.postfix: dict[str, Any] = {}
        self.start = self._last_print = time.monotonic()
        self.deadline = None if budget_s is None else self.start + budget_s
        self._printed_n = initial
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress display was not given an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if not self.disable and time.monotonic() - self._last_print >= self.interval:
            self._print()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        """Values shown as ``key=value`` on the next line (tqdm's signature)."""
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """A free-form postfix (tqdm's ``set_postfix_str``)."""
        self.postfix = {"": s} if s else {}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.n != self._printed_n:
            self._print(final=True)

    def write(self, message: str, file: IO[str] | None = None) -> None:
        """Print a line (default: stdout), as tqdm's ``write``."""
        write(message, file)  # the module's function (class names are not in scope)

    def line(self, final: bool = False) -> str:
        """The progress line for now (``final``: the closing one, without an ETA)."""
        now = time.monotonic()
        elapsed = now - self.start
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        count = f"{self.n:g}/{self.total:g} {self.unit}" if self.total else \
            f"{self.n:g} {self.unit}"
        if self.total:
            count += f" ({100 * self.n / self.total:.0f}%)"
        parts = [count]
        if self.postfix:
            parts.append(" ".join(f"{k}={v}" if k else str(v) for k, v in self.postfix.items()))
        parts.append(f"{rate:.3g} {self.unit}/s")
        parts.append(f"elapsed {tqdm.format_interval(elapsed)}")
        eta = None if final else self._eta(now, rate)
        if eta is not None:
            parts.append(f"ETA {tqdm.format_interval(eta)}")
        return (f"{self.desc}: " if self.desc else "") + ", ".join(parts)

    def _eta(self, now: float, rate: float) -> float | None:
        left = None
        if self.total and rate > 0:
            left = max(0.0, (self.total - self.n) / rate)
        if self.deadline is not None:
            budget_left = max(0.0, self.deadline - now)
            left = budget_left if left is None else min(left, budget_left)
        return left

    def _print(self, final: bool = False) -> None:
        if self.file is not None:
            print(self.line(final), file=self.file, flush=True)
        self._last_print = time.monotonic()
        self._printed_n = self.n
