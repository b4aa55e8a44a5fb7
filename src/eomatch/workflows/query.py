"""``eomatch query``: pull matchups, their events and products from a STAC API into a catalogue.

The central service (stac-fastapi-pgstac over pgSTAC) holds the same collections and items as
the catalogues ``eomatch find`` writes, with links between items as
``{api}/collections/{cid}/items/{id}``. A pull:

1. reads the landing page and every collection (paged), and picks the matchup collections
   (``{col}-{platform}-vs-...``) that the filters allow;
2. searches their matchup items page by page (POST ``/search`` with ``collections``, ``bbox``,
   ``datetime``, ``filter``; ``next`` links followed, any page size the server gives);
3. for each page, fetches the events and products its matchups link to **in bulk**
   (``/search`` with ``collections`` + ``ids``, :data:`IDS_PER_REQUEST` ids of any
   collections per request, the events' limited to the time the page's matchups span,
   concurrently; never one request per item, and each item once per run);
4. writes the page through :meth:`MatchupCatalogue.import_items`: relative links, day
   catalogs, index, crash-safe order; unchanged items are not rewritten, local changes
   (downloaded data, analysis assets) are kept. Meanwhile a background thread already
   fetches the next page (steps 2 and 3), so the server's work overlaps ours.

Filters mean what they mean for ``get_events``/``eomatch download``: ``collections`` and
``platforms`` keep matchups involving any of them (a matchup collection id works too),
``start_time``/``stop_time`` (or ``end_time``) keep matchups whose time span overlaps the
window, ``bbox`` keeps matchups whose collocation region intersects it (W > E crosses the
antimeridian: two searches) and ``filter`` is CQL2 text over the matchup item properties
(checked here as well, so the result does not depend on the server's CQL2 support).

Pages are written in order and committed every :data:`COMMIT_EVERY` matchups (day catalogs,
collections, one sync of the file system, the index), so an interrupted pull leaves a valid
catalogue holding whole pages (those since the last commit are found again by the next open,
which rebuilds the index from the files), and running it again completes it. Bad
input (unreachable API, refused key, unknown collection, an answer that is not JSON) fails
before anything is written.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import cql2
import httpx
import orjson

from eomatch.core import stac_items as si
from eomatch.core.products import EVENTS_PREFIX
from eomatch.core.satellites import UnknownSatelliteError
from eomatch.core.vocabulary import (
    COLLECTIONS_PROP,
    EVENT_ID_PROP,
    PLATFORMS_PROP,
    ROLE_EVENT,
    ROLE_FIELD,
)
from eomatch.errors import EomatchError, UnsafePathError
from eomatch.io.catalogue import ImportStatus, MatchupCatalogue
from eomatch.io.http import HttpLimits
from eomatch.io.safe_paths import check_component
from eomatch.io.stac_api_client import API_KEY_ENV, StacApi
from eomatch.timeparse import TimeLike, parse_time
from eomatch.wiring import build_registry

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_PAGE_SIZE = 1000
"""Matchups asked for per search page (the server may answer fewer; paging continues)."""
IDS_PER_REQUEST = 250
"""Ids per bulk fetch of events or products: a page of 1000 matchups links to ~1800, so a page
is 8 requests over the ``workers`` threads and pgSTAC's processes (measured on the 1M-item
catalogue, cold pages, 4 workers: 0.45 s a page at 250 ids a request, 1.2 s at 1000, which
left one core idle), bodies small (~300 kB)."""
EVENT_WINDOW_MIN = 2000
"""Event ids x event collections from which a page's events are asked for in requests of
their own, limited to the page's time (:func:`linked_searches`). A request costs the API and
pgSTAC ~5 ms; an id tested against a collection's partition ~4 us. A page of 1000 matchups at
1M items: ~450 events of ~80 collections (36 000); the benchmark's link walk, 100 matchups of
one pair: ~45 of one (45), where a third request took its p50 from ~20 to ~27 ms."""
COMMIT_EVERY = 20000
"""Matchups written between catalogue commits (whole pages). Each commit rewrites the day
catalogs and collections the pages touched (a collection lists all its days) and syncs the
file system: at 1000 a page, committing every page spent ~15 % of a pull; every 5000, a pull
of 100 000 matchups at 1M items still spent 61 s of client CPU and 72 s, every 20 000 55 s and
65 s. A pull interrupted between commits loses nothing: the next open finds the files written
since (see the module docstring)."""

Progress = Callable[[str, int, int], None]
"""(stage, done, total) callback; total is 0 while unknown."""


def linked_searches(
    wanted: Mapping[str, Iterable[str]],
    per_request: int = IDS_PER_REQUEST,
    window: str | None = None,
) -> list[dict[str, Any]]:
    """The ``/search`` bodies that fetch ``wanted`` (ids by collection) in bulk.

    A body asks for up to ``per_request`` ids of *several* collections (``collections`` +
    ``ids``): a page of matchups of many pairs links to events and products of ~90
    collections, and one request per collection was ~90 small requests a page (measured on
    the 1M-item catalogue; docs/service.md, "Scale"). ``benchmarks/service.py`` times the
    same bodies (its link walk).

    Events get bodies of their own, limited to ``window`` (a ``datetime`` interval) when one
    is given: the interval the page's matchups span, which each of their events overlaps (an
    event spans its matchups). A page's ~450 events come from ~80 small collections, and a
    server can only test every id against every listed collection: at 1M items pgSTAC spent
    ~150 ms of a page's ~340 ms of searches on that, ~20 ms with the window (its time index
    leaves a few candidates a collection). :meth:`_Puller.fetch` asks again, without the
    window, for any event it did not return. Only when that cross product is large
    (:data:`EVENT_WINDOW_MIN`): otherwise the events' own request costs more than it saves.
    """
    events = {c: ids for c, ids in wanted.items() if si.collection_kind(c) == "event"}
    n_events = sum(len(set(ids)) for ids in events.values())
    if window is None or n_events * len(events) < EVENT_WINDOW_MIN:
        return _id_searches(wanted, per_request)
    others = {c: ids for c, ids in wanted.items() if c not in events}
    out = _id_searches(others, per_request)
    out += [{**body, "datetime": window} for body in _id_searches(events, per_request)]
    return out


def _id_searches(wanted: Mapping[str, Iterable[str]], per_request: int) -> list[dict[str, Any]]:
    pairs = sorted({(coll, iid) for coll, ids in wanted.items() for iid in ids})
    out: list[dict[str, Any]] = []
    for i in range(0, len(pairs), per_request):
        chunk = pairs[i : i + per_request]
        ids = sorted({iid for _, iid in chunk})
        out.append({"collections": sorted({c for c, _ in chunk}), "ids": ids, "limit": len(ids)})
    return out


def page_window(matchups: Iterable[Mapping[str, Any]]) -> str | None:
    """The ``datetime`` interval ``matchups`` span (:func:`linked_searches`); None when none
    has readable times (their events are then asked for without one)."""
    lo = hi = None
    for mu in matchups:
        try:
            start, end = si.item_times(mu)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        lo = start if lo is None or start < lo else lo
        hi = end if hi is None or end > hi else hi
    if lo is None or hi is None or lo > hi:  # an API's matchups ending before they start
        return None
    return f"{si.format_datetime(lo)}/{si.format_datetime(hi)}"


_ITEM_URL = re.compile(r"(?:^|/)collections/([^/?#]+)/items/([^/?#]+)/?(?:[?#].*)?$")
_STATUS_RANK = {"unchanged": 0, "updated": 1, "new": 2}


# --- results --------------------------------------------------------------------------------


@dataclass
class KindCounts:
    """New, updated and unchanged items of one kind."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        """All items of this kind that the pull touched or checked."""
        return self.new + self.updated + self.unchanged


@dataclass
class QuerySummary:
    """What a pull found and what it changed in the local catalogue."""

    catalogue: Path
    api_url: str
    matchups: KindCounts = field(default_factory=KindCounts)
    events: KindCounts = field(default_factory=KindCounts)
    products: KindCounts = field(default_factory=KindCounts)
    skipped: int = 0
    """Matchups left out because their event or a product is missing from the API."""
    requests: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The human summary printed by ``eomatch query``."""
        out = [
            f"{self.matchups.total} matchup(s) of {self.events.total} event(s) with "
            f"{self.products.total} product(s) from {self.api_url}"
        ]
        for name, c in (
            ("matchups", self.matchups),
            ("events", self.events),
            ("products", self.products),
        ):
            out.append(f"{name}: {c.new} new, {c.updated} updated, {c.unchanged} unchanged")
        if self.skipped:
            out.append(f"skipped {self.skipped} matchup(s) incomplete in the API")
        out.append(f"catalogue: {self.catalogue / 'catalog.json'}")
        return out


