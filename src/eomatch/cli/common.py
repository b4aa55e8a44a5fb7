"""Shared CLI plumbing: parent parsers, progress bars, argument types."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from eomatch.config.models import EomatchConfig
from eomatch.config.settings import Settings
from eomatch.io.config_files import load_config

stderr = Console(stderr=True)


def load_run_config(args: argparse.Namespace) -> EomatchConfig:
    """The layered configuration for this invocation."""
    return load_config(getattr(args, "config", None), Settings().user_config_file)


def int_arg(
    low: int, high: int | None = None, what: str = "a whole number"
) -> Callable[[str], int]:
    """An argparse ``type=`` for a whole number in ``low..high`` (``high`` None: no upper bound).

    argparse checks it while parsing, so a bad number is a one-line usage error (exit 2)
    before the command starts anything (a database, an API, a download).
    """
    bounds = f"{low}..{high}" if high is not None else f">= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:  # also digits beyond Python's int-parsing limit
            raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what} ({bounds}), not {text.strip()[:40]}")
        return value

    parse.__name__ = what
    return parse


def float_arg(
    low: float, high: float | None = None, what: str = "a number", *, above: bool = False
) -> Callable[[str], float]:
    """An argparse ``type=`` for a finite number in ``low..high`` (``above``: ``low`` itself
    excluded); NaN and infinities are refused, as :func:`int_arg` refuses non-numbers."""
    bounds = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
        too_low = value <= low if above else value < low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what} ({bounds}), not {text[:40]}")
        return value

    parse.__name__ = what
    return parse


PORT = int_arg(1, 65535, "a TCP port")
"""``type=`` of a port to connect to or listen on."""
PORT_OR_ANY = int_arg(0, 65535, "a TCP port or 0 for any")
"""``type=`` of a listening port where 0 lets the system choose."""


MESSAGE_MAX = 2000
"""Characters of a history message (``--message``); the database keeps no more."""


def message_arg(text: str) -> str:
    """An argparse ``type=`` for ``--message``: one line of printable text, bounded."""
    if len(text) > MESSAGE_MAX:
        raise argparse.ArgumentTypeError(f"at most {MESSAGE_MAX} characters")
    if any(not ch.isprintable() for ch in text):
        raise argparse.ArgumentTypeError("one line of printable text (no control characters)")
    return text


def progress_enabled() -> bool:
    """Bars only on an interactive terminal (logs and CI stay clean)."""
    return sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, total: int, unit: str = "") -> Iterator[Progress]:
    """A rich progress bar on stderr (disabled when stderr is not a terminal)."""
    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if unit else TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=stderr, disable=not progress_enabled(), transient=False) as p:
        p.add_task(description, total=total)
        yield p


_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def user_name(text: str) -> str:
    """An argparse ``type=`` for a system user name (the portable POSIX form).

    The name reaches ``useradd`` when the user is missing: one starting with ``-`` would be
    read as an option there, so anything outside the portable form is refused while parsing.
    """
    if not _USER_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"not a system user name (lower-case letters, digits, _ and -): {text[:40]!r}"
        )
    return text
