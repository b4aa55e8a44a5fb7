"""``eomatch backup create | list | verify | restore | prune``: backups of the central database."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm
from rich.table import Table

from eomatch.cli.common import int_arg
from eomatch.cli.db import db_options, target_from
from eomatch.config.settings import BackupSettings, read_settings
from eomatch.errors import EomatchError, InputError
from eomatch.io.backup_repo import BackupRepository, Manifest
from eomatch.workflows import backups as wf

FORMATS = ("table", "json")
KEEP_DAYS = int_arg(1, 36500, "a number of days")


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``backup`` and its actions."""
    b = sub.add_parser(
        "backup",
        parents=[parent],
        help="back up, verify and restore the central database (pg_dump; local folder or S3)",
        description=(
            "Backups of the central database (pgSTAC, API keys, the catalogue history) with "
            "pg_dump, kept in a local folder (EOMATCH_BACKUP_DIR, default <data dir>/backups) "
            "or an S3-compatible bucket (EOMATCH_BACKUP_S3_BUCKET, credentials from AWS_* "
            "variables only). Runbook: docs/deployment.md."
        ),
    )
    bsub = b.add_subparsers(dest="backup_command", required=True, metavar="ACTION")

    def action(name: str, text: str, handler: Any, database: bool = False) -> Any:
        p = bsub.add_parser(name, parents=[parent], help=text, description=text)
        p.add_argument(
            "--repo",
            default=None,
            metavar="DIR|s3://BUCKET/PREFIX",
            help="the backup repository (default: EOMATCH_BACKUP_* settings)",
        )
        p.add_argument("--format", choices=FORMATS, default="table", help="output format")
        if database:
            db_options(p)
        p.set_defaults(handler=handler)
        return p

    action("create", "take a backup now (a consistent snapshot of the database)", run_create, True)
    action("list", "the backups, oldest first (incomplete ones marked)", run_list)
    action(
        "status",
        "when the newest good backup was taken; exit 1 when there is none or it is older "
        "than EOMATCH_BACKUP_MAX_AGE_HOURS (for monitoring)",
        run_status,
    )
    v = action(
        "verify",
        "restore a backup into a throwaway cluster and check it against its manifest (exit 0/1)",
        run_verify,
    )
    v.add_argument("--backup", default=None, metavar="ID", help="default: the newest")
    r = action(
        "restore",
        "restore a backup beside the current database, check it, then switch to it "
        "(the current one is kept as <db>_replaced_<stamp>)",
        run_restore,
        True,
    )
    r.add_argument("--backup", default=None, metavar="ID", help="default: the newest")
    r.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    p = action(
        "prune",
        "remove backups older than the retention (never the newest good one)",
        run_prune,
    )
    p.add_argument(
        "--keep-days", type=KEEP_DAYS, default=None, help="default EOMATCH_BACKUP_KEEP_DAYS (30)"
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")


def _repo(args: argparse.Namespace) -> BackupRepository:
    return wf.open_repository(args.repo)


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def run_create(args: argparse.Namespace) -> int:
    """Take one backup."""
    target = target_from(args)
    repo = _repo(args)
    out = _err()
    manifest = wf.create_backup(target, repo, report=lambda m: out.print(escape(m)))
    if args.format == "json":
        _print_json(manifest.model_dump(mode="json", exclude={"facts": {"sample"}}))
        return 0
    took = (manifest.finished_at - manifest.started_at).total_seconds()
    Console(highlight=False, soft_wrap=True).print(
        f"backup {manifest.id}: {manifest.facts.items} items, {manifest.facts.collections} "
        f"collections, {manifest.facts.history_transactions or 0} history transactions, "
        f"{_size(manifest.dump.size)} in {took:.1f} s ({escape(repo.describe())})"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    """The backups, oldest first."""
    repo = _repo(args)
    entries = repo.entries()
    if args.format == "json":
        _print_json(
            [
                {
                    "id": e.id,
                    "complete": e.complete,
                    "size": e.size,
                    "taken": e.manifest.started_at if e.manifest else None,
                    "items": e.manifest.facts.items if e.manifest else None,
                    "collections": e.manifest.facts.collections if e.manifest else None,
                    "problem": e.problem,
                }
                for e in entries
            ]
        )
        return 0
    table = Table("backup", "taken (UTC)", "items", "collections", "size", "state")
    for e in entries:
        m = e.manifest
        table.add_row(
            e.id,
            f"{m.started_at:%Y-%m-%d %H:%M:%S}" if m else "",
            str(m.facts.items) if m else "",
            str(m.facts.collections) if m else "",
            _size(e.size),
            "good" if m else escape(f"incomplete{': ' + e.problem if e.problem else ''}"),
        )
    Console().print(table if entries else f"no backups in {escape(repo.describe())}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """The newest good backup's age; exit 1 when stale (a health check)."""
    status = wf.backup_status(_repo(args))
    if args.format == "json":
        _print_json(
            {
                "newest": status.newest.id if status.newest else None,
                "age_hours": round(status.age.total_seconds() / 3600, 2) if status.age else None,
                "stale": status.stale,
                "repository": status.where,
            }
        )
    else:
        Console(highlight=False, soft_wrap=True).print(escape(status.line()))
    return 1 if status.stale else 0


def _facts_rows(report: wf.CheckReport) -> list[tuple[str, str, str]]:
    fields = ("pgstac_version", "items", "collections", "history_transactions", "api_keys")
    rows = []
    for name in fields:
        want = getattr(report.expected, name, None) if report.expected else None
        got = getattr(report.found, name, None) if report.found else None
        rows.append((name, str(want), str(got) if report.found else "-"))
    if report.expected:
        n = len(report.expected.sample)
        same = (
            sum(1 for k, v in report.expected.sample.items() if report.found.sample.get(k) == v)
            if report.found
            else 0
        )
        rows.append(("sampled item hashes", str(n), f"{same} equal" if report.found else "-"))
    return rows


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the backup restores and matches its manifest, else 1."""
    out = _err()
    try:
        report = wf.verify_backup(_repo(args), args.backup, report=lambda m: out.print(escape(m)))
    except EomatchError as exc:  # missing/damaged backup, unreachable repository: not good
        print(f"eomatch: backup verify: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        _print_json(
            {
                "backup": report.backup,
                "ok": report.ok,
                "problems": report.problems,
                "seconds": round(report.seconds, 2),
                "checks": [
                    {"check": n, "expected": w, "found": g} for n, w, g in _facts_rows(report)
                ],
            }
        )
    else:
        table = Table("check", "manifest", "restored copy")
        for row in _facts_rows(report):
            table.add_row(*row)
        console = Console(highlight=False, soft_wrap=True)
        console.print(table)
        for problem in report.problems:
            console.print(f"problem: {escape(problem)}")
        verdict = "GOOD" if report.ok else "BAD"
        console.print(f"backup {report.backup}: {verdict} (checked in {report.seconds:.1f} s)")
    return 0 if report.ok else 1


def _describe(manifest: Manifest) -> str:
    return (
        f"backup {manifest.id} (taken {manifest.started_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"{manifest.facts.items} items)"
    )


def run_restore(args: argparse.Namespace) -> int:
    """Restore beside, check, switch; the replaced database is kept."""
    target = target_from(args)
    repo = _repo(args)
    manifest = repo.pick(args.backup)
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError("restore replaces the database: confirm with --yes")
        question = (
            f"replace {target.describe()} with {_describe(manifest)}? "
            "(the current database is kept, renamed)"
        )
        if not Confirm.ask(escape(question)):
            Console().print("nothing restored")
            return 1
    out = _err()
    result = wf.restore_backup(target, repo, manifest.id, report=lambda m: out.print(escape(m)))
    if args.format == "json":
        _print_json(
            {
                "backup": result.backup,
                "database": result.database,
                "replaced": result.replaced,
                "seconds": round(result.check.seconds, 2),
            }
        )
        return 0
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"restored {_describe(manifest)} into {result.database}; checked against its manifest "
        f"({result.check.seconds:.1f} s)"
    )
    if result.replaced:
        console.print(
            f"the previous database is kept as {result.replaced}; once satisfied, drop it: "
            f'psql -d postgres -c "DROP DATABASE {result.replaced}"'
        )
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Apply retention."""
    keep = args.keep_days or read_settings(BackupSettings).keep_days
    repo = _repo(args)
    doomed = wf.prune_backups(repo, keep, dry_run=args.dry_run, now=datetime.now(UTC))
    verb = "would remove" if args.dry_run else "removed"
    if args.format == "json":
        _print_json({"dry_run": args.dry_run, "keep_days": keep, "removed": [e.id for e in doomed]})
        return 0
    console = Console(highlight=False, soft_wrap=True)
    for e in doomed:
        console.print(f"{verb} {e.id}{'' if e.complete else ' (incomplete)'}")
    kept = len(repo.entries()) if not args.dry_run else None
    tail = f"; {kept} kept" if kept is not None else ""
    console.print(f"{verb} {len(doomed)} backup(s) older than {keep} days{tail}")
    return 0