@functools.lru_cache(maxsize=1 << 16)
def item_ref(href: str) -> tuple[str, str] | None:
    """``(collection, item id)`` of an API item URL ``.../collections/{c}/items/{id}``.

    Cached: a pull parses each link several times (events' links again on every page that
    adds matchups to them), ~5 % of its CPU.
    """
    m = _ITEM_URL.search(href)
    if m is None:
        return None
    return unquote(m.group(1)), unquote(m.group(2))


# --- selection --------------------------------------------------------------------------------


def _labels(matchup_collection: str) -> list[str]:
    return matchup_collection.split("-vs-")


@dataclass(frozen=True)
class _Selection:
    collections: list[str]
    """Matchup collections to search."""
    direct: frozenset[str]
    """Matchup collection ids named in ``--collections``."""
    products: frozenset[str]
    """Product collection ids named in ``--collections``."""
    platforms: frozenset[str]
    expr: cql2.Expr | None

    def keep(self, item: Mapping[str, Any]) -> bool:
        props = item.get("properties") or {}
        involved = set(props.get(COLLECTIONS_PROP) or [])
        if (
            (self.direct or self.products)
            and item.get("collection") not in self.direct
            and not self.products & involved
        ):
            return False
        if self.platforms and not self.platforms & set(props.get(PLATFORMS_PROP) or []):
            return False
        if self.expr is not None:
            feature = {"type": "Feature", "id": item.get("id"), "properties": props}
            if not self.expr.matches(feature):
                return False
        return True


