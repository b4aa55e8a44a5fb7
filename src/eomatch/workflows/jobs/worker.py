"""The worker: procrastinate runs ``eomatch.job`` tasks, each one an eomatch job of any kind.

One procrastinate task (:data:`~eomatch.io.job_queue.TASK`) takes a job id, reads the kind
and params from ``eomatch.jobs`` and runs the kind in a thread (kinds are synchronous), with
a :class:`JobContext` whose store writes as ``job:<id> (<submitter>)``.

Robustness, all procrastinate's mechanisms:

* transient failures (:class:`NetworkError`, :class:`DatabaseError`, a lost connection) are
  retried with exponential backoff (``2, 4, 8, 16 s`` by default) up to ``max_attempts``;
  anything else fails the job at once. Each failure is stored with the stage and reason.
* a worker killed with ``-9`` stops sending heartbeats; every worker looks for jobs whose
  worker has been silent for ``stalled_after`` seconds and puts them back in the queue (the
  job runs again: kinds are idempotent).
* the connection pool reconnects when the database comes back.
* ``schedules:`` become procrastinate periodic tasks; each firing submits an ordinary job
  (submitter ``schedule:<name>``), deduplicated across workers by procrastinate.

A job submitted over HTTP (origin ``http``) has its inputs confined again when it starts
(stage ``inputs``, :mod:`.inputs`): a symlink swapped since it was queued, or a setting
changed, fails it with the reason before it reads or stores anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eomatch.extras import require_extra

require_extra("jobs", "the job worker", ("procrastinate", "psycopg"))

import procrastinate
import psycopg
from procrastinate import JobContext as TaskContext
from procrastinate import RetryStrategy
from procrastinate.exceptions import ConnectorException, JobAborted
from pydantic import ValidationError

from eomatch.config.schedules import ScheduleConfig
from eomatch.errors import ConfigError, DatabaseError, EomatchError, InputError, NetworkError
from eomatch.io.history_schema import WriteNote
from eomatch.io.job_queue import QUEUE, TASK, JobQueue
from eomatch.io.object_store import ObjectStore
from eomatch.io.pg_conn import ConnectionInfo
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.jobs.inputs import InputPolicy, Origin, is_untrusted
from eomatch.workflows.jobs.registry import JobCancelled, JobContext, JobKind, get_kind

__all__ = [
    "TRANSIENT",
    "WorkerOptions",
    "build_app",
    "check_params",
    "check_queue",
    "run_worker",
    "submit_job",
]

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[Exception], ...] = (
    NetworkError,
    DatabaseError,
    psycopg.OperationalError,
    ConnectionError,
    TimeoutError,
)
"""Failures worth another attempt: the network or the database may be back soon."""
SCHEDULE_TASK = "eomatch.schedule"


@dataclass(frozen=True)
class WorkerOptions:
    """How the worker runs (defaults suit production; the tests shorten the timings)."""

    concurrency: int = 1
    max_attempts: int = 5
    backoff: float = 2.0
    """Base of the exponential backoff: retry n waits ``backoff ** n`` seconds."""
    heartbeat: float = 5.0
    stalled_after: float = 30.0
    """A worker silent this long is dead: its running jobs are queued again."""
    poll: float = 5.0

    @classmethod
    def from_env(cls, concurrency: int = 1) -> WorkerOptions:
        """Defaults, overridden by ``EOMATCH_JOBS_<FIELD>`` (``MAX_ATTEMPTS``, ``BACKOFF``...)."""

        def num(name: str, default: float) -> float:
            text = os.environ.get(f"EOMATCH_JOBS_{name}")
            if text is None:
                return default
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(
                    f"EOMATCH_JOBS_{name} must be a number, not {text!r:.40}"
                ) from None
            if value <= 0:
                raise ConfigError(f"EOMATCH_JOBS_{name} must be positive")
            return value

        return cls(
            concurrency=concurrency,
            max_attempts=int(num("MAX_ATTEMPTS", cls.max_attempts)),
            backoff=num("BACKOFF", cls.backoff),
            heartbeat=num("HEARTBEAT", cls.heartbeat),
            stalled_after=num("STALLED_AFTER", cls.stalled_after),
            poll=num("POLL", cls.poll),
        )


def check_params(kind_name: str, params: Any) -> tuple[JobKind, dict[str, Any]]:
    """The kind and its validated params (JSON form); :class:`InputError` in one line."""
    kind = get_kind(kind_name)
    if not isinstance(params, dict):
        raise InputError("params must be a JSON object")
    try:
        model = kind.params_model.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        raise InputError(
            f"bad params for {kind_name}: {where}: {first['msg']}"
            + (f" ({exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
        ) from None
    clean = model.model_dump(mode="json")
    _refuse_nul(clean, "params")
    return kind, clean


def _refuse_nul(value: Any, where: str) -> None:
    """A NUL anywhere in the params (a key or a string) is an InputError: PostgreSQL's jsonb
    cannot hold U+0000, and the insert would fail as a database error (a 503)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InputError(f"{where}: a NUL character is not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, where)
            _refuse_nul(item, f"{where}.{str(key).replace(chr(0), '')[:40]}")
    elif isinstance(value, list):
        for item in value:
            _refuse_nul(item, where)


def submit_job(
    queue: JobQueue,
    store: PgstacStore,
    kind_name: str,
    params: Any,
    submitter: str | None,
    schedule: str | None = None,
    *,
    origin: Origin = Origin.LOCAL,
    policy: InputPolicy | None = None,
) -> int:
    """Validate, confine (``origin`` http), precheck against the database, then queue; the
    new job's id.

    Everything that can refuse the job runs before the queue is touched: nothing is queued
    for an unknown kind, bad params, (over HTTP) an input outside the allowed folder or
    hosts, or (the kind's precheck) an unknown collection. ``policy``: default the
    environment's (``EOMATCH_JOBS_*``), read only for an HTTP job.
    """
    kind, clean = check_params(kind_name, params)
    model = kind.params_model.model_validate(clean)
    if origin == Origin.HTTP:
        model = kind.confined(model, policy or InputPolicy.from_settings())
        clean = model.model_dump(mode="json")
    if kind.precheck is not None:
        kind.precheck(model, store)
    return queue.submit(kind.name, clean, submitter, schedule, origin=origin.value)


def _actor(job_id: int, submitter: str | None) -> str:
    return f"job:{job_id} ({submitter})" if submitter else f"job:{job_id}"


def build_app(
    info: ConnectionInfo,
    options: WorkerOptions | None = None,
    schedules: Sequence[ScheduleConfig] = (),
    objects: Callable[[], ObjectStore] | None = None,
) -> procrastinate.App:
    """The procrastinate app: the job task, the schedule task and its periodic entries.

    ``objects`` is a zero-argument callable opening the object store (None: jobs get none).
    """
    opts = options or WorkerOptions()
    queue = JobQueue.pooled(info, size=opts.concurrency + 2)
    store = PgstacStore(info)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=info.conninfo(),
            kwargs={"options": "-c search_path=pgstac,public"},
        ),
    )

    @app.task(  # type: ignore[call-overload, untyped-decorator]
        name=TASK,
        queue=QUEUE,
        pass_context=True,
        retry=RetryStrategy(
            max_attempts=max(opts.max_attempts - 1, 0),
            exponential_wait=opts.backoff,  # type: ignore[arg-type]  # a float works
            retry_exceptions=set(TRANSIENT),
        ),
    )
    def run_job(context: TaskContext) -> None:
        assert context.job is not None
        assert context.job.id is not None
        job_id = context.job.id
        attempt = (context.job.attempts or 0) + 1
        record = queue.get(job_id)
        kind = get_kind(record.kind)
        queue.started(job_id, attempt)
        ctx = JobContext(
            job_id=job_id,
            store=store.noted(
                WriteNote(
                    _actor(job_id, record.submitter),
                    "job",
                    f"{record.kind} job",
                    f"job-{job_id}-{attempt}",
                )
            ),
            submitter=record.submitter,
            attempt=attempt,
            _stage=lambda name: queue.stage(job_id, name),
            _cancelled=context.should_abort,
            _objects=objects,
        )
        try:
            params = kind.params_model.model_validate(record.params)
            if is_untrusted(record.origin, record.submitter):
                ctx.stage("inputs")
                ctx.policy = InputPolicy.from_settings()
                params = kind.confined(params, ctx.policy)
            result = kind.run(params, ctx)
        except JobCancelled:
            _record_failure(queue, job_id, ctx.current_stage, "cancelled", final=True)
            raise JobAborted() from None
        except TRANSIENT as exc:
            final = attempt >= opts.max_attempts
            _record_failure(queue, job_id, ctx.current_stage, _reason(exc), final=final)
            raise
        except Exception as exc:
            _record_failure(queue, job_id, ctx.current_stage, _reason(exc), final=True)
            if isinstance(exc, EomatchError):  # expected: one line in the log is enough
                raise EomatchError(_reason(exc)) from None
            raise
        queue.finish(job_id, result=result.to_json())

    @app.task(name=SCHEDULE_TASK, queue=QUEUE)
    def run_schedule(timestamp: int, schedule: str) -> int:
        """Submit the job of schedule ``schedule`` (the worker's configuration)."""
        entry = next((s for s in schedules if s.name == schedule), None)
        if entry is None:
            raise ConfigError(f"schedule {schedule!r} is not configured in this worker")
        return submit_job(
            queue, store, entry.kind, entry.params, f"schedule:{entry.name}", entry.name
        )

    for entry in schedules:
        if entry.enabled:
            app.periodic(
                cron=entry.cron,
                periodic_id=entry.name,
                task_kwargs={"schedule": entry.name},
            )(run_schedule)
    return app


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0][:500]
    return line if isinstance(exc, EomatchError) else f"{type(exc).__name__}: {line}"


