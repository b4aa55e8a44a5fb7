"""Downloading and removing the source products of catalogued matchups.

Also importable as :mod:`eomatch.manage_products` (the previous generation's module name).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from eomatch.config.models import RunConfig
from eomatch.context import EOMatchContext
from eomatch.core.products import Product
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.credentials import CredentialStore
from eomatch.io.downloads import DownloadJob, DownloadReport, DownloadResult, download
from eomatch.io.safe_paths import MAX_COMPONENT_BYTES, sanitise_component, within_root
from eomatch.timeparse import TimeLike, parse_time

log = logging.getLogger(__name__)

KNOWN_SUFFIXES = (".tar.gz", ".tar", ".zip", ".nc", ".SAFE", ".SEN3", ".h5", ".tif", ".tiff")


@dataclass
class Selection:
    """Which events' products to act on (the filters of ``get_events``)."""

    collections: Sequence[str] | None = None
    platforms: Sequence[str] | None = None
    start_time: TimeLike | None = None
    stop_time: TimeLike | None = None
    bbox: Sequence[float] | None = None
    filter: str | None = None

    def products(self, cat: MatchupCatalogue) -> list[Product]:
        """Distinct products of the selected events' matchups (a shared product appears once)."""
        events = cat.get_events(
            collections=self.collections,
            platforms=self.platforms,
            start_time=parse_time(self.start_time, "start time") if self.start_time else None,
            stop_time=parse_time(self.stop_time, "stop time") if self.stop_time else None,
            bbox=self.bbox,
            filter=self.filter,
        )
        seen: dict[str, Product] = {}
        for e in events:
            for m in e.matchups:
                for p in m.products:
                    seen.setdefault(p.id, p)
        return [seen[k] for k in sorted(seen)]


@dataclass
class RemoveReport:
    """What ``remove`` did."""

    unregistered: int = 0
    deleted_files: int = 0
    kept_files: list[Path] = field(default_factory=list)


def local_data_path(cat: MatchupCatalogue, product: Product) -> Path | None:
    """The local file of a product's ``data`` asset, or None if it is remote or absent."""
    asset = product.assets.get("data")
    href = str(asset.get("href", "")) if asset else ""
    return cat.local_file(product.id, href) if href else None


def product_destination(
    cat: MatchupCatalogue, product: Product, href: str, products_root: Path | None = None
) -> Path:
    """``{data}/{platform}/{collection}/YYYY/MM/DD/{id}{suffix}`` (zero-padded), where
    ``{data}`` is ``products_root`` (a shared drive) or the catalogue's ``data/``.

    Every component comes from item fields (a pulled catalogue holds whatever an API sent), so
    each is sanitised into a plain file name and the result is checked to stay in the data
    folder (symlinks followed).

    Raises:
        UnsafePathError: the destination would leave the data folder.
    """
    name = Path(urlparse(href).path).name
    suffix = next((s for s in KNOWN_SUFFIXES if name.endswith(s)), Path(name).suffix)
    if not re.fullmatch(r"\.[A-Za-z0-9]{1,16}", suffix) and suffix not in KNOWN_SUFFIXES:
        suffix = ""  # a provider's odd file name does not choose ours
    day = product.start.astimezone(UTC)
    platform = sanitise_component(product.sensor.platform.replace(" ", "_"))
    collection = sanitise_component(product.sensor.collection)
    stem = sanitise_component(product.id, max_bytes=MAX_COMPONENT_BYTES - len(suffix))
    root = products_root if products_root is not None else cat.data_root
    dest = root / platform / collection / f"{day:%Y/%m/%d}" / f"{stem}{suffix}"
    within_root(root, dest)
    return dest


