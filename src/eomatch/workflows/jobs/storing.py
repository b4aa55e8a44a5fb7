"""What the raster, catalogue and process kinds share: collection checks, the object store,
and "store the files, then write the items, else remove the files" as one step."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eomatch.errors import InputError, NotFoundError, StorageError, UnknownCollectionError
from eomatch.io.data_store import open_data_store
from eomatch.io.object_store import ObjectStore, check_key, object_hrefs
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.jobs.registry import JobContext

__all__ = [
    "ID_PATTERN",
    "StoredObjects",
    "check_id",
    "job_objects",
    "require_collection",
    "stored_objects",
    "upsert_reporting",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
"""Item ids and asset names that become object keys: one safe path segment each."""
_ID = re.compile(ID_PATTERN)


def check_id(value: str, what: str) -> str:
    """``value`` if it can be a key segment, else InputError naming ``what``."""
    if not _ID.fullmatch(value):
        raise InputError(f"{what} {value!r:.100} must match {ID_PATTERN}")
    return value


def require_collection(store: PgstacStore, collection: str) -> None:
    """NotFoundError (404 before anything is queued) unless the collection exists."""
    if not store.collection_exists(collection):
        raise UnknownCollectionError(
            f"no collection {collection!r:.200} in the catalogue: create it first"
        )


def job_objects(ctx: JobContext | None) -> ObjectStore:
    """The job's object store (the worker's), else the one of the ``EOMATCH_STORAGE_*``
    settings."""
    if ctx is not None:
        try:
            return ctx.objects()
        except InputError:
            pass
    return open_data_store()


@dataclass
class StoredObjects:
    """Objects one job run put in the store; :meth:`remove` takes back those it created."""

    objects: ObjectStore
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)

    def put(self, key: str, path: Path) -> tuple[str, str | None]:
        """Store ``path`` as ``key``; its (storage URL, public URL).

        A full disk or bucket, or a refused write, is :class:`StorageError` (not retried).
        """
        check_key(key)
        existed = self.objects.exists(key)
        try:
            self.objects.put_file(key, path)
        except (NotFoundError, InputError):
            raise
        except OSError as exc:  # local folder: ENOSPC, EACCES...
            raise StorageError(
                f"cannot store {key} in {self.objects.describe()}: {exc.strerror or exc}"
            ) from None
        (self.replaced if existed else self.created).append(key)
        return object_hrefs(self.objects, key)

    def remove(self) -> None:
        """Delete what this run created (a re-run's replaced objects stay: an earlier run's
        item points at them)."""
        for key in self.created:
            try:
                self.objects.delete(key)
            except Exception:  # best effort: the original failure is what gets reported
                continue
        self.created.clear()


@contextmanager
def stored_objects(objects: ObjectStore) -> Iterator[StoredObjects]:
    """Objects stored inside the block are removed again if the block fails."""
    stored = StoredObjects(objects)
    try:
        yield stored
    except BaseException:
        stored.remove()
        raise


def upsert_reporting(
    store: PgstacStore,
    items: Sequence[dict[str, Any]],
    collections: Sequence[dict[str, Any]] = (),
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Upsert in one transaction; the (collection, id) pairs created and updated."""
    keys = [(str(item.get("collection")), str(item.get("id"))) for item in items]
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT collection, id FROM pgstac.items WHERE (collection, id) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([c for c, _ in keys], [i for _, i in keys]),
        ).fetchall()
    existing = {(str(r[0]), str(r[1])) for r in rows}
    store.upsert_items(items, collections)
    created = [k for k in keys if k not in existing]
    updated = [k for k in keys if k in existing]
    return created, updated
