"""OpenSearch (with the Geo, Time and EO extensions) as a harvest source: description, pages, items.

OWSLib has no OpenSearch client for EO catalogues, so the description document (OSDD) is read
here: its ``Url`` templates (one per response type), their ``indexOffset``/``pageOffset``, and
the namespace prefixes the template parameters use. A search fills the template by the
parameters' *meaning* (namespace + name: ``geo:box``, ``time:start``, ``count``,
``startIndex``...), whatever prefix the server chose; optional parameters left unfilled are
dropped from the URL. Pages are followed through the answer's ``next`` link, else by
``startIndex`` (or ``startPage``) until a short or empty page.

Answers are Atom (XML) or GeoJSON. Each entry becomes a STAC item: id, geometry
(``georss:polygon``/``box``/``point``/``where``, or the GeoJSON geometry), times
(``dc:date``, ``time:start``/``time:end``, resto's ``startDate``/``completionDate``), assets
(Atom ``enclosure``/``alternate``/``icon`` links; resto's ``services.download`` and
``thumbnail``) and the ``property_mapping`` of the harvester: STAC property name -> dotted path
into a GeoJSON feature (its ``properties`` first), or an element path into an Atom entry
(ElementTree's XPath subset with the document's prefixes, optionally ending in ``/@attr``).

All XML is parsed with defusedxml (no entities, no DTDs): description and feeds are untrusted.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

import defusedxml
import defusedxml.ElementTree as SafeET
from shapely.geometry import shape

from eomatch.core.harvest import dotted_get
from eomatch.errors import EomatchError, NetworkError, RemoteLimitError
from eomatch.io.http import Answer, Deadline, HttpLimits, HttpSession, TransportFailure

__all__ = [
    "NS",
    "Description",
    "OpenSearchClient",
    "OpenSearchPage",
    "UrlTemplate",
    "atom_entry_to_item",
    "fill_template",
    "geojson_feature_to_item",
    "parse_atom",
    "parse_description",
    "parse_geojson",
]

NS = {
    "os": "http://a9.com/-/spec/opensearch/1.1/",
    "atom": "http://www.w3.org/2005/Atom",
    "geo": "http://a9.com/-/opensearch/extensions/geo/1.0/",
    "time": "http://a9.com/-/opensearch/extensions/time/1.0/",
    "eo": "http://a9.com/-/opensearch/extensions/eo/1.0/",
    "param": "http://a9.com/-/spec/opensearch/extensions/parameters/1.0/",
    "georss": "http://www.georss.org/georss",
    "gml": "http://www.opengis.net/gml",
    "dc": "http://purl.org/dc/elements/1.1/",
    "media": "http://search.yahoo.com/mrss/",
}
"""Well-known prefixes (usable in ``property_mapping`` whatever the server declares)."""

GEOJSON_TYPES = ("application/geo+json", "application/json", "application/vnd.geo+json")
ATOM_TYPE = "application/atom+xml"
_TOKEN = re.compile(r"\{([^{}?]+)(\??)\}")
_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?$")


# -- the description document ------------------------------------------------------------------


@dataclass(frozen=True)
class UrlTemplate:
    """One ``<Url>`` of a description document."""

    template: str
    type: str
    rel: str = "results"
    index_offset: int = 1
    page_offset: int = 1
    namespaces: Mapping[str, str] = field(default_factory=dict)
    """Prefix -> namespace URI in scope of the template (the document's declarations)."""

    def parameters(self) -> set[tuple[str, str]]:
        """``(namespace URI, local name)`` of every parameter in the template."""
        return {self._resolve(m.group(1)) for m in _TOKEN.finditer(self.template)}

    def _resolve(self, name: str) -> tuple[str, str]:
        prefix, _, local = name.rpartition(":")
        if not prefix:
            return NS["os"], local
        return self.namespaces.get(prefix, NS.get(prefix, prefix)), local


@dataclass(frozen=True)
class Description:
    """The parts of an OSDD a harvester uses."""

    short_name: str
    templates: tuple[UrlTemplate, ...]

    def template(self, preferred: str | None = None) -> UrlTemplate:
        """The results template of ``preferred`` type, else GeoJSON, else Atom.

        Raises:
            EomatchError: the document offers neither.
        """
        results = [t for t in self.templates if t.rel == "results"]
        order = [preferred] if preferred else []
        order += [*GEOJSON_TYPES, ATOM_TYPE]
        for wanted in order:
            for t in results:
                if t.type.split(";")[0].strip() == wanted:
                    return t
        offered = ", ".join(sorted({t.type for t in results})) or "none"
        raise EomatchError(
            f"the OpenSearch description offers no Atom or GeoJSON results (offered: {offered})"
        )


_XMLNS = re.compile(rb"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*["']([^"']*)["']""")


