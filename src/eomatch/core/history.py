"""What a change did to a STAC document, and what undoing changes means (pure, no I/O).

Two questions of the catalogue history are answered here, on plain documents:

- :func:`diff_documents`: a compact diff of two states of one document for ``eomatch history
  show`` (properties and assets key by key with short old → new values; geometry, bbox, links
  and other top-level members noted as changed);
- :func:`plan_rollback` / :func:`plan_restore`: given the changes of a transaction (or the
  states at a point) and the documents' current states, which documents go to which state, which
  are already there, and which were changed again later (the conflicts a rollback refuses
  unless forced).

A document is keyed by ``(kind, collection, id)`` as in the history tables: ``kind`` is
``item`` or ``collection`` and a collection's own id is ``''``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

__all__ = [
    "Conflict",
    "DocKey",
    "FieldChange",
    "Revert",
    "RollbackPlan",
    "diff_documents",
    "doc_label",
    "format_diff",
    "operation",
    "plan_restore",
    "plan_rollback",
    "short_value",
]

Doc = dict[str, Any]
DocKey = tuple[str, str, str]
"""(kind, collection, id): kind ``item`` or ``collection``; a collection's id is ''."""

SHORT = 40
"""Characters of a value shown in a diff."""

_NESTED = ("properties", "assets")
"""Members diffed key by key; every other top-level member is compared as a whole."""


@dataclass(frozen=True)
class FieldChange:
    """One member that differs: ``path`` like ``properties.datetime`` or ``assets.data``."""

    path: str
    change: str
    """``added``, ``removed`` or ``changed``."""
    old: str | None = None
    new: str | None = None

    def __str__(self) -> str:
        if self.change == "added":
            return f"+{self.path}={self.new}"
        if self.change == "removed":
            return f"-{self.path}"
        if self.old is None or self.new is None:
            return f"{self.path} changed"
        return f"{self.path}: {self.old} → {self.new}"