def _canonical_platforms(platforms: Sequence[str]) -> frozenset[str]:
    """Registry names (``Sentinel-2A``) for any alias (``S2A``); unknown names as given."""
    registry = build_registry()
    out = set()
    for p in platforms:
        try:
            out.add(registry.get(p).name)
        except UnknownSatelliteError:
            out.add(p)
    return frozenset(out)


def select_collections(
    available: Sequence[str],
    collections: Sequence[str] | None,
    platforms: Sequence[str] | None,
    api_url: str = "the API",
) -> tuple[list[str], frozenset[str], frozenset[str], frozenset[str]]:
    """Matchup collections to search, and the names the matchups are checked against.

    Returns:
        ``(matchup collections, matchup collection ids named, product collections named,
        platforms)``.

    Raises:
        EomatchError: a named collection or platform that no matchup collection involves.
    """
    matchups = sorted(c for c in available if si.collection_kind(c) == "matchup")
    chosen = set(matchups)
    direct: set[str] = set()
    products: set[str] = set()
    if collections:
        picked: set[str] = set()
        for name in collections:
            if name in matchups:
                direct.add(name)
                picked.add(name)
                continue
            hits = {m for m in matchups if any(x.startswith(f"{name}-") for x in _labels(m))}
            if not hits:
                raise EomatchError(
                    f"unknown collection '{name}': no matchup collection at {api_url} involves "
                    f"it (matchup collections: {', '.join(matchups) or 'none'})"
                )
            products.add(name)
            picked |= hits
        chosen &= picked
    plats: frozenset[str] = frozenset()
    if platforms:
        plats = _canonical_platforms(platforms)
        for p in sorted(plats):
            if not any(x.endswith(f"-{p}") for m in matchups for x in _labels(m)):
                raise EomatchError(
                    f"unknown platform '{p}': no matchup collection at {api_url} involves it"
                )
        chosen = {m for m in chosen if any(x.endswith(f"-{p}") for x in _labels(m) for p in plats)}
    return sorted(chosen), frozenset(direct), frozenset(products), plats


