"""``eomatch jobs ...`` (submit, status, list, cancel, retry, wait, kinds, schedules) and
``eomatch worker``: the durable job queue in the central database (docs/jobs.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from eomatch.cli.common import int_arg, load_run_config
from eomatch.cli.db import db_options, target_from
from eomatch.errors import EomatchError, InputError
from eomatch.extras import require_extra

FORMATS = ("table", "json")
ROLE = "eomatch_ingest"
"""The role the CLI and the worker use (it loads items and may use the queue)."""
JOB_ID = int_arg(1, None, "a job id")
ENDED = ("succeeded", "failed", "cancelled")


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``jobs`` (with its actions) and ``worker``."""
    require_extra("jobs", "eomatch jobs and eomatch worker")
    j = sub.add_parser(
        "jobs",
        parents=[parent],
        help="submit and follow ingestion jobs (the durable queue in the central database)",
        description=(
            "Jobs run in `eomatch worker` processes (one is started by `eomatch serve`); they "
            "survive restarts. Without an action: the newest jobs."
        ),
    )
    _list_options(j)
    jsub = j.add_subparsers(dest="jobs_command", required=False, metavar="ACTION")

    s = jsub.add_parser("submit", parents=[parent], help="queue a job of some kind")
    s.add_argument("kind", help="the job kind (see `eomatch jobs kinds`)")
    s.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a param (VALUE parsed as JSON if it is JSON, else a string); repeatable",
    )
    s.add_argument(
        "--params-json", type=Path, default=None, metavar="FILE", help="params as a JSON object"
    )
    s.add_argument("--wait", action="store_true", help="wait for the job to end")
    s.add_argument("--timeout", type=float, default=None, metavar="S", help="with --wait")
    _format(s)
    db_options(s)
    s.set_defaults(handler=run_submit)

    st = jsub.add_parser("status", parents=[parent], help="one job: status, stages, result/error")
    st.add_argument("id", type=JOB_ID)
    _format(st)
    db_options(st)
    st.set_defaults(handler=run_status)

    ls = jsub.add_parser("list", parents=[parent], help="jobs, newest first")
    _list_options(ls)

    for name, helptext, handler in (
        ("cancel", "cancel a queued job, or stop a running one", run_cancel),
        ("retry", "queue a failed job again", run_retry),
    ):
        c = jsub.add_parser(name, parents=[parent], help=helptext)
        c.add_argument("id", type=JOB_ID)
        _format(c)
        db_options(c)
        c.set_defaults(handler=handler)

    w = jsub.add_parser("wait", parents=[parent], help="wait for a job to end, showing progress")
    w.add_argument("id", type=JOB_ID)
    w.add_argument("--timeout", type=float, default=None, metavar="S", help="give up after S s")
    _format(w)
    db_options(w)
    w.set_defaults(handler=run_wait)

    k = jsub.add_parser("kinds", parents=[parent], help="the job kinds this installation has")
    _format(k)
    k.set_defaults(handler=run_kinds)

    sc = jsub.add_parser("schedules", parents=[parent], help="configured schedules, next runs")
    _format(sc)
    sc.set_defaults(handler=run_schedules)

    wk = sub.add_parser(
        "worker",
        parents=[parent],
        help="run queued jobs (and the configured schedules) until stopped",
        description=(
            "Runs jobs from the queue in the central database; several workers may run at "
            "once, on any hosts. SIGINT/SIGTERM stop it after the running jobs end."
        ),
    )
    wk.add_argument(
        "--concurrency",
        type=int_arg(1, 64, "a number of jobs"),
        default=1,
        help="jobs run at once (threads; default 1)",
    )
    db_options(wk)
    wk.set_defaults(handler=run_worker)


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table", help="output (default table)")


def _list_options(p: argparse.ArgumentParser) -> None:
    from eomatch.io.job_queue import STATUSES

    p.add_argument("--status", choices=STATUSES, default=None)
    p.add_argument("--kind", default=None)
    p.add_argument("--submitter", default=None)
    p.add_argument("--limit", type=int_arg(1, 10_000, "a number of jobs"), default=50)
    p.add_argument("--offset", type=int_arg(0, None, "a number of jobs"), default=0)
    _format(p)
    db_options(p)
    p.set_defaults(handler=run_list)


def _queue(args: argparse.Namespace) -> Any:
    from eomatch.io.job_queue import JobQueue

    return JobQueue(target_from(args).role(ROLE))


def _print_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def _submitter() -> str:
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):
        return "user:unknown"


