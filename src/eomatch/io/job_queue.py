"""The job queue in the central database: procrastinate's tables plus ``eomatch.jobs``.

procrastinate (``procrastinate_jobs``) owns the queue: status, attempts, locks, retries,
periodic defers and worker heartbeats. ``eomatch.jobs`` (one row per job, same id) adds what
a client reads: kind, params, submitter, stages with timestamps, the result or the error.
:meth:`JobQueue.get`/:meth:`JobQueue.list` join the two, so there is one place to read a
job's state from. A job is submitted in one transaction (our row + procrastinate's defer
function), so a failed submit queues nothing.

``origin`` says where a job was submitted from: ``local`` (the CLI, schedules) or ``http``
(the internal API, whose jobs' inputs are confined: :mod:`eomatch.workflows.jobs.inputs`).

Statuses: procrastinate's ``todo`` is ``queued``, ``doing`` ``running``, ``aborted`` and
``cancelled`` are ``cancelled``; ``succeeded`` and ``failed`` keep their names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eomatch.extras import require_extra

require_extra("jobs", "the job queue", ("procrastinate", "psycopg"))

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from eomatch.errors import ConflictError, InputError, NotFoundError
from eomatch.io.pg_conn import ConnectionInfo
from eomatch.io.pg_errors import translated

__all__ = [
    "QUEUE",
    "STATUSES",
    "TASK",
    "JobQueue",
    "JobRecord",
    "install_queue",
    "queue_installed",
]

QUEUE = "eomatch"
"""procrastinate queue name of eomatch jobs."""
TASK = "eomatch.job"
"""procrastinate task that runs any eomatch job (its kind is in ``eomatch.jobs``)."""
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")

JOBS_SQL = """
CREATE TABLE IF NOT EXISTS eomatch.jobs (
    id bigint PRIMARY KEY REFERENCES public.procrastinate_jobs (id) ON DELETE CASCADE,
    kind text NOT NULL,
    params jsonb NOT NULL DEFAULT '{}',
    submitter text,
    schedule text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    stages jsonb NOT NULL DEFAULT '[]',
    result jsonb,
    error jsonb
);
-- added after the first release: an older table gets it, its API jobs (key:...) marked http
ALTER TABLE eomatch.jobs ADD COLUMN IF NOT EXISTS origin text;
UPDATE eomatch.jobs SET origin = CASE WHEN submitter LIKE 'key:%' THEN 'http' ELSE 'local' END
    WHERE origin IS NULL;
ALTER TABLE eomatch.jobs ALTER COLUMN origin SET DEFAULT 'local';
ALTER TABLE eomatch.jobs ALTER COLUMN origin SET NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_kind ON eomatch.jobs (kind, id);
CREATE INDEX IF NOT EXISTS jobs_submitter ON eomatch.jobs (submitter, id);
CREATE TABLE IF NOT EXISTS eomatch.job_queue_meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    procrastinate_version text NOT NULL
);
"""

_STATUS_SQL = """CASE p.status::text
    WHEN 'todo' THEN 'queued' WHEN 'doing' THEN 'running'
    WHEN 'aborting' THEN 'running' WHEN 'aborted' THEN 'cancelled'
    ELSE p.status::text END"""

_SELECT = f"""
SELECT j.id, j.kind, j.params, j.submitter, j.schedule, j.origin, {_STATUS_SQL} AS status,
       p.attempts, p.abort_requested, p.scheduled_at, j.created_at, j.started_at,
       j.finished_at, j.stages, j.result, j.error
FROM eomatch.jobs j JOIN public.procrastinate_jobs p ON p.id = j.id
"""

_REVERSE_STATUS = {
    "queued": ["todo"],
    "running": ["doing", "aborting"],
    "succeeded": ["succeeded"],
    "failed": ["failed"],
    "cancelled": ["cancelled", "aborted"],
}


def queue_installed(conn: psycopg.Connection[Any]) -> bool:
    """Whether procrastinate's schema is in this database."""
    row = conn.execute("SELECT to_regclass('public.procrastinate_jobs')").fetchone()
    return bool(row and row[0])