def _bbox_parts(bbox: Sequence[float] | None) -> list[list[float] | None]:
    if bbox is None:
        return [None]
    if len(bbox) != 4:
        raise EomatchError(f"bbox needs four numbers W S E N, got {len(bbox)}")
    w, s, e, n = (float(v) for v in bbox)
    if not (-90 <= s <= n <= 90) or not (-180 <= w <= 180 and -180 <= e <= 180):
        raise EomatchError(
            f"bbox {w} {s} {e} {n}: need -180 <= W, E <= 180 and -90 <= S <= N <= 90"
        )
    if w <= e:
        return [[w, s, e, n]]
    return [[w, s, 180.0, n], [-180.0, s, e, n]]


def _interval(start: TimeLike | None, end: TimeLike | None) -> str | None:
    if start is None and end is None:
        return None
    lo = parse_time(start, "start time") if start is not None else None
    hi = parse_time(end, "end time") if end is not None else None
    if lo is not None and hi is not None and hi < lo:
        raise EomatchError(
            f"end time {si.format_datetime(hi)} is before start time {si.format_datetime(lo)}"
        )
    return f"{si.format_datetime(lo) if lo else '..'}/{si.format_datetime(hi) if hi else '..'}"


# --- API items to catalogue items ---------------------------------------------------------------


def _item_rel(item: Mapping[str, Any]) -> str:
    return si.item_path(str(item["collection"]), str(item["id"]), si.item_times(item)[0])


def local_form(
    item: Mapping[str, Any],
    rel: str,
    paths: Mapping[str, str],
    more_paths: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An API item with links between items made relative (from ``rel``, its own file).

    ``paths`` (then ``more_paths``) map item ids to their catalogue-relative files; item links
    to anything else are dropped, as are the API's structural links (the catalogue writes its
    own). Assets are kept as they are: http(s) URLs, or ``file://`` URLs of data on a shared
    drive (used in place).
    """
    links = []
    for link in item.get("links") or ():
        if type(link) is not dict:
            continue
        kind = link.get("rel")
        if kind in ("self", "root", "parent", "collection"):
            continue
        href = str(link.get("href", ""))
        ref = item_ref(href) if kind in ("related", "derived_from") else None
        if ref is not None:
            target = paths.get(ref[1])
            if target is None and more_paths is not None:
                target = more_paths.get(ref[1])
            if target is None:
                continue
            link = {**link, "href": si.relative_href(rel, target)}
        elif not _is_web_url(href):
            continue  # a path from an API would point into (or out of) our catalogue
        links.append(link)
    links.sort(key=lambda x: (str(x.get("rel")), str(x.get("href"))))
    assets = item.get("assets")
    kept = {
        k: a
        for k, a in (assets.items() if isinstance(assets, dict) else ())
        if isinstance(a, dict) and si.is_url(str(a.get("href", "")))
    }
    return {**item, "links": links, "assets": kept}


def _short(value: Any, limit: int = 80) -> str:
    """An identifier from an API for a one-line message: printable, cut to ``limit``."""
    text = repr(value) if not isinstance(value, str) or not value.isprintable() else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_web_url(href: str) -> bool:
    return href.lower().startswith(("http://", "https://"))


def unsafe_item(item: Mapping[str, Any]) -> str | None:
    """Why an API item cannot be written into a catalogue (its id or collection cannot be a
    file name), or None when it can."""
    try:
        check_component("item id", item.get("id"))
        check_component("collection id", item.get("collection"))
    except UnsafePathError as exc:
        return str(exc)
    if item.get("id") in ("catalog", "collection"):
        return f"item id {item.get('id')!r} is reserved for catalogue files"
    return None


def _local_collection(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "links"}
    if isinstance(out.get("assets"), dict):  # like item assets: URLs only, never paths
        out["assets"] = {
            k: a
            for k, a in out["assets"].items()
            if isinstance(a, dict) and si.is_url(str(a.get("href", "")))
        }
    return out


# --- the pull ---------------------------------------------------------------------------------


def read_ahead(items: Iterator[_T], depth: int = 1) -> Generator[_T, None, None]:
    """What ``items`` yields, in order, produced up to ``depth`` + 1 items ahead in a thread.

    An exception raised by ``items`` is raised here when its turn comes (after everything
    yielded before it). Closing this generator (the consumer failed or stopped) stops the
    producer at its next item; it is not waited for beyond that, as it may be inside a
    request.
    """
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, end))
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="eomatch-query-fetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = slots.get()
            if not ok:
                raise value
            if value is end:
                break
            yield value
    finally:
        stop.set()
    thread.join()


def _event_of(matchup: Mapping[str, Any]) -> tuple[str, str] | None:
    for link in matchup.get("links") or []:
        if link.get("rel") == "related" and link.get(ROLE_FIELD) == ROLE_EVENT:
            ref = item_ref(str(link.get("href", "")))
            if ref is not None:
                return ref
    eid = (matchup.get("properties") or {}).get(EVENT_ID_PROP)
    if isinstance(eid, str) and eid:
        return EVENTS_PREFIX + str(matchup["collection"]), eid
    return None


def _products_of(matchup: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for link in matchup.get("links") or []:
        if link.get("rel") == "derived_from":
            ref = item_ref(str(link.get("href", "")))
            if ref is not None:
                out.append(ref)
    return out


@dataclass
class _Page:
    """One page of matchups with the linked items fetched for it."""

    matchups: list[dict[str, Any]]
    linked: dict[str, dict[str, Any]]
    """Events and products fetched for this page (not those of earlier pages), by id."""
    seen: int = 0
    """Matchups seen so far, this page included (progress)."""
    matched: int = 0
    """The server's ``numberMatched`` if it gave one (progress)."""


