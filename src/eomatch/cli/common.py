"""Shared CLI plumbing: parent parsers, progress bars, argument types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def global_parent(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """Options accepted before and after the subcommand.

    The subcommands' copies use ``SUPPRESS`` defaults so that ``eomatch -v find`` keeps the
    value given before the subcommand instead of resetting it.
    """
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options")
    g.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress_defaults else False,
        help="debug logging",
    )
    g.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS if suppress_defaults else None,
        metavar="FILE",
        help="YAML configuration layered over ~/.config/eomatch/config.yaml",
    )
    return p


def load_run_config(args: argparse.Namespace) -> EomatchConfig:
    """The layered configuration for this invocation."""
    return load_config(getattr(args, "config", None), Settings().user_config_file)


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