def _namespaces(content: bytes) -> dict[str, str]:
    """The ``xmlns:prefix`` declarations of a document, first one per prefix (ElementTree drops
    them when parsing; the document was parsed safely before this reads its text)."""
    out: dict[str, str] = {}
    for prefix, uri in _XMLNS.findall(content):
        out.setdefault(prefix.decode("utf-8", "replace"), uri.decode("utf-8", "replace"))
    return out


def _parse_xml(content: bytes, what: str) -> ET.Element:
    try:
        root: ET.Element = SafeET.fromstring(content)
    except (ET.ParseError, defusedxml.DefusedXmlException, ValueError) as exc:
        raise NetworkError(
            f"{what}: not readable XML ({' '.join(str(exc).split())[:160]})"
        ) from None
    return root


def parse_description(content: bytes, url: str) -> Description:
    """Read an OpenSearch description document.

    Raises:
        NetworkError: not XML, or not an ``OpenSearchDescription``.
    """
    root = _parse_xml(content, url)
    if root.tag != f"{{{NS['os']}}}OpenSearchDescription":
        raise NetworkError(f"{url}: not an OpenSearch description document (root {root.tag})")
    namespaces = _namespaces(content)
    templates = []
    for el in root.findall("os:Url", NS):
        template = el.get("template")
        if not template:
            continue
        templates.append(
            UrlTemplate(
                template=urljoin(url, template),
                type=el.get("type", ""),
                rel=el.get("rel", "results"),
                index_offset=_offset(el.get("indexOffset")),
                page_offset=_offset(el.get("pageOffset")),
                namespaces=namespaces,
            )
        )
    short = (root.findtext("os:ShortName", "", NS) or "").strip()
    return Description(short, tuple(templates))


def fill_template(template: UrlTemplate, values: Mapping[tuple[str, str], Any]) -> str:
    """The URL of ``template`` with ``values`` by ``(namespace URI, name)``.

    A query pair whose parameters are not all given is left out (optional or not: a required
    one the caller has no value for is better missing than sent empty).
    """
    base, _, query = template.template.partition("?")
    pairs = []
    for pair in query.split("&") if query else []:
        missing = False

        def fill(m: re.Match[str]) -> str:
            nonlocal missing
            key = template._resolve(m.group(1))
            if key not in values or values[key] is None:
                missing = True
                return ""
            return quote(str(values[key]), safe=",:")

        text = _TOKEN.sub(fill, pair)
        if not missing:
            pairs.append(text)
    return base + ("?" + "&".join(pairs) if pairs else "")


# -- answers ------------------------------------------------------------------------------------


@dataclass
class OpenSearchPage:
    """One answer: its entries as STAC items, and where the next page is."""

    items: list[dict[str, Any]]
    next_url: str | None
    total: int | None
    raw_entries: int


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _offset(text: str | None) -> int:
    """``indexOffset``/``pageOffset``: 1 when absent or not a number (the spec's default)."""
    value = _int(text)
    return 1 if value is None else value


def _int(text: Any) -> int | None:
    try:
        return int(str(text).strip()) if text is not None else None
    except ValueError:
        return None


