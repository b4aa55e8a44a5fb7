"""``eomatch harvest run|list|status|reset``: the configured harvesters (docs/harvesting.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from eomatch.cli.common import load_run_config, message_arg, progress_bar
from eomatch.cli.db import db_options, target_from
from eomatch.config.harvest import HarvesterConfig
from eomatch.core.harvest import HarvestCounts
from eomatch.errors import EomatchError, InputError
from eomatch.io.pgstac_store import PgstacStore  # the service extra, checked when chosen
from eomatch.workflows.harvest import HarvestReport, find_harvester, run_harvest

FORMATS = ("table", "json")
INGEST_ROLE = "eomatch_ingest"


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``harvest`` with its actions."""
    p = sub.add_parser(
        "harvest",
        parents=[parent],
        help="copy provider catalogues (STAC API, static STAC, OpenSearch) into the database",
        description=(
            "Run the harvesters configured under `harvesters:`. Each run asks only for what is "
            "newer than the last one (the high-water mark), registers one page per transaction "
            "and resumes after the last completed page when a run failed."
        ),
    )
    hsub = p.add_subparsers(dest="harvest_command", required=True, metavar="ACTION")
    r = hsub.add_parser("run", parents=[parent], help="run one harvester, or all of them")
    who = r.add_mutually_exclusive_group(required=True)
    who.add_argument("name", nargs="?", default=None, help="harvester name")
    who.add_argument("--all", action="store_true", help="every configured harvester, in order")
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="fetch, filter and post-process, print the counts; write nothing",
    )
    r.add_argument(
        "--message",
        type=message_arg,
        default=None,
        metavar="TEXT",
        help="why: recorded with the run's transactions in the history",
    )
    _format(r)
    db_options(r)
    r.set_defaults(handler=run_run)

    ls = hsub.add_parser("list", parents=[parent], help="the configured harvesters")
    ls.add_argument(
        "--state", action="store_true", help="with each one's last run (reads the database)"
    )
    _format(ls)
    db_options(ls)
    ls.set_defaults(handler=run_list)

    st = hsub.add_parser(
        "status", parents=[parent], help="one harvester's last run, high-water mark and counts"
    )
    st.add_argument("name", help="harvester name")
    _format(st)
    db_options(st)
    st.set_defaults(handler=run_status)

    rs = hsub.add_parser(
        "reset",
        parents=[parent],
        help="forget a harvester's high-water mark (the next run harvests everything again)",
    )
    rs.add_argument("name", help="harvester name")
    db_options(rs)
    rs.set_defaults(handler=run_reset)


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")


def _harvesters(args: argparse.Namespace) -> list[HarvesterConfig]:
    return list(getattr(load_run_config(args), "harvesters", []))


def _store(args: argparse.Namespace) -> PgstacStore:
    target = target_from(args)
    if target.cluster is not None and not target.cluster.status().running:
        raise EomatchError(
            f"the local database in {target.cluster.root} is stopped: run `eomatch db start`"
        )
    return PgstacStore(target.role(INGEST_ROLE))


def _dry_run_store(args: argparse.Namespace) -> PgstacStore | None:
    """The database for a dry run's marks, or None (said on stderr) when it cannot be read:
    a dry run then covers the configured window, as a first run would."""
    from eomatch.io.harvest_state import HarvestStateStore

    try:
        store = _store(args)
        HarvestStateStore(store).all()
    except EomatchError as exc:
        Console(stderr=True).print(
            f"note: no high-water marks ({escape(str(exc))}); the dry run covers the configured "
            "window"
        )
        return None
    return store


