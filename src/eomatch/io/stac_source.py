"""Real products from a STAC API: the ``stac`` product source.

Items are fetched through the project's one STAC client (:class:`~eomatch.io.stac_api_client.
StacApi`, bounded by :class:`~eomatch.io.http.HttpLimits`) as plain dicts and turned into
:class:`~eomatch.core.products.Product` directly. Provider platform strings (``sentinel-2a``,
``LANDSAT_9``) are mapped through the satellite registry so that products carry the registry's
``Satellite.name``, as the catalogue requires. The provider is untrusted: ids that cannot be
file names, local asset hrefs and absurd footprints never reach the catalogue.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx
import shapely
from shapely.errors import ShapelyError
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from eomatch.core import stac_items as si
from eomatch.core.products import Product, SensorKey
from eomatch.core.satellites import SatelliteRegistry, UnknownSatelliteError
from eomatch.core.vocabulary import BBox
from eomatch.errors import EomatchError, RemoteLimitError, UnsafePathError
from eomatch.io.http import RETRY_STATUSES, Answer, HttpLimits, TransportFailure
from eomatch.io.safe_paths import check_component
from eomatch.io.stac_api_client import StacApi

log = logging.getLogger(__name__)

MAX_FOOTPRINT_VERTICES = 2_000
"""Footprints with more vertices are simplified (topology preserved) until they have at most
this many; real footprints have 5 (Landsat) to a few hundred (Sentinel-3) vertices."""
SIMPLIFY_TOLERANCE_DEG = 1e-4
"""First simplification tolerance (about 11 m); doubled until the footprint is small enough."""
REFUSE_FOOTPRINT_VERTICES = 200_000
"""Footprints with more vertices than this are refused (the item is skipped) unparsed."""
REMOTE_SCHEMES = frozenset({"http", "https", "s3", "gs"})
"""Asset href schemes kept from a provider; local paths and ``file://`` are dropped."""
RESERVED_IDS = frozenset({"catalog", "collection"})
"""Item ids that would collide with the catalogue's own files."""
KEPT_PROPERTIES = frozenset({"eo:cloud_cover", "proj:epsg", "proj:code"})
"""Provider properties copied onto products (useful for filtering matchups later)."""
KEPT_PROPERTY_PREFIXES = ("view:",)
KEPT_ASSET_FIELDS = ("href", "type", "title", "roles", "file:checksum", "file:size")
"""Asset fields kept: enough to download and verify, without the providers' bulky band tables."""


@runtime_checkable
class ProductSource(Protocol):
    """Where products come from: predicted from orbits, or searched in a provider catalogue."""

    def search(
        self,
        sensor: SensorKey,
        bbox: BBox,
        start: datetime,
        end: datetime,
    ) -> list[Product]:
        """Products of ``sensor`` whose footprint meets ``bbox`` and time meets [start, end]."""
        ...


def split_antimeridian_bbox(bbox: BBox) -> list[BBox]:
    """One bbox, or two when it crosses the antimeridian (west > east), as STAC APIs expect."""
    west, south, east, north = bbox
    if west <= east:
        return [bbox]
    return [(west, south, 180.0, north), (-180.0, south, east, north)]


def _utc(value: datetime) -> datetime:
    """Aware UTC datetime (naive input is taken as UTC, the project-wide convention)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """A valid (Multi)Polygon; footprints are areas, so stray lines/points from repair go."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts: list[Polygon] = []
    for part in getattr(geom, "geoms", ()):
        if isinstance(part, Polygon):
            parts.append(part)
        elif isinstance(part, MultiPolygon):
            parts.extend(part.geoms)
    if len(parts) == 1:
        return parts[0]
    return MultiPolygon(parts)


