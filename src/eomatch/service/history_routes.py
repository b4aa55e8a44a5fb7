"""``GET /history`` and ``GET /history/{tx}``: the catalogue history, read only, internal API only.

The same filters as ``eomatch history`` (collection, item, since, until, actor, kind, limit;
newest first), plus ``offset`` for paging; ``/history/{tx}`` lists what one transaction changed,
each document with its state before and after it (``after`` is the state before the next change
of that document, or its current row; ``documents=false`` leaves both out), a compact ``diff``
of an update (:func:`eomatch.core.history.diff_documents`, as ``eomatch history show``) and
``later``, the next transaction that changed it, paged by ``limit``/``offset``. Both read
through the API's read pool (asyncpg). Every parameter is checked before the database is asked:
an unknown or repeated one, a number out of range, a text too long or a time that is not
ISO 8601 is a 400 with a one-line reason. The external API
does not mount these routes (404 there): the history holds every past state, withdrawn ones too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from eomatch.core.history import diff_documents
from eomatch.errors import InputError, NotFoundError
from eomatch.timeparse import parse_time

__all__ = ["MAX_LIMIT", "register"]

DEFAULT_TRANSACTIONS = 50
DEFAULT_CHANGES = 100
MAX_LIMIT = 1000
MAX_OFFSET = 10_000_000
MAX_TEXT = 256
"""Longest collection id, item id, actor or kind accepted as a filter."""
MAX_TX = 2**63 - 1

_LIST_PARAMS = frozenset(
    {"collection", "item", "since", "until", "actor", "kind", "limit", "offset"}
)
_SHOW_PARAMS = frozenset({"limit", "offset", "documents"})

_COUNTS = """
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE c.op = 'insert') AS inserted,
               count(*) FILTER (WHERE c.op = 'update') AS updated,
               count(*) FILTER (WHERE c.op = 'delete') AS deleted
        FROM eomatch.changes c WHERE c.tx = t.id
    ) n
"""
_TX_COLUMNS = (
    "t.id, t.committed_at, t.actor, t.kind, t.message, t.run, t.db_user, "
    "n.inserted, n.updated, n.deleted"
)
_CHANGES = """
    SELECT c.kind, c.collection, c.id, c.op, c.before, nxt.before AS next_before,
           nxt.tx AS later, nxt.found,
           CASE WHEN nxt.found THEN NULL
                WHEN c.kind = 'item' THEN (
                    SELECT pgstac.content_hydrate(i) FROM pgstac.items i
                    WHERE i.collection = c.collection AND i.id = c.id)
                ELSE (SELECT content FROM pgstac.collections WHERE id = c.collection) END
               AS current
    FROM eomatch.changes c
    LEFT JOIN LATERAL (
        SELECT n.before, n.tx, true AS found FROM eomatch.changes n
        JOIN eomatch.transactions nt ON nt.id = n.tx AND nt.commit_seq IS NOT NULL
        WHERE n.kind = c.kind AND n.collection = c.collection AND n.id = c.id AND n.seq > c.seq
        ORDER BY n.seq LIMIT 1
    ) nxt ON true
    WHERE c.tx = $1
    ORDER BY c.kind, c.collection, c.id
    LIMIT $2 OFFSET $3
