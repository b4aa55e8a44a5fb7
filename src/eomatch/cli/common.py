"""Shared CLI plumbing: parent parsers, progress bars, argument types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
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
