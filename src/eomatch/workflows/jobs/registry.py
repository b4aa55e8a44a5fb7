"""The job kinds the queue can run: a name, a pydantic model for the params, and a ``run``.

This module is the contract between the queue (:mod:`eomatch.io.job_queue`, the worker, the
``/jobs`` routes) and the kinds (``ingest`` here, ``raster``/``catalogue``/``process`` in
their own modules). A kind registers itself with :func:`register`; the API and the CLI look it
up in :data:`KINDS`, validate the params with ``params_model`` and run ``precheck`` *before*
anything is queued, so unknown kinds, bad params and unknown collections are 4xx answers.
A job submitted over HTTP also goes through the kind's ``confine`` (its inputs inside the
allowed folder and hosts, :mod:`.inputs`), before queuing and again when it starts.

A job may run more than once (a worker killed with ``-9`` mid-job, a transient failure
retried), so every kind's effect must be idempotent: upserts keyed by item id, objects
written under deterministic keys, nothing appended blindly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from eomatch.errors import InputError
from eomatch.errors import JobCancelled as JobCancelled

if TYPE_CHECKING:
    from eomatch.io.object_store import ObjectStore
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.jobs.inputs import InputPolicy

__all__ = [
    "KINDS",
    "JobCancelled",
    "JobContext",
    "JobKind",
    "JobParams",
    "JobResult",
    "get_kind",
    "register",
]


class JobParams(BaseModel):
    """Base of every kind's params: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class JobResult:
    """What a job did: items it created or updated, as (collection, item id), plus free info.

    ``info`` must be JSON-serialisable (it is stored with the job and shown by the API).
    """

    created: list[tuple[str, str]] = field(default_factory=list)
    updated: list[tuple[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored form (item ids as ``{"collection": …, "id": …}``)."""
        return {
            "created": [{"collection": c, "id": i} for c, i in self.created],
            "updated": [{"collection": c, "id": i} for c, i in self.updated],
            "info": self.info,
        }


@dataclass
class JobContext:
    """What a running job gets from the worker.

    ``store`` is already noted for this job (history kind ``job``, actor ``job:<id>`` plus the
    submitter), so every write it makes is attributed to the job. ``stage`` records progress
    (shown by ``GET /jobs/{id}`` and ``eomatch jobs wait``); the last stage entered is the one
    a failure is reported against. ``objects`` opens the configured object store lazily.
    ``policy`` is set for a job submitted over HTTP: what the kind reads while it runs (a
    catalogue's links) must pass it too.
    """

    job_id: int
    store: PgstacStore
    submitter: str | None = None
    attempt: int = 1
    _stage: Callable[[str], None] = field(default=lambda name: None, repr=False)
    _cancelled: Callable[[], bool] = field(default=lambda: False, repr=False)
    _objects: Callable[[], ObjectStore] | None = field(default=None, repr=False)
    current_stage: str | None = None
    policy: InputPolicy | None = None

    def stage(self, name: str) -> None:
        """Enter stage ``name`` (recorded with a timestamp); checks for cancellation first."""
        self.check_cancelled()
        self.current_stage = name
        self._stage(name)

    def cancelled(self) -> bool:
        """Whether someone cancelled this job while it runs (long kinds should poll this)."""
        return self._cancelled()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled (call between stages)."""
        if self._cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def objects(self) -> ObjectStore:
        """The object store of the settings (local folder or S3 bucket)."""
        if self._objects is None:
            raise InputError("no object store is configured for jobs")
        return self._objects()


@dataclass(frozen=True)
class JobKind:
    """One kind of job.

    Attributes:
        name: what clients submit (``{"kind": name, "params": {...}}``).
        params_model: validates the params (subclass :class:`JobParams`).
        run: does the work; raise :class:`~eomatch.errors.NetworkError` or
            :class:`~eomatch.errors.DatabaseError` for transient failures (retried with
            backoff), anything else fails the job at once with its message.
        description: one line for ``eomatch jobs kinds`` and the docs.
        precheck: optional check against the database before queuing (an unknown collection
            raises :class:`~eomatch.errors.NotFoundError` → 404, nothing queued).
        hidden: not offered by the API (test kinds); the CLI and schedules may still use it.
        confine: for a job submitted over HTTP, the params with every input checked against
            the :class:`~eomatch.workflows.jobs.inputs.InputPolicy` (local paths resolved
            inside its folder); raises what refuses the job. A kind without one is not
            offered over HTTP.
    """

    name: str
    params_model: type[JobParams]
    run: Callable[[Any, JobContext], JobResult]
    description: str = ""
    precheck: Callable[[Any, PgstacStore], None] | None = None
    hidden: bool = False
    confine: Callable[[Any, InputPolicy], Any] | None = None

    def confined(self, params: JobParams, policy: InputPolicy) -> JobParams:
        """``params`` of a job submitted over HTTP, through :attr:`confine` (InputError if
        this kind takes no jobs over HTTP)."""
        if self.confine is None:
            raise InputError(f"job kind {self.name!r} is not offered over HTTP")
        confined: JobParams = self.confine(params, policy)
        return confined


KINDS: dict[str, JobKind] = {}
"""Registered kinds by name."""


def register(kind: JobKind) -> JobKind:
    """Add ``kind`` to :data:`KINDS` (re-registering the same name replaces it)."""
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    """The kind called ``name``; :class:`InputError` listing the known ones otherwise."""
    from eomatch.workflows.jobs import load_kinds

    load_kinds()
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(k for k, v in KINDS.items() if not v.hidden)) or "none"
        raise InputError(f"unknown job kind {name!r:.100} (known: {known})") from None
