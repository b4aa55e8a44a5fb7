"""Harvesting: copy a provider catalogue (STAC API, static STAC, OpenSearch) into the database.

One run of one harvester: ask the source for what is newer than the harvester's high-water
mark (sorted by time where the source can), and for each page: keep the items the CQL2
``filter`` matches, pass them through the ``postprocess`` classes, register them in the
``target`` collection through the registrar (mode ``replace``: one transaction per page,
recorded in the history as ``harvest:<name>``), then advance the mark. A missing target
collection is created first (a minimal document; an existing one is never overwritten).
A run that fails or is killed resumes from the last completed page; pages are upserts by
id, so nothing is ever duplicated.
"""

from __future__ import annotations

import importlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import cql2
from shapely.geometry import box, shape

from eomatch.config.harvest import HarvesterConfig
from eomatch.core.harvest import (
    HarvestCounts,
    MarkTracker,
    Postprocessor,
    item_time,
    minimal_collection,
)
from eomatch.core.validation import stac_document_problem
from eomatch.errors import ConfigError, EomatchError, InputError, NetworkError, NotFoundError
from eomatch.io.http import Answer, HttpLimits, HttpSession, TransportFailure
from eomatch.io.opensearch import NS, OpenSearchClient
from eomatch.io.stac_api_client import StacApi
from eomatch.io.static_catalogue import STRUCTURAL_RELS, read_static_catalogue

if TYPE_CHECKING:
    from eomatch.io.pgstac_store import PgstacStore

__all__ = [
    "HARVEST_LIMITS",
    "HarvestReport",
    "Source",
    "fetch_raw",
    "find_harvester",
    "load_postprocessors",
    "run_harvest",
    "with_page_size",
]

log = logging.getLogger(__name__)

Progress = Callable[[HarvestCounts], None]


