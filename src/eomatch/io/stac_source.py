"""Real products from a STAC API: the ``stac`` product source.

Items are fetched with pystac-client as plain dicts (building ``pystac.Item`` objects for every
result is needlessly slow) and turned into :class:`~eomatch.core.products.Product` directly.
Provider platform strings (``sentinel-2a``, ``LANDSAT_9``) are mapped through the satellite
registry so that products carry the registry's ``Satellite.name``, as the catalogue requires.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

import shapely
from pystac.errors import STACError
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from shapely.errors import ShapelyError
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from urllib3 import Retry

from eomatch.core.products import Product, SensorKey
from eomatch.core.satellites import SatelliteRegistry, UnknownSatelliteError
from eomatch.errors import EomatchError

log = logging.getLogger(__name__)

Bbox = tuple[float, float, float, float]
T = TypeVar("T")

RETRY_STATUSES = (429, 500, 502, 503, 504)
"""HTTP answers worth retrying: rate limiting and transient server trouble."""
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
        bbox: tuple[float, float, float, float],
        start: datetime,
        end: datetime,
    ) -> list[Product]:
        """Products of ``sensor`` whose footprint meets ``bbox`` and time meets [start, end]."""
        ...


def split_antimeridian_bbox(bbox: Bbox) -> list[Bbox]:
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


class StacApiSource:
    """Searches one STAC API for the products of the configured collections.

    Args:
        url: the API landing page.
        collections: our collection id → the provider's collection id.
        headers: sent with every request (credentials: ``Authorization`` etc.).
        page_size: items per page (the ``limit`` parameter); paging follows ``next`` links.
        max_retries: retries (with exponential backoff) after a connection error, timeout,
            429 or 5xx answer, for each request.
        registry: maps provider platform names to satellites (built-in registry by default).
        timeout: seconds to wait for the server to connect and to answer.
        backoff_factor: urllib3 backoff: the n-th retry waits ``backoff_factor * 2**(n-1)`` s.
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
    ) -> None:
        if page_size < 1:
            raise EomatchError(f"STAC API {url}: page_size must be at least 1, got {page_size}")
        if max_retries < 0:
            raise EomatchError(f"STAC API {url}: max_retries must be >= 0, got {max_retries}")
        self.url = url
        self.collections = dict(collections)
        self.headers = dict(headers or {})
        self.page_size = page_size
        self.max_retries = max_retries
        self.registry = registry if registry is not None else SatelliteRegistry()
        self.timeout = timeout
        self.backoff_factor = backoff_factor
        self._client: Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StacApiSource({self.url!r}, collections={self.collections!r})"

    # -- connection -------------------------------------------------------------------------

    def _retry(self) -> Retry:
        return Retry(
            total=self.max_retries,
            connect=self.max_retries,
            read=self.max_retries,
            status=self.max_retries,
            other=self.max_retries,
            backoff_factor=self.backoff_factor,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # POST /search is a read: retrying it is safe
            raise_on_status=False,  # hand the last answer back so its status can be reported
            respect_retry_after_header=True,
        )

    def client(self) -> Client:
        """The opened API client (opened once, on first use)."""
        with self._lock:
            if self._client is None:
                stac_io = StacApiIO(
                    headers=self.headers, timeout=self.timeout, max_retries=self._retry()
                )
                self._client = self._call(
                    "open",
                    lambda: Client.open(
                        self.url, headers=self.headers, stac_io=stac_io, timeout=self.timeout
                    ),
                )
            return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` turning pystac-client/requests/JSON failures into one-line user errors."""
        try:
            try:
                return fn()
            except STACError as exc:
                # pystac wraps failures while resolving links (the root, on a search)
                if isinstance(exc.__cause__, APIError | ValueError):
                    raise exc.__cause__ from exc
                raise
        except EomatchError:
            raise
        except APIError as exc:
            raise self._api_error(what, exc) from exc
        except json.JSONDecodeError as exc:
            raise EomatchError(
                f"STAC API {self.url}: {what}: the answer is not valid JSON ({exc})"
            ) from exc
        except (ValueError, KeyError, TypeError, STACError) as exc:
            # pystac raises these for JSON that is not a STAC document
            raise EomatchError(
                f"STAC API {self.url}: {what}: unexpected answer ({type(exc).__name__}: {exc})"
            ) from exc
        except NotImplementedError as exc:
            # pystac-client: the API does not declare the conformance class this needs
            raise EomatchError(f"STAC API {self.url}: {what}: not supported ({exc})") from exc
        except OSError as exc:
            raise EomatchError(f"STAC API {self.url}: {what}: {exc}") from exc

    def _api_error(self, what: str, exc: APIError) -> EomatchError:
        status = getattr(exc, "status_code", None)
        detail = " ".join(str(exc).split())
        if len(detail) > 200:
            detail = detail[:197] + "..."
        n = self.max_retries
        tries = f"after {n} {'retry' if n == 1 else 'retries'}" if n else "(no retries)"
        if status is None:
            kind = "did not answer in time" if "timed out" in detail else "is unreachable"
            return EomatchError(
                f"STAC API {self.url} {kind} ({what}, {tries}): {detail or 'no details'}"
            )
        return EomatchError(
            f"STAC API {self.url}: {what} failed with HTTP {status} {tries}: "
            f"{detail or '(empty body)'}"
        )

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
        bbox: tuple[float, float, float, float],
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
        self, client: Client, collection: str, bbox: Bbox, interval: tuple[datetime, datetime]
    ) -> Iterator[dict[str, Any]]:
        what = f"search of collection {collection!r}"
        search = self._call(
            what,
            lambda: client.search(
                collections=[collection], bbox=list(bbox), datetime=interval, limit=self.page_size
            ),
        )
        pages = iter(search.pages_as_dicts())
        while True:
            page = self._call(what, lambda: next(pages, None))
            if page is None:
                return
            features = page.get("features")
            if not isinstance(features, list):
                raise EomatchError(f"STAC API {self.url}: {what}: a page has no 'features' list")
            yield from (f for f in features if isinstance(f, dict))

    def _platform_name(self, platform: Any) -> str | None:
        if not isinstance(platform, str):
            return None
        try:
            return self.registry.get(platform).name
        except UnknownSatelliteError:
            return None

    def _product(self, item: Mapping[str, Any], sensor: SensorKey, wanted: str) -> Product | None:
        """The product of one item dict, or None when it belongs elsewhere or is unusable."""
        item_id = str(item["id"])
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
        try:
            geom = _polygonal(shape(geometry))
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


def _assets(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, asset in raw.items():
        if isinstance(asset, dict) and isinstance(asset.get("href"), str):
            out[str(key)] = {f: asset[f] for f in KEPT_ASSET_FIELDS if f in asset}
    return out


def _kept_properties(props: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in props.items()
        if k in KEPT_PROPERTIES or k.startswith(KEPT_PROPERTY_PREFIXES)
    }