def run_run(args: argparse.Namespace) -> int:
    """Run one harvester or all; a failure of one does not stop the others (exit 1 then)."""
    harvesters = _harvesters(args)
    if args.all:
        chosen = harvesters
        if not chosen:
            raise InputError("no harvesters configured (harvesters: in the configuration)")
    else:
        chosen = [find_harvester(harvesters, args.name)]
    store = _dry_run_store(args) if args.dry_run else _store(args)
    reports: list[HarvestReport] = []
    failures: list[str] = []
    for h in chosen:
        try:
            reports.append(_run_one(h, store, args))
        except EomatchError as exc:
            if not args.all:
                raise
            failures.append(f"{h.name}: {exc}")
    if args.format == "json":
        doc = {"runs": [r.to_json() for r in reports], "failed": failures}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out = Console()
        for r in reports:
            out.print(escape(r.summary()))
            for line in r.invalid:
                Console(stderr=True).print(f"invalid: {escape(line)}")
    for line in failures:
        print(f"eomatch: error: harvest {line}", file=sys.stderr)
    return 1 if failures else 0


def _run_one(
    h: HarvesterConfig, store: PgstacStore | None, args: argparse.Namespace
) -> HarvestReport:
    with progress_bar(f"harvest {h.name}", total=1, unit="items") as bar:
        task = bar.task_ids[0]

        def progress(counts: HarvestCounts) -> None:
            bar.update(task, completed=counts.seen, total=max(counts.seen, 1))

        return run_harvest(h, store, dry_run=args.dry_run, progress=progress, message=args.message)


def run_list(args: argparse.Namespace) -> int:
    """The configured harvesters (with their state on ``--state``)."""
    harvesters = _harvesters(args)
    states: dict[str, Any] = {}
    if args.state:
        from eomatch.io.harvest_state import HarvestStateStore

        states = HarvestStateStore(_store(args)).all()
    rows = []
    for h in harvesters:
        row: dict[str, Any] = {
            "name": h.name,
            "type": h.resource.type,
            "url": h.resource.url,
            "collection": h.query.collection,
            "target": h.target.collection,
            "filter": h.filter is not None,
            "postprocess": list(h.postprocess),
        }
        if args.state:
            s = states.get(h.name)
            row["state"] = s.to_json() if s is not None else None
        rows.append(row)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not rows:
        Console().print("no harvesters configured (harvesters: in the configuration)")
        return 0
    cols = ["name", "type", "source", "target", "filter", "post-processors"]
    if args.state:
        cols += ["status", "mark"]
    table = Table(*cols)
    for row in rows:
        cells = [
            row["name"],
            row["type"],
            row["url"] + (f" [{row['collection']}]" if row["collection"] else ""),
            row["target"],
            "yes" if row["filter"] else "",
            str(len(row["postprocess"])) if row["postprocess"] else "",
        ]
        if args.state:
            st = row["state"] or {}
            cells += [st.get("status") or "never", st.get("mark") or ""]
        table.add_row(*(escape(str(c)) for c in cells))
    Console().print(table)
    return 0


def run_status(args: argparse.Namespace) -> int:
    """One harvester's state."""
    from eomatch.io.harvest_state import HarvestStateStore

    h = find_harvester(_harvesters(args), args.name)
    state = HarvestStateStore(_store(args)).get(h.name)
    doc = state.to_json()
    if args.format == "json":
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    table = Table("", "", show_header=False)
    for key in ("harvester", "status", "mark", "run", "started_at", "finished_at", "error"):
        table.add_row(key, escape(str(doc[key] if doc[key] is not None else "")))
    for key, value in (doc["counts"] or {}).items():
        table.add_row(f"last run: {key}", str(value))
    table.add_row("written in all runs", str(doc["total_written"]))
    Console().print(table)
    return 0


def run_reset(args: argparse.Namespace) -> int:
    """Forget the mark."""
    from eomatch.io.harvest_state import HarvestStateStore

    h = find_harvester(_harvesters(args), args.name)
    gone = HarvestStateStore(_store(args)).reset(h.name)
    Console().print(
        f"{h.name}: high-water mark forgotten" if gone else f"{h.name}: had no recorded runs"
    )
    return 0
