"""Versioned analysis assets: results of a researcher's analysis attached to catalogue items.

Each registration adds ``{prefix}:YYYY-MM-DD`` to an item and points ``{prefix}:latest`` at the
newest dated version (by date, not by registration order), so older results stay reachable and
tools that only want "the current one" have a stable key. Size and sha2-256 checksum (STAC file
extension) make a re-registration of the same file a no-op and a silent overwrite impossible.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from eomatch.core import stac_items as si
from eomatch.core.vocabulary import VERSION_PROP
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MAX_FILE_BYTES, MatchupCatalogue, media_type_for
from eomatch.io.safe_files import check_regular, open_regular, read_regular_bytes

if TYPE_CHECKING:  # imported where used: a push needs the service extra
    from eomatch.io.pgstac_store import PgstacStore

log = logging.getLogger(__name__)

FILE_EXTENSION_URI = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
LATEST = "latest"
VERSION_FIELD = VERSION_PROP
"""Asset field naming the dated version (so ``latest`` says which one it is)."""
ROLES = ("analysis",)

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CHUNK = 1 << 20

Status = Literal["added", "replaced", "unchanged"]


@dataclass(frozen=True)
class RegisterResult:
    """What :func:`register_analysis` did, for the CLI summary and for scripts."""

    item_id: str
    collection_id: str
    key: str
    latest_key: str
    latest_date: str
    status: Status
    latest_changed: bool
    href: str
    media_type: str
    size: int
    checksum: str
    pushed: bool = False

    @property
    def changed(self) -> bool:
        """Whether the item file was rewritten."""
        return self.status != "unchanged" or self.latest_changed


@dataclass(frozen=True)
class AssetVersion:
    """One dated version of an analysis asset, as listed by :func:`list_versions`."""

    prefix: str
    date: str
    key: str
    href: str
    media_type: str | None
    size: int | None
    checksum: str | None
    latest: bool


def parse_date(value: date | str | None) -> str:
    """``YYYY-MM-DD`` of ``value`` (today in UTC if None); rejects anything else clearly."""
    if value is None:
        return datetime.now(UTC).date().isoformat()
    if isinstance(value, datetime):
        when = value if value.tzinfo is None else value.astimezone(UTC)
        return when.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    try:
        if not _DATE.match(text):
            raise ValueError
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise EomatchError(f"bad date '{value}': expected YYYY-MM-DD") from None


def _check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix) or prefix == LATEST:
        raise EomatchError(
            f"bad prefix '{prefix}': use letters, digits, '_', '.', '-' (no ':'), not 'latest'"
        )
    return prefix


def file_size_and_checksum(path: Path) -> tuple[int, str]:
    """Total size in bytes and sha2-256 multihash (``1220`` + hex) of a file or a directory.

    A directory (a ``.zarr`` store) is hashed over its files in sorted relative-path order,
    each as path, NUL, length, NUL, contents, so renaming or moving bytes between files changes
    the checksum; its size is the sum of its files' sizes.
    """
    digest = hashlib.sha256()
    if path.is_dir():
        root = path.resolve()
        entries: list[tuple[str, Path]] = []
        for dirpath, dirs, names in os.walk(path):  # never descends into linked folders
            for name in [*names, *(d for d in dirs if (Path(dirpath) / d).is_symlink())]:
                entries.append(
                    ((Path(dirpath) / name).relative_to(path).as_posix(), Path(dirpath) / name)
                )
        total = 0
        for rel, full in sorted(entries):
            if full.is_symlink():
                target = os.readlink(full)
                if not full.resolve().is_relative_to(root):
                    raise EomatchError(
                        f"{path}: {rel} is a link to {target}, outside the store; links are not "
                        "followed out of a .zarr store"
                    )
                digest.update(f"{rel}\0link\0{target}\0".encode())  # hashed as a link
                continue
            fd = open_regular(full, "store file")
            with os.fdopen(fd, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                total += size
                digest.update(f"{rel}\0{size}\0".encode())
                _hash_into(digest, fh)
        return total, "1220" + digest.hexdigest()
    fd = open_regular(path, "file")
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        _hash_into(digest, fh)
    return size, "1220" + digest.hexdigest()


def _hash_into(digest: Any, fh: BinaryIO) -> None:
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)


def _check_file(file_path: str | os.PathLike[str]) -> Path:
    path = Path(file_path).expanduser().absolute()
    link = ""
    if path.is_symlink():
        link = f"{path} is a symlink to {os.readlink(path)}"
        if not path.exists():
            raise EomatchError(f"{link}, which does not exist")
        log.info("%s (%s)", link, path.resolve())
    elif not path.exists():
        raise EomatchError(f"{path}: no such file")
    what = f"{link}, which" if link else str(path)
    if path.is_dir() and path.suffix.lower() != ".zarr":
        raise EomatchError(f"{what} is a directory (only .zarr stores may be directories)")
    if not path.is_dir():
        try:
            check_regular(path, "file")
        except EomatchError as exc:
            raise EomatchError(f"{link}: {exc}" if link else str(exc)) from None
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise EomatchError(f"{what} is not readable")
    return path


def _check_item(cat: MatchupCatalogue, collection_id: str, item_id: str) -> None:
    if not (cat.root / si.collection_path(collection_id)).is_file():
        raise EomatchError(f"no collection '{collection_id}' in the catalogue {cat.root}")
    try:
        path = cat.item_path(item_id)
    except EomatchError:
        raise EomatchError(
            f"no item '{item_id}' in collection '{collection_id}' of the catalogue {cat.root}"
        ) from None
    actual = path.relative_to(cat.root).parts[0]
    if actual != collection_id:
        raise EomatchError(f"item '{item_id}' is in collection '{actual}', not '{collection_id}'")


def _dated(assets: dict[str, Any], prefix: str) -> dict[str, str]:
    """Date → key of the item's dated versions under ``prefix``."""
    out = {}
    for key in assets:
        head, sep, tail = key.rpartition(":")
        if sep and head == prefix and _DATE.match(tail):
            out[tail] = key
    return out


