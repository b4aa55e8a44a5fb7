"""What harvesting needs that is pure: the post-processor contract, item times, counts.

A post-processor is any class with a no-argument constructor and
``postprocess(item: dict) -> dict | None`` (EOEPCA's harvester contract): it may change the
item and return it, return a new one, or return ``None`` to drop it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "HarvestCounts",
    "MarkTracker",
    "Postprocessor",
    "dotted_get",
    "item_time",
    "minimal_collection",
    "parse_stac_time",
]


@runtime_checkable
class Postprocessor(Protocol):
    """Changes (or drops, by returning ``None``) one harvested STAC item."""

    def postprocess(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """The item to register, or ``None`` to drop it."""
        ...


@dataclass
class HarvestCounts:
    """What one run saw and did."""

    pages: int = 0
    seen: int = 0
    """Items the source returned."""
    filtered: int = 0
    """Dropped by the CQL2 filter."""
    dropped: int = 0
    """Dropped by a post-processor (returned ``None``)."""
    invalid: int = 0
    """Skipped: not a STAC item that could be stored (reported with the reason)."""
    written: int = 0
    """Registered (inserted or replaced) in the target collection (or would be: dry run)."""

    def add(self, other: HarvestCounts) -> None:
        """Add another page's counts to these."""
        self.pages += other.pages
        self.seen += other.seen
        self.filtered += other.filtered
        self.dropped += other.dropped
        self.invalid += other.invalid
        self.written += other.written

    def to_json(self) -> dict[str, int]:
        """The stored form."""
        return {
            "pages": self.pages,
            "seen": self.seen,
            "filtered": self.filtered,
            "dropped": self.dropped,
            "invalid": self.invalid,
            "written": self.written,
        }


def parse_stac_time(text: Any) -> datetime | None:
    """An RFC 3339 time of a STAC document as an aware UTC datetime; None if absent or bad."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def item_time(item: dict[str, Any], prop: str = "datetime") -> datetime | None:
    """The time a harvester's window and high-water mark follow: ``datetime`` (else
    ``start_datetime``), or with ``prop="updated"`` the ``updated`` property."""
    props = item.get("properties")
    if not isinstance(props, dict):
        return None
    if prop == "updated":
        return parse_stac_time(props.get("updated"))
    return parse_stac_time(props.get("datetime")) or parse_stac_time(props.get("start_datetime"))


def dotted_get(doc: Any, path: str) -> Any:
    """``doc["a"]["b"][0]`` for ``"a.b.0"``; None where the path leads nowhere.

    A key that itself holds dots (``"eo:cloud_cover"`` holds none, ``"a.b"`` would) is found
    when it matches the whole rest of the path.
    """
    cur = doc
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if isinstance(cur, dict):
            rest = ".".join(parts[i:])
            if rest in cur:
                return cur[rest]
            if parts[i] not in cur:
                return None
            cur = cur[parts[i]]
        elif isinstance(cur, list) and parts[i].isdigit() and int(parts[i]) < len(cur):
            cur = cur[int(parts[i])]
        else:
            return None
        i += 1
    return cur


def minimal_collection(collection_id: str, source: str, harvester: str) -> dict[str, Any]:
    """A valid collection document for a harvest target that does not exist yet.

    Its extent is the whole globe and open in time: the harvested items say more, and a
    curator may replace the document (harvesting never overwrites an existing collection).
    """
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": f"Harvested by {harvester} from {source}",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [{"rel": "via", "href": source}] if source.startswith("http") else [],
    }


@dataclass
class MarkTracker:
    """The high-water mark as pages complete: advanced only while the source answers in time
    order (ascending), so a run stopped after page *k* resumes after page *k* without skipping
    anything; a source found out of order keeps the mark where it was until the run ends."""

    mark: datetime | None
    run_max: datetime | None = None
    ordered: bool = True

    def page(self, times: list[datetime]) -> datetime | None:
        """Record a completed page's item times; the mark to store now (None: unchanged)."""
        if not times:
            return None
        if self.run_max is not None and min(times) < self.run_max:
            self.ordered = False
        page_max = max(times)
        self.run_max = page_max if self.run_max is None else max(self.run_max, page_max)
        if not self.ordered:
            return None
        if self.mark is None or self.run_max > self.mark:
            self.mark = self.run_max
            return self.mark
        return None

    def finish(self) -> datetime | None:
        """The mark at the end of a complete run (None: unchanged)."""
        if self.run_max is not None and (self.mark is None or self.run_max > self.mark):
            self.mark = self.run_max
            return self.mark
        return None
