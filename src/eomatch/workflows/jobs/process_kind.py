"""The ``process`` job kind: a non-STAC file through a processor plug-in
(:mod:`eomatch.io.processors`) into STAC items in the central database.

Stages: ``fetch`` (path, http(s) or s3 source), ``describe`` (the processor's ``items``; what
it raises fails the job with its message), ``store`` (the file into the object store, key
``<collection>/<first item id>/<file name>``, and asset hrefs pointing at it rewritten to the
store's URLs), ``insert`` (one upsert, noted for the job). As for rasters, a failure after the
file was stored removes it again; re-running upserts the same items under the same key.

``eomatch process`` runs the same function directly (history kind ``process``, actor
``user:<name>``), or with ``--dry-run`` only the first two stages.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field

from eomatch.errors import InputError
from eomatch.io.object_store import ObjectStore
from eomatch.io.pgstac_store import PgstacStore
from eomatch.io.processors import Processor
from eomatch.workflows.jobs.inputs import InputPolicy, fetch_session
from eomatch.workflows.jobs.registry import JobContext, JobKind, JobParams, JobResult, register
from eomatch.workflows.jobs.storing import (
    check_id,
    job_objects,
    require_collection,
    stored_objects,
    upsert_reporting,
)

__all__ = ["PROCESS", "ProcessParams", "describe_file", "process_file"]


class ProcessParams(JobParams):
    """What a ``process`` job is given."""

    processor: str = Field(min_length=1, max_length=300)
    """An installed processor's name (``eomatch processors list``) or ``module:Class``."""
    source: str = Field(min_length=1, max_length=4096)
    """A local path, an ``http(s)://`` URL or an ``s3://bucket/key`` URL."""
    collection: str | None = Field(default=None, min_length=1, max_length=200)
    """The target collection (default: the processor's own; must exist)."""
    store_file: bool = True
    """Copy the file into the object store and point the items' assets there (False: the
    items keep the hrefs the processor gave)."""


def _target(params: ProcessParams, default: str | None) -> str:
    target = params.collection or default
    if not target:
        raise InputError(
            f"processor {params.processor} names no collection: give --collection "
            "(params.collection)"
        )
    return target


def describe_file(
    params: ProcessParams,
    path: Path,
    *,
    need_target: bool = True,
    proc: Processor | None = None,
) -> list[dict[str, Any]]:
    """The items the processor makes of the local file ``path``, their collection set (left
    out when there is none and ``need_target`` is False: a dry run)."""
    from eomatch.io.processors import check_items, load_processor

    proc = proc or load_processor(params.processor)
    if not proc.matches(path):
        raise InputError(f"processor {proc.name} does not handle {path.name}")
    target = _target(params, proc.collection) if need_target else None
    target = target or params.collection or proc.collection
    items = check_items(proc, path)
    if not items:
        raise InputError(f"processor {proc.name} made no item of {path.name}")
    for item in items:
        check_id(str(item.get("id", "")), "item id")
        if target is not None:
            item["collection"] = target
    return items


def _rewrite(items: list[dict[str, Any]], path: Path, storage: str, public: str | None) -> None:
    """Asset hrefs naming ``path`` → the stored object's URL (public first, storage as the
    alternate)."""
    mine = {str(path), str(path.resolve()), path.resolve().as_uri()}
    for item in items:
        for asset in (item.get("assets") or {}).values():
            if isinstance(asset, dict) and asset.get("href") in mine:
                asset["href"] = public or storage
                if public:
                    asset["alternate"] = {storage.split(":", 1)[0]: {"href": storage}}
                    ext = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
                    exts = item.setdefault("stac_extensions", [])
                    if ext not in exts:
                        exts.append(ext)


def process_file(
    params: ProcessParams,
    store: PgstacStore | None,
    objects: ObjectStore | None,
    ctx: JobContext | None = None,
    *,
    dry_run: bool = False,
) -> tuple[JobResult, list[dict[str, Any]]]:
    """Run a process job; with ``dry_run`` nothing is stored or written (``store`` and
    ``objects`` may be None). Returns the result and the items (as written, or as they
    would be)."""
    from eomatch.config.settings import StorageSettings, read_settings
    from eomatch.io.cog import FETCH_LIMITS, check_self_contained, fetch_source
    from eomatch.io.object_store import S3Config
    from eomatch.io.processors import load_processor

    proc = load_processor(params.processor)  # an unknown one fails before any download

    def stage(name: str) -> None:
        if ctx is not None:
            ctx.stage(name)

    if not dry_run and params.collection is not None and store is not None:
        require_collection(store, params.collection)
    settings = read_settings(StorageSettings)
    s3 = S3Config(
        bucket="-",
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        allow_http=settings.s3_allow_http,
    )
    policy = ctx.policy if ctx is not None else None
    bounds = policy.fetch_bounds if policy is not None else None  # an API job's download
    with (
        tempfile.TemporaryDirectory(prefix="eomatch-process-") as tmp,
        fetch_session(policy, FETCH_LIMITS) as session,
    ):
        stage("fetch")
        path = fetch_source(params.source, Path(tmp), s3=s3, session=session, bounds=bounds)
        if policy is not None:  # an API job: no file naming others
            check_self_contained(path)
        stage("describe")
        items = describe_file(params, path, need_target=not dry_run, proc=proc)
        if dry_run:
            return JobResult(info={"dry_run": True, "items": len(items)}), items
        if store is None or (objects is None and params.store_file):
            raise InputError("processing without --dry-run needs the database and a store")
        require_collection(store, str(items[0]["collection"]))
        info: dict[str, Any] = {"items": len(items)}
        if objects is None or not params.store_file:
            stage("insert")
            created, updated = upsert_reporting(store, items)
            return JobResult(created=created, updated=updated, info=info), items
        with stored_objects(objects) as stored:
            stage("store")
            key = f"{items[0]['collection']}/{items[0]['id']}/{check_id(path.name, 'file')}"
            storage, public = stored.put(key, path)
            _rewrite(items, path, storage, public)
            info["key"] = key
            stage("insert")
            created, updated = upsert_reporting(store, items)
    return JobResult(created=created, updated=updated, info=info), items


def _run(params: ProcessParams, ctx: JobContext) -> JobResult:
    objects = job_objects(ctx) if params.store_file else None
    result, _items = process_file(params, ctx.store, objects, ctx)
    return result


def _confine(params: ProcessParams, policy: InputPolicy) -> ProcessParams:
    """Over HTTP: an installed processor only (``module:Class`` would import any module the
    worker can), the source inside the input folder or from an allowed host."""
    if ":" in params.processor:
        raise InputError(
            "params.processor: over HTTP, name an installed processor (eomatch processors "
            "list), not module:Class"
        )
    return params.model_copy(update={"source": policy.location(params.source, "params.source")})


def _precheck(params: ProcessParams, store: PgstacStore) -> None:
    from eomatch.io.processors import load_processor

    proc = load_processor(params.processor)
    require_collection(store, _target(params, proc.collection))


PROCESS = register(
    JobKind(
        name="process",
        params_model=ProcessParams,
        run=_run,
        description="a non-STAC file through a processor plug-in into STAC items",
        precheck=_precheck,
        confine=_confine,
    )
)
