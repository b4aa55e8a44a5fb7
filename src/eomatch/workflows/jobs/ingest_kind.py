"""The ``ingest`` kind: ``eomatch ingest`` of a catalogue folder as a job (what schedules run).

Idempotent by construction: the ingest upserts and records its state, so a re-run after a
worker died mid-job loads only what the first run had not committed, and an unchanged
catalogue writes nothing. History: actor ``job:<id>``, kinds ``ingest``/``prune`` as for the
command, one run id per attempt.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from eomatch.errors import InputError, UnsafePathError
from eomatch.io.catalogue_index import INDEX_NAME
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


def _stays_inside(folder: Path, policy: InputPolicy) -> None:
    """What the catalogue code will read under ``folder`` (an API job's) stays inside the
    input folder. It follows symlinks, so a ``catalog.json`` or collection folder linking out
    would ingest a catalogue the key holder may not read; and it trusts its side index's item
    paths while the day folders' mtimes match, so an index written by whoever can write the
    folder could name ``../../elsewhere/item.json``. Checked by the worker only (a catalogue
    may hold a million files: not in the API's request)."""
    for top, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = os.path.join(top, name)
            if os.path.islink(path):
                policy.local_path(path, f"params.catalogue: {os.path.relpath(path, folder)!r:.200}")
    index = folder / INDEX_NAME
    if not index.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT path FROM items").fetchall()
    except sqlite3.Error:  # unreadable: the catalogue code rebuilds it from the files
        return
    for (rel,) in rows:
        parts = PurePosixPath(str(rel)).parts
        if not parts or parts[0] == "/" or ".." in parts:
            raise UnsafePathError(
                f"params.catalogue: its side index ({INDEX_NAME}) names {str(rel)!r:.200}, "
                "outside the folder API jobs may read"
            )


def run_ingest(params: IngestParams, ctx: JobContext) -> JobResult:
    """Ingest the folder through the job's noted store."""
    from eomatch.workflows.ingest import ingest_catalogue

    if ctx.policy is not None:  # an API job: stage inputs
        _stays_inside(Path(params.catalogue), ctx.policy)
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