class _Puller:
    """State of one pull: what was fetched, where it lives, what changed."""

    def __init__(
        self,
        api: StacApi,
        output: Path,
        collection_docs: dict[str, dict[str, Any]],
        summary: QuerySummary,
        workers: int,
        catalogue_id: str,
        description: str,
    ) -> None:
        self.api = api
        self.output = output
        self.docs = collection_docs
        self.summary = summary
        self.catalogue_id = catalogue_id
        self.description = description
        self.cat: MatchupCatalogue | None = None
        self.paths: dict[str, str] = {}
        """Item id → catalogue-relative file, for every item fetched in this run."""
        self.events: dict[str, bytes] = {}
        """Events fetched in this run (re-imported when later pages add matchups), as JSON:
        ~45 000 events kept as dicts and lists were millions of objects that the cyclic
        collector walked again and again (it walks containers, never bytes)."""
        self.statuses: dict[str, ImportStatus] = {}
        self.kinds: dict[str, str] = {}
        self.requested: set[str] = set()
        """Ids of the linked items asked for in this run (found or not): each is asked once."""
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="eomatch-query")
        self.batch: contextlib.ExitStack | None = None
        """The catalogue batch the pages since the last commit are written in."""
        self.uncommitted = 0
        """Matchups written since the last commit."""
        self.writing = False
        """A page is being written (a failure now leaves it incomplete)."""

    def commit(self) -> None:
        """End the open batch: day catalogs, collections, one file system sync, the index."""
        if self.batch is not None:
            batch, self.batch = self.batch, None
            self.uncommitted = 0
            batch.close()

    def finish(self, exc: BaseException) -> None:
        """End the open batch after a failure.

        A failure between pages (fetching: an outage, a refused answer) commits the whole
        pages written, leaving a valid catalogue as it is; one while a page is being written
        rolls the index back, and the next open rebuilds it from the files written.
        """
        if self.batch is None:
            return
        batch, self.batch = self.batch, None
        if self.writing:
            batch.__exit__(type(exc), exc, exc.__traceback__)
            return
        try:
            batch.close()
        except Exception as error:  # the original failure is the one to report
            log.warning("committing the pages pulled before the failure failed: %s", error)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.cat is not None:
            self.cat.close()

    def catalogue(self) -> MatchupCatalogue:
        if self.cat is None:
            self.cat = MatchupCatalogue.create(
                self.output, id=self.catalogue_id, description=self.description
            )
        return self.cat

    def fetch(
        self, wanted: Mapping[str, set[str]], window: str | None = None
    ) -> list[dict[str, Any]]:
        """Items by collection and id, in bulk (:func:`linked_searches`) and concurrently.

        An item of a listed collection that was not asked for (an id that exists in two of
        them) is dropped. Events asked for within ``window`` and not returned are asked for
        again without it (an API whose events do not span their matchups loses nothing).
        """
        asked = {(coll, iid) for coll, ids in wanted.items() for iid in ids}
        out: list[dict[str, Any]] = []
        for got in self.pool.map(self._fetch_body, linked_searches(wanted, window=window)):
            out.extend(f for f in got if (f.get("collection"), f.get("id")) in asked)
        if window is not None:
            found = {(f.get("collection"), f.get("id")) for f in out}
            again: dict[str, set[str]] = {}
            for coll, iid in asked - found:
                if si.collection_kind(coll) == "event":
                    again.setdefault(coll, set()).add(iid)
            if again:
                out.extend(self.fetch(again))
        return out

    def _fetch_body(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            f for page in self.api.search(body) for f in page["features"] if isinstance(f, dict)
        ]

    def prepare(self, matchups: list[dict[str, Any]]) -> _Page:
        """Fetch what one page of matchups links to and was not asked for yet (no writes).

        Runs ahead of :meth:`write`, in the fetching thread: it only reads the API and
        ``self.requested``, which nothing else touches.
        """
        wanted: dict[str, set[str]] = {}
        for mu in matchups:
            for coll, iid in [e for e in [_event_of(mu)] if e] + _products_of(mu):
                if iid not in self.requested:
                    wanted.setdefault(coll, set()).add(iid)
        fetched = self.fetch(wanted, page_window(matchups))
        for ids in wanted.values():
            self.requested |= ids
        got: dict[str, dict[str, Any]] = {}
        for item in fetched:
            problem = unsafe_item(item)
            if problem is None:
                got[item["id"]] = item
            else:
                self.summary.warnings.append(f"API item refused: {problem}")
        return _Page(matchups, got)

    def write(self, page: _Page) -> None:
        """Write one fetched page: its complete matchups with their events and products."""
        matchups, got = page.matchups, page.linked
        batch: dict[str, dict[str, Any]] = {}
        for item in got.values():
            self.paths[item["id"]] = self._rel(item)
            if si.collection_kind(item["collection"]) == "event":
                self.events[item["id"]] = orjson.dumps(item)
            batch[item["id"]] = item
        kept = []
        for mu in matchups:
            needed = [e for e in [_event_of(mu)] if e] + _products_of(mu)
            if not needed or any(iid not in self.paths for _, iid in needed):
                self.summary.skipped += 1
                gone = [iid for _, iid in needed if iid not in self.paths] or ["its event"]
                self.summary.warnings.append(
                    f"matchup {_short(mu.get('id'))}: left out, missing from the API: "
                    f"{', '.join(_short(g) for g in gone[:5])}{' ...' if len(gone) > 5 else ''}"
                )
                continue
            self.paths[mu["id"]] = self._rel(mu)
            kept.append(mu)
        for mu in kept:
            batch[mu["id"]] = mu
            ev = _event_of(mu)
            if ev is not None and ev[1] in self.events and ev[1] not in batch:
                # again: its links now reach more matchups
                batch[ev[1]] = orjson.loads(self.events[ev[1]])
        if not kept:
            return
        cat = self.catalogue()
        # the files the batch's links reach: fetched this run (self.paths), or (related) in
        # the catalogue, looked up together
        paths = self.paths
        linked: set[str] = set()
        for item in batch.values():
            for link in item.get("links") or ():
                if type(link) is dict and link.get("rel") == "related":
                    ref = item_ref(str(link.get("href", "")))
                    if ref is not None and ref[1] not in paths:
                        linked.add(ref[1])
        found = cat.item_paths(linked) if linked else None
        items = [local_form(it, paths[iid], paths, found) for iid, it in batch.items()]
        colls = {it["collection"] for it in items}
        docs = {c: _local_collection(self.docs[c]) for c in colls if c in self.docs}
        # items are serialised here and their files created by the catalogue's helper process
        # (catalogue_bulk): writer threads in this process would fight over the GIL with this
        # thread and the one fetching the next page (measured: ~1.5 s more CPU a 10 000-matchup
        # pull with 4 writer threads). Pages share a batch until COMMIT_EVERY matchups: each
        # commit rewrites every collection a page touched (they list all their days) and
        # syncs the file system
        if self.batch is None:
            self.batch = contextlib.ExitStack()
            self.batch.enter_context(cat.batch(workers=0))
        self.writing = True
        result = cat.import_items(items, docs)
        self.writing = False
        self.uncommitted += len(kept)
        if self.uncommitted >= COMMIT_EVERY:
            self.commit()
        for iid, status in result.items():
            old = self.statuses.get(iid)
            if old is None or _STATUS_RANK[status] > _STATUS_RANK[old]:
                self.statuses[iid] = status
            self.kinds[iid] = si.collection_kind(batch[iid]["collection"])

    def _rel(self, item: Mapping[str, Any]) -> str:
        try:
            return _item_rel(item)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EomatchError(f"API item {item.get('id')!r}: invalid STAC item: {exc}") from None

    def tally(self) -> None:
        for kind, counts in (
            ("matchup", self.summary.matchups),
            ("event", self.summary.events),
            ("product", self.summary.products),
        ):
            for iid, status in self.statuses.items():
                if self.kinds[iid] == kind:
                    setattr(counts, status, getattr(counts, status) + 1)


