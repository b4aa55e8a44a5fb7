"""The catalogue history from Python: list, show, roll back, purge (the CLI's ``history``,
``rollback``).

Every function takes a :class:`~eomatch.io.pgstac_store.PgstacStore` (the role decides what is
allowed: the ingest role reads the history and writes items; ``purge`` needs the admin role).

A rollback never edits the history: it writes the earlier states as ONE new transaction of
kind ``rollback`` (see :class:`~eomatch.io.history_store.Writer`), so it is itself in the
history and can be rolled back. It refuses, before writing anything, when later transactions
changed the same documents again (:class:`~eomatch.errors.ConflictError`), unless forced;
documents already in their target state are skipped, so running a rollback again after it
completed (or after it was killed) changes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from eomatch.core.history import Conflict, DocKey, RollbackPlan, plan_restore, plan_rollback
from eomatch.errors import ConflictError, NotFoundError
from eomatch.io.history_schema import WriteNote
from eomatch.io.history_store import (
    Change,
    DocState,
    HistoryFilter,
    HistoryStore,
    Point,
    Transaction,
    Writer,
)
from eomatch.io.pgstac_store import PgstacStore
from eomatch.timeparse import TimeLike, parse_time

__all__ = [
    "PurgeReport",
    "RollbackResult",
    "TransactionDetail",
    "list_transactions",
    "purge",
    "rollback",
    "rollback_to",
    "show",
]

SHOW_LIMIT = 50
"""Changes ``show`` lists by default (the counts cover all of them)."""


@dataclass(frozen=True)
class TransactionDetail:
    """One transaction and (the first ``len(changes)`` of) what it changed."""

    transaction: Transaction
    changes: list[Change]
    total: int


@dataclass(frozen=True)
class RollbackResult:
    """What a rollback did (or, with ``dry_run``, would do)."""

    plan: RollbackPlan
    tx: int | None
    """The new transaction's id; None for a dry run or when nothing needed changing."""
    dry_run: bool
    message: str


@dataclass(frozen=True)
class PurgeReport:
    """What ``purge`` removed."""

    before: datetime
    transactions: int
    changes: int


def list_transactions(store: PgstacStore, where: HistoryFilter | None = None) -> list[Transaction]:
    """Committed transactions matching ``where`` (all, up to its limit), newest first."""
    return HistoryStore(store).transactions(where or HistoryFilter())


def show(store: PgstacStore, tx: int, limit: int | None = SHOW_LIMIT) -> TransactionDetail:
    """Transaction ``tx`` and its changes, each with its states before and after (for a diff).

    Raises:
        NotFoundError: no such committed transaction (purged or never recorded).
    """
    history = HistoryStore(store)
    t = history.transaction(tx)
    return TransactionDetail(t, history.changes(tx, limit), t.inserted + t.updated + t.deleted)


def rollback(
    store: PgstacStore,
    tx: int,
    *,
    force: bool = False,
    dry_run: bool = False,
    message: str | None = None,
    note: WriteNote | None = None,
) -> RollbackResult:
    """Undo transaction ``tx`` as one new transaction (message ``rollback of TX n[: message]``).

    Every document ``tx`` changed goes back to its state before ``tx``. With ``force``, documents
    that later transactions changed again are reverted too (overwriting those later changes;
    the new transaction records them, so that can be undone in turn).

    Raises:
        NotFoundError: ``tx`` is not in the history.
        ConflictError: later transactions changed some of the documents (without ``force``),
            or the rollback would lose or cannot restore documents (e.g. an item whose
            collection was deleted since). Nothing is written then.
    """
    history = HistoryStore(store)
    history.transaction(tx)
    planned_at = history.last_seq()
    changes = history.changes(tx)
    changed_later = [(c.kind, c.collection, c.id) for c in changes if c.later is not None]
    plan = plan_rollback(changes, history.current(changed_later) if changed_later else {})
    text = f"rollback of TX {tx}" + (f": {message}" if message else "")
    if plan.conflicts and not force:
        raise ConflictError(
            f"cannot roll back transaction {tx}: {plan.conflict_summary()}; "
            "roll those back first or use --force to overwrite them"
        )
    _check_restorable(history, plan, force=force)
    return _apply(store, plan, text, dry_run, note, planned_at)


