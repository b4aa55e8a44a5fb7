"""The internal API's write clients: every document is checked as it would be stored.

stac-fastapi-pgstac 7.2 checks ids and extensions of what it is sent, but a JSON-Patch or
merge patch is applied to the stored document after any check on the request body, and
``PATCH /collections/{id}`` checks nothing at all: one patch could store a collection whose
links lack ``rel`` and ``/collections`` then answered 500 for everyone. These subclasses run
:func:`eomatch.core.validation.stac_document_problem` on the final document of every write
(POST, PUT, PATCH in both formats, bulk), and refuse items for a collection that does not
exist with 404 (pgSTAC raised an error that became a 500).

The private methods overridden and the methods replaced here are listed, with the version they
were read in, in :mod:`eomatch.io.thirdparty` (a test fails when that version changes).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import jsonpatch
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from stac_fastapi.extensions import BulkTransactionExtension, TransactionExtension
from stac_fastapi.extensions.transaction.request import BasePartial
from stac_fastapi.pgstac.db import dbfunc, get_connection
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.pgstac.models.links import CollectionLinks, ItemLinks
from stac_fastapi.pgstac.transactions import BulkTransactionsClient, TransactionsClient
from stac_fastapi.types.errors import NotFoundError
from stac_fastapi.types.extension import ApiExtension

from eomatch.core.validation import stac_document_problem

MESSAGE_HEADER = "X-Eomatch-Message"
"""A write's reason, recorded with its transaction in the catalogue history."""
MESSAGE_MAX = 2000

_DESCRIBE = (
    "SELECT set_config('eomatch.actor', $1, false), set_config('eomatch.kind', 'api', false), "
    "set_config('eomatch.message', $2, false), set_config('eomatch.run', '', false)"
)


@asynccontextmanager
async def described_connection(
    request: Request, readwrite: Literal["r", "w"] = "r"
) -> AsyncIterator[Any]:
    """stac-fastapi-pgstac's connection getter; a write connection also tells the history who
    writes (the API key's name) and why (the ``X-Eomatch-Message`` header).

    Session settings, not transaction ones: pgSTAC's functions run as single autocommitted
    statements. asyncpg's pool runs ``RESET ALL`` when the connection goes back, and the
    settings are cleared here too, so they never outlive the request.
    """
    async with get_connection(request, readwrite) as conn:
        if readwrite != "w":
            yield conn
            return
        key = getattr(request.state, "api_key", None)
        message = "".join(ch for ch in request.headers.get(MESSAGE_HEADER, "") if ch.isprintable())[
            :MESSAGE_MAX
        ]
        await conn.execute(_DESCRIBE, f"key:{key}" if key else "api", message)
        try:
            yield conn
        finally:
            # the pool resets a connection it takes back anyway; a broken one is dropped
            with contextlib.suppress(Exception):
                await conn.execute("RESET eomatch.actor; RESET eomatch.kind; RESET eomatch.message")


def _refuse(problem: str | None) -> None:
    if problem:
        raise HTTPException(status_code=400, detail=f"invalid document: {problem}")


async def _collection_exists(request: Request, collection_id: str) -> bool:
    # reads that decide a write go to the primary: the read pool may be a lagging replica
    async with request.app.state.get_connection(request, "w") as conn:
        found = await conn.fetchval("SELECT 1 FROM pgstac.collections WHERE id = $1", collection_id)
    return found is not None


class CheckedWrites:
    """The checks shared by the single and the bulk client."""

    def _validate_item(
        self,
        request: Request,
        item: Any,
        collection_id: str,
        expected_item_id: str | None = None,
    ) -> None:
        _refuse(stac_document_problem(item, "Feature"))
        super()._validate_item(  # type: ignore[misc]
            request, item, collection_id, expected_item_id
        )

    def _validate_collection(self, request: Request, collection: Any) -> None:
        _refuse(stac_document_problem(collection, "Collection"))
        super()._validate_collection(request, collection)  # type: ignore[misc]