@dataclass
class HarvestReport:
    """What one run did."""

    name: str
    run: str
    dry_run: bool
    counts: HarvestCounts = field(default_factory=HarvestCounts)
    mark_before: datetime | None = None
    mark_after: datetime | None = None
    created_collection: bool = False
    invalid: list[str] = field(default_factory=list)
    """``id: problem`` of items skipped because they could not be stored (first 20)."""
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the terminal."""
        c = self.counts
        verb = "would register" if self.dry_run else "registered"
        mark = self.mark_after.strftime("%Y-%m-%dT%H:%M:%SZ") if self.mark_after else "none"
        return (
            f"{self.name}: {c.seen} item(s) in {c.pages} page(s), {c.filtered} filtered out, "
            f"{c.dropped} dropped by post-processors, {c.invalid} invalid, {verb} {c.written}; "
            f"high-water mark {mark} ({self.seconds:.1f} s)"
        )

    def to_json(self) -> dict[str, Any]:
        """For ``--format json`` and job results."""
        return {
            "harvester": self.name,
            "run": self.run,
            "dry_run": self.dry_run,
            "counts": self.counts.to_json(),
            "mark_before": self.mark_before.isoformat() if self.mark_before else None,
            "mark_after": self.mark_after.isoformat() if self.mark_after else None,
            "created_collection": self.created_collection,
            "invalid": self.invalid,
            "seconds": round(self.seconds, 3),
        }


def find_harvester(harvesters: list[HarvesterConfig], name: str) -> HarvesterConfig:
    """The configured harvester called ``name``.

    Raises:
        NotFoundError: none is (the message lists the configured names).
    """
    for h in harvesters:
        if h.name == name:
            return h
    known = ", ".join(h.name for h in harvesters) or "none configured under harvesters:"
    raise NotFoundError(f"no harvester named {name!r} (known: {known})")


def load_postprocessors(h: HarvesterConfig) -> list[Postprocessor]:
    """Instances of the harvester's ``postprocess`` classes, in order.

    Raises:
        ConfigError: a class cannot be imported, constructed, or has no ``postprocess``.
    """
    out: list[Postprocessor] = []
    for i, path in enumerate(h.postprocess):
        where = f"harvesters.{h.name}.postprocess.{i}"
        module_name, _, attr = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{where}: cannot import {path} ({exc})") from None
        try:
            obj = cls()
        except Exception as exc:
            raise ConfigError(f"{where}: {path}() failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(obj, Postprocessor):
            raise ConfigError(f"{where}: {path} has no postprocess(item) method")
        out.append(obj)
    return out


def _filter(h: HarvesterConfig) -> Callable[[dict[str, Any]], bool]:
    if h.filter is None:
        return lambda item: True
    expr = cql2.Expr(h.filter)

    def matches(item: dict[str, Any]) -> bool:
        try:
            return bool(expr.matches(item))
        except Exception:  # cql2 cannot decide (a property the item lacks): not a match
            return False

    return matches


# -- sources ------------------------------------------------------------------------------------


class _SourceApi(StacApi):
    """The STAC client, its failures worded as the source's: unreachable or answering 5xx/429
    after the retries is a :class:`NetworkError` (a job retries it later); a 4xx stays final."""

    def _transport_error(self, exc: TransportFailure, what: str) -> EomatchError:
        return NetworkError(f"cannot reach the harvest source {self.root}: {exc.reason}")

    def _status_error(self, answer: Answer, url: str, what: str) -> EomatchError:
        error = super()._status_error(answer, url, what)
        if answer.status >= 500 or answer.status in (408, 425, 429):
            return NetworkError(str(error))
        return error


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


FILTER_CONFORMANCE = ("/item-search#filter", "/conf/filter", "/conf/features-filter")
"""Endings of conformance classes that promise CQL2 filtering of item searches."""


def _updated_filter(start: datetime | None, end: datetime | None) -> dict[str, Any]:
    """CQL2-JSON: ``updated`` within the window."""
    parts: list[dict[str, Any]] = []
    if start is not None:
        parts.append({"op": ">=", "args": [{"property": "updated"}, {"timestamp": _iso(start)}]})
    if end is not None:
        parts.append({"op": "<=", "args": [{"property": "updated"}, {"timestamp": _iso(end)}]})
    return parts[0] if len(parts) == 1 else {"op": "and", "args": parts}


@dataclass
class Source:
    """What to ask a source for: the harvester plus the window this run covers."""

    harvester: HarvesterConfig
    start: datetime | None
    end: datetime | None
    limits: HttpLimits
    transport: Any = None

    @property
    def prop(self) -> str:
        """The item time the window follows: ``datetime`` or ``updated``."""
        return "updated" if self.harvester.query.time.property == "updated" else "datetime"

    def pages(self, raw: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Pages of items as the source has them (``raw``: fetched only, not read into items;
        each page is then a list of empty placeholders, one per entry)."""
        kind = self.harvester.resource.type
        if kind == "stac-api":
            return self._stac_api(raw)
        if kind == "stac-static":
            return self._static()
        return self._opensearch(raw)

    def _stac_api(self, raw: bool) -> Iterator[list[dict[str, Any]]]:
        h = self.harvester
        with _SourceApi(
            h.resource.url,
            credentials=h.resource.headers(h.name),
            max_retries=h.resource.max_retries,
            timeout=self.limits.timeout_s,
            backoff=self.limits.backoff_s,
            limits=self.limits,
            transport=self.transport,
        ) as api:
            landing = api.get("")
            links = landing.get("links", []) if isinstance(landing, dict) else []
            methods = {
                str(link.get("method", "GET")).upper()
                for link in links
                if isinstance(link, dict) and link.get("rel") == "search"
            }
            conforms = (
                [str(c) for c in landing.get("conformsTo", [])] if isinstance(landing, dict) else []
            )
            method = "POST" if "POST" in methods or not methods else "GET"
            body: dict[str, Any] = {"limit": h.resource.page_size}
            if h.query.collection:
                body["collections"] = [h.query.collection]
            if h.query.bbox:
                body["bbox"] = list(h.query.bbox)
            by_updated = self.prop == "updated"
            local_window = False
            if (self.start or self.end) and not by_updated:
                a = _iso(self.start) if self.start else ".."
                b = _iso(self.end) if self.end else ".."
                body["datetime"] = f"{a}/{b}"
            elif self.start or self.end:  # updated: a CQL2 filter where the API has them
                if any(c.endswith(FILTER_CONFORMANCE) for c in conforms):
                    body["filter"] = _updated_filter(self.start, self.end)
                    body["filter-lang"] = "cql2-json"
                else:
                    local_window = True  # everything is fetched; the window is applied here
            if any("/item-search#sort" in c for c in conforms):
                field_name = f"properties.{self.prop}"
                body["sortby"] = (
                    [{"field": field_name, "direction": "asc"}]
                    if method == "POST"
                    else f"+{field_name}"
                )
            for page in api.search(body, method=method, what=f"harvest {h.name} at {api.root}"):
                feats = [f for f in page["features"] if isinstance(f, dict)]
                if local_window and not raw:
                    feats = [f for f in feats if self._in_window(item_time(f, self.prop))]
                yield feats if not raw else [{}] * len(feats)

    def _in_window(self, t: datetime | None) -> bool:
        return (
            t is not None
            and not (self.start and t < self.start)
            and not (self.end and t > self.end)
        )

    def _static(self) -> Iterator[list[dict[str, Any]]]:
        h = self.harvester
        with HttpSession(None, limits=self.limits, transport=self.transport) as http:
            cat = read_static_catalogue(
                h.resource.url, collection=h.target.collection, session=http
            )
        area = box(*h.query.bbox) if h.query.bbox else None
        kept = []
        for item in cat.items:
            if h.query.collection and item.get("collection") != h.query.collection:
                continue
            t = item_time(item, self.prop)
            if not self._in_window(t):
                continue
            geom = item.get("geometry")
            if area is not None and (
                not isinstance(geom, dict) or not shape(geom).intersects(area)
            ):
                continue
            kept.append((t, str(item.get("id")), item))
        kept.sort(key=lambda x: (x[0], x[1]))
        size = h.resource.page_size
        for i in range(0, len(kept), size):
            yield [x[2] for x in kept[i : i + size]]

    def _opensearch(self, raw: bool) -> Iterator[list[dict[str, Any]]]:
        h = self.harvester
        values: dict[tuple[str, str], Any] = {}
        if h.query.bbox:
            values[(NS["geo"], "box")] = ",".join(f"{v:g}" for v in h.query.bbox)
        if self.start:
            values[(NS["time"], "start")] = _iso(self.start)
        if self.end:
            values[(NS["time"], "end")] = _iso(self.end)
        if h.query.collection:
            values[(NS["eo"], "parentIdentifier")] = h.query.collection
        with OpenSearchClient(
            h.resource.url,
            credentials=h.resource.headers(h.name),
            limits=self.limits,
            transport=self.transport,
        ) as client:
            template = client.description().template(h.resource.format_config.type)
            for uri, name in template.parameters():  # ask for time order where offered
                if name == "sortParam":
                    values[(uri, name)] = "startDate"
                elif name == "sortOrder":
                    values[(uri, name)] = "ascending"
            for page in client.pages(
                values,
                page_size=h.resource.page_size,
                mapping_=h.resource.format_config.property_mapping,
                collection=h.target.collection,
                preferred_type=h.resource.format_config.type,
                raw=raw,
            ):
                yield page.items if not raw else [{}] * page.raw_entries


