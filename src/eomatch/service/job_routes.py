"""``/jobs`` (and bq-stac's ``/newitem``, ``/status``): the job queue over HTTP, internal API only.

* ``POST /jobs`` ``{kind, params}`` → 202 ``{id, status}``; ``GET /jobs/{id}``; ``GET /jobs``
  (newest first; ``status``, ``kind``, ``submitter``, ``limit``, ``offset``);
  ``POST /jobs/{id}/cancel`` and ``/retry``; ``GET /jobs/kinds`` (what may be submitted).
* bq-stac's pipeline API: ``POST /newitem`` (its body) queues a ``raster`` job and answers
  ``{"id", "msg": "received"}``; ``GET /status?id=`` and ``GET /status/all`` answer in its
  ``_id/_status/_operation/_description/_param`` shape.

Posting needs an API key (the internal API's key middleware); the submitter is recorded as
``key:<name>`` and the origin as ``http``: every input the params name must come from
``EOMATCH_JOBS_INPUT_DIR`` (local paths) or, when set, ``EOMATCH_JOBS_SOURCE_HOSTS``
(:mod:`eomatch.workflows.jobs.inputs`). Everything that can refuse a job (unknown kind, bad
params, an input outside those, a missing collection) runs before anything is queued and is
a 4xx with a one-line JSON reason. The
queue is reached through :class:`~eomatch.io.job_queue.JobQueue` (psycopg, in a thread) as
the internal API's role. The external API does not mount these routes (404 there).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from typing import Any

import orjson
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from eomatch.errors import InputError, NotFoundError
from eomatch.io.job_queue import STATUSES, JobQueue, JobRecord
from eomatch.io.pg_conn import ConnectionInfo
from eomatch.io.pg_errors import translated
from eomatch.io.pgstac_store import PgstacStore
from eomatch.service.history_routes import _int, _single, _text
from eomatch.workflows.jobs.inputs import Origin
from eomatch.workflows.jobs.worker import submit_job

__all__ = ["register"]

MAX_BODY = 1_000_000
"""Largest job request body (params are small; files go by path or URL)."""
_LIST = frozenset({"status", "kind", "submitter", "limit", "offset"})
_NEWITEM_FIELDS = frozenset(
    {"collection_id", "date", "name", "filename", "stac_api_server", "file_source_host",
     "properties"}
)  # fmt: skip


def register(app: FastAPI, info: ConnectionInfo) -> None:
    """Mount the job routes (internal API only), reaching the queue as ``info``."""
    queue = JobQueue.pooled(info, size=8)
    app.state.job_queue = queue
    app.state.job_store = _PooledStore(info, queue)
    tags: list[str | Enum] = ["Jobs"]
    app.add_api_route("/jobs", submit, methods=["POST"], status_code=202, tags=tags,
                      summary="Queue a job {kind, params}")  # fmt: skip
    app.add_api_route("/jobs", list_jobs, methods=["GET"], tags=tags, summary="Jobs, newest first")
    app.add_api_route("/jobs/kinds", list_kinds, methods=["GET"], tags=tags,
                      summary="The job kinds and their params (JSON schema)")  # fmt: skip
    app.add_api_route("/jobs/{job_id}", get_job, methods=["GET"], tags=tags, summary="One job")
    app.add_api_route("/jobs/{job_id}/cancel", cancel, methods=["POST"], tags=tags,
                      summary="Cancel a queued job or stop a running one")  # fmt: skip
    app.add_api_route("/jobs/{job_id}/retry", retry, methods=["POST"], tags=tags,
                      summary="Queue a failed job again")  # fmt: skip
    bq: list[str | Enum] = ["Jobs (bq-stac compatible)"]
    app.add_api_route("/newitem", newitem, methods=["POST"], tags=bq,
                      summary="bq-stac: queue a raster -> COG -> item job")  # fmt: skip
    app.add_api_route("/status/all", status_all, methods=["GET"], tags=bq,
                      summary="bq-stac: every job in its status shape")  # fmt: skip
    app.add_api_route("/status", status_one, methods=["GET"], tags=bq,
                      summary="bq-stac: one job in its status shape")  # fmt: skip


# --- helpers ------------------------------------------------------------------------------------


class _PooledStore(PgstacStore):
    """The store for prechecks (does the collection exist?) on the queue's pooled connections:
    a new connection per request would cost more than the whole submit."""

    def __init__(self, info: ConnectionInfo, queue: JobQueue) -> None:
        super().__init__(info)
        self._queue = queue

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (reads only: prechecks never write)."""
        del autocommit
        with translated(f"database {self.info.describe()}"), self._queue.borrow() as conn:
            yield conn