def _parse_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.params_json is not None:
        try:
            loaded = orjson.loads(Path(args.params_json).read_bytes())
        except OSError as exc:
            raise InputError(f"cannot read {args.params_json}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{args.params_json} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{args.params_json} must hold a JSON object")
        params.update(loaded)
    for pair in args.param:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--param takes KEY=VALUE, not {pair!r:.80}")
        try:
            params[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            params[key] = value
    return params


def _show(job: Any, fmt: str) -> None:
    if fmt == "json":
        _print_json(job.to_json())
        return
    con = Console()
    con.print(f"job {job.id}: [bold]{job.status}[/] ({escape(job.kind)}), attempt {job.attempts}")
    con.print(f"submitted by {escape(job.submitter or '-')} at {job.created_at:%Y-%m-%d %H:%M:%S}")
    for stage in job.stages:
        con.print(f"  {escape(str(stage.get('at', ''))[:19])}  {escape(str(stage.get('name')))}")
    if job.result is not None:
        info = job.result.get("info") or {}
        summary = info.get("summary") if isinstance(info, dict) else None
        items = len(job.result.get("created", [])) + len(job.result.get("updated", []))
        con.print(f"result: {escape(str(summary or f'{items} item(s)'))}")
    if job.error is not None:
        con.print(
            f"error at stage {escape(str(job.error.get('stage')))}: "
            f"{escape(str(job.error.get('reason')))}"
        )


def _store(args: argparse.Namespace) -> Any:
    from eomatch.io.pgstac_store import PgstacStore

    return PgstacStore(target_from(args).role(ROLE))


def run_submit(args: argparse.Namespace) -> int:
    """Validate, queue, print the id (and wait with --wait)."""
    from eomatch.workflows.jobs.worker import submit_job

    params = _parse_params(args)
    queue = _queue(args)
    job_id = submit_job(queue, _store(args), args.kind, params, _submitter())
    if args.wait:
        return _wait(queue, job_id, args.timeout, args.format)
    if args.format == "json":
        _print_json({"id": job_id, "status": "queued"})
    else:
        Console().print(f"job {job_id} queued ({escape(args.kind)})")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """One job."""
    _show(_queue(args).get(args.id), args.format)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Jobs, newest first."""
    jobs, total = _queue(args).list(
        status=args.status,
        kind=args.kind,
        submitter=args.submitter,
        limit=args.limit,
        offset=args.offset,
    )
    if args.format == "json":
        _print_json({"jobs": [j.to_json() for j in jobs], "total": total})
        return 0
    table = Table("id", "kind", "status", "stage", "attempts", "submitter", "created (UTC)")
    for j in jobs:
        table.add_row(
            str(j.id),
            escape(j.kind),
            j.status,
            escape(j.stage or ""),
            str(j.attempts),
            escape(j.submitter or ""),
            f"{j.created_at:%Y-%m-%d %H:%M:%S}",
        )
    Console().print(table if jobs else "no jobs match")
    if total > len(jobs):
        Console().print(f"{len(jobs)} of {total} shown (--limit/--offset)")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    """Cancel one job."""
    _show(_queue(args).cancel(args.id), args.format)
    return 0


def run_retry(args: argparse.Namespace) -> int:
    """Retry one failed job."""
    _show(_queue(args).retry(args.id), args.format)
    return 0


def _wait(queue: Any, job_id: int, timeout: float | None, fmt: str) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    err = Console(stderr=True)
    seen = ("", "")
    while True:
        job = queue.get(job_id)
        now = (job.status, job.stage or "")
        if now != seen and fmt != "json":
            err.print(
                f"job {job_id}: {job.status}" + (f" ({escape(job.stage)})" if job.stage else "")
            )
            seen = now
        if job.status in ENDED:
            _show(job, fmt)
            return 0 if job.status == "succeeded" else 1
        if deadline is not None and time.monotonic() > deadline:
            raise EomatchError(f"job {job_id} is still {job.status} after {timeout:g} s")
        time.sleep(0.25)


def run_wait(args: argparse.Namespace) -> int:
    """Wait for a job; exit 0 if it succeeded, 1 if it failed or was cancelled."""
    return _wait(_queue(args), args.id, args.timeout, args.format)


def run_kinds(args: argparse.Namespace) -> int:
    """The registered kinds."""
    from eomatch.workflows.jobs import load_kinds

    kinds = sorted(load_kinds().values(), key=lambda k: k.name)
    if args.format == "json":
        _print_json(
            [
                {
                    "name": k.name,
                    "description": k.description,
                    "params": k.params_model.model_json_schema(),
                }
                for k in kinds
            ]
        )
        return 0
    table = Table("kind", "params", "description")
    for k in kinds:
        table.add_row(k.name, ", ".join(k.params_model.model_fields), escape(k.description))
    Console().print(table)
    return 0


def run_schedules(args: argparse.Namespace) -> int:
    """The configured schedules (checked against the kinds) and their next run."""
    from datetime import UTC, datetime

    from croniter import croniter  # type: ignore[import-untyped]

    from eomatch.workflows.jobs.worker import validate_schedules

    schedules = load_run_config(args).schedules
    validate_schedules(schedules)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "name": s.name,
            "cron": s.cron,
            "kind": s.kind,
            "params": s.params,
            "enabled": s.enabled,
            "next": croniter(s.cron, now).get_next(datetime).isoformat() if s.enabled else None,
        }
        for s in schedules
    ]
    if args.format == "json":
        _print_json(rows)
        return 0
    table = Table("name", "cron", "kind", "next run (UTC)", "params")
    for r in rows:
        table.add_row(
            r["name"],
            r["cron"],
            r["kind"],
            (r["next"] or "disabled")[:19],
            escape(orjson.dumps(r["params"]).decode()[:80]),
        )
    Console().print(table if rows else "no schedules configured (schedules: in the YAML)")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    """Run the worker until SIGINT/SIGTERM."""
    from eomatch.workflows.jobs.worker import WorkerOptions, check_queue, validate_schedules
    from eomatch.workflows.jobs.worker import run_worker as run

    config = load_run_config(args)
    validate_schedules(config.schedules)  # a bad entry: one line, before anything starts
    info = target_from(args).role(ROLE)
    check_queue(info)
    options = WorkerOptions.from_env(args.concurrency)
    Console(stderr=True).print(
        f"worker: {options.concurrency} at once, {len(config.schedules)} schedule(s), "
        f"database {info.describe()}"
    )
    from eomatch.io.data_store import open_data_store

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(info, options, config.schedules, objects=open_data_store))
    return 0