def _href(cat: MatchupCatalogue, item_id: str, path: Path) -> str:
    href = cat.asset_href(item_id, path)
    if os.path.isabs(href):  # outside the catalogue root (e.g. a shared drive)
        return Path(href).as_uri()
    return href


def register_analysis(
    catalogue_path: str | os.PathLike[str],
    collection_id: str,
    item_id: str,
    file_path: str | os.PathLike[str],
    prefix: str = "comparison",
    date: date | str | None = None,
    replace: bool = False,
    push: bool | PgstacStore = False,
    assets_base_url: str | None = None,
) -> RegisterResult:
    """Register an analysis result as ``{prefix}:YYYY-MM-DD`` and update ``{prefix}:latest``.

    Args:
        catalogue_path: catalogue root or its ``catalog.json``.
        collection_id: collection of the item (checked, so a wrong pair fails loudly).
        item_id: the matchup, event or product item to attach the file to.
        file_path: file (or ``.zarr`` directory); relative href inside the catalogue root,
            ``file://`` URI outside it.
        prefix: asset key prefix, e.g. ``comparison``.
        date: version date (default: today in UTC).
        replace: allow a different file under an existing dated key.
        push: also send the two changed assets to the central database, through pgSTAC as
            the ingest role (``True``: the database of the configuration/``PG*``/local cluster;
            or a :class:`PgstacStore`): the central item is updated in place, its other assets
            kept; an item it lacks is ingested whole. A failed push leaves the local version.
        assets_base_url: as for ``eomatch ingest`` (keep them equal).

    Raises:
        EomatchError: missing file, unknown collection or item, bad date or prefix, or a
            different file under an existing dated key without ``replace``. Nothing is written.
    """
    _check_prefix(prefix)
    day = parse_date(date)
    path = _check_file(file_path)
    with MatchupCatalogue.open(catalogue_path) as cat:
        _check_item(cat, collection_id, item_id)
        size, checksum = file_size_and_checksum(path)
        media_type = media_type_for(path.name)
        href = _href(cat, item_id, path)
        key = f"{prefix}:{day}"
        latest_key = f"{prefix}:{LATEST}"
        outcome: dict[str, Any] = {}

        def edit(assets: dict[str, Any]) -> bool:
            old = assets.get(key)
            if old is None:
                status: Status = "added"
            elif old.get("file:checksum") == checksum:
                status = "unchanged"
            elif replace:
                status = "replaced"
            else:
                raise EomatchError(
                    f"item '{item_id}' already has a different '{key}' ({old.get('href')}); "
                    "use --replace to overwrite it or --date for another version"
                )
            if status != "unchanged":
                assets[key] = {
                    "href": href,
                    "type": media_type,
                    "title": f"{prefix} {day}",
                    "roles": list(ROLES),
                    "file:size": size,
                    "file:checksum": checksum,
                    VERSION_FIELD: day,
                }
            newest = max(_dated(assets, prefix))
            latest = dict(assets[f"{prefix}:{newest}"])
            latest["title"] = f"{prefix} (latest: {newest})"
            latest_changed = assets.get(latest_key) != latest
            assets[latest_key] = latest
            outcome.update(status=status, latest_changed=latest_changed, newest=newest)
            return status != "unchanged" or latest_changed

        cat.update_item_assets(item_id, edit, stac_extensions=[FILE_EXTENSION_URI])
    pushed = False
    if push is not False:
        from eomatch.io.pgstac_store import PgstacStore
        from eomatch.workflows.ingest import push_assets

        store = push if isinstance(push, PgstacStore) else default_ingest_store()
        try:
            push_assets(
                catalogue_path, store, item_id, [key, latest_key], assets_base_url=assets_base_url
            )
        except EomatchError as exc:
            raise EomatchError(
                f"{key} registered locally, but the push to the database failed: {exc}"
            ) from None
        pushed = True
    return RegisterResult(
        pushed=pushed,
        item_id=item_id,
        collection_id=collection_id,
        key=key,
        latest_key=latest_key,
        latest_date=outcome["newest"],
        status=outcome["status"],
        latest_changed=outcome["latest_changed"],
        href=href,
        media_type=media_type,
        size=size,
        checksum=checksum,
    )


