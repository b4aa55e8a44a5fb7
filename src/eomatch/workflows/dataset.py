"""Matchup datasets to files: ``eomatch dataset``.

One matchup by id to one file (``.nc`` or ``.zarr``), or every matchup a filter selects to one
file per matchup in a folder (``{matchup id}.nc``). The dataset itself is
``Matchup.return_matchup_dataset`` (:mod:`eomatch.io.matchup_dataset`); this module chooses the
matchups, names the files and reports each one, so that one unreadable product fails its own
matchup only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eomatch.core.collocation import DatasetOptions
from eomatch.core.products import Matchup
from eomatch.errors import EomatchError, InputError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.safe_paths import sanitise_component

log = logging.getLogger(__name__)


@dataclass
class DatasetReport:
    """What was written, and which matchups failed (with their one-line reason)."""

    written: list[tuple[str, Path]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def _options_kwargs(options: DatasetOptions) -> dict[str, object]:
    return {
        "margin_m": options.margin_m,
        "grid": options.grid.value,
        "target": options.target,
        "resampling": options.resampling.value,
        "assets": options.assets,
    }


def write_matchup_dataset(
    matchup: Matchup, output: Path, options: DatasetOptions, overwrite: bool = False
) -> Path:
    """Build the matchup's dataset and write it to ``output`` (``.nc`` or ``.zarr``).

    The output is checked before any product is read: a bad name or an existing file fails
    at once.
    """
    from eomatch.io.matchup_dataset import OUTPUT_FORMATS, write_tree

    if output.suffix.lower() not in OUTPUT_FORMATS:
        raise InputError(f"{output}: the output must end in .nc or .zarr")
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists (overwrite it with --overwrite)")
    tree = matchup.return_matchup_dataset(**_options_kwargs(options))  # type: ignore[arg-type]
    return write_tree(tree, output, overwrite=overwrite)


def select_matchups(
    cat: MatchupCatalogue,
    collections: Sequence[str] | None = None,
    filter: str | None = None,
) -> list[Matchup]:
    """The matchups of the catalogue's events that pass the filters (each once, by id)."""
    seen: dict[str, Matchup] = {}
    for event in cat.get_events(collections=collections, filter=filter):
        for mu in event.matchups:
            seen.setdefault(mu.id, mu)
    return [seen[k] for k in sorted(seen)]


def write_matchup_datasets(
    matchups: Sequence[Matchup],
    folder: Path,
    options: DatasetOptions,
    suffix: str = ".nc",
    overwrite: bool = False,
    progress: Callable[[str, Path | None, str | None], None] | None = None,
) -> DatasetReport:
    """One file per matchup in ``folder`` (``{matchup id}{suffix}``); failures are reported,
    not raised, so the other matchups are still written."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is not a folder (several matchups go to one file each)")
    folder.mkdir(parents=True, exist_ok=True)
    report = DatasetReport()
    for mu in matchups:
        out = folder / f"{sanitise_component(mu.id)}{suffix}"
        try:
            write_matchup_dataset(mu, out, options, overwrite=overwrite)
        except EomatchError as exc:
            log.debug("matchup %s failed", mu.id, exc_info=True)
            report.failed.append((mu.id, str(exc)))
            if progress:
                progress(mu.id, None, str(exc))
            continue
        report.written.append((mu.id, out))
        if progress:
            progress(mu.id, out, None)
    return report
