"""Assets of a matchup catalogue's items and collections: one implementation for every level.

Events, matchups and products are items; each kind also has collections (events collections,
matchup collections, product collections). An asset is attached to or detached from any of the
six the same way: given as ``key, href[, media_type, title, roles]`` (positional, as before) or
as ``asset_key=..., asset=pystac.Asset(...)`` (the seed documents' form; any object with
``to_dict()`` or a mapping). A local ``href`` inside the catalogue root is stored relative to
the file that holds the asset; a detached local file is deleted only on request, and only if it
lies inside ``{root}/data``.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from eomatch.core import stac_items as si
from eomatch.core.products import Matchup, MatchupEvent, Product, events_collection_id
from eomatch.core.vocabulary import SOURCE_HREF_FIELD
from eomatch.errors import EomatchError
from eomatch.io.catalogue_index import IndexRow
from eomatch.io.catalogue_session import CatalogueCore

Kind = Literal["event", "matchup", "product"]
Target = MatchupEvent | Matchup | Product | str
"""An object of the catalogue, or the id of an item (or, for collections, of a collection)."""

_MEDIA_TYPES = {
    ".nc": "application/x-netcdf",
    ".tif": "image/tiff; application=geotiff",
    ".tiff": "image/tiff; application=geotiff",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".csv": "text/csv",
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".gz": "application/gzip",
    ".txt": "text/plain",
    ".html": "text/html",
    ".pdf": "application/pdf",
    ".parquet": "application/vnd.apache.parquet",
    ".zarr": "application/vnd+zarr",
}


def media_type_for(path: str) -> str:
    """Media type from a file name's extension (``application/octet-stream`` if unknown)."""
    suffix = Path(urlparse(path).path if "://" in path else path).suffix.lower()
    if suffix in _MEDIA_TYPES:
        return _MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


def asset_fields(
    key: str | None,
    href: str | os.PathLike[str] | None,
    asset_key: str | None,
    asset: Any,
) -> tuple[str, str | os.PathLike[str], dict[str, Any]]:
    """Key, href and further fields of an asset given in either form (see the module doc)."""
    if (key is None) == (asset_key is None):
        raise EomatchError("give the asset key once: as `key` or as `asset_key=`")
    if (href is None) == (asset is None):
        raise EomatchError("give the asset once: as `href` or as `asset=`")
    extra: dict[str, Any] = {}
    if asset is not None:
        data = asset.to_dict() if hasattr(asset, "to_dict") else asset
        if not isinstance(data, Mapping) or not isinstance(data.get("href"), str):
            raise EomatchError("asset= must be a pystac.Asset or a mapping with an 'href'")
        extra = {k: v for k, v in data.items() if k != "href"}
        href = str(data["href"])
    assert href is not None
    return str(key if key is not None else asset_key), href, extra


