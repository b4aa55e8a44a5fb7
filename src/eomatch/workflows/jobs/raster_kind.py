"""The ``raster`` job kind: a raster file → a COG in the object store → a STAC item.

Stages: ``fetch`` (path, http(s) or s3 source into a scratch folder), ``cog`` (rio-cogeo),
``item`` (rio-stac), ``store`` (the object store, key ``<collection>/<item id>/<asset>.tif``),
``insert`` (one upsert through :class:`~eomatch.io.pgstac_store.PgstacStore`, noted for the
job). The item is written only after the COG is stored; if anything fails after the COG was
stored, the object is removed again (unless an earlier run of the same job had stored it: its
item points there). Re-running gives the same key and upserts the same item.
"""

from __future__ import annotations

import tempfile
from datetime import datetime as DateTime
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from eomatch.errors import InputError
from eomatch.io.object_store import ObjectStore
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.jobs.inputs import InputPolicy, fetch_session
from eomatch.workflows.jobs.registry import JobContext, JobKind, JobParams, JobResult, register
from eomatch.workflows.jobs.storing import (
    ID_PATTERN,
    check_id,
    job_objects,
    require_collection,
    stored_objects,
    upsert_reporting,
)

__all__ = ["RASTER", "RasterParams", "ingest_raster"]


class RasterParams(JobParams):
    """What a ``raster`` job is given."""

    collection: str = Field(min_length=1, max_length=200)
    """The collection the item goes into (must exist)."""
    source: str = Field(min_length=1, max_length=4096)
    """A local path, an ``http(s)://`` URL or an ``s3://bucket/key`` URL."""
    item_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """The item's id (default: the source file's name without its extension)."""
    asset: str = Field(default="data", pattern=ID_PATTERN)
    """The asset's name, also the COG's file name (``<asset>.tif``)."""
    datetime: DateTime | None = None
    """The item's datetime (default: the file's TIFFTAG_DATETIME; one of them is needed)."""
    properties: dict[str, Any] = Field(default_factory=dict)
    """More item properties (title, description...)."""
    variable: str | None = Field(default=None, max_length=128)
    """For a NetCDF file with several variables: which one becomes the COG."""

    @field_validator("datetime")
    @classmethod
    def _aware(cls, value: DateTime | None) -> DateTime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone (2024-05-01T10:00:00Z)")
        return value

    def default_item_id(self) -> str:
        """:attr:`item_id`, else the source file's stem."""
        from eomatch.io.cog import source_name

        if self.item_id:
            return self.item_id
        return check_id(source_name(self.source).split(".", 1)[0], "item id (from the file name)")


def ingest_raster(
    params: RasterParams,
    store: PgstacStore,
    objects: ObjectStore,
    ctx: JobContext | None = None,
) -> JobResult:
    """Run a raster job (the kind's ``run``, callable without a queue)."""
    from eomatch.config.settings import StorageSettings, read_settings
    from eomatch.io.cog import (
        FETCH_LIMITS,
        check_self_contained,
        fetch_source,
        file_datetime,
        raster_item,
        write_cog,
    )
    from eomatch.io.object_store import S3Config

    def stage(name: str) -> None:
        if ctx is not None:
            ctx.stage(name)

    require_collection(store, params.collection)
    item_id = params.default_item_id()
    key = f"{params.collection}/{item_id}/{params.asset}.tif"
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
        tempfile.TemporaryDirectory(prefix="eomatch-raster-") as tmp,
        fetch_session(policy, FETCH_LIMITS) as session,
    ):
        scratch = Path(tmp)
        stage("fetch")
        path = fetch_source(params.source, scratch, s3=s3, session=session, bounds=bounds)
        if policy is not None:  # an API job: no file naming others
            check_self_contained(path)
        stage("cog")
        cog = scratch / f"{params.asset}.tif"
        write_cog(path, cog, variable=params.variable)
        when = params.datetime or file_datetime(path)
        if when is None:
            raise InputError(
                f"{path.name} has no TIFFTAG_DATETIME: give params.datetime (ISO 8601)"
            )
        with stored_objects(objects) as stored:
            stage("store")
            storage, public = stored.put(key, cog)
            stage("item")
            alternate = {storage.split(":", 1)[0]: storage} if public else None
            item = raster_item(
                cog,
                item_id=item_id,
                collection=params.collection,
                asset=params.asset,
                href=public or storage,
                when=when,
                properties=params.properties,
                alternate=alternate,
            )
            stage("insert")
            created, updated = upsert_reporting(store, [item])
    return JobResult(
        created=created,
        updated=updated,
        info={"key": key, "href": public or storage, "size": cog_size(item, params.asset)},
    )


def cog_size(item: dict[str, Any], asset: str) -> int:
    """The stored COG's size in bytes, from the item."""
    return int(item["assets"][asset]["file:size"])


def _run(params: RasterParams, ctx: JobContext) -> JobResult:
    return ingest_raster(params, ctx.store, job_objects(ctx), ctx)


def _confine(params: RasterParams, policy: InputPolicy) -> RasterParams:
    """Over HTTP: the source inside the input folder or from an allowed host; the item id
    fixed first (a symlink's target must not rename the item)."""
    item_id = params.default_item_id()
    source = policy.location(params.source, "params.source")
    return params.model_copy(update={"source": source, "item_id": item_id})


def _precheck(params: RasterParams, store: PgstacStore) -> None:
    params.default_item_id()
    require_collection(store, params.collection)


RASTER = register(
    JobKind(
        name="raster",
        params_model=RasterParams,
        run=_run,
        description="a GeoTIFF/NetCDF/JPEG2000 file -> a COG in the object store + its STAC item",
        precheck=_precheck,
        confine=_confine,
    )
)