def query_catalogue(
    api_url: str,
    output: str | Path,
    *,
    start_time: TimeLike | None = None,
    stop_time: TimeLike | None = None,
    bbox: Sequence[float] | None = None,
    collections: Sequence[str] | None = None,
    platforms: Sequence[str] | None = None,
    filter: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 3,
    workers: int = 4,
    catalogue_id: str = "matchup-catalogue",
    progress: Progress | None = None,
    limits: HttpLimits | None = None,
    transport: httpx.BaseTransport | None = None,
    end_time: TimeLike | None = None,
) -> QuerySummary:
    """Pull matching matchups with their events and products from a STAC API into ``output``.

    Args:
        api_url: the API root (internal or external service).
        output: catalogue root; created if missing, merged into if present.
        start_time: keep matchups ending at or after this (naive means UTC).
        stop_time: keep matchups starting at or before this.
        bbox: ``[W, S, E, N]`` the collocation region must intersect (W > E wraps).
        collections: product collections (or matchup collection ids); matchups involving any.
        platforms: platforms (any registry alias); matchups involving any.
        filter: CQL2 text over the matchup item properties.
        limit: matchups per search page asked for.
        api_key: sent as ``Authorization: Bearer``.
        timeout: seconds per request.
        max_retries: retries per request after connection errors, timeouts and transient
            answers (:data:`~eomatch.io.http.RETRY_STATUSES`).
        workers: concurrent bulk fetches.
        catalogue_id: id of a new catalogue's root catalog.
        progress: ``(stage, done, total)`` callback.
        limits: bounds on bytes per answer, pages and items per search, time per search,
            Retry-After waits and redirects (:class:`~eomatch.io.http.HttpLimits` defaults).
        transport: an httpx transport (tests).
        end_time: ``stop_time`` under the name ``eomatch-query --end-time`` and the previous
            generation's ``query()`` use; give one of the two.

    Items whose id or collection cannot be a file name are refused (a warning each; matchups
    needing them are left out), links whose href is a path are dropped, and so are assets
    whose href is not a URL: nothing an API sends makes a path leave the catalogue.

    Returns:
        Counts of new, updated and unchanged matchups, events and products.

    Raises:
        EomatchError: bad input, an unreachable API, a refused key, an unknown collection or
            platform, an answer that is not STAC JSON. Raised before anything is written when
            the problem shows on the first requests; later, the pages already written stay
            (a valid catalogue) and the message says so: running the pull again resumes it.
    """
    started = time.perf_counter()
    if end_time is not None:
        if stop_time is not None:
            raise EomatchError("end_time is another name of stop_time; give one of them")
        stop_time = end_time
    if limit < 1:
        raise EomatchError(f"--limit must be >= 1, got {limit}")
    expr = None
    if filter is not None:
        try:
            expr = cql2.Expr(filter)
            expr.to_json()
        except Exception as exc:
            lines = [x.strip(" =|") for x in str(exc).splitlines() if x.strip(" =|")]
            raise EomatchError(
                f"invalid CQL2 filter {filter!r}: {lines[-1] if lines else type(exc).__name__}"
            ) from None
    datetime_param = _interval(start_time, stop_time)
    boxes = _bbox_parts(bbox)
    root = Path(output)
    if root.exists() and not root.is_dir():
        raise EomatchError(f"{root} is a file, not a catalogue folder")
    summary = QuerySummary(catalogue=root, api_url=api_url.rstrip("/"))

    def tick(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    with StacApi(
        api_url,
        api_key,
        timeout=timeout,
        max_retries=max_retries,
        limits=limits,
        transport=transport,
    ) as api:
        landing = api.get("")
        if not isinstance(landing, dict) or not (
            landing.get("type") in ("Catalog", "Collection") or "conformsTo" in landing
        ):
            raise EomatchError(f"{api.root}: not a STAC API landing page")
        docs = api.collections()
        chosen, direct, products, plats = select_collections(
            sorted(docs), collections, platforms, api.root
        )
        selection = _Selection(chosen, direct, products, plats, expr)
        puller = _Puller(
            api,
            root,
            docs,
            summary,
            workers,
            catalogue_id,
            f"Matchups pulled from {api.root}",
        )
        seen: set[str] = set()
        written = 0

        def fetched_pages() -> Iterator[_Page]:
            for box in boxes if chosen else []:
                body: dict[str, Any] = {"collections": chosen, "limit": limit}
                if box is not None:
                    body["bbox"] = box
                if datetime_param is not None:
                    body["datetime"] = datetime_param
                if expr is not None:
                    body["filter"] = expr.to_json()
                    body["filter-lang"] = "cql2-json"
                matched = 0
                for page in api.search(body):
                    if isinstance(page.get("numberMatched"), int):
                        matched = page["numberMatched"]
                    fresh = []
                    for mu in page["features"]:
                        if not isinstance(mu, dict) or mu.get("id") in seen:
                            continue
                        if si.collection_kind(str(mu.get("collection", ""))) != "matchup":
                            continue
                        problem = unsafe_item(mu)
                        if problem is not None:
                            summary.warnings.append(f"API matchup refused: {problem}")
                            continue
                        seen.add(str(mu.get("id")))
                        if selection.keep(mu):
                            fresh.append(mu)
                    got = puller.prepare(fresh)
                    got.seen, got.matched = len(seen), matched
                    yield got

        # the next page is fetched (the server's work) while this one is written (ours)
        pages = read_ahead(fetched_pages())
        try:
            tick("matchups", 0, 0)
            for got in pages:
                puller.write(got)
                written += len(got.matchups)
                tick("matchups", got.seen, max(got.matched, got.seen))
            puller.commit()
        except BaseException as exc:
            puller.finish(exc)
            if not isinstance(exc, EomatchError):
                raise
            if written:
                raise EomatchError(
                    f"{exc} (pull interrupted: {written} matchup(s) written to {root}; "
                    "run the same query again to resume)"
                ) from None
            raise
        finally:
            pages.close()
            puller.close()
        if puller.cat is None:  # nothing matched: still leave a (valid, empty) catalogue
            MatchupCatalogue.create(
                root, id=catalogue_id, description=f"Matchups pulled from {api.root}"
            ).close()
        puller.tally()
        summary.requests = api.requests
    summary.seconds = time.perf_counter() - started
    return summary


__all__ = [
    "API_KEY_ENV",
    "DEFAULT_PAGE_SIZE",
    "EVENT_WINDOW_MIN",
    "KindCounts",
    "QuerySummary",
    "StacApi",
    "item_ref",
    "linked_searches",
    "local_form",
    "page_window",
    "query_catalogue",
    "select_collections",
]
