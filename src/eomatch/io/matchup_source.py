"""Where a catalogued matchup's product data is: what ``Matchup.return_matchup_dataset`` uses.

The catalogue hands each matchup it reads a :class:`CatalogueMatchupSource` (the
:class:`~eomatch.core.products.MatchupDataSource` of the pure core): the catalogue root and
the files of the matchup's product and event items, so that relative asset hrefs resolve and the
event's properties can be read — also after the catalogue is closed (no index is needed then).
Reading the pixels (:mod:`eomatch.io.matchup_dataset`, the ``data`` extra) is imported only
when a dataset is asked for, so reading a catalogue costs nothing more.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import orjson

from eomatch.core import stac_items as si
from eomatch.core.products import Matchup, Product
from eomatch.errors import EomatchError
from eomatch.io.catalogue_files import read_file

if TYPE_CHECKING:
    from eomatch.core.collocation import DatasetOptions
    from eomatch.io.readers.base import AssetRef


def resolve_location(href: str, item_file: Path | None) -> str:
    """What a reader opens for an asset href: a local path (relative hrefs against the item's
    own file; ``file://`` URLs as paths) or the URL itself (``http(s)``, ``s3``)."""
    parsed = urlparse(href)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if si.is_url(href) or parsed.scheme in ("s3", "gs"):
        return href
    if os.path.isabs(href) or item_file is None:
        return href
    return os.path.normpath(item_file.parent / href)


def product_assets(product: Product, item_file: Path | None) -> list[AssetRef]:
    """The product's assets as readers take them (every asset; readers choose)."""
    from eomatch.io.readers.base import AssetRef

    out = []
    for key, asset in product.assets.items():
        href = asset.get("href")
        if not isinstance(href, str):
            continue
        roles = asset.get("roles")
        out.append(
            AssetRef(
                key=key,
                href=href,
                location=resolve_location(href, item_file),
                media_type=str(asset.get("type") or ""),
                roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
                fields=asset,
            )
        )
    return out


@dataclass(frozen=True)
class CatalogueMatchupSource:
    """A matchup's product and event files in one catalogue.

    Attributes:
        root: the catalogue root.
        item_files: catalogue-relative file of each product item (and of the event item).
        event_id: the matchup's event.
    """

    root: Path
    item_files: Mapping[str, str] = field(default_factory=dict)
    event_id: str = ""

    def item_file(self, item_id: str) -> Path | None:
        """Absolute file of an item of the matchup (None if unknown)."""
        rel = self.item_files.get(item_id)
        return None if rel is None else self.root / rel

    def assets(self, product: Product) -> list[AssetRef]:
        """The product's assets, hrefs resolved against its item file."""
        return product_assets(product, self.item_file(product.id))

    def event_properties(self) -> dict[str, Any]:
        """The event item's properties (empty if the event item is not in the catalogue)."""
        path = self.item_file(self.event_id)
        if path is None:
            return {}
        try:
            item = orjson.loads(read_file(path))
            props = item["properties"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EomatchError(f"{path}: cannot read the event item: {exc}") from None
        return dict(props) if isinstance(props, dict) else {}

    def matchup_dataset(self, matchup: Matchup, options: DatasetOptions) -> Any:
        """The matchup's DataTree (:func:`eomatch.io.matchup_dataset.build_matchup_dataset`)."""
        from eomatch.io.matchup_dataset import build_matchup_dataset

        return build_matchup_dataset(matchup, self.assets, self.event_properties(), options)
