"""``eomatch export``: the central catalogue, now or at a point of its history, into a folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from eomatch.cli.common import load_run_config, progress_bar, stderr
from eomatch.cli.db import db_options, target_from
from eomatch.errors import EomatchError
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.export import FORMATS, export_catalogue

EXPORT_ROLE = "eomatch_ingest"
"""Reads the catalogue and its history (the API roles read the catalogue only, or no history)."""


def _collections(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("an empty collection name")
    return names


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``export``."""
    p = sub.add_parser(
        "export",
        parents=[parent],
        help="write the central catalogue, now or as it was at a point of its history, to a folder",
        description=(
            "Write the central database's catalogue into a new folder: as it is now, or with "
            "--at as it was just after a transaction (its id, see `eomatch history`) or at a "
            "time. --format catalogue (default) writes the STAC layout on disk (relative links, "
            "readable by `eomatch` and pystac); geoparquet writes one stac-geoparquet file per "
            "collection. Asset hrefs stay the URLs the database holds. The folder appears "
            "complete or not at all; an earlier export is replaced only with --overwrite."
        ),
    )
    p.add_argument(
        "--at",
        default=None,
        metavar="TX|TIME",
        help="a transaction id or an ISO 8601 time (default: now)",
    )
    p.add_argument(
        "--output", "-o", type=Path, required=True, metavar="DIR", help="folder to create"
    )
    p.add_argument(
        "--collections",
        nargs="+",
        type=_collections,
        default=None,
        metavar="C",
        help="only these collections (names separated by spaces or commas)",
    )
    p.add_argument("--format", choices=FORMATS, default="catalogue", help="what to write")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in DIR")
    db_options(p)
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export and print the summary."""
    config = load_run_config(args)
    target = target_from(args)
    if target.cluster is not None and not target.cluster.status().running:
        raise EomatchError(
            f"the local database in {target.cluster.root} is stopped: run `eomatch db start`"
        )
    store = PgstacStore(target.role(EXPORT_ROLE))
    section = getattr(config, "matchup_catalogue", None)
    catalogue_id = getattr(section, "id", None) or "matchup-catalogue"
    collections = [n for group in args.collections for n in group] if args.collections else None
    with progress_bar("export", total=1, unit="items") as bar:
        task = bar.task_ids[0]

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total or None)

        summary = export_catalogue(
            store,
            args.output,
            at=args.at,
            collections=collections,
            format=args.format,
            overwrite=args.overwrite,
            catalogue_id=catalogue_id,
            progress=progress,
        )
    Console(soft_wrap=True).print("\n".join(summary.lines()), highlight=False)
    for line in summary.skipped[:10]:
        stderr.print(f"warning: left out {line}", highlight=False, soft_wrap=True)
    if len(summary.skipped) > 10:
        stderr.print(f"... and {len(summary.skipped) - 10} more", highlight=False)
    return 0