def _expected_size(product: Product, value: Any) -> int | None:
    """A provider's ``file:size`` as a byte count; None if absent, an error if nonsense."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EomatchError(f"product {product.id}: invalid file:size {value!r:.40}")
    return value


def credential_store(config: RunConfig | None = None) -> CredentialStore:
    """The credentials of a run: the ``credentials:`` section, the environment, ``~/.netrc``."""
    return CredentialStore(config.credentials if config is not None else None)


def download_products(
    cat: MatchupCatalogue,
    selection: Selection | None = None,
    *,
    concurrency: int = 4,
    progress: Callable[[DownloadJob, int, int | None], None] | None = None,
    products_root: str | os.PathLike[str] | None = None,
    credentials: CredentialStore | None = None,
) -> DownloadReport:
    """Download every selected product once and register it as the item's ``data`` asset.

    Products already on disk are registered in place, without a transfer: a local ``data``
    href (a shared drive's ``file://`` URL or path) stays as it is and is reported
    ``present``; a file already at its destination is registered there. Each product item is
    saved as soon as its file is in place.

    Args:
        products_root: where files go, in the ``{platform}/{collection}/YYYY/MM/DD/`` layout
            (a shared drive); default the catalogue's ``data/``. Files there are registered
            with absolute paths and never deleted by ``remove``.
        credentials: per-host credentials; default the environment and ``~/.netrc``
            (:func:`credential_store` adds a configuration's ``credentials:``).

    Raises:
        EomatchError: when every selected product is predicted (nothing can be downloaded).
    """
    root = Path(os.path.abspath(Path(products_root).expanduser())) if products_root else None
    products = (selection or Selection()).products(cat)
    predicted = [p for p in products if p.predicted]
    if predicted:
        msg = (
            f"{len(predicted)} product(s) are predicted from the orbit "
            "(eomatch:predicted) and cannot be downloaded; configure a 'stac' product source "
            "to catalogue real products"
        )
        if len(predicted) == len(products):
            raise EomatchError(msg)
        log.warning(msg)
    jobs: list[DownloadJob] = []
    refused: list[DownloadResult] = []
    in_place: list[DownloadResult] = []
    for p in products:
        if p.predicted:
            continue
        asset = p.assets.get("data")
        href = str(asset.get("href", "")) if asset else ""
        local = local_data_path(cat, p)
        if local is not None:  # registered already (downloaded, or on a shared drive)
            job = _refused_job(p, href)
            if local.exists():
                in_place.append(DownloadResult(job, "present", local))
            else:
                reason = f"its registered file {local} is missing (eomatch remove, then download)"
                in_place.append(DownloadResult(job, "failed", reason=reason))
            continue
        if not href:
            log.warning("product %s has no data asset to download", p.id)
            continue
        try:
            checksum = asset.get("file:checksum") if asset else None
            if checksum is not None and not isinstance(checksum, str):
                raise EomatchError(f"product {p.id}: invalid file:checksum {checksum!r:.40}")
            job = DownloadJob(
                product_id=p.id,
                href=href,
                dest=product_destination(cat, p, href, root),
                checksum=checksum,
                size=_expected_size(p, asset.get("file:size") if asset else None),
                root=root or cat.data_root,
            )
        except EomatchError as exc:
            refused.append(DownloadResult(_refused_job(p, href), "failed", reason=str(exc)))
            continue
        jobs.append(job)

    def register(job: DownloadJob, path: Path) -> None:
        cat.set_product_data(job.product_id, path)

    report = download(
        jobs, concurrency=concurrency, progress=progress, on_done=register, credentials=credentials
    )
    report.results[:0] = refused + in_place
    return report


def _refused_job(product: Product, href: str) -> DownloadJob:
    """A stand-in job for a product refused before downloading (for the report)."""
    return DownloadJob(product_id=product.id, href=href, dest=Path(os.devnull))


def remove_products(
    cat: MatchupCatalogue, selection: Selection | None = None, *, delete_files: bool = True
) -> RemoveReport:
    """Unregister the selected products' local ``data`` files, deleting them if asked.

    Files are deleted only inside the catalogue's own data root; files elsewhere (a shared
    drive in a pulled catalogue, say) are unregistered and left alone, and reported.
    """
    report = RemoveReport()
    data_root = cat.data_root.resolve()
    for p in (selection or Selection()).products(cat):
        path = local_data_path(cat, p)
        if path is None:
            continue
        cat.set_product_data(p.id, None)
        report.unregistered += 1
        if not delete_files:
            continue
        resolved = path.resolve()
        if not resolved.is_relative_to(data_root):
            report.kept_files.append(path)
            log.warning("%s is outside %s: unregistered, not deleted", path, data_root)
            continue
        if resolved.is_dir():
            shutil.rmtree(resolved)
            report.deleted_files += 1
        elif resolved.exists():
            os.unlink(resolved)
            report.deleted_files += 1
    return report


def _open(context: EOMatchContext | None, path: str | Path | None) -> MatchupCatalogue:
    if path is None and context is not None:
        path = context.config.matchup_catalogue.path
    if path is None:
        raise EomatchError("no catalogue: give --path or set matchup_catalogue.path")
    return MatchupCatalogue.open(path)


def download_catalogue_products(
    context: EOMatchContext | None = None,
    path: str | Path | None = None,
    collections: Sequence[str] | None = None,
    platforms: Sequence[str] | None = None,
    start_time: TimeLike | None = None,
    stop_time: TimeLike | None = None,
    bbox: Sequence[float] | None = None,
    filter: str | None = None,
) -> list[Path]:
    """Download the products of the matching events; returns the local paths handled."""
    cat = _open(context, path)
    config = context.config if context is not None else None
    try:
        sel = Selection(collections, platforms, start_time, stop_time, bbox, filter)
        with credential_store(config) as creds:
            report = download_products(
                cat,
                sel,
                products_root=config.downloads.products_root if config is not None else None,
                credentials=creds,
            )
    finally:
        cat.close()
    if report.failed:
        first = report.failed[0]
        raise EomatchError(
            f"{len(report.failed)} download(s) failed; first: {first.job.product_id}: "
            f"{first.reason}"
        )
    return [r.path for r in report.results if r.path is not None]


def remove_catalogue_products(
    context: EOMatchContext | None = None,
    path: str | Path | None = None,
    collections: Sequence[str] | None = None,
    platforms: Sequence[str] | None = None,
    start_time: TimeLike | None = None,
    stop_time: TimeLike | None = None,
    bbox: Sequence[float] | None = None,
    filter: str | None = None,
    delete_files: bool = True,
) -> int:
    """Unregister (and by default delete) downloaded products; returns how many."""
    cat = _open(context, path)
    try:
        sel = Selection(collections, platforms, start_time, stop_time, bbox, filter)
        return remove_products(cat, sel, delete_files=delete_files).unregistered
    finally:
        cat.close()
