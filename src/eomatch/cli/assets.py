"""``eomatch add-asset`` and ``eomatch assets list``: versioned analysis results on items."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from eomatch.cli.common import load_run_config
from eomatch.cli.db import db_options, target_from
from eomatch.workflows.assets import list_versions, register_analysis

if TYPE_CHECKING:  # imported where used: --push needs the service extra
    from eomatch.io.pgstac_store import PgstacStore


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``add-asset`` and ``assets list`` to the top-level parser."""
    a = sub.add_parser(
        "add-asset",
        parents=[parent],
        help="register an analysis file as a dated version on a catalogue item",
        description=(
            "Attach FILE to an item as '{prefix}:YYYY-MM-DD' (today in UTC unless --date) and "
            "point '{prefix}:latest' at the newest version; older versions stay. Registering the "
            "same file again changes nothing; a different file under an existing date needs "
            "--replace. Files inside the catalogue get relative hrefs, others file:// URIs."
        ),
    )
    a.add_argument("--catalogue", type=Path, required=True, metavar="PATH", help="catalogue root")
    a.add_argument("--collection-id", required=True, metavar="ID", help="collection of the item")
    a.add_argument("--item-id", required=True, metavar="ID", help="item to attach the file to")
    a.add_argument("--file", type=Path, required=True, metavar="FILE", help="file or .zarr store")
    a.add_argument("--prefix", default="comparison", help="asset key prefix (default: comparison)")
    a.add_argument("--date", default=None, metavar="YYYY-MM-DD", help="version date (UTC today)")
    a.add_argument(
        "--replace",
        action="store_true",
        help="overwrite a different file already registered under the same date",
    )
    a.add_argument(
        "--push",
        action="store_true",
        help="also upsert the item into the central database (as `eomatch ingest` would)",
    )
    db_options(a)
    a.set_defaults(handler=run_add_asset)

    s = sub.add_parser(
        "assets",
        parents=[parent],
        help="inspect the analysis assets of catalogue items",
        description="Inspect the versioned analysis assets of catalogue items.",
    )
    ssub = s.add_subparsers(dest="assets_command", required=True, metavar="ACTION")
    lst = ssub.add_parser(
        "list",
        parents=[parent],
        help="an item's analysis versions, newest first",
        description="List an item's dated analysis versions, newest first.",
    )
    lst.add_argument("--catalogue", type=Path, required=True, metavar="PATH", help="catalogue root")
    lst.add_argument("--item", required=True, metavar="ID", help="item id")
    lst.add_argument("--prefix", default=None, metavar="P", help="only this asset key prefix")
    lst.set_defaults(handler=run_list)


def run_add_asset(args: argparse.Namespace) -> int:
    """Register and say what changed."""
    res = register_analysis(
        args.catalogue,
        args.collection_id,
        args.item_id,
        args.file,
        prefix=args.prefix,
        date=args.date,
        replace=args.replace,
        push=_push_store(args) if args.push else False,
        assets_base_url=load_run_config(args).ingest.assets_base_url if args.push else None,
    )
    out = Console(soft_wrap=True, highlight=False)
    verb = {"added": "added", "replaced": "replaced", "unchanged": "unchanged (same file)"}
    out.print(
        f"{escape(res.key)} on {escape(res.item_id)}: {verb[res.status]} -> {escape(res.href)} "
        f"({res.media_type}, {res.size} bytes)"
    )
    state = "now" if res.latest_changed else "still"
    out.print(f"{escape(res.latest_key)} {state} points at {res.latest_date}")
    if res.pushed:
        out.print("pushed to the central database: both APIs show it now")
    return 0


def _push_store(args: argparse.Namespace) -> PgstacStore:
    from eomatch.io.pgstac_store import PgstacStore

    target = target_from(args)
    return PgstacStore(target.role("eomatch_ingest"))


def run_list(args: argparse.Namespace) -> int:
    """Print one line per version, newest first."""
    versions = list_versions(args.catalogue, args.item, prefix=args.prefix)
    out = Console(soft_wrap=True, highlight=False)
    if not versions:
        out.print(f"no analysis versions on {escape(args.item)}")
        return 0
    for v in versions:
        size = "?" if v.size is None else str(v.size)
        mark = "  (latest)" if v.latest else ""
        out.print(f"{v.date}  {escape(v.key)}  {escape(v.href)}  {size} bytes{mark}")
    return 0