class _ProviderApi(StacApi):
    """The STAC client worded for a provider: ``STAC API {url}: {what} ...`` messages."""

    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(url, **kw)
        self.shown = url
        """The URL as configured (messages name it so)."""

    def _tries(self) -> str:
        n = self.max_retries
        return f"after {n} {'retry' if n == 1 else 'retries'}" if n else "(no retries)"

    def _transport_error(self, exc: TransportFailure, what: str) -> EomatchError:
        kind = "did not answer in time" if exc.timed_out else "is unreachable"
        return EomatchError(f"STAC API {self.shown} {kind} ({what}, {self._tries()}): {exc.reason}")

    def _limit_error(self, exc: RemoteLimitError, what: str) -> EomatchError:
        text = str(exc)
        return RemoteLimitError(text if text.startswith(what) else f"{what}: {text}")

    def _json_error(self, url: str, what: str) -> EomatchError:
        return EomatchError(f"STAC API {self.shown}: {what}: the answer is not valid JSON ({url})")

    def _shape_error(self, url: str, what: str, problem: str) -> EomatchError:
        return EomatchError(f"STAC API {self.shown}: {what}: {problem}")

    def _status_error(self, answer: Answer, url: str, what: str) -> EomatchError:
        detail = " ".join(answer.text.split())
        if len(detail) > 200:
            detail = detail[:197] + "..."
        tries = f" {self._tries()}" if answer.status in RETRY_STATUSES else ""  # else final
        return EomatchError(
            f"STAC API {self.shown}: {what} failed with HTTP {answer.status}{tries}: "
            f"{detail or '(empty body)'}"
        )