def parse_atom(
    content: bytes,
    url: str,
    mapping_: Mapping[str, str],
    collection: str,
) -> OpenSearchPage:
    """An Atom feed page -> STAC items (see :func:`atom_entry_to_item`)."""
    root = _parse_xml(content, url)
    if root.tag != f"{{{NS['atom']}}}feed":
        raise NetworkError(f"{url}: not an Atom feed (root {root.tag})")
    ns = {**NS, **{k: v for k, v in _namespaces(content).items() if k}}
    entries = root.findall("atom:entry", NS)
    items = [atom_entry_to_item(e, ns, mapping_, collection, url) for e in entries]
    nxt = None
    for link in root.findall("atom:link", NS):
        if link.get("rel") == "next" and link.get("href"):
            nxt = urljoin(url, str(link.get("href")))
    total = _int(root.findtext("os:totalResults", None, NS))
    return OpenSearchPage(items, nxt, total, len(entries))


def parse_geojson(
    doc: Any, url: str, mapping_: Mapping[str, str], collection: str
) -> OpenSearchPage:
    """A GeoJSON FeatureCollection page -> STAC items (see :func:`geojson_feature_to_item`)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
        raise NetworkError(f"{url}: not a GeoJSON FeatureCollection (no 'features' list)")
    feats = [f for f in doc["features"] if isinstance(f, dict)]
    items = [geojson_feature_to_item(f, mapping_, collection, url) for f in feats]
    props = _dict(doc.get("properties"))
    nxt = None
    for link in [*_list(doc.get("links")), *_list(props.get("links"))]:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            nxt = urljoin(url, str(link["href"]))
    total = _int(props.get("totalResults") if props else doc.get("totalResults"))
    return OpenSearchPage(items, nxt, total, len(doc["features"]))


def _coerce(value: Any) -> Any:
    """Numbers in XML text become numbers (``'12.5'`` -> 12.5); ids like ``'0012'`` stay text."""
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.match(text):
            return float(text) if any(c in text for c in ".eE") else int(text)
        return text
    return value


def _atom_value(entry: ET.Element, path: str, ns: Mapping[str, str]) -> Any:
    path = path.strip()
    attr = None
    if "/@" in path or path.startswith("@"):
        path, _, attr = path.rpartition("@")
        path = path.rstrip("/") or "."
    try:
        found = entry.findall(path, dict(ns))
    except (SyntaxError, KeyError) as exc:
        raise EomatchError(f"property_mapping: bad element path {path!r}: {exc}") from None
    values = [(el.get(attr) if attr else (el.text or "").strip()) for el in found]
    values = [v for v in values if v not in (None, "")]
    if not values:
        return None
    return _coerce(values[0]) if len(values) == 1 else [_coerce(v) for v in values]


def _latlon_pairs(text: str) -> list[list[float]]:
    nums = [float(v) for v in text.split()]
    return [[nums[i + 1], nums[i]] for i in range(0, len(nums) - 1, 2)]


def _atom_geometry(entry: ET.Element) -> dict[str, Any] | None:
    """The entry's footprint; None when it has none or it is unreadable (the item is then
    stored without geometry, or skipped as invalid, by the harvester's check)."""
    try:
        return _atom_geometry_or_raise(entry)
    except ValueError:
        return None


def _atom_geometry_or_raise(entry: ET.Element) -> dict[str, Any] | None:
    polygon = entry.findtext(".//georss:polygon", None, NS)
    if polygon:
        ring = _latlon_pairs(polygon)
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        return {"type": "Polygon", "coordinates": [ring]}
    pos_list = entry.findtext(".//georss:where//gml:posList", None, NS)
    if pos_list:
        ring = _latlon_pairs(pos_list)
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        return {"type": "Polygon", "coordinates": [ring]}
    box = entry.findtext(".//georss:box", None, NS)
    if box:
        s, w, n, e = (float(v) for v in box.split())
        return {
            "type": "Polygon",
            "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
        }
    point = entry.findtext(".//georss:point", None, NS)
    if point:
        lat, lon = (float(v) for v in point.split())
        return {"type": "Point", "coordinates": [lon, lat]}
    return None


def _positions(coords: Any) -> Iterator[tuple[float, float]]:
    if isinstance(coords, list | tuple) and coords and isinstance(coords[0], int | float):
        if len(coords) >= 2 and isinstance(coords[1], int | float):
            yield float(coords[0]), float(coords[1])
    elif isinstance(coords, list | tuple):
        for c in coords:
            yield from _positions(c)