def _queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.job_queue
    return queue


def _submitter(request: Request) -> str | None:
    name = request.scope.get("state", {}).get("api_key")
    return f"key:{name}" if name else None


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InputError(f"request body over {MAX_BODY} bytes")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InputError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise InputError("the body must be a JSON object")
    return data


def _job_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise NotFoundError(f"no job {text[:40]!r}")
    return int(text)


def _links(request: Request, job: JobRecord) -> dict[str, Any]:
    out = job.to_json()
    base = str(request.base_url).rstrip("/")
    out["links"] = [{"rel": "self", "href": f"{base}/jobs/{job.id}", "type": "application/json"}]
    if job.result:
        for entry in [*job.result.get("created", []), *job.result.get("updated", [])]:
            if isinstance(entry, Mapping) and "collection" in entry and "id" in entry:
                out["links"].append(
                    {
                        "rel": "item",
                        "href": f"{base}/collections/{entry['collection']}/items/{entry['id']}",
                        "type": "application/geo+json",
                    }
                )
    return out


def _hidden(kind: str) -> bool:
    """Diagnostic kinds are for the CLI and tests, never offered over HTTP."""
    from eomatch.workflows.jobs import load_kinds

    found = load_kinds().get(kind)
    return found is not None and found.hidden


def _respond(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


# --- /jobs --------------------------------------------------------------------------------------


async def submit(request: Request) -> Response:
    """``POST /jobs``: validate, precheck, queue; 202 ``{id, status}``."""
    body = await _json_body(request)
    unknown = set(body) - {"kind", "params"}
    if unknown:
        raise InputError(f"unknown field {sorted(unknown)[0][:40]!r}: give kind and params")
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InputError("kind must be a job kind name (see GET /jobs/kinds)")
    params = body.get("params", {})
    if _hidden(kind):
        raise InputError(f"unknown job kind {kind!r:.100}")
    job_id = await run_in_threadpool(
        submit_job,
        _queue(request),
        request.app.state.job_store,
        kind,
        params,
        _submitter(request),
        origin=Origin.HTTP,
    )
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {"id": job_id, "status": "queued"},
        status_code=202,
        headers={"Location": f"{base}/jobs/{job_id}"},
    )


async def list_jobs(request: Request) -> Response:
    """``GET /jobs``: newest first, filtered, paged."""
    params = _single(request.query_params, _LIST)
    status = params.get("status")
    if status is not None and status not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}")
    kind, submitter = _text(params, "kind"), _text(params, "submitter")
    limit = _int(params, "limit", 50, 1, 1000)
    offset = _int(params, "offset", 0, 0, 10_000_000)
    jobs, total = await run_in_threadpool(
        _queue(request).list, status, kind, submitter, limit, offset
    )
    out: dict[str, Any] = {
        "jobs": [_links(request, j) for j in jobs],
        "total": total,
        "limit": limit,
        "offset": offset,
    }
    if offset + len(jobs) < total:
        query = dict(params, offset=str(offset + limit), limit=str(limit))
        from urllib.parse import urlencode

        out["links"] = [{"rel": "next", "href": f"{request.url.path}?{urlencode(query)}"}]
    return _respond(out)


async def list_kinds(request: Request) -> Response:
    """``GET /jobs/kinds``: what ``POST /jobs`` accepts."""
    from eomatch.workflows.jobs import load_kinds

    _single(request.query_params, frozenset())
    kinds = sorted((k for k in load_kinds().values() if not k.hidden), key=lambda k: k.name)
    return _respond(
        [
            {
                "name": k.name,
                "description": k.description,
                "params": k.params_model.model_json_schema(),
            }
            for k in kinds
        ]
    )