class StacApiSource:
    """Searches one STAC API for the products of the configured collections.

    Everything the API sends is untrusted (see :mod:`eomatch.io.http` for the bounds on
    requests): item ids must be plain file names (:func:`~eomatch.io.safe_paths.check_component`),
    asset hrefs must be remote URLs, and footprints are simplified above
    :data:`MAX_FOOTPRINT_VERTICES` vertices and refused above :data:`REFUSE_FOOTPRINT_VERTICES`;
    an item failing these is skipped with a warning.

    Args:
        url: the API landing page.
        collections: our collection id → the provider's collection id.
        headers: secret headers (``headers_env``: ``Authorization`` etc.), sent only to the
            origin (scheme, host, port) of ``url``: never to another host a ``next`` link or a
            redirect names.
        page_size: items per page (the ``limit`` parameter); paging follows ``next`` links.
        max_retries: retries (with exponential backoff) after a connection error, a timeout
            or a transient answer (:data:`~eomatch.io.http.RETRY_STATUSES`), for each request.
        registry: maps provider platform names to satellites (built-in registry by default).
        timeout: seconds to connect, and allowed between received bytes.
        backoff_factor: the n-th retry waits ``backoff_factor * 2**(n-1)`` s (or what
            ``Retry-After`` asks, capped at ``limits.max_retry_after_s``).
        limits: bounds on pages, items, bytes and time per search (``HttpLimits`` defaults).
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        url: str,
        collections: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        page_size: int = 100,
        max_retries: int = 3,
        registry: SatelliteRegistry | None = None,
        timeout: float = 30,
        *,
        backoff_factor: float = 0.5,
        limits: HttpLimits | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if page_size < 1:
            raise EomatchError(f"STAC API {url}: page_size must be at least 1, got {page_size}")
        if max_retries < 0:
            raise EomatchError(f"STAC API {url}: max_retries must be >= 0, got {max_retries}")
        if not url.lower().startswith(("http://", "https://")):
            raise EomatchError(f"STAC API {url!r}: the URL must start with http:// or https://")
        self.url = url
        self.collections = dict(collections)
        self.headers = dict(headers or {})
        self.page_size = page_size
        self.max_retries = max_retries
        self.registry = registry if registry is not None else SatelliteRegistry()
        self.timeout = timeout
        self.backoff_factor = backoff_factor
        self.limits = limits
        self.transport = transport
        self._client: _ProviderApi | None = None
        self._search: tuple[str, str] = ("search", "POST")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StacApiSource({self.url!r}, collections={self.collections!r})"

    # -- connection -------------------------------------------------------------------------

    def client(self) -> StacApi:
        """The API client, opened once on first use (reads the landing page)."""
        with self._lock:
            if self._client is None:
                api = _ProviderApi(
                    self.url,
                    timeout=self.timeout,
                    max_retries=self.max_retries,
                    backoff=self.backoff_factor,
                    credentials=self.headers,
                    limits=self.limits,
                    transport=self.transport,
                )
                try:
                    landing = api._request("GET", api.url(""), api.deadline("open"), "open")
                    if not isinstance(landing, dict):
                        raise api._shape_error(self.url, "open", "not a STAC landing page")
                except BaseException:
                    api.close()
                    raise
                self._search = _search_endpoint(landing)
                self._client = api
                weakref.finalize(self, api.close)  # no socket left to the garbage collector
            return self._client

    def close(self) -> None:
        """Close the connections (opened again on the next search)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- search -----------------------------------------------------------------------------

    def provider_collection(self, sensor: SensorKey) -> str:
        """The provider's collection id for our collection (clear error when not configured)."""
        try:
            return self.collections[sensor.collection]
        except KeyError:
            known = ", ".join(sorted(self.collections)) or "none"
            raise EomatchError(
                f"STAC API {self.url}: no provider collection configured for collection "
                f"{sensor.collection!r} (configured: {known})"
            ) from None

    def search(
        self,
        sensor: SensorKey,
        bbox: BBox,
        start: datetime,
        end: datetime,
    ) -> list[Product]:
        """Products of ``sensor`` meeting ``bbox`` (west > east crosses the antimeridian).

        Items of other platforms in the same provider collection (S2A and S2B share one) are
        dropped, as are items without a usable geometry or time.
        """
        provider_col = self.provider_collection(sensor)
        try:
            wanted = self.registry.get(sensor.platform).name
        except UnknownSatelliteError as exc:
            raise EomatchError(f"STAC API {self.url}: {exc}") from None
        interval = (_utc(start), _utc(end))
        client = self.client()
        seen: set[str] = set()
        products: list[Product] = []
        for part in split_antimeridian_bbox(bbox):
            for item in self._items(client, provider_col, part, interval):
                item_id = item.get("id")
                if not isinstance(item_id, str) or item_id in seen:
                    continue
                seen.add(item_id)
                product = self._product(item, sensor, wanted)
                if product is not None:
                    products.append(product)
        return products

    def _items(
        self, client: StacApi, collection: str, bbox: BBox, interval: tuple[datetime, datetime]
    ) -> Iterator[dict[str, Any]]:
        what = f"search of collection {collection!r}"
        body = {
            "collections": [collection],
            "bbox": list(bbox),
            "datetime": f"{si.format_datetime(interval[0])}/{si.format_datetime(interval[1])}",
            "limit": self.page_size,
        }
        href, method = self._search
        for page in client.search(body, href=href, method=method, what=what):
            yield from (f for f in page["features"] if isinstance(f, dict))

    def _platform_name(self, platform: Any) -> str | None:
        if not isinstance(platform, str):
            return None
        try:
            return self.registry.get(platform).name
        except UnknownSatelliteError:
            return None

    def _product(self, item: Mapping[str, Any], sensor: SensorKey, wanted: str) -> Product | None:
        """The product of one item dict, or None when it belongs elsewhere or is unusable."""
        try:
            item_id = check_component("item id", item.get("id"))
            if item_id in RESERVED_IDS:
                raise UnsafePathError(f"item id {item_id!r} is reserved for catalogue files")
        except UnsafePathError as exc:
            log.warning("STAC API %s: %s; item skipped", self.url, exc)
            return None
        props = item.get("properties")
        if not isinstance(props, dict):
            log.warning("STAC API %s: item %s has no properties; skipped", self.url, item_id)
            return None
        platform = self._platform_name(props.get("platform"))
        if platform != wanted:
            log.debug(
                "item %s: platform %r is not %s; skipped", item_id, props.get("platform"), wanted
            )
            return None
        dt = _parse_time(props.get("datetime"))
        start = _parse_time(props.get("start_datetime")) or dt
        end = _parse_time(props.get("end_datetime")) or dt or start
        if start is None or end is None:
            log.warning("STAC API %s: item %s has no usable time; skipped", self.url, item_id)
            return None
        geometry = item.get("geometry")
        if not isinstance(geometry, dict):
            log.warning("STAC API %s: item %s has no geometry; skipped", self.url, item_id)
            return None
        vertices = count_vertices(geometry, REFUSE_FOOTPRINT_VERTICES)
        if vertices > REFUSE_FOOTPRINT_VERTICES:
            log.warning(
                "STAC API %s: item %s: footprint has more than %d vertices; skipped",
                self.url,
                item_id,
                REFUSE_FOOTPRINT_VERTICES,
            )
            return None
        try:
            geom = bounded_footprint(_polygonal(shape(geometry)))
        except (ValueError, TypeError, AttributeError, ShapelyError) as exc:
            log.warning("STAC API %s: item %s: bad geometry (%s); skipped", self.url, item_id, exc)
            return None
        if geom.is_empty:
            log.warning("STAC API %s: item %s: empty footprint; skipped", self.url, item_id)
            return None
        return Product(
            id=item_id,
            sensor=sensor,
            start=start,
            end=end,
            geometry=geom,
            predicted=False,
            assets=_assets(item.get("assets")),
            properties=_kept_properties(props),
        )