class CatalogueAssets:
    """Adds and removes assets of the catalogue it belongs to (under its writer lock)."""

    def __init__(self, cat: CatalogueCore) -> None:
        self.cat = cat

    # --- hrefs --------------------------------------------------------------------------------

    def href(self, from_rel: str, target: str | os.PathLike[str]) -> str:
        """``target`` as an href from ``from_rel``: relative inside the root, else absolute."""
        text = os.fspath(target)
        if si.is_url(text):
            return text
        path = Path(text).expanduser().absolute()
        root = self.cat.root.absolute()
        if path.is_relative_to(root):
            return si.relative_href(from_rel, path.relative_to(root).as_posix())
        return str(path)

    def local_path(self, from_rel: str, href: str) -> Path | None:
        """The local file of an href (None for a remote URL, or one that does not parse)."""
        try:
            parsed = urlparse(href)
        except ValueError:  # "http://[x": no local file (a 500-style crash of remove before)
            return None
        if parsed.scheme == "file":
            return Path(parsed.path)
        if si.is_url(href):
            return None
        if os.path.isabs(href):
            return Path(href)
        return self.cat.root / si.resolve_href(from_rel, href)

    def check_deletable(self, from_rel: str, href: str) -> None:
        """Refuse (before anything changes) to delete a file outside ``{root}/data``."""
        path = self.local_path(from_rel, href)
        if path is None or not path.resolve().is_relative_to(self.cat.data_root.resolve()):
            raise EomatchError(
                f"refusing to delete {path or href}: only files inside "
                f"{self.cat.data_root} may be deleted"
            )

    def delete_local(self, from_rel: str, href: str) -> None:
        """Delete the file (or folder) an href points to, if inside ``{root}/data``."""
        path = self.local_path(from_rel, href)
        if path is None:
            raise EomatchError(f"asset href {href} is not a local file: nothing to delete")
        data_root = self.cat.data_root.resolve()
        resolved = path.resolve()
        if not resolved.is_relative_to(data_root) or resolved == data_root:
            raise EomatchError(
                f"refusing to delete {path}: only files inside {data_root} may be deleted"
            )
        if resolved.is_dir():
            shutil.rmtree(resolved)
        else:
            with contextlib.suppress(FileNotFoundError):
                resolved.unlink()

    def new_asset(
        self,
        from_rel: str,
        href: str | os.PathLike[str],
        media_type: str | None = None,
        title: str | None = None,
        roles: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An asset dict: href as stored, media type (guessed if not given), title, roles."""
        asset: dict[str, Any] = {"href": self.href(from_rel, href)}
        extra = dict(extra or {})
        asset["type"] = media_type or extra.pop("type", None) or media_type_for(os.fspath(href))
        if title:
            asset["title"] = title
        if roles:
            asset["roles"] = list(roles)
        for k, v in extra.items():
            asset.setdefault(k, v)
        return asset

    # --- targets ------------------------------------------------------------------------------

    def item_row(self, target: Target, kind: Kind | None) -> IndexRow:
        """The index row of an item given as an object or an id."""
        return self.cat._row(target if isinstance(target, str) else target.id, kind)

    def collection_of(self, target: Target, kind: Kind) -> str:
        """The collection of ``kind`` an object, an item id or a collection id designates."""
        if isinstance(target, Matchup):
            return si.matchup_collection(target)
        if isinstance(target, MatchupEvent):
            return events_collection_id(target.sensors)
        if isinstance(target, Product):
            return target.sensor.collection
        row = self.cat._index.get(target)
        if row is not None and row.kind == kind:
            return row.collection
        if self.cat._collection(target) is not None and si.collection_kind(target) == kind:
            return target
        raise EomatchError(f"no {kind} or {kind} collection '{target}' in {self.cat.root}")

    # --- edits --------------------------------------------------------------------------------

    def edit_item(
        self, row: IndexRow, key: str, asset: dict[str, Any] | None, delete_file: bool = False
    ) -> dict[str, Any]:
        """Set (or with None remove) one asset of an item; returns the item as written."""
        cat = self.cat
        with cat._writing():
            item = cat._read_item(row.path)
            old = item.setdefault("assets", {}).get(key)
            if asset is None:
                if old is None:
                    raise EomatchError(f"item '{row.id}' has no asset '{key}'")
                if delete_file:  # check before touching anything
                    self.check_deletable(row.path, old["href"])
                del item["assets"][key]
            else:
                item["assets"][key] = asset
                item["assets"] = dict(sorted(item["assets"].items()))
            cat._write_item(row.path, item)
            cat._index_item(item, row.path)
            if asset is None and delete_file and old is not None:
                self.delete_local(row.path, old["href"])
        return item

    def add(
        self,
        kind: Kind,
        target: Target,
        key: str | None,
        href: str | os.PathLike[str] | None,
        media_type: str | None,
        title: str | None,
        roles: Sequence[str] | None,
        asset_key: str | None,
        asset: Any,
        collection: bool = False,
    ) -> dict[str, Any]:
        """Attach an asset to an item (or its collection); returns the document as written."""
        key, href, extra = asset_fields(key, href, asset_key, asset)
        if not collection:
            row = self.item_row(target, kind)
            new = self.new_asset(row.path, href, media_type, title, roles, extra)
            return self.edit_item(row, key, new)
        cat = self.cat
        with cat._writing():
            coll = self.collection_of(target, kind)
            data = cat._collection(coll)
            if data is None:
                raise EomatchError(f"no collection '{coll}' in {cat.root}")
            new = self.new_asset(si.collection_path(coll), href, media_type, title, roles, extra)
            assets = data.setdefault("assets", {})
            assets[key] = new
            data["assets"] = dict(sorted(assets.items()))
            cat._s.changed_collections.add(coll)
            return data

    def remove(
        self,
        kind: Kind,
        target: Target,
        key: str | None,
        delete_file: bool,
        asset_key: str | None,
        collection: bool = False,
    ) -> dict[str, Any]:
        """Detach an asset (``delete_file``: only inside ``{root}/data``); returns the document."""
        if (key is None) == (asset_key is None):
            raise EomatchError("give the asset key once: as `key` or as `asset_key=`")
        key = str(key if key is not None else asset_key)
        if not collection:
            return self.edit_item(self.item_row(target, kind), key, None, delete_file)
        cat = self.cat
        with cat._writing():
            coll = self.collection_of(target, kind)
            data = cat._collection(coll)
            rel = si.collection_path(coll)
            if data is None or key not in data.get("assets", {}):
                raise EomatchError(f"collection '{coll}' has no asset '{key}'")
            href = data["assets"][key]["href"]
            if delete_file:
                self.check_deletable(rel, href)
            del data["assets"][key]
            if not data["assets"]:
                del data["assets"]
            cat._s.changed_collections.add(coll)
            cat._flush_collections()  # nothing links to the file any more before it goes
            if delete_file:
                self.delete_local(rel, href)
            return data

    def update_item(
        self,
        item_id: str,
        edit: Callable[[dict[str, Any]], bool],
        stac_extensions: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Edit any item's assets under the writer lock: read, check and write as one step.

        ``edit`` gets the item's ``assets`` dict (hrefs as stored) and returns whether it
        changed it; only then is the item rewritten (atomically, re-indexed) with
        ``stac_extensions`` added. So a check-then-write ("is this version registered
        already?") cannot race another writer, and a no-op leaves the file untouched.
        """
        row = self.cat._row(item_id, None)
        with self.cat._writing():
            item = self.cat._read_item(row.path)
            assets = dict(item.get("assets") or {})
            if not edit(assets):
                return item
            item["assets"] = dict(sorted(assets.items()))
            extensions = list(item.get("stac_extensions") or [])
            extensions += [e for e in stac_extensions if e not in extensions]
            if extensions:
                item["stac_extensions"] = extensions
            self.cat._write_item(row.path, item)
            self.cat._index_item(item, row.path)
        return item

    def set_product_data(
        self, product_id: str, local_path: str | os.PathLike[str] | None
    ) -> dict[str, Any]:
        """Register (or with None unregister) a downloaded file as the product's ``data`` asset.

        The provider href it replaces is kept in ``eomatch:source_href`` and restored when the
        file is unregistered, so the product can be downloaded again. Files are not deleted.
        """
        row = self.cat._row(product_id, "product")
        with self.cat._writing():
            item = self.cat._read_item(row.path)
            old = item.get("assets", {}).get("data")
            if local_path is None:
                if old is None:
                    return item
                source = old.get(SOURCE_HREF_FIELD)
                if source:
                    asset: dict[str, Any] | None = {
                        k: v for k, v in old.items() if k not in (SOURCE_HREF_FIELD,)
                    }
                    assert asset is not None
                    asset["href"] = source
                    asset["type"] = media_type_for(source) if "type" not in old else old["type"]
                    return self.edit_item(row, "data", asset)
                if si.is_url(str(old["href"])):
                    return item
                return self.edit_item(row, "data", None)
            asset = self.new_asset(row.path, local_path, None, "data", ["data"])
            if old is not None:
                source = old.get(SOURCE_HREF_FIELD) or (
                    old["href"] if si.is_url(str(old["href"])) else None
                )
                if source:
                    asset[SOURCE_HREF_FIELD] = source
                if old.get("type"):
                    asset["type"] = old["type"]
                # the provider's size/checksum describe this file (download verified them) and
                # must survive an unregister so that a re-download is verified again
                asset.update({k: old[k] for k in ("file:checksum", "file:size") if k in old})
            return self.edit_item(row, "data", asset)