# -- one run ------------------------------------------------------------------------------------


def _prepare(item: dict[str, Any], target: str) -> dict[str, Any]:
    """The item as registered: in ``target``; provider structural links replaced by ``via``."""
    links = item.get("links")
    kept = []
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            continue
        rel = link.get("rel")
        if rel == "self" and link["href"].startswith(("http://", "https://")):
            kept.append({"rel": "via", "href": link["href"], "type": "application/geo+json"})
        elif rel not in STRUCTURAL_RELS:
            kept.append(link)
    item["links"] = kept
    item["collection"] = target
    return item


HARVEST_LIMITS = HttpLimits(max_seconds=6 * 3600.0, max_pages=100_000, max_items=10_000_000)
"""A run's bounds: longer than one search's (a harvest is a long paged read by nature); a
bigger backlog stops with one line and the next run continues from the mark."""


def _limits(h: HarvesterConfig, limits: HttpLimits | None) -> HttpLimits:
    return replace(limits or HARVEST_LIMITS, max_retries=h.resource.max_retries)


def _window(h: HarvesterConfig, mark: datetime | None) -> tuple[datetime | None, datetime | None]:
    start = h.query.time.begin
    if h.query.since_last and mark is not None and (start is None or mark > start):
        start = mark
    return start, h.query.time.end


