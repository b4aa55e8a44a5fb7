"""``eomatch history [show TX | purge]`` and ``eomatch rollback``: the catalogue's transactions."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm
from rich.table import Table

from eomatch.cli.common import int_arg, message_arg
from eomatch.cli.db import db_options, target_from
from eomatch.core.history import Revert, diff_documents, doc_label, format_diff
from eomatch.errors import InputError
from eomatch.io.history_schema import KINDS, WriteNote
from eomatch.io.history_store import Change, HistoryFilter, Transaction
from eomatch.io.pgstac_store import PgstacStore
from eomatch.timeparse import parse_time
from eomatch.workflows import history as wf

FORMATS = ("table", "json")
TX = int_arg(1, None, "a transaction id")
INGEST_ROLE = "eomatch_ingest"
"""The role that reads the history and writes rollbacks (as ``eomatch ingest`` does)."""


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``history`` (with ``show`` and ``purge``) and ``rollback``."""
    h = sub.add_parser(
        "history",
        parents=[parent],
        help="the catalogue's recorded transactions: list, show, purge",
        description=(
            "Every change of the central catalogue is a recorded transaction (who, when, what, "
            "each document's state before). Without an action: the transactions, newest first."
        ),
    )
    _filters(h)
    _format(h)
    db_options(h)
    h.set_defaults(handler=run_list)
    hsub = h.add_subparsers(dest="history_command", required=False, metavar="ACTION")
    s = hsub.add_parser(
        "show", parents=[parent], help="what one transaction changed (with a compact diff)"
    )
    s.add_argument("tx", type=TX, metavar="TX", help="transaction id (see `eomatch history`)")
    s.add_argument(
        "--limit",
        type=int_arg(1, 100_000, "a number of changes"),
        default=wf.SHOW_LIMIT,
        help=f"changes listed (default {wf.SHOW_LIMIT}; the counts cover all)",
    )
    _format(s)
    db_options(s)
    s.set_defaults(handler=run_show)
    pg = hsub.add_parser(
        "purge",
        parents=[parent],
        help="delete history older than a date (admin role; logged)",
        description=(
            "Delete the transactions committed before DATE and their recorded states, in one "
            "database transaction, logged in eomatch.history_purges. The catalogue is not "
            "touched, but no rollback or export can reach back before DATE afterwards."
        ),
    )
    pg.add_argument("--before", required=True, metavar="DATE", help="ISO date or time (UTC)")
    pg.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    db_options(pg)
    pg.set_defaults(handler=run_purge)

    r = sub.add_parser(
        "rollback",
        parents=[parent],
        help="undo a transaction, or return to an earlier state, as a new transaction",
        description=(
            "`rollback TX` sets every document TX changed back to its state before TX; it "
            "refuses when later transactions changed them again, unless --force. "
            "`rollback --to TX|TIME` brings the catalogue (or --collection) back to its state "
            "at that point. Either way one new transaction of kind 'rollback' is recorded, "
            "which can itself be rolled back."
        ),
    )
    r.add_argument("tx", type=TX, nargs="?", metavar="TX", help="the transaction to undo")
    r.add_argument("--to", default=None, metavar="TX|TIME", help="return to this point instead")
    r.add_argument("--collection", default=None, metavar="ID", help="with --to: only this one")
    r.add_argument("--force", action="store_true", help="overwrite later changes too")
    r.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    r.add_argument(
        "--message", type=message_arg, default=None, metavar="TEXT", help="why, for the history"
    )
    _format(r)
    db_options(r)
    r.set_defaults(handler=run_rollback)


def _filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters")
    g.add_argument("--collection", default=None, metavar="ID", help="changed this collection")
    g.add_argument("--item", default=None, metavar="ID", help="changed an item with this id")
    g.add_argument("--since", default=None, metavar="TIME", help="committed at or after (ISO)")
    g.add_argument("--until", default=None, metavar="TIME", help="committed at or before (ISO)")
    g.add_argument("--actor", default=None, metavar="NAME", help="e.g. user:alice, key:ci")
    g.add_argument("--kind", default=None, choices=KINDS, help="kind of transaction")
    g.add_argument(
        "--limit",
        type=int_arg(1, 10_000, "a number of transactions"),
        default=50,
        help="newest N (default 50)",
    )


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")


def _store(args: argparse.Namespace, note: WriteNote | None = None) -> PgstacStore:
    target = target_from(args)
    if target.cluster is not None and not target.cluster.status().running:
        raise InputError(
            f"the local database in {target.cluster.root} is stopped: run `eomatch db start`"
        )
    return PgstacStore(target.role(INGEST_ROLE), note)


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _tx_json(t: Transaction) -> dict[str, Any]:
    return {
        "id": t.id,
        "committed_at": t.committed_at.isoformat(),
        "actor": t.actor,
        "kind": t.kind,
        "message": t.message,
        "run": t.run,
        "db_user": t.db_user,
        "inserted": t.inserted,
        "updated": t.updated,
        "deleted": t.deleted,
    }


def _counts(inserted: int, updated: int, deleted: int) -> str:
    return f"+{inserted} ~{updated} -{deleted}"