def _bbox(geometry: dict[str, Any] | None) -> list[float] | None:
    """The box of a geometry's positions (the geometry itself is checked later, with the
    item: ``stac_document_problem``); None without positions."""
    if geometry is None:
        return None
    if geometry.get("type") == "GeometryCollection":
        return [float(v) for v in shape(geometry).bounds]
    pts = list(_positions(geometry.get("coordinates")))
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [min(xs), min(ys), max(xs), max(ys)]


def _join(base: str, href: str) -> str:
    """``href`` against ``base``; absolute URLs as they are (the common case, and cheap)."""
    return href if href.startswith(("https://", "http://")) else urljoin(base, href)


def _finish(
    item_id: Any,
    geometry: dict[str, Any] | None,
    props: dict[str, Any],
    assets: dict[str, Any],
    links: list[dict[str, Any]],
    collection: str,
) -> dict[str, Any]:
    if "datetime" not in props or props["datetime"] is None:
        props["datetime"] = props.get("start_datetime")
        if props["datetime"] is None:
            props["datetime"] = props.get("end_datetime")
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": str(item_id) if item_id is not None else None,
        "collection": collection,
        "geometry": geometry,
        "properties": props,
        "links": links,
        "assets": assets,
    }
    bbox = _bbox(geometry)
    if bbox is not None:
        item["bbox"] = bbox
    return item


def _split_date(text: Any) -> tuple[Any, Any]:
    if isinstance(text, str) and "/" in text:
        a, _, b = text.partition("/")
        return a.strip() or None, b.strip() or None
    return text, None


def atom_entry_to_item(
    entry: ET.Element,
    ns: Mapping[str, str],
    mapping_: Mapping[str, str],
    collection: str,
    url: str,
) -> dict[str, Any]:
    """One Atom entry as a STAC item (not yet validated: the harvester checks every item)."""
    props: dict[str, Any] = {}
    start, end = _split_date(entry.findtext("dc:date", None, NS))
    start = entry.findtext(".//time:start", None, NS) or start
    end = entry.findtext(".//time:end", None, NS) or end
    if start and end and start != end:
        props["start_datetime"], props["end_datetime"] = start.strip(), end.strip()
    props["datetime"] = (start or end or "").strip() or None
    title = (entry.findtext("atom:title", "", NS) or "").strip()
    if title:
        props["title"] = title
    updated = entry.findtext("atom:updated", None, NS)
    if updated:
        props["updated"] = updated.strip()
    for key, path in mapping_.items():
        value = _atom_value(entry, path, ns)
        if value is not None:
            props[key] = value
    item_id = props.pop("id", None) or entry.findtext("dc:identifier", None, NS) or title
    if not item_id:
        atom_id = (entry.findtext("atom:id", "", NS) or "").rstrip("/")
        item_id = atom_id.rsplit("/", 1)[-1] or None
    assets: dict[str, Any] = {}
    links: list[dict[str, Any]] = []
    for link in entry.findall("atom:link", NS):
        href, rel = link.get("href"), link.get("rel", "alternate")
        if not href:
            continue
        href = _join(url, href)
        kind = link.get("type")
        asset: dict[str, Any] = {"href": href}
        if kind:
            asset["type"] = kind
        if link.get("title"):
            asset["title"] = link.get("title")
        if rel == "enclosure":
            assets["data" if "data" not in assets else f"data-{len(assets)}"] = {
                **asset,
                "roles": ["data"],
            }
        elif rel == "icon":
            assets["thumbnail"] = {**asset, "roles": ["thumbnail"]}
        elif rel in ("alternate", "via", "describedby"):
            if kind and "xml" in kind and "metadata" not in assets:
                assets["metadata"] = {**asset, "roles": ["metadata"]}
            else:
                links.append({"rel": "via" if rel == "alternate" else rel, **asset})
    return _finish(item_id, _atom_geometry(entry), props, assets, links, collection)


