"""``eomatch ingest`` (and ``eomatch-ingest``): push a local catalogue into the central pgSTAC."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from eomatch.cli.common import int_arg, load_run_config, message_arg, progress_bar
from eomatch.cli.db import db_options, target_from
from eomatch.errors import EomatchError
from eomatch.io.history_schema import WriteNote
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.ingest import DEFAULT_BATCH, ingest_catalogue

INGEST_ROLE = "eomatch_ingest"


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``ingest``."""
    p = sub.add_parser(
        "ingest",
        parents=[parent],
        help="push a local catalogue's collections and items into the central database",
        description=(
            "Upsert the catalogue into pgSTAC with pypgstac's loader, one transaction per batch. "
            "Incremental: unchanged items are skipped (file stat, then content hash); --prune "
            "deletes rows whose items were removed locally. Safe to re-run after a failure."
        ),
    )
    p.add_argument(
        "--catalogue",
        "--path",
        dest="catalogue",
        type=Path,
        default=None,
        metavar="PATH",
        help="catalogue root or its catalog.json (default: matchup_catalogue.path)",
    )
    p.add_argument(
        "--assets-base-url",
        default=None,
        metavar="URL",
        help="publish relative asset paths under this URL (default: file:// URLs)",
    )
    p.add_argument("--prune", action="store_true", help="delete rows of items deleted locally")
    p.add_argument(
        "--batch-size",
        type=int_arg(1, None, "a number of items"),
        default=DEFAULT_BATCH,
        help="items per transaction",
    )
    p.add_argument(
        "--skip-invalid", action="store_true", help="skip unreadable item files instead of stopping"
    )
    p.add_argument(
        "--message",
        type=message_arg,
        default=None,
        metavar="TEXT",
        help="why: recorded with this ingest's transactions in the history",
    )
    db_options(p)
    p.set_defaults(handler=run_ingest)


def run_ingest(args: argparse.Namespace) -> int:
    """Ingest and print the summary."""
    config = load_run_config(args)
    path = args.catalogue
    if path is None:
        section = getattr(config, "matchup_catalogue", None)
        path = section.path if section is not None else None
        if path is None:
            raise EomatchError("no catalogue: give --catalogue or set matchup_catalogue.path")
    target = target_from(args)
    if target.cluster is not None and not target.cluster.status().running:
        raise EomatchError(
            f"the local database in {target.cluster.root} is stopped: run `eomatch db start`"
        )
    store = PgstacStore(target.role(INGEST_ROLE), WriteNote.cli("ingest", args.message))
    base = args.assets_base_url or config.ingest.assets_base_url
    with progress_bar("ingest", total=1, unit="items") as bar:
        task = bar.task_ids[0]

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1))

        report = ingest_catalogue(
            path,
            store,
            assets_base_url=base,
            prune=args.prune,
            batch_size=args.batch_size,
            progress=progress,
            skip_invalid=args.skip_invalid,
        )
    Console().print(f"ingested into {target.describe()}: {report.summary()}")
    for line in report.skipped:
        Console(stderr=True).print(f"skipped: {line}")
    return 0