class ValidatingTransactionsClient(CheckedWrites, TransactionsClient):  # type: ignore[misc]
    """Transactions whose stored documents always pass the shared check."""

    async def create_item(self, collection_id: str, item: Any, request: Request, **kw: Any) -> Any:
        """``POST /collections/{id}/items``: 404 for a missing collection."""
        if not await _collection_exists(request, collection_id):
            raise NotFoundError(f"Collection {collection_id} does not exist.")
        return await super().create_item(collection_id, item, request, **kw)

    async def update_item(
        self, request: Request, collection_id: str, item_id: str, item: Any, **kw: Any
    ) -> Any:
        """``PUT /collections/{id}/items/{item_id}``: 404 for a missing collection."""
        if not await _collection_exists(request, collection_id):
            raise NotFoundError(f"Collection {collection_id} does not exist.")
        return await super().update_item(request, collection_id, item_id, item, **kw)

    async def patch_item(
        self, collection_id: str, item_id: str, patch: Any, request: Request, **kw: Any
    ) -> Any:
        """``PATCH /collections/{id}/items/{item_id}``: the patched item is checked."""
        existing = await _fetch(
            request, "SELECT * FROM get_item($1::text, $2::text)", item_id, collection_id
        )
        if existing is None:
            raise NotFoundError(f"Item {item_id} does not exist in collection {collection_id}.")
        item = _patched(existing, patch)
        self._validate_item(request, item, collection_id, item_id)
        item["collection"] = collection_id
        async with request.app.state.get_connection(request, "w") as conn:
            await dbfunc(conn, "update_item", item)
        item["links"] = await ItemLinks(
            collection_id=collection_id, item_id=item_id, request=request
        ).get_links(extra_links=item.get("links"))
        return item

    async def patch_collection(
        self, collection_id: str, patch: Any, request: Request, **kw: Any
    ) -> Any:
        """``PATCH /collections/{id}``: the patched collection is checked (stac-fastapi-pgstac
        checks nothing here)."""
        existing = await _fetch(request, "SELECT * FROM get_collection($1::text)", collection_id)
        if existing is None:
            raise NotFoundError(f"Collection {collection_id} does not exist.")
        col = _patched(existing, patch)
        if col.get("id") != collection_id:
            raise HTTPException(status_code=400, detail="a patch cannot change the collection id")
        self._validate_collection(request, col)
        async with request.app.state.get_connection(request, "w") as conn:
            await dbfunc(conn, "update_collection", col)
        col["links"] = await CollectionLinks(
            collection_id=collection_id, request=request
        ).get_links(extra_links=col.get("links"))
        return col


async def _fetch(request: Request, query: str, *params: str) -> dict[str, Any] | None:
    """The current document a patch applies to, from the primary (not a lagging replica)."""
    async with request.app.state.get_connection(request, "w") as conn:
        found: dict[str, Any] | None = await conn.fetchval(query, *params)
    return found


def merge(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: null deletes a member, objects merge, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def _patched(existing: dict[str, Any], patch: Any) -> dict[str, Any]:
    """A JSON Patch (RFC 6902) or merge patch (RFC 7396) applied to a stored document.

    Only the members the client sent take part in a merge patch (stac-fastapi-pgstac dumps
    every field of its partial model, and a null member deletes), and move/copy operations
    keep their ``from`` (it dumped it as ``from_``).
    """
    if isinstance(patch, list):
        ops = [op.model_dump(mode="json", by_alias=True) for op in patch]
        out = jsonpatch.JsonPatch(ops).apply(existing)
    elif isinstance(patch, BasePartial):
        out = merge(existing, patch.model_dump(mode="json", exclude_unset=True))
    else:
        raise HTTPException(status_code=400, detail="a patch must be a JSON object or array")
    if not isinstance(out, dict):
        raise HTTPException(status_code=400, detail="a patch must leave a JSON object")
    return out


class ValidatingBulkClient(CheckedWrites, BulkTransactionsClient):  # type: ignore[misc]
    """Bulk item writes: each item checked; a missing collection is a 404."""

    async def bulk_item_insert(self, items: Any, **kwargs: Any) -> Any:
        """``POST /collections/{id}/bulk_items``."""
        request = kwargs.get("request")
        if request is not None:
            collection_id = request.path_params["collection_id"]
            if not await _collection_exists(request, collection_id):
                raise NotFoundError(f"Collection {collection_id} does not exist.")
        return await super().bulk_item_insert(items, **kwargs)


class EomatchExtensions(Extensions):  # type: ignore[misc]
    """stac-fastapi-pgstac's extensions with the checked transaction clients."""

    @property
    def transaction(self) -> list[ApiExtension]:
        """Transactions and bulk transactions, checked (when enabled)."""
        if not self.settings.enable_transactions_extensions:
            return []
        return [
            TransactionExtension(
                client=ValidatingTransactionsClient(),
                settings=self.settings,
                response_class=JSONResponse,
            ),
            BulkTransactionExtension(client=ValidatingBulkClient()),
        ]
