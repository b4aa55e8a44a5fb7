"""``eomatch processors list`` and ``eomatch process PLUGIN FILE``: non-STAC files through
processor plug-ins (docs/jobs.md "Processors")."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from eomatch.cli.common import load_run_config, message_arg
from eomatch.cli.db import db_options, target_from
from eomatch.errors import EomatchError

FORMATS = ("table", "json")
PROCESS_ROLE = "eomatch_ingest"


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``processors`` and ``process``."""
    p = sub.add_parser(
        "processors",
        parents=[parent],
        help="list the processor plug-ins that turn non-STAC files into STAC items",
        description=(
            "Processors are Python classes found through the 'eomatch.processors' entry points "
            "(the built-ins netcdf-cf and geotiff, and those of installed packages); any other "
            "can be named as module:Class. See docs/jobs.md, 'Writing a processor'."
        ),
    )
    psub = p.add_subparsers(dest="processors_command", metavar="COMMAND", required=True)
    lst = psub.add_parser("list", parents=[parent], help="the installed processors")
    lst.add_argument("--format", choices=FORMATS, default="table", help="output format")
    lst.set_defaults(handler=run_list)

    q = sub.add_parser(
        "process",
        parents=[parent],
        help="describe a non-STAC file with a processor and add its items to the database",
        description=(
            "Run PLUGIN (a name from `eomatch processors list`, or module:Class) on FILE (a "
            "path, an http(s) URL or an s3:// URL). With --dry-run, print the items it would "
            "create (a GeoJSON FeatureCollection) and touch nothing. Otherwise store the file "
            "in the object store (EOMATCH_STORAGE_*), point the items' assets at it and upsert "
            "them into the collection, recorded in the history as kind 'process'. The same "
            "as a queued job: eomatch jobs submit process."
        ),
    )
    q.add_argument("plugin", metavar="PLUGIN", help="processor name or module:Class")
    q.add_argument("file", metavar="FILE", help="path, http(s):// or s3:// URL")
    q.add_argument(
        "--collection",
        default=None,
        metavar="C",
        help="target collection (default: the processor's; must exist)",
    )
    q.add_argument("--dry-run", action="store_true", help="print the items, ingest nothing")
    q.add_argument(
        "--keep-hrefs",
        action="store_true",
        help="do not copy FILE into the object store: the items keep the processor's hrefs",
    )
    q.add_argument(
        "--message",
        "-m",
        type=message_arg,
        default=None,
        metavar="TEXT",
        help="why: recorded with the transaction in the history",
    )
    q.add_argument("--format", choices=FORMATS, default="table", help="output format")
    db_options(q)
    q.set_defaults(handler=run_process)


def run_list(args: argparse.Namespace) -> int:
    """Print the installed processors."""
    from eomatch.io.processors import installed_processors

    found = installed_processors()
    if args.format == "json":
        _print_json(
            [
                {
                    "name": p.name,
                    "target": p.target,
                    "collection": p.collection,
                    "description": p.description,
                }
                for p in found.values()
            ]
        )
        return 0
    table = Table("processor", "class", "collection", "description")
    for p in found.values():
        table.add_row(p.name, p.target, p.collection or "-", p.description)
    Console(soft_wrap=True).print(table)
    return 0


def run_process(args: argparse.Namespace) -> int:
    """Dry-run or ingest one file."""
    from eomatch.io.history_schema import WriteNote
    from eomatch.workflows.jobs.process_kind import ProcessParams, process_file

    params = ProcessParams(
        processor=args.plugin,
        source=args.file,
        collection=args.collection,
        store_file=not args.keep_hrefs,
    )
    if args.dry_run:
        _result, items = process_file(params, None, None, dry_run=True)
        _print_json({"type": "FeatureCollection", "features": items})
        return 0
    from eomatch.io.data_store import open_data_store
    from eomatch.io.pgstac_store import PgstacStore

    load_run_config(args)
    target = target_from(args)
    if target.cluster is not None and not target.cluster.status().running:
        raise EomatchError(
            f"the local database in {target.cluster.root} is stopped: run `eomatch db start`"
        )
    store = PgstacStore(target.role(PROCESS_ROLE), WriteNote.cli("process", args.message))
    objects = open_data_store() if params.store_file else None
    result, items = process_file(params, store, objects)
    if args.format == "json":
        _print_json({**result.to_json(), "features": items})
        return 0
    console = Console(soft_wrap=True, highlight=False)
    for collection, item_id in result.created:
        console.print(f"created {collection}/{item_id}")
    for collection, item_id in result.updated:
        console.print(f"updated {collection}/{item_id}")
    return 0
