"""The ``ingest`` kind: ``eomatch ingest`` of a catalogue folder as a job (what schedules run).

Idempotent by construction: the ingest upserts and records its state, so a re-run after a
worker died mid-job loads only what the first run had not committed, and an unchanged
catalogue writes nothing. History: actor ``job:<id>``, kinds ``ingest``/``prune`` as for the
command, one run id per attempt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from eomatch.errors import InputError
from eomatch.workflows.jobs.registry import JobContext, JobKind, JobParams, JobResult, register

if TYPE_CHECKING:
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.jobs.inputs import InputPolicy


class IngestParams(JobParams):
    """Params of an ``ingest`` job (as the ``eomatch ingest`` options)."""

    catalogue: str = Field(description="the catalogue folder, as the worker sees it")
    assets_base_url: str | None = None
    prune: bool = False
    skip_invalid: bool = False

    @field_validator("catalogue")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


def _confine(params: IngestParams, policy: InputPolicy) -> IngestParams:
    """Over HTTP: the folder inside the input folder (relative: from there)."""
    folder = policy.local_path(params.catalogue, "params.catalogue")
    return params.model_copy(update={"catalogue": str(folder)})


def _precheck(params: IngestParams, store: PgstacStore) -> None:
    """Refuse a folder that is not there now (the worker may run elsewhere: a hint, not a lock)."""
    del store
    if not Path(params.catalogue).is_dir():
        raise InputError(f"catalogue {params.catalogue!r:.200} is not a folder")


def _links_stay_inside(folder: Path, policy: InputPolicy) -> None:
    """Every symlink under ``folder`` (an API job's) resolves inside the input folder: the
    catalogue code follows links, so a ``catalog.json`` or collection folder linking out would
    ingest a catalogue the key holder may not read. Walked by the worker only (a catalogue
    may hold a million files: not in the API's request)."""
    for top, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = os.path.join(top, name)
            if os.path.islink(path):
                policy.local_path(path, f"params.catalogue: {os.path.relpath(path, folder)!r:.200}")


def run_ingest(params: IngestParams, ctx: JobContext) -> JobResult:
    """Ingest the folder through the job's noted store."""
    from eomatch.workflows.ingest import ingest_catalogue

    if ctx.policy is not None:  # an API job: stage inputs
        _links_stay_inside(Path(params.catalogue), ctx.policy)
    ctx.stage("ingest")
    report = ingest_catalogue(
        params.catalogue,
        ctx.store,
        assets_base_url=params.assets_base_url,
        prune=params.prune,
        skip_invalid=params.skip_invalid,
    )
    return JobResult(
        info={
            "summary": report.summary(),
            "inserted": report.inserted,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "pruned": report.pruned,
            "items": report.items,
            "collections": report.collections,
            "skipped": report.skipped[:50],
        }
    )


INGEST = register(
    JobKind(
        name="ingest",
        params_model=IngestParams,
        run=run_ingest,
        description="ingest a matchup catalogue folder into the database (eomatch ingest)",
        precheck=_precheck,
        confine=_confine,
    )
)