def list_versions(
    catalogue_path: str | os.PathLike[str], item_id: str, prefix: str | None = None
) -> list[AssetVersion]:
    """Dated analysis versions of an item, newest first (all prefixes unless ``prefix``)."""
    if prefix is not None:
        _check_prefix(prefix)
    with MatchupCatalogue.open(catalogue_path) as cat:
        path = cat.item_path(item_id)
        assets: dict[str, Any] = _item_assets(path)
    prefixes = sorted({k.rpartition(":")[0] for k in assets if ":" in k})
    out: list[AssetVersion] = []
    for pre in prefixes if prefix is None else [prefix]:
        latest = assets.get(f"{pre}:{LATEST}") or {}
        for day, key in _dated(assets, pre).items():
            asset = assets[key]
            out.append(
                AssetVersion(
                    prefix=pre,
                    date=day,
                    key=key,
                    href=str(asset.get("href"))[:2000],
                    media_type=_text(asset.get("type")),
                    size=_size(asset.get("file:size")),
                    checksum=_text(asset.get("file:checksum")),
                    latest=latest.get(VERSION_FIELD) == day,
                )
            )
    out.sort(key=lambda v: (v.date, v.prefix), reverse=True)
    return out


def _size(value: Any) -> int | None:
    """A ``file:size`` as written by hand or by a provider: a byte count, or None if nonsense."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


def _item_assets(path: Path) -> dict[str, Any]:
    """The ``assets`` of an item file (read-only; the catalogue found it by id)."""
    try:
        item = json.loads(read_regular_bytes(path, "item", MAX_FILE_BYTES, raw_os_errors=True))
    except (OSError, ValueError, RecursionError) as exc:
        raise EomatchError(f"{path}: unreadable item: {exc}") from exc
    assets = item.get("assets") if isinstance(item, dict) else None
    if not isinstance(assets, dict):
        return {}
    return {k: v for k, v in assets.items() if isinstance(v, dict)}  # other shapes: not ours


def default_ingest_store() -> PgstacStore:
    """The central database as the ingest role, found like ``eomatch ingest`` finds it."""
    from eomatch.config.settings import Settings
    from eomatch.io.config_files import load_config
    from eomatch.io.db_target import DbOverrides, resolve_target
    from eomatch.io.pgstac_store import PgstacStore

    config = load_config(None, Settings().user_config_file)
    target = resolve_target(DbOverrides(), config.ingest)
    return PgstacStore(target.role("eomatch_ingest"))
