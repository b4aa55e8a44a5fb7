"""Bulk writer of a catalogue batch: new events written at once, their index rows buffered.

A batch of thousands of events is bound by per-item work: building ~8 item dicts an event,
serialising them and four system calls a file. Measured on 2 cores, writer threads made it
slower (the GIL hand-offs stall the caller) and worker processes gained nothing on tmpfs and
lost on ext4 (parallel file creation in the same folders contends in the kernel). So new
events are written in the caller, in the serial order of ``MatchupCatalogue.add_event`` (per
event: the event without links, then its new products and matchups, then the complete event),
and what the index records (rows, relations, extents, day folders) is buffered and handed over
in large batches (``executemany``), before anything reads the index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eomatch.core import stac_items as si
from eomatch.core.products import Matchup, MatchupEvent, Product
from eomatch.io.atomic import json_bytes, write_file_atomic
from eomatch.io.catalogue_index import ItemRow, index_entry

Extent = tuple[list[float], datetime, datetime]


@dataclass
class BulkRecord:
    """What the writer wrote, for the caller's index, extents and day catalogs."""

    rows: list[ItemRow] = field(default_factory=list)
    event_matchups: list[tuple[str, str]] = field(default_factory=list)
    matchup_products: list[tuple[str, str]] = field(default_factory=list)
    extents: dict[str, Extent] = field(default_factory=dict)
    """Collection → union of the bboxes and time ranges of the items written."""


class BulkWriter:
    """Writes new events' item files now; buffers what the index needs until :meth:`flush`."""

    def __init__(
        self,
        root: str,
        record: Callable[[BulkRecord], None],
        before_write: Callable[[], None],
        buffer_rows: int = 50_000,
    ) -> None:
        self.root = root
        self._record = record
        self._before_write = before_write
        self._buffer_rows = buffer_rows
        self._out = BulkRecord()
        self._ids: set[str] = set()
        self._made: set[str] = set()

    @property
    def busy(self) -> bool:
        """Items written whose index rows are still buffered."""
        return bool(self._out.rows)

    def pending(self, item_id: str) -> bool:
        """Whether ``item_id`` was written by this writer and is not recorded yet."""
        return item_id in self._ids

    def flush(self) -> None:
        """Hand the buffered rows, relations and extents to ``record``."""
        if self._out.rows:
            out, self._out = self._out, BulkRecord()
            self._ids.clear()
            self._record(out)

    def _put(self, item: dict[str, Any], rel: str, times: tuple[datetime, datetime] | None) -> None:
        day = rel.rpartition("/")[0]
        if day not in self._made:
            os.makedirs(f"{self.root}/{day}", exist_ok=True)
            self._made.add(day)
        write_file_atomic(f"{self.root}/{rel}", json_bytes(item), durable=False)
        if times is None:
            return
        out = self._out
        entry = index_entry(item, rel, times)
        out.rows.append(entry.row)
        out.event_matchups += entry.event_matchups
        out.matchup_products += entry.matchup_products
        self._ids.add(item["id"])
        coll = item["collection"]
        old = out.extents.get(coll)
        if old is None:
            out.extents[coll] = ([float(v) for v in item["bbox"]], times[0], times[1])
        else:
            out.extents[coll] = (
                si.bbox_union(old[0], item["bbox"]),
                min(old[1], times[0]),
                max(old[2], times[1]),
            )

    def write_event(self, event: MatchupEvent, plan: Sequence[Product | Matchup]) -> None:
        """Write a new event with its new products and matchups (``plan``, in write order)."""
        self._before_write()
        rel = si.event_path(event)
        item = si.event_to_item(event)
        if event.matchups:  # linking only to itself first: no matchup's event link dangles
            alone = [link for link in item["links"] if link["rel"] != "related"]
            self._put({**item, "links": alone}, rel, None)
        for x in plan:
            if isinstance(x, Matchup):
                self._put(si.matchup_to_item(x, event), si.matchup_path(x), (x.start, x.end))
            else:
                self._put(si.product_to_item(x), si.product_path(x), (x.start, x.end))
        self._put(item, rel, (event.start, event.end))
        if len(self._out.rows) >= self._buffer_rows:
            self.flush()