def install_queue(conn: psycopg.Connection[Any], roles: tuple[str, ...]) -> None:
    """Install procrastinate's schema (once) and ``eomatch.jobs``; grant ``roles`` their use.

    Idempotent. procrastinate's schema is applied only when absent; the version installed is
    recorded in ``eomatch.job_queue_meta`` (upgrading procrastinate across a schema change
    means applying its migrations: see docs/jobs.md).
    """
    from procrastinate import __version__ as version
    from procrastinate.schema import SchemaManager

    if not queue_installed(conn):
        # procrastinate's DDL is unqualified: it goes to the first schema of the search path
        (path,) = conn.execute("SHOW search_path").fetchone() or ("public",)
        conn.execute("SET search_path TO public")
        try:
            conn.execute(SchemaManager.get_schema())
        finally:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.SQL(path)))
    conn.execute(JOBS_SQL)
    conn.execute(
        "INSERT INTO eomatch.job_queue_meta (procrastinate_version) VALUES (%s) "
        "ON CONFLICT (singleton) DO NOTHING",
        (version,),
    )
    idents = sql.SQL(", ").join(sql.Identifier(r) for r in roles)
    tables = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename LIKE 'procrastinate%%'"
    ).fetchall()
    for (table,) in tables:
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON public.{} TO {}").format(
                sql.Identifier(table), idents
            )
        )
    conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(idents))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON eomatch.jobs TO {}").format(idents))
    conn.execute(sql.SQL("GRANT SELECT ON eomatch.job_queue_meta TO {}").format(idents))