"""


def register(app: FastAPI) -> None:
    """Mount the history routes (internal API only)."""
    app.add_api_route(
        "/history",
        list_transactions,
        methods=["GET"],
        summary="Recorded transactions of the catalogue, newest first",
        tags=["History"],
    )
    app.add_api_route(
        "/history/{tx}",
        show_transaction,
        methods=["GET"],
        summary="What one transaction changed: each document before and after it",
        tags=["History"],
    )


# --- parameters ---------------------------------------------------------------------------------


def _single(params: QueryParams, allowed: frozenset[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in params:
        if name not in allowed:
            raise InputError(f"unknown parameter {name[:40]!r}: use {', '.join(sorted(allowed))}")
        values = params.getlist(name)
        if len(values) > 1:
            raise InputError(f"give {name} once")
        out[name] = values[0]
    return out


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not value or len(value) > MAX_TEXT or not value.isprintable():
        raise InputError(f"{name} must be 1 to {MAX_TEXT} printable characters")
    return value


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 12 or not low <= int(text) <= high:
        raise InputError(f"{name} must be a whole number from {low} to {high}, not {text[:40]!r}")
    return int(text)


def _time(params: Mapping[str, str], name: str) -> datetime | None:
    text = params.get(name)
    if text is None:
        return None
    if len(text) > 64:
        raise InputError(f"{name} is not an ISO 8601 time")
    return parse_time(text, name)


def _tx_id(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise InputError(f"{text[:40]!r} is not a transaction id (a whole number)")
    if len(text) > 19 or int(text) > MAX_TX:
        raise NotFoundError(f"no transaction {text[:40]} in the history")
    return int(text)


def _next_link(request: Request, params: Mapping[str, str], offset: int) -> dict[str, str]:
    query = urlencode({**params, "offset": str(offset)})
    return {
        "rel": "next",
        "type": "application/json",
        "href": str(request.url.replace(query=query)),
    }


def _transaction(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "committed_at": row["committed_at"].isoformat(),
        "actor": row["actor"],
        "kind": row["kind"],
        "message": row["message"],
        "run": row["run"],
        "db_user": row["db_user"],
        "inserted": row["inserted"],
        "updated": row["updated"],
        "deleted": row["deleted"],
    }


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


# --- routes -------------------------------------------------------------------------------------


async def list_transactions(request: Request) -> Response:
    """``GET /history``: transactions, newest first, filtered as ``eomatch history``."""
    params = _single(request.query_params, _LIST_PARAMS)
    collection, item = _text(params, "collection"), _text(params, "item")
    actor, kind = _text(params, "actor"), _text(params, "kind")
    since, until = _time(params, "since"), _time(params, "until")
    if since is not None and until is not None and until < since:
        raise InputError("until is before since")
    limit = _int(params, "limit", DEFAULT_TRANSACTIONS, 1, MAX_LIMIT)
    offset = _int(params, "offset", 0, 0, MAX_OFFSET)
    where = ["t.commit_seq IS NOT NULL"]
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if collection is not None or item is not None:
        sub = ["c2.tx = t.id"]
        if collection is not None:
            sub.append(f"c2.collection = {arg(collection)}")
        if item is not None:
            sub.append(f"c2.kind = 'item' AND c2.id = {arg(item)}")
        where.append(f"EXISTS (SELECT 1 FROM eomatch.changes c2 WHERE {' AND '.join(sub)})")
    for clause, value in (
        ("t.committed_at >= {}", since),
        ("t.committed_at <= {}", until),
        ("t.actor = {}", actor),
        ("t.kind = {}", kind),
    ):
        if value is not None:
            where.append(clause.format(arg(value)))
    query = (
        f"SELECT {_TX_COLUMNS} FROM (SELECT * FROM eomatch.transactions t "
        f"WHERE {' AND '.join(where)} ORDER BY t.commit_seq DESC "
        f"LIMIT {arg(limit + 1)} OFFSET {arg(offset)}) t {_COUNTS} ORDER BY t.commit_seq DESC"
    )
    async with request.app.state.get_connection(request, "r") as conn:
        rows = await conn.fetch(query, *args)
    links = [_next_link(request, params, offset + limit)] if len(rows) > limit else []
    return _json(
        {
            "transactions": [_transaction(r) for r in rows[:limit]],
            "limit": limit,
            "offset": offset,
            "links": links,
        }
    )


async def show_transaction(request: Request, tx: str) -> Response:
    """``GET /history/{tx}``: the transaction and its changes (before/after), paged."""
    params = _single(request.query_params, _SHOW_PARAMS)
    tx_id = _tx_id(tx)
    documents = params.get("documents", "true")
    if documents not in ("true", "false"):
        raise InputError(f"documents must be true or false, not {documents[:40]!r}")
    limit = _int(params, "limit", DEFAULT_CHANGES, 1, MAX_LIMIT)
    offset = _int(params, "offset", 0, 0, MAX_OFFSET)
    async with request.app.state.get_connection(request, "r") as conn:
        head = await conn.fetchrow(
            f"SELECT {_TX_COLUMNS} FROM eomatch.transactions t {_COUNTS} "
            "WHERE t.id = $1 AND t.commit_seq IS NOT NULL",
            tx_id,
        )
        if head is None:
            raise NotFoundError(f"no transaction {tx_id} in the history")
        rows = await conn.fetch(_CHANGES, tx_id, limit, offset)
    transaction = _transaction(head)
    total = transaction["inserted"] + transaction["updated"] + transaction["deleted"]
    changes = []
    for r in rows:
        after = r["next_before"] if r["found"] else r["current"]
        change: dict[str, Any] = {
            "kind": r["kind"],
            "collection": r["collection"],
            "id": r["id"] if r["kind"] == "item" else None,
            "op": r["op"],
            "later": r["later"],
            "diff": [
                {"path": d.path, "change": d.change, "old": d.old, "new": d.new}
                for d in diff_documents(r["before"], after)
            ]
            if r["op"] == "update"
            else None,
        }
        if documents == "true":
            change["before"], change["after"] = r["before"], after
        changes.append(change)
    links = [_next_link(request, params, offset + limit)] if offset + limit < total else []
    return _json(
        {
            "transaction": transaction,
            "changes": changes,
            "total": total,
            "limit": limit,
            "offset": offset,
            "links": links,
        }
    )
