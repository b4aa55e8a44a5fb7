"""``eomatch query`` (also ``eomatch-query``): matchups from a STAC API into a local catalogue."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from eomatch.cli.common import progress_bar, stderr
from eomatch.cli.products import _bbox, _names
from eomatch.context import EOMatchContext
from eomatch.errors import EomatchError
from eomatch.workflows.query import API_KEY_ENV, query_catalogue


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add the subcommand to the top-level parser."""
    p = sub.add_parser(
        "query",
        parents=[parent],
        help="pull matchups with their events and products from a STAC API into a catalogue",
        description=(
            "Search the matchup items of a matchup service (internal or external STAC API), "
            "fetch the events and products they link to, and merge them into a local catalogue "
            "that `eomatch download`, `remove` and `add-asset` work on. Re-running updates what "
            "changed and keeps local changes (downloaded data, analysis assets)."
        ),
    )
    p.add_argument(
        "--api-url",
        default=None,
        metavar="URL",
        help="STAC API root of the matchup service (default: query.api_url)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="catalogue root to create or update (default: matchup_catalogue.path)",
    )
    p.add_argument(
        "--start-time",
        default=None,
        metavar="T",
        help="ISO 8601; matchups ending before this are excluded",
    )
    p.add_argument(
        "--end-time",
        "--stop-time",
        dest="end_time",
        default=None,
        metavar="T",
        help="ISO 8601; matchups starting after this are excluded",
    )
    p.add_argument(
        "--bbox",
        nargs="+",
        default=None,
        metavar="W S E N",
        help="matchups whose collocation region meets this box (W > E wraps)",
    )
    p.add_argument(
        "--collections",
        type=_names,
        default=None,
        metavar="C1,C2",
        help="only matchups involving these product collections (or matchup collection ids)",
    )
    p.add_argument(
        "--platforms",
        type=_names,
        default=None,
        metavar="P1,P2",
        help="only matchups involving these platforms (any alias)",
    )
    p.add_argument(
        "--filter", default=None, metavar="CQL2", help="CQL2 text over matchup item properties"
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="matchups per search page (default: query.page_size; the server may cap it)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help=f"key of the internal API, sent as 'Authorization: Bearer' (default: ${API_KEY_ENV})",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Resolve options against the configuration, pull, and print a summary."""
    ctx = EOMatchContext(getattr(args, "config", None))
    cfg = ctx.config
    api_url = args.api_url or cfg.query.api_url
    if not api_url:
        raise EomatchError("no API: give --api-url or set query.api_url")
    output = args.output or cfg.matchup_catalogue.path
    if output is None:
        raise EomatchError("no output catalogue: give --output or set matchup_catalogue.path")
    limit = args.limit if args.limit is not None else cfg.query.page_size
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    bbox = _bbox(args.bbox) if args.bbox else None
    with progress_bar("query", total=1, unit="matchups") as bar:
        task = bar.task_ids[0]

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total or None)

        summary = query_catalogue(
            api_url,
            output,
            start_time=args.start_time,
            end_time=args.end_time,
            bbox=bbox,
            collections=args.collections,
            platforms=args.platforms,
            filter=args.filter,
            limit=limit,
            api_key=api_key,
            timeout=cfg.query.timeout_s,
            max_retries=cfg.query.max_retries,
            catalogue_id=cfg.matchup_catalogue.id,
            progress=progress,
        )
    Console(soft_wrap=True).print("\n".join(summary.lines()), highlight=False)
    for w in summary.warnings[:10]:
        stderr.print(f"warning: {w}", highlight=False, soft_wrap=True)
    if len(summary.warnings) > 10:
        stderr.print(f"... and {len(summary.warnings) - 10} more warning(s)")
    return 0