def _record_failure(
    queue: JobQueue, job_id: int, stage: str | None, reason: str, final: bool
) -> None:
    """Store the error; if the database is what failed, the log has it (procrastinate too)."""
    try:
        queue.finish(job_id, error={"stage": stage, "reason": reason, "final": final})
    except EomatchError as exc:
        log.warning("job %s: cannot record its failure (%s): %s", job_id, exc, reason)


def validate_schedules(schedules: Sequence[ScheduleConfig]) -> None:
    """Each schedule names a known kind with valid params (ConfigError naming it otherwise)."""
    for entry in schedules:
        try:
            check_params(entry.kind, entry.params)
        except InputError as exc:
            raise ConfigError(f"schedules: {entry.name}: {exc}") from None


async def _reap_stalled(app: procrastinate.App, opts: WorkerOptions) -> None:
    """Queue again the jobs of workers that stopped sending heartbeats (killed, frozen)."""
    while True:
        await asyncio.sleep(max(opts.heartbeat, 1.0))
        try:
            stalled = await app.job_manager.get_stalled_jobs(
                queue=QUEUE, seconds_since_heartbeat=opts.stalled_after
            )
            for job in stalled:
                with contextlib.suppress(Exception):  # another worker took it first
                    await app.job_manager.retry_job(job)
                    log.warning("job %s: its worker stopped; queued again", job.id)
        except Exception as exc:  # the database is down: try again next round
            log.debug("stalled-job check failed: %s", exc)


