"""The ``catalogue`` job kind: any static STAC catalogue or collection (a folder or a URL)
into the central database — what stac-repository's built-in STAC processor does.

Stages: ``read`` (walk it with pystac, :mod:`eomatch.io.static_catalogue`), ``insert`` (its
collections and items upserted in one transaction through
:class:`~eomatch.io.pgstac_store.PgstacStore`, each checked first: one bad document and
nothing is written). Re-running upserts the same documents.
"""

from __future__ import annotations

from pydantic import Field

from eomatch.io.http import HttpLimits
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.jobs.inputs import InputPolicy, fetch_session
from eomatch.workflows.jobs.registry import JobContext, JobKind, JobParams, JobResult, register
from eomatch.workflows.jobs.storing import require_collection, upsert_reporting

__all__ = ["CATALOGUE", "CatalogueParams", "ingest_static_catalogue"]


class CatalogueParams(JobParams):
    """What a ``catalogue`` job is given."""

    source: str = Field(min_length=1, max_length=4096)
    """A folder, a ``catalog.json``/``collection.json`` path, or an http(s) URL of one."""
    collection: str | None = Field(default=None, min_length=1, max_length=200)
    """Where items outside any collection go (must exist); items under a collection keep it."""


def ingest_static_catalogue(
    params: CatalogueParams, store: PgstacStore, ctx: JobContext | None = None
) -> JobResult:
    """Run a catalogue job (the kind's ``run``, callable without a queue)."""
    from eomatch.io.static_catalogue import read_static_catalogue

    if ctx is not None:
        ctx.stage("read")
    policy = ctx.policy if ctx is not None else None
    with fetch_session(policy, HttpLimits(timeout_s=30.0, max_retries=2)) as session:
        found = read_static_catalogue(
            params.source,
            collection=params.collection,
            session=session,
            check_href=policy.href_checker() if policy is not None else None,
        )
    if ctx is not None:
        ctx.stage("insert")
    created, updated = upsert_reporting(store, found.items, found.collections)
    return JobResult(
        created=created,
        updated=updated,
        info={"collections": [c["id"] for c in found.collections], "items": len(found.items)},
    )


def _run(params: CatalogueParams, ctx: JobContext) -> JobResult:
    return ingest_static_catalogue(params, ctx.store, ctx)


def _confine(params: CatalogueParams, policy: InputPolicy) -> CatalogueParams:
    """Over HTTP: the root inside the input folder or from an allowed host (the links the
    walk follows are checked as they are read: ``JobContext.policy``)."""
    return params.model_copy(update={"source": policy.location(params.source, "params.source")})


def _precheck(params: CatalogueParams, store: PgstacStore) -> None:
    if params.collection is not None:
        require_collection(store, params.collection)


CATALOGUE = register(
    JobKind(
        name="catalogue",
        params_model=CatalogueParams,
        run=_run,
        description="a static STAC catalogue or collection (folder or URL) into the database",
        precheck=_precheck,
        confine=_confine,
    )
)
