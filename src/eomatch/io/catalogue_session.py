"""The state of one write session of a matchup catalogue, created and dropped as one object.

A session is what one outermost write (an ``add_event``, an import, a ``batch`` block, a
rebuild) changes before it is flushed: collections read and edited in memory, the day folders it
touched, the items it wrote or removed, the collections it dropped. The catalogue starts each
session (and each rebuild) with a fresh :class:`WriteSession`, so nothing of an earlier or a
failed session leaks into the next one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from eomatch.io.catalogue_index import CatalogueIndex, IndexRow


@dataclass
class WriteSession:
    """What one write session changed, to be flushed at its end (see ``MatchupCatalogue``)."""

    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Collection id → its document as read (and edited) in this session."""
    extents: dict[str, tuple[list[float], tuple[datetime, datetime]]] = field(default_factory=dict)
    """Collection id → its extent as parsed, updated as items are added."""
    changed_collections: set[str] = field(default_factory=set)
    """Collections to rewrite at the end."""
    catalog_changed: bool = False
    """``catalog.json`` to rewrite at the end even if its ``child`` links are unchanged."""
    touched_dirs: set[str] = field(default_factory=set)
    """Day folders written to or deleted from (their mtimes go to the index)."""
    made_dirs: set[str] = field(default_factory=set)
    """Day folders made (and checked against planted symlinks) in this session."""
    real_dirs: set[str] = field(default_factory=set)
    """Folders (catalogue-relative) found to be real folders, not symlinks, in this session."""
    new_days: set[str] = field(default_factory=set)
    """Day folders that did not exist when this session first wrote to them: no day catalog
    to read back when it ends (a pull makes ~1 a matchup; the failed read was ~4 % of it)."""
    day_changes: dict[str, dict[str, bool]] = field(default_factory=dict)
    """Day folder → {item id: written (True) or removed (False)}."""
    removed_items: list[str] = field(default_factory=list)
    """Item files to delete once nothing links to them."""
    dropped_collections: set[str] = field(default_factory=set)
    """Collections left empty, deleted once ``catalog.json`` no longer lists them."""


class CatalogueCore(Protocol):
    """What the catalogue's parts (assets, repair) use of the catalogue they belong to.

    The facade (:class:`eomatch.io.catalogue.MatchupCatalogue`) implements it; the parts
    depend on this, not on the facade's module, so the modules form no import cycle.
    """

    root: Path
    _s: WriteSession
    _catalog: dict[str, Any]
    """``catalog.json`` as last read or written."""
    _batching: bool
    """Inside ``batch()``: files are written without fsync, flushed at the end."""
    _idx: CatalogueIndex
    """The index itself, without the bulk-writer flush that ``_index`` does first."""
    _lock_fd: int | None
    """The writer lock's file descriptor while held (kept open by the bulk writer's helper)."""

    @property
    def data_root(self) -> Path:
        """``{root}/data``: the only folder whose files the catalogue deletes."""
        ...

    @property
    def _index(self) -> CatalogueIndex: ...
    def _writing(self) -> contextlib.AbstractContextManager[None]: ...
    def _row(self, item_id: str, kind: str | None) -> IndexRow: ...
    def _load_item(self, rel: str) -> dict[str, Any] | None: ...
    def _read_item(self, rel: str) -> dict[str, Any]: ...
    def _write_item(self, rel: str, item: Mapping[str, Any]) -> None: ...
    def _index_item(
        self, item: Mapping[str, Any], rel: str, times: tuple[datetime, datetime] | None = None
    ) -> None: ...
    def _children(self) -> list[str]: ...
    def _collection(self, coll: str) -> dict[str, Any] | None: ...
    def _recompute_extent(self, coll: str) -> None: ...
    def _flush_collections(self) -> None: ...
    def _read_day_catalog(self, day: str) -> dict[str, Any] | None: ...
    def _write_day_catalog(
        self, day: str, ids: Iterable[str], old: Mapping[str, Any] | None
    ) -> None: ...