def run_list(args: argparse.Namespace) -> int:
    """Transactions, newest first."""
    where = HistoryFilter(
        collection=args.collection,
        item=args.item,
        since=parse_time(args.since, "--since") if args.since else None,
        until=parse_time(args.until, "--until") if args.until else None,
        actor=args.actor,
        kind=args.kind,
        limit=args.limit,
    )
    txs = wf.list_transactions(_store(args), where)
    if args.format == "json":
        _print_json([_tx_json(t) for t in txs])
        return 0
    table = Table("tx", "committed (UTC)", "actor", "kind", "changes", "message")
    for t in txs:
        table.add_row(
            str(t.id),
            f"{t.committed_at:%Y-%m-%d %H:%M:%S}",
            escape(t.actor),
            t.kind,
            _counts(t.inserted, t.updated, t.deleted),
            escape(t.message or ""),
        )
    Console().print(table if txs else "no transactions match")
    return 0


def _change_json(c: Change | Revert, op: str) -> dict[str, Any]:
    before, after = (c.before, c.after) if isinstance(c, Change) else (c.current, c.target)
    out: dict[str, Any] = {"op": op, "kind": c.kind, "collection": c.collection, "id": c.id}
    if op == "update":
        out["diff"] = [vars(d) for d in diff_documents(before, after)]
    if c.later is not None:
        out["later"] = c.later
    return out


def run_show(args: argparse.Namespace) -> int:
    """One transaction: header, then its changes (updates with a compact diff)."""
    detail = wf.show(_store(args), args.tx, args.limit)
    t = detail.transaction
    if args.format == "json":
        _print_json(
            {
                "transaction": _tx_json(t),
                "total": detail.total,
                "changes": [_change_json(c, c.op) for c in detail.changes],
            }
        )
        return 0
    out = Console()
    out.print(
        f"transaction {t.id}: {t.kind} by {escape(t.actor)} at "
        f"{t.committed_at:%Y-%m-%d %H:%M:%S} UTC ({t.db_user}), "
        f"{_counts(t.inserted, t.updated, t.deleted)}"
        + (f" — {escape(t.message)}" if t.message else "")
    )
    table = Table("op", "document", "diff", "later tx")
    for c in detail.changes:
        diff = format_diff(diff_documents(c.before, c.after)) if c.op == "update" else ""
        table.add_row(
            c.op,
            escape(doc_label((c.kind, c.collection, c.id))),
            escape(diff),
            str(c.later or ""),
        )
    out.print(table)
    if detail.total > len(detail.changes):
        out.print(f"first {len(detail.changes)} of {detail.total} changes (--limit for more)")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    """``rollback TX`` or ``rollback --to POINT``."""
    if (args.tx is None) == (args.to is None):
        raise InputError("give either a transaction id TX or --to TX|TIME")
    if args.collection is not None and args.to is None:
        raise InputError("--collection goes with --to (a rollback of TX undoes all of it)")
    if args.force and args.to is not None:
        raise InputError("--force goes with a rollback of one TX")
    note = WriteNote.cli("rollback", args.message)
    store = _store(args, note)
    if args.tx is not None:
        result = wf.rollback(
            store,
            args.tx,
            force=args.force,
            dry_run=args.dry_run,
            message=args.message,
            note=note,
        )
    else:
        result = wf.rollback_to(
            store,
            args.to,
            collection=args.collection,
            dry_run=args.dry_run,
            message=args.message,
            note=note,
        )
    plan = result.plan
    counts = plan.counts()
    if args.format == "json":
        _print_json(
            {
                "message": result.message,
                "dry_run": result.dry_run,
                "transaction": result.tx,
                "counts": counts,
                "unchanged": plan.unchanged,
                "forced": len(plan.conflicts),
                "changes": [_change_json(r, r.op) for r in plan.reverts],
            }
        )
        return 0
    out = Console()
    summary = (
        f"{_counts(counts['insert'], counts['update'], counts['delete'])} "
        f"({plan.unchanged} already in that state)"
    )
    if result.dry_run:
        table = Table("would", "document", "diff")
        for r in plan.reverts[: wf.SHOW_LIMIT]:
            table.add_row(
                r.op, escape(doc_label(r.key)), escape(format_diff(r.diff()) if r.diff() else "")
            )
        if plan.reverts:
            out.print(table)
        more = len(plan.reverts) - wf.SHOW_LIMIT
        if more > 0:
            out.print(f"… and {more} more")
        out.print(f"dry run, nothing written: {escape(result.message)} would change {summary}")
    elif result.tx is None:
        out.print(f"nothing to change: {escape(result.message)}: {summary}")
    else:
        forced = f"; overwrote later changes of {len(plan.conflicts)}" if plan.conflicts else ""
        out.print(f"transaction {result.tx}: {escape(result.message)}: {summary}{forced}")
    return 0


def run_purge(args: argparse.Namespace) -> int:
    """Delete old history (asks unless --yes)."""
    when = parse_time(args.before, "--before")
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError("purge deletes history for good: confirm with --yes")
        if not Confirm.ask(f"delete all history committed before {when.isoformat()}?"):
            Console().print("nothing purged")
            return 1
    store = PgstacStore(target_from(args).admin())
    report = wf.purge(store, when)
    Console().print(
        f"purged {report.transactions} transaction(s) and {report.changes} recorded change(s) "
        f"committed before {report.before.isoformat()}"
    )
    return 0