def geojson_feature_to_item(
    feature: dict[str, Any], mapping_: Mapping[str, str], collection: str, url: str
) -> dict[str, Any]:
    """One GeoJSON feature (resto/CDSE-shaped, or already STAC-like) as a STAC item."""
    src = _dict(feature.get("properties"))
    props: dict[str, Any] = {}
    start = src.get("start_datetime") or src.get("startDate")
    end = src.get("end_datetime") or src.get("completionDate")
    if start and end and start != end:
        props["start_datetime"], props["end_datetime"] = start, end
    props["datetime"] = src.get("datetime") or start or end
    for key in ("title", "updated", "published", "platform"):
        if src.get(key) is not None:
            props[key] = src[key]
    for key, path in mapping_.items():
        value = dotted_get(src, path)
        if value is None:
            value = dotted_get(feature, path)
        if value is not None:
            props[key] = value
    item_id = props.pop("id", None) or feature.get("id") or src.get("productIdentifier")
    if isinstance(src.get("title"), str) and not item_id:
        item_id = src["title"]
    assets: dict[str, Any] = {}
    download = dotted_get(src, "services.download")
    if isinstance(download, dict) and isinstance(download.get("url"), str):
        assets["data"] = {
            "href": _join(url, download["url"]),
            "roles": ["data"],
            **({"type": download["mimeType"]} if download.get("mimeType") else {}),
            **({"file:size": download["size"]} if isinstance(download.get("size"), int) else {}),
        }
    for key in ("thumbnail", "quicklook"):
        if isinstance(src.get(key), str) and src[key]:
            assets.setdefault("thumbnail", {"href": _join(url, src[key]), "roles": ["thumbnail"]})
    if isinstance(feature.get("assets"), dict):
        assets.update(feature["assets"])
    links = []
    for link in [*_list(src.get("links")), *_list(feature.get("links"))]:
        if isinstance(link, dict) and isinstance(link.get("href"), str):
            rel = str(link.get("rel") or "via")
            if rel in ("self", "alternate"):
                rel = "via"
            if rel in ("root", "parent", "collection", "next", "search"):
                continue
            links.append({**link, "rel": rel, "href": _join(url, link["href"])})
    geometry = feature.get("geometry") if isinstance(feature.get("geometry"), dict) else None
    return _finish(item_id, geometry, props, assets, links, collection)


# -- the client ---------------------------------------------------------------------------------