def rollback_to(
    store: PgstacStore,
    point: str | int | Point,
    *,
    collection: str | None = None,
    dry_run: bool = False,
    message: str | None = None,
    note: WriteNote | None = None,
) -> RollbackResult:
    """Bring the catalogue (or one collection) back to its state at ``point``, as one new
    transaction: every document changed since then is set to its state then.

    ``point`` is a transaction id (the state just after it committed) or a time (ISO text or a
    datetime: every transaction committed by then).

    Raises:
        NotFoundError: an unknown transaction id, or a collection that neither exists nor
            has history.
        InputError: a time before the history began (or before its purged part ended).
        ConflictError: the restore would leave items without their collection.
    """
    history = HistoryStore(store)
    if isinstance(point, Point):
        at = point
    elif isinstance(point, int):
        at = history.point_of_tx(point)
    else:
        at = history.point(point)
    planned_at = history.last_seq()
    collections = [collection] if collection is not None else None
    states: list[DocState] = list(history.changed_since(at, collections))
    keys: list[DocKey] = [(s.kind, s.collection, s.id) for s in states]
    current = history.current(keys) if keys else {}
    if collection is not None and not states:
        exists = history.current([("collection", collection, "")])[("collection", collection, "")]
        if exists is None:
            raise NotFoundError(f"no collection {collection!r} now or in the history")
    plan = plan_restore(((k, s.doc) for k, s in zip(keys, states, strict=True)), current)
    where = f" (collection {collection})" if collection else ""
    label = f"TX {at.tx}" if at.tx is not None else (at.at.isoformat() if at.at else "start")
    text = f"rollback to {label}{where}" + (f": {message}" if message else "")
    _check_restorable(history, plan, force=False)
    return _apply(store, plan, text, dry_run, note, planned_at)


def purge(store: PgstacStore, before: TimeLike, actor: str | None = None) -> PurgeReport:
    """Delete the history of transactions committed before ``before`` (admin role).

    Logged in ``eomatch.history_purges``; afterwards no rollback or export can reach a point
    before ``before``. The catalogue itself is not touched.

    Raises:
        InputError: ``before`` is in the future, or not a time.
        DatabaseError: the role may not purge (only the admin may).
    """
    when = parse_time(before, "--before")
    who = actor or WriteNote.cli("purge").actor
    removed, changes = HistoryStore(store).purge(when, who)
    return PurgeReport(when, removed, changes)


def _check_restorable(history: HistoryStore, plan: RollbackPlan, *, force: bool) -> None:
    """Refuse plans that pgSTAC cannot carry out or that would silently take more with them.

    An item can only be written into a collection that exists (or that the plan creates); a
    collection deleted by the plan takes its remaining items with it, so items the plan does
    not itself delete (added by later transactions) are a conflict unless forced.
    """
    created = {r.collection for r in plan.reverts if r.kind == "collection" and r.target}
    dropped = {r.collection for r in plan.reverts if r.kind == "collection" and not r.target}
    needed = {
        r.collection
        for r in plan.reverts
        if r.kind == "item" and r.target is not None and r.collection not in created
    }
    problems: list[Conflict] = []
    if needed:
        now = history.current([("collection", c, "") for c in sorted(needed)])
        for (_, coll, _), doc in now.items():
            if doc is None or coll in dropped:
                problems.append(
                    Conflict(("collection", coll, ""), None, "no longer exists; restore it first")
                )
    if problems:
        shown = ", ".join(str(p) for p in problems[:3])
        raise ConflictError(f"cannot restore items: {shown}")
    for coll in sorted(dropped):
        deleting = sum(
            1 for r in plan.reverts if r.kind == "item" and r.collection == coll and not r.target
        )
        left = history.store.item_count(coll) - deleting
        if left > 0 and not force:
            raise ConflictError(
                f"deleting collection {coll} would also delete {left} item(s) added to it by "
                "later transactions; roll those back first or use --force"
            )


def _apply(
    store: PgstacStore,
    plan: RollbackPlan,
    text: str,
    dry_run: bool,
    note: WriteNote | None,
    planned_at: int,
) -> RollbackResult:
    """Write the plan as one transaction, refused if a document changed since ``planned_at``
    (a write that committed while the plan was read)."""
    if dry_run or not plan.reverts:
        return RollbackResult(plan, None, dry_run, text)
    who = note or WriteNote.cli("rollback")
    states = [DocState(r.kind, r.collection, r.id, r.target) for r in plan.reverts]
    tx = Writer(store).apply(
        states,
        actor=who.actor,
        kind="rollback",
        message=text,
        run=who.run,
        unchanged_after=planned_at,
    )
    return RollbackResult(plan, tx, dry_run, text)