@dataclass
class JobRecord:
    """One job as clients see it."""

    id: int
    kind: str
    params: dict[str, Any]
    submitter: str | None
    schedule: str | None
    status: str
    attempts: int
    cancel_requested: bool
    scheduled_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    stages: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    origin: str = "local"
    """``local`` (CLI, schedule) or ``http`` (internal API: inputs confined)."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobRecord:
        """From a row of the join (:data:`_SELECT`)."""
        return cls(
            id=row["id"],
            kind=row["kind"],
            params=row["params"],
            submitter=row["submitter"],
            schedule=row["schedule"],
            status=row["status"],
            attempts=row["attempts"],
            cancel_requested=row["abort_requested"],
            scheduled_at=row["scheduled_at"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            stages=list(row["stages"] or []),
            result=row["result"],
            error=row["error"],
            origin=row["origin"],
        )

    @property
    def stage(self) -> str | None:
        """The stage entered last."""
        return str(self.stages[-1]["name"]) if self.stages else None

    def to_json(self) -> dict[str, Any]:
        """The API's and ``--format json``'s shape."""

        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t is not None else None

        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "params": self.params,
            "submitter": self.submitter,
            "schedule": self.schedule,
            "origin": self.origin,
            "attempts": self.attempts,
            "cancel_requested": self.cancel_requested,
            "created": iso(self.created_at),
            "started": iso(self.started_at),
            "finished": iso(self.finished_at),
            "retry_at": iso(self.scheduled_at) if self.status == "queued" else None,
            "stage": self.stage,
            "stages": self.stages,
            "result": self.result,
            "error": self.error,
        }


class JobQueue:
    """Submit, read, cancel and retry jobs (synchronous).

    Without a pool each call opens a short connection (the CLI); with one (the API, the
    worker) it borrows one: a connection costs ~15 ms, a pooled submit half of that.
    """

    def __init__(self, info: ConnectionInfo, pool: ConnectionPool[Any] | None = None) -> None:
        self.info = info
        self.pool = pool

    @classmethod
    def pooled(cls, info: ConnectionInfo, size: int = 4) -> JobQueue:
        """A queue on a pool of up to ``size`` connections, opened lazily (at first use)."""
        from psycopg_pool import ConnectionPool

        pool: ConnectionPool[Any] = ConnectionPool(
            info.conninfo(),
            min_size=1,
            max_size=size,
            open=False,
            kwargs={"options": "-c search_path=pgstac,public"},
            reconnect_timeout=30,
            check=ConnectionPool.check_connection,  # a restarted database: no stale ones
        )
        return cls(info, pool)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection whose rows are dicts; psycopg errors become one-line DatabaseErrors."""
        if self.pool is not None:
            with translated(f"job queue in {self.info.describe()}"):
                if self.pool.closed:
                    self.pool.open(wait=False)
                with self.pool.connection(timeout=30) as pooled:
                    pooled.row_factory = dict_row
                    try:
                        yield pooled
                    finally:
                        pooled.row_factory = tuple_row
            return
        with translated(f"cannot connect to the database {self.info.describe()}"):
            conn = psycopg.connect(self.info.conninfo(), row_factory=dict_row)
        try:
            with translated(f"job queue in {self.info.describe()}"):
                yield conn
        finally:
            conn.close()

    @contextmanager
    def borrow(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection with tuple rows (what :class:`PgstacStore` code expects)."""
        if self.pool is None:
            raise RuntimeError("borrow() needs a pooled queue")
        if self.pool.closed:
            self.pool.open(wait=False)
        with self.pool.connection(timeout=30) as conn:
            yield conn

    # -- submitting ----------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        params: Mapping[str, Any],
        submitter: str | None,
        schedule: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
        origin: str = "local",
    ) -> int:
        """Queue one job (params already validated); its id. One transaction: all or nothing.

        ``origin``: ``local`` or ``http`` (a job from the internal API: the worker confines
        its inputs again before running it)."""
        if origin not in ("local", "http"):
            raise InputError(f"origin must be local or http, not {origin!r:.40}")
        if conn is not None:
            return self._submit(conn, kind, params, submitter, schedule, origin)
        with self.connect() as own, own.transaction():
            return self._submit(own, kind, params, submitter, schedule, origin)

    @staticmethod
    def _submit(
        conn: psycopg.Connection[Any],
        kind: str,
        params: Mapping[str, Any],
        submitter: str | None,
        schedule: str | None,
        origin: str,
    ) -> int:
        row = conn.execute(
            "SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(%s, %s, 0, NULL, NULL, %s, NULL)"
            "::procrastinate_job_to_defer_v1]))[1] AS id",
            (QUEUE, TASK, Jsonb({})),
        ).fetchone()
        assert row is not None
        job_id = int(row["id"] if isinstance(row, Mapping) else row[0])
        conn.execute(
            "INSERT INTO eomatch.jobs (id, kind, params, submitter, schedule, origin) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (job_id, kind, Jsonb(dict(params)), submitter, schedule, origin),
        )
        return job_id

    # -- reading -------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobRecord:
        """One job; :class:`NotFoundError` if there is none with this id."""
        with self.connect() as conn:
            row = conn.execute(_SELECT + " WHERE j.id = %s", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id}")
        return JobRecord.from_row(row)

    def list(
        self,
        status: str | None = None,
        kind: str | None = None,
        submitter: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[JobRecord], int]:
        """Jobs newest first, filtered; and how many match in all."""
        where: list[sql.Composable] = []
        args: list[Any] = []
        if status is not None:
            if status not in _REVERSE_STATUS:
                raise InputError(f"unknown status {status!r:.40}: use {', '.join(STATUSES)}")
            where.append(sql.SQL("p.status::text = ANY(%s)"))
            args.append(_REVERSE_STATUS[status])
        if kind is not None:
            where.append(sql.SQL("j.kind = %s"))
            args.append(kind)
        if submitter is not None:
            where.append(sql.SQL("j.submitter = %s"))
            args.append(submitter)
        cond = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL("")
        with self.connect() as conn:
            rows = conn.execute(
                sql.SQL(_SELECT) + cond + sql.SQL(" ORDER BY j.id DESC LIMIT %s OFFSET %s"),
                [*args, limit, offset],
            ).fetchall()
            total = conn.execute(
                sql.SQL(
                    "SELECT count(*) AS n FROM eomatch.jobs j "
                    "JOIN public.procrastinate_jobs p ON p.id = j.id"
                )
                + cond,
                args,
            ).fetchone()
        return [JobRecord.from_row(r) for r in rows], int(total["n"] if total else 0)

    # -- changing ------------------------------------------------------------------------------

    def cancel(self, job_id: int) -> JobRecord:
        """Cancel a queued job at once; ask a running one to stop (it checks between stages).

        :class:`ConflictError` for a job that already ended.
        """
        with self.connect() as conn:
            row = conn.execute(
                "SELECT procrastinate_cancel_job_v1(%s, true, false) AS id", (job_id,)
            ).fetchone()
            conn.commit()
        if row is None or row["id"] is None:
            job = self.get(job_id)  # NotFoundError if there is none
            raise ConflictError(
                f"job {job_id} is {job.status}: only a queued or running job can be cancelled"
            )
        return self.get(job_id)

    def retry(self, job_id: int) -> JobRecord:
        """Queue a failed job again (same id, its attempts count on); ConflictError otherwise."""
        with self.connect() as conn:
            job = conn.execute(_SELECT + " WHERE j.id = %s FOR UPDATE OF p", (job_id,)).fetchone()
            if job is None:
                raise NotFoundError(f"no job {job_id}")
            if job["status"] != "failed":
                raise ConflictError(
                    f"job {job_id} is {job['status']}: only a failed job can be retried"
                )
            conn.execute(
                "SELECT procrastinate_retry_job_v2(%s, now(), NULL, NULL, NULL)", (job_id,)
            )
            conn.execute(
                "UPDATE eomatch.jobs SET error = NULL, result = NULL, finished_at = NULL "
                "WHERE id = %s",
                (job_id,),
            )
            conn.commit()
        return self.get(job_id)

    # -- the worker's side ---------------------------------------------------------------------

    def started(self, job_id: int, attempt: int) -> None:
        """A worker took the job (attempt ``attempt``): clear a previous attempt's error."""
        with self.connect() as conn:
            conn.execute(
                "UPDATE eomatch.jobs SET started_at = coalesce(started_at, now()), error = NULL, "
                "stages = stages || jsonb_build_array(jsonb_build_object("
                "'name', 'start', 'at', now(), 'attempt', %s::int)) WHERE id = %s",
                (attempt, job_id),
            )
            conn.commit()

    def stage(self, job_id: int, name: str) -> None:
        """Record that the job entered stage ``name`` now."""
        with self.connect() as conn:
            conn.execute(
                "UPDATE eomatch.jobs SET stages = stages || jsonb_build_array("
                "jsonb_build_object('name', %s::text, 'at', now())) WHERE id = %s",
                (name, job_id),
            )
            conn.commit()

    def finish(
        self,
        job_id: int,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> None:
        """Store the result or the error of an attempt (the status is procrastinate's)."""
        with self.connect() as conn:
            conn.execute(
                "UPDATE eomatch.jobs SET result = %s, error = %s, finished_at = now() "
                "WHERE id = %s",
                (
                    Jsonb(dict(result)) if result is not None else None,
                    Jsonb(dict(error)) if error is not None else None,
                    job_id,
                ),
            )
            conn.commit()

    def cancel_requested(self, job_id: int) -> bool:
        """Whether someone asked this job to stop."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT abort_requested FROM public.procrastinate_jobs WHERE id = %s", (job_id,)
            ).fetchone()
        return bool(row and row["abort_requested"])