def short_value(value: Any, width: int = SHORT) -> str:
    """``value`` as compact JSON, cut to ``width`` characters (an ellipsis marks the cut)."""
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def _members(doc: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    value = (doc or {}).get(name)
    return value if isinstance(value, Mapping) else {}


def diff_documents(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, width: int = SHORT
) -> list[FieldChange]:
    """What differs from ``before`` to ``after``, compactly.

    ``properties`` and ``assets`` are compared key by key (an asset that changed shows its
    changed fields, e.g. ``assets.data.href``); geometry, bbox and links are only noted as
    changed (their values say little in one line); other top-level members show old → new.
    """
    out: list[FieldChange] = []
    b, a = before or {}, after or {}
    for name in sorted(set(b) | set(a)):
        if (
            name in _NESTED
            and (isinstance(b.get(name, {}), Mapping))
            and (isinstance(a.get(name, {}), Mapping))
        ):
            out.extend(_diff_members(name, _members(b, name), _members(a, name), width))
        elif name not in b:
            out.append(FieldChange(name, "added", None, short_value(a[name], width)))
        elif name not in a:
            out.append(FieldChange(name, "removed", short_value(b[name], width), None))
        elif b[name] != a[name]:
            if name in ("geometry", "bbox", "links"):
                out.append(FieldChange(name, "changed"))
            else:
                out.append(
                    FieldChange(
                        name, "changed", short_value(b[name], width), short_value(a[name], width)
                    )
                )
    return out


def _diff_members(
    prefix: str, b: Mapping[str, Any], a: Mapping[str, Any], width: int
) -> list[FieldChange]:
    out: list[FieldChange] = []
    for key in sorted(set(b) | set(a)):
        path = f"{prefix}.{key}"
        if key not in b:
            out.append(FieldChange(path, "added", None, short_value(a[key], width)))
        elif key not in a:
            out.append(FieldChange(path, "removed", short_value(b[key], width), None))
        elif b[key] != a[key]:
            old, new = b[key], a[key]
            if prefix == "assets" and isinstance(old, Mapping) and isinstance(new, Mapping):
                out.extend(_diff_members(path, old, new, width))  # e.g. assets.data.href
            else:
                out.append(
                    FieldChange(path, "changed", short_value(old, width), short_value(new, width))
                )
    return out


def format_diff(changes: Iterable[FieldChange], limit: int = 8) -> str:
    """One line: the first ``limit`` field changes, then how many more."""
    items = list(changes)
    text = "; ".join(str(c) for c in items[:limit])
    if len(items) > limit:
        text += f"; … {len(items) - limit} more"
    return text or "(no difference in content)"


def doc_label(key: DocKey) -> str:
    """``item C/ID`` or ``collection C`` for messages."""
    kind, collection, doc_id = key
    return f"collection {collection}" if kind == "collection" else f"item {collection}/{doc_id}"


def operation(current: Doc | None, target: Doc | None) -> str:
    """What setting a document from ``current`` to ``target`` is: insert, update or delete."""
    if current is None:
        return "insert"
    return "delete" if target is None else "update"


class ChangeLike(Protocol):
    """One recorded change, as the history store reads it (see ``io.history_store.Change``)."""

    @property
    def kind(self) -> str: ...
    @property
    def collection(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def before(self) -> Doc | None: ...
    @property
    def after(self) -> Doc | None: ...
    @property
    def later(self) -> int | None: ...


@dataclass(frozen=True)
class Revert:
    """One document to set from ``current`` to ``target`` (None: absent)."""

    kind: str
    collection: str
    id: str
    current: Doc | None
    target: Doc | None
    later: int | None = None
    """Set when a later transaction changed the document (a forced revert overwrites it)."""

    @property
    def key(self) -> DocKey:
        """(kind, collection, id)."""
        return (self.kind, self.collection, self.id)

    @property
    def op(self) -> str:
        """What the revert is: insert, update or delete."""
        return operation(self.current, self.target)

    def diff(self) -> list[FieldChange]:
        """The content change of an update (empty for inserts and deletes)."""
        if self.current is None or self.target is None:
            return []
        return diff_documents(self.current, self.target)


@dataclass(frozen=True)
class Conflict:
    """A document a later transaction changed again; or, with ``later`` None, one that would be
    lost or cannot be restored (``reason`` says which)."""

    key: DocKey
    later: int | None
    reason: str = ""

    def __str__(self) -> str:
        where = f" (tx {self.later})" if self.later is not None else ""
        return f"{doc_label(self.key)}{where}{': ' + self.reason if self.reason else ''}"


@dataclass
class RollbackPlan:
    """What a rollback does: the documents to set, those already in their target state, and
    the conflicts (documents changed again later) it refuses unless forced."""

    reverts: list[Revert] = field(default_factory=list)
    unchanged: int = 0
    conflicts: list[Conflict] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Reverts by operation (``insert``/``update``/``delete``)."""
        out = {"insert": 0, "update": 0, "delete": 0}
        for r in self.reverts:
            out[r.op] += 1
        return out

    def conflict_summary(self, first: int = 3) -> str:
        """``N document(s) changed by later transactions: item a/b (tx 7), …``."""
        shown = ", ".join(str(c) for c in self.conflicts[:first])
        more = f" and {len(self.conflicts) - first} more" if len(self.conflicts) > first else ""
        return f"{len(self.conflicts)} document(s) changed by later transactions: {shown}{more}"


def plan_rollback(
    changes: Iterable[ChangeLike], current: Mapping[DocKey, Doc | None]
) -> RollbackPlan:
    """Undo ``changes``: every document back to its state before the transaction.

    A document no later transaction touched is now in its ``after`` state; one that was changed
    later is looked up in ``current`` (the caller reads those from the database). A document
    already in its ``before`` state is left alone (and is no conflict: e.g. a rollback that
    already ran); one changed later and not back where it started is a conflict, planned as a
    revert marked with ``later`` so that a forced rollback can proceed.
    """
    plan = RollbackPlan()
    for c in changes:
        key = (c.kind, c.collection, c.id)
        now = c.after if c.later is None else current.get(key)
        if now == c.before:
            plan.unchanged += 1
            continue
        plan.reverts.append(Revert(c.kind, c.collection, c.id, now, c.before, c.later))
        if c.later is not None:
            plan.conflicts.append(Conflict(key, c.later))
    return plan


def plan_restore(
    states: Iterable[tuple[DocKey, Doc | None]], current: Mapping[DocKey, Doc | None]
) -> RollbackPlan:
    """Set documents back to ``states`` (their states at a point); those equal are skipped."""
    plan = RollbackPlan()
    for key, target in states:
        now = current.get(key)
        if now == target:
            plan.unchanged += 1
        else:
            plan.reverts.append(Revert(key[0], key[1], key[2], now, target))
    return plan