def run_harvest(
    h: HarvesterConfig,
    store: PgstacStore | None,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    limits: HttpLimits | None = None,
    transport: Any = None,
    run_id: str | None = None,
    message: str | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> HarvestReport:
    """Harvest once (see the module docstring).

    Args:
        store: the central database (None only with ``dry_run``: no mark, nothing written).
        dry_run: fetch, filter and post-process, count, write nothing (not even the state).
        progress: called after each page with the run's counts so far.
        limits: HTTP bounds and retry policy (default :class:`HttpLimits`).
        run_id: recorded with every transaction of the run (default: a new id).
        cancelled: polled between pages; True stops the run as failed (the mark is kept).

    Raises:
        EomatchError: the source failed (after the retries) or a write failed; the pages
            registered before stay, and the next run resumes after them.
    """
    if store is None and not dry_run:
        raise InputError("a harvest that writes needs the database")
    began = time.monotonic()
    run = run_id or f"harvest:{h.name}:{datetime.now(UTC):%Y%m%dT%H%M%SZ}:{uuid.uuid4().hex[:8]}"
    posts = load_postprocessors(h)
    keep = _filter(h)
    state = None
    mark = None
    if store is not None:
        from eomatch.io.harvest_state import HarvestStateStore

        state = HarvestStateStore(store)
        mark = state.get(h.name).mark
    report = HarvestReport(h.name, run, dry_run, mark_before=mark, mark_after=mark)
    start, end = _window(h, mark)
    source = Source(h, start, end, _limits(h, limits), transport)
    target = h.target.collection
    registrar = None
    if not dry_run and store is not None:
        from eomatch.io.history_schema import WriteNote
        from eomatch.io.registrar import Registrar

        writer = store.noted(
            WriteNote(
                actor=f"harvest:{h.name}",
                kind="harvest",
                message=message or f"harvest {h.name} from {h.resource.url}"[:2000],
                run=run,
            )
        )
        registrar = Registrar(writer)
        if not store.collection_exists(target):  # before the first page: an empty run too
            writer.upsert_items(
                [], collections=[minimal_collection(target, h.resource.url, h.name)]
            )
            report.created_collection = True
        assert state is not None
        state.start(h.name, run)
    tracker = MarkTracker(mark)
    counts = report.counts
    try:
        for page in source.pages():
            if cancelled is not None and cancelled():
                raise EomatchError(f"harvest {h.name} was cancelled")
            c = HarvestCounts(pages=1, seen=len(page))
            out: dict[str, dict[str, Any]] = {}
            times = []
            for item in page:
                t = item_time(item, source.prop)
                if t is not None:
                    times.append(t)
                if not keep(item):
                    c.filtered += 1
                    continue
                doc: dict[str, Any] | None = item
                for post in posts:
                    if doc is None:
                        break
                    try:
                        doc = post.postprocess(doc)
                    except Exception as exc:
                        raise EomatchError(
                            f"harvest {h.name}: post-processor {type(post).__name__} failed on "
                            f"item {item.get('id')!r:.100}: {type(exc).__name__}: {exc}"
                        ) from None
                    if doc is not None and not isinstance(doc, dict):
                        raise EomatchError(
                            f"harvest {h.name}: post-processor {type(post).__name__} returned "
                            f"a {type(doc).__name__} for item {item.get('id')!r:.100} (give "
                            "back the item, a new item, or None)"
                        )
                if doc is None:
                    c.dropped += 1
                    continue
                doc = _prepare(doc, target)
                problem = stac_document_problem(doc, "Feature")
                if problem:
                    c.invalid += 1
                    if len(report.invalid) < 20:
                        report.invalid.append(f"{str(doc.get('id'))[:100]}: {problem}")
                    continue
                out[str(doc["id"])] = doc
            c.written = len(out)
            if registrar is not None and state is not None:
                if out:  # one transaction: in pgSTAC and (same rows) in the records views
                    registrar.replace(list(out.values()))
                counts.add(c)
                state.page_done(h.name, tracker.page(times), counts.to_json(), c.written)
            else:
                tracker.page(times)
                counts.add(c)
            if progress is not None:
                progress(counts)
    except BaseException as exc:
        if state is not None and not dry_run:
            text = str(exc) if isinstance(exc, EomatchError) else f"{type(exc).__name__}: {exc}"
            try:
                state.finish(
                    h.name, None, counts.to_json(), " ".join(text.split())[:1000] or "stopped"
                )
            except EomatchError:
                log.warning("could not record the failure of harvest %s", h.name)
        raise
    final = tracker.finish()
    if state is not None and not dry_run:
        state.finish(h.name, final, counts.to_json())
    report.mark_after = tracker.mark
    report.seconds = time.monotonic() - began
    return report


def fetch_raw(h: HarvesterConfig, *, limits: HttpLimits | None = None) -> tuple[int, int]:
    """Fetch the pages a full run of ``h`` would (no mark), reading nothing into items:
    ``(pages, entries)`` — the baseline a harvest's speed is compared with."""
    source = Source(h, h.query.time.begin, h.query.time.end, _limits(h, limits))
    pages = entries = 0
    for page in source.pages(raw=True):
        pages += 1
        entries += len(page)
    return pages, entries


def with_page_size(h: HarvesterConfig, size: int) -> HarvesterConfig:
    """``h`` asking for ``size`` items a page."""
    return h.model_copy(update={"resource": h.resource.model_copy(update={"page_size": size})})