class OpenSearchClient:
    """Description and paged searches of one OpenSearch endpoint, through the shared HTTP layer.

    Args:
        description_url: the OSDD (``describe.xml``).
        credentials: secret headers, sent to the description's origin only (never to a
            template or ``next`` link on another origin).
        limits: bounds and retry policy (:class:`~eomatch.io.http.HttpLimits`).
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        description_url: str,
        *,
        credentials: Mapping[str, str] | None = None,
        limits: HttpLimits | None = None,
        transport: Any = None,
    ) -> None:
        self.url = description_url
        self.limits = limits or HttpLimits()
        self.session = HttpSession(
            description_url,
            credentials=credentials,
            headers={
                "Accept": "application/opensearchdescription+xml, application/xml, "
                "application/atom+xml, application/geo+json, application/json"
            },
            limits=self.limits,
            transport=transport,
        )
        self._description: Description | None = None

    def close(self) -> None:
        """Close the connections."""
        self.session.close()

    def __enter__(self) -> OpenSearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, url: str, deadline: Deadline) -> Answer:
        try:
            answer = self.session.request("GET", url, deadline=deadline)
        except TransportFailure as exc:
            raise NetworkError(
                f"cannot reach the OpenSearch server at {url}: {exc.reason}"
            ) from None
        if answer.status >= 400:
            text = " ".join(answer.text.split())[:160]
            raise NetworkError(f"{url}: HTTP {answer.status} {answer.reason}: {text}".rstrip(": "))
        return answer

    def description(self) -> Description:
        """The description document (fetched once)."""
        if self._description is None:
            deadline = Deadline(self.limits.max_seconds, f"reading {self.url}")
            answer = self._get(self.url, deadline)
            self._description = parse_description(answer.content, self.url)
        return self._description

    def pages(
        self,
        values: Mapping[tuple[str, str], Any],
        *,
        page_size: int,
        mapping_: Mapping[str, str],
        collection: str,
        preferred_type: str | None = None,
        raw: bool = False,
    ) -> Iterator[OpenSearchPage]:
        """Every page of a search (``values`` by meaning, see :func:`fill_template`).

        ``raw``: fetch only (the benchmark's baseline): items are left empty.

        Raises:
            RemoteLimitError: more than ``max_pages`` pages or ``max_seconds`` in all, or a
                ``next`` link repeating an earlier page.
        """
        template = self.description().template(preferred_type)
        is_atom = template.type.split(";")[0].strip() == ATOM_TYPE
        params = template.parameters()
        by_index = (NS["os"], "startIndex") in params
        by_page = (NS["os"], "startPage") in params
        deadline = Deadline(self.limits.max_seconds, f"OpenSearch search at {self.url}")
        values = dict(values)
        values[(NS["os"], "count")] = page_size
        page_no = 0
        if by_index:
            values[(NS["os"], "startIndex")] = template.index_offset
        elif by_page:
            values[(NS["os"], "startPage")] = template.page_offset
        url: str | None = fill_template(template, values)
        seen: set[str] = set()
        fetched = 0
        linked = False
        while url is not None:
            if url in seen:
                raise RemoteLimitError(
                    f"OpenSearch search at {self.url}: the next page repeats an earlier one"
                )
            seen.add(url)
            page_no += 1
            if page_no > self.limits.max_pages:
                raise RemoteLimitError(
                    f"OpenSearch search at {self.url}: more than {self.limits.max_pages} pages "
                    "(limit max_pages)"
                )
            answer = self._get(url, deadline)
            page = _read_page(answer, url, is_atom, raw, mapping_, collection)
            yield page
            fetched += page.raw_entries
            if page.raw_entries == 0:
                return
            if page.next_url:
                url = page.next_url
                linked = True
            elif _last_page(page, linked, fetched, page_size):
                return
            elif by_index:
                values[(NS["os"], "startIndex")] = template.index_offset + fetched
                url = fill_template(template, values)
            elif by_page:
                values[(NS["os"], "startPage")] = template.page_offset + page_no
                url = fill_template(template, values)
            else:
                return


def _read_page(
    answer: Answer,
    url: str,
    is_atom: bool,
    raw: bool,
    mapping_: Mapping[str, str],
    collection: str,
) -> OpenSearchPage:
    """One answer read; anything malformed in it is a one-line :class:`NetworkError`."""
    try:
        if raw:
            return _raw_page(answer, is_atom, url)
        if is_atom:
            return parse_atom(answer.content, url, mapping_, collection)
        try:
            doc = answer.json()
        except ValueError:
            raise NetworkError(f"{url}: the answer is not JSON") from None
        return parse_geojson(doc, url, mapping_, collection)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        text = " ".join(str(exc).split())[:160]
        raise NetworkError(f"{url}: unreadable answer ({type(exc).__name__}: {text})") from None


def _last_page(page: OpenSearchPage, linked: bool, fetched: int, page_size: int) -> bool:
    """Whether a page without a ``next`` link is the last one.

    A server that links its pages ends where the links end; one that gives ``totalResults``
    ends there (a server capping the page size goes on past a short page); otherwise a short
    page is the last.
    """
    if linked:
        return True
    if page.total is not None:
        return fetched >= page.total
    return page.raw_entries < page_size


def _raw_page(answer: Answer, is_atom: bool, url: str) -> OpenSearchPage:
    """A page read only as far as paging needs: entries counted, next link, total."""
    if is_atom:
        root = _parse_xml(answer.content, url)
        nxt = None
        for link in root.findall("atom:link", NS):
            if link.get("rel") == "next" and link.get("href"):
                nxt = urljoin(url, str(link.get("href")))
        total = _int(root.findtext("os:totalResults", None, NS))
        return OpenSearchPage([], nxt, total, len(root.findall("atom:entry", NS)))
    try:
        doc = _dict(answer.json())
    except ValueError:
        raise NetworkError(f"{url}: the answer is not JSON") from None
    props = _dict(doc.get("properties"))
    nxt = None
    for link in [*_list(doc.get("links")), *_list(props.get("links"))]:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            nxt = urljoin(url, str(link["href"]))
    total = _int(props.get("totalResults") if props else doc.get("totalResults"))
    return OpenSearchPage([], nxt, total, len(_list(doc.get("features"))))