async def get_job(request: Request, job_id: str) -> Response:
    """``GET /jobs/{id}``."""
    job = await run_in_threadpool(_queue(request).get, _job_id(job_id))
    return _respond(_links(request, job))


async def cancel(request: Request, job_id: str) -> Response:
    """``POST /jobs/{id}/cancel``: 409 if the job already ended."""
    job = await run_in_threadpool(_queue(request).cancel, _job_id(job_id))
    return _respond(_links(request, job))


async def retry(request: Request, job_id: str) -> Response:
    """``POST /jobs/{id}/retry``: 409 unless the job failed."""
    job = await run_in_threadpool(_queue(request).retry, _job_id(job_id))
    return _respond(_links(request, job), 202)


# --- bq-stac ------------------------------------------------------------------------------------


def _raster_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """bq-stac's ``/newitem`` body as ``raster`` params (InputError for a bad body)."""
    unknown = set(body) - _NEWITEM_FIELDS
    if unknown:
        raise InputError(f"unknown field {sorted(unknown)[0][:40]!r} in a newitem body")
    for name in ("collection_id", "file_source_host"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise InputError(f"{name} is required (a string)")
    source: str = body["file_source_host"]
    filename = body.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise InputError("filename must be a string")
    if filename and not source.rstrip("/").endswith(filename):
        source = source.rstrip("/") + "/" + filename.lstrip("/")
    params: dict[str, Any] = {"collection": body["collection_id"], "source": source}
    if body.get("name") is not None:
        params["item_id"] = body["name"]
    date = body.get("date")
    if date is not None:
        if not isinstance(date, str):
            raise InputError("date must be a string (2018-01-01)")
        params["datetime"] = date + "T00:00:00Z" if len(date) == 10 else date
    props = body.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise InputError("properties must be a JSON object")
        params["properties"] = props
    return params


async def newitem(request: Request) -> Response:
    """``POST /newitem`` (bq-stac): a ``raster`` job; ``{"id", "msg": "received"}``."""
    body = await _json_body(request)
    params = _raster_params(body)
    job_id = await run_in_threadpool(
        submit_job,
        _queue(request),
        request.app.state.job_store,
        "raster",
        params,
        _submitter(request),
        origin=Origin.HTTP,
    )
    return _respond({"id": str(job_id), "msg": "received"})


def _bq_status(job: JobRecord) -> dict[str, Any]:
    """A job in bq-stac's status shape."""
    status = {"succeeded": "ok", "failed": "error", "cancelled": "error"}.get(
        job.status, "pending" if job.status == "queued" else "running"
    )
    if job.status == "succeeded":
        operation = "PROCESS FINISHED"
    elif job.error is not None and job.status in ("failed", "cancelled"):
        operation = str(job.error.get("stage") or job.status).upper()
    else:
        operation = (job.stage or job.status).upper()
    steps = "; ".join(f"{s.get('at', '')}: {s.get('name')}" for s in job.stages)
    description = (
        str(job.error.get("reason")) if job.error is not None and status == "error" else steps
    )
    p = job.params
    param: dict[str, Any] = dict(p)
    if job.kind == "raster":
        source = str(p.get("source", ""))
        param = {
            "collection_id": p.get("collection"),
            "date": str(p.get("datetime") or "")[:10] or None,
            "name": p.get("item_id"),
            "filename": source.rsplit("/", 1)[-1],
            "file_source_host": source,
            "properties": p.get("properties", {}),
        }
    return {
        "_id": str(job.id),
        "_status": status,
        "_operation": operation,
        "_description": description,
        "_param": param,
    }


async def status_one(request: Request) -> Response:
    """``GET /status?id=`` (bq-stac)."""
    params = _single(request.query_params, frozenset({"id"}))
    if "id" not in params:
        raise InputError("give ?id=<job id>")
    job = await run_in_threadpool(_queue(request).get, _job_id(params["id"]))
    return _respond(_bq_status(job))


async def status_all(request: Request) -> Response:
    """``GET /status/all`` (bq-stac): the newest 1000 jobs."""
    _single(request.query_params, frozenset())
    jobs, _ = await run_in_threadpool(_queue(request).list, None, None, None, 1000, 0)
    return _respond([_bq_status(j) for j in jobs])