def check_queue(info: ConnectionInfo) -> None:
    """Fail at once, in one line, if the database is unreachable or has no queue yet."""
    from eomatch.io.job_queue import queue_installed
    from eomatch.io.pg_errors import translated

    with (
        translated(f"cannot connect to the database {info.describe()}"),
        psycopg.connect(info.conninfo(), connect_timeout=15) as conn,
    ):
        if not queue_installed(conn):
            raise DatabaseError(
                f"no job queue in {info.describe()}: run `eomatch db migrate` (with the jobs extra)"
            )


async def run_worker(
    info: ConnectionInfo,
    options: WorkerOptions,
    schedules: Sequence[ScheduleConfig] = (),
    objects: Callable[[], ObjectStore] | None = None,
    name: str | None = None,
) -> None:
    """Run jobs until cancelled (SIGINT/SIGTERM stop it after the running jobs)."""
    from eomatch.workflows.jobs import load_kinds

    load_kinds()  # import every kind now (rasterio...), not during the first job
    validate_schedules(schedules)
    check_queue(info)
    app = build_app(info, options, schedules, objects)
    try:
        await app.open_async()
    except (ConnectorException, psycopg.Error, OSError) as exc:
        raise DatabaseError(
            f"cannot reach the job queue in {info.describe()}: {_reason(exc)}"
        ) from None
    reaper = asyncio.create_task(_reap_stalled(app, options))
    try:
        await app.run_worker_async(
            queues=[QUEUE],
            name=name or f"{socket.gethostname()}:{os.getpid()}",
            concurrency=options.concurrency,
            update_heartbeat_interval=options.heartbeat,
            stalled_worker_timeout=options.stalled_after,
            fetch_job_polling_interval=options.poll,
            abort_job_polling_interval=min(options.poll, 1.0),
            delete_jobs="never",
            install_signal_handlers=True,
        )
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper
        await app.close_async()