def count_vertices(geometry: Any, stop_above: int) -> int:
    """Positions in a GeoJSON geometry dict, counted without building it (stops past a bound)."""
    count = 0
    stack: list[Any] = [geometry.get("coordinates"), *(geometry.get("geometries") or [])]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.append(x.get("coordinates"))
            stack.extend(x.get("geometries") or [])
        elif isinstance(x, list):
            if x and isinstance(x[0], int | float):
                count += 1
                if count > stop_above:
                    return count
            else:
                stack.extend(x)
    return count


def bounded_footprint(geom: BaseGeometry) -> BaseGeometry:
    """``geom``, simplified (topology preserved) if it has more than MAX_FOOTPRINT_VERTICES.

    The tolerance starts at :data:`SIMPLIFY_TOLERANCE_DEG` and doubles (up to 0.5 degrees)
    until the footprint is small enough, so a footprint is changed no more than needed.

    Raises:
        ValueError: no tolerance up to 0.5 degrees brings it under the cap (say, thousands of
            separate tiny polygons): not a footprint.
    """
    if shapely.get_num_coordinates(geom) <= MAX_FOOTPRINT_VERTICES:
        return geom
    tolerance = SIMPLIFY_TOLERANCE_DEG
    while True:
        simple = _polygonal(geom.simplify(tolerance, preserve_topology=True))
        if shapely.get_num_coordinates(simple) <= MAX_FOOTPRINT_VERTICES:
            break
        tolerance *= 2
        if tolerance > 0.5:
            raise ValueError(
                f"{shapely.get_num_coordinates(geom)} vertices do not simplify to "
                f"{MAX_FOOTPRINT_VERTICES} or fewer"
            )
    log.debug(
        "footprint of %d vertices simplified to %d (tolerance %g deg)",
        shapely.get_num_coordinates(geom),
        shapely.get_num_coordinates(simple),
        tolerance,
    )
    return simple


def _search_endpoint(landing: Mapping[str, Any]) -> tuple[str, str]:
    """The search link of a landing page as ``(href, method)``: POST preferred."""
    links = landing.get("links")
    found: dict[str, str] = {}
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "search":
            href = link.get("href")
            if isinstance(href, str) and href:
                found.setdefault(str(link.get("method") or "GET").upper(), href)
    if "POST" in found:
        return found["POST"], "POST"
    if "GET" in found:
        return found["GET"], "GET"
    return "search", "POST"


def _assets(raw: Any) -> dict[str, dict[str, Any]]:
    """Download-relevant asset fields; only remote hrefs (a provider names no local files)."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, asset in raw.items():
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            continue
        if urlsplit(asset["href"]).scheme.lower() not in REMOTE_SCHEMES:
            log.debug("asset %r: href %r is not a remote URL; dropped", key, asset["href"][:80])
            continue
        out[str(key)] = {f: asset[f] for f in KEPT_ASSET_FIELDS if f in asset}
    return out


def _kept_properties(props: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in props.items()
        if k in KEPT_PROPERTIES or k.startswith(KEPT_PROPERTY_PREFIXES)
    }
