"""The backup repository: backups as objects in an :class:`~eomatch.io.object_store.ObjectStore`.

One backup is a folder named by its id (the UTC time it was taken, ``20261206T031500Z``)::

    <id>/eomatch.dump      pg_dump custom format (one compressed file)
    <id>/manifest.json     what was dumped: counts, pgSTAC version, sample hashes, the dump's
                           size and SHA-256, tool versions; written LAST

The manifest is the commit mark. Each object appears whole or not at all (a local file is
written beside and renamed; an S3 upload becomes visible only when complete), and the manifest
is stored only after the dump, so a backup killed at any point is never mistaken for one: it
is a folder with a dump and no manifest (or nothing), which ``list`` shows as *incomplete* and
``prune`` removes once it is old enough not to be a backup still running.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from eomatch.errors import InputError, NotFoundError
from eomatch.io.object_store import LocalFolderStore, ObjectStore

__all__ = [
    "DUMP_NAME",
    "MANIFEST_NAME",
    "BackupEntry",
    "BackupRepository",
    "DbFacts",
    "DumpInfo",
    "Manifest",
    "backup_id",
    "file_sha256",
    "select_prunable",
]

DUMP_NAME = "eomatch.dump"
MANIFEST_NAME = "manifest.json"
ID_FORMAT = "%Y%m%dT%H%M%SZ"


class DbFacts(BaseModel):
    """What a database holds, as far as a check compares it (recorded at dump time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pgstac_version: str | None
    """The installed pgSTAC version."""
    items: int
    """Rows of ``pgstac.items``."""
    collections: int
    """Rows of ``pgstac.collections``."""
    history_transactions: int | None
    """Rows of ``eomatch.transactions`` (None: no history schema)."""
    api_keys: int
    """Rows of ``eomatch.api_keys``."""
    collections_md5: str
    """md5 over every collection's id and content."""
    sample: dict[str, str]
    """``collection/item`` -> md5 of its content, for a deterministic sample of items."""


class DumpInfo(BaseModel):
    """The dump file of a backup."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str = DUMP_NAME
    """Its name inside the backup folder."""
    format: Literal["custom"] = "custom"
    """pg_dump's format."""
    size: int
    """Bytes."""
    sha256: str
    """Hex digest; a mismatch means a damaged copy."""


class Manifest(BaseModel):
    """Everything known about one backup (``<id>/manifest.json``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    manifest_version: Literal[1] = 1
    """Layout of this document."""
    id: str
    """The backup's id (its folder)."""
    started_at: datetime
    """When the snapshot was taken (UTC): the backup holds the database as it was then."""
    finished_at: datetime
    """When the dump was complete."""
    source: str
    """``host:port/database`` it was taken from."""
    database: str
    """The database name."""
    server_version: str
    """PostgreSQL server version of the source."""
    pg_dump_version: str
    """Version of the pg_dump that wrote the dump."""
    eomatch_version: str
    """eomatch's version."""
    facts: DbFacts
    """Counts and hashes, read in the same snapshot as the dump."""
    roles: list[str]
    """Roles the dump's owners and privileges name (they must exist where it is restored)."""
    database_grants: list[tuple[str, str]]
    """``(role, privilege)`` on the database itself (not in a dump without ``--create``)."""
    role_settings: list[tuple[str | None, list[str]]]
    """``ALTER ROLE r IN DATABASE d SET ...`` (role None: ``ALTER DATABASE d SET``)."""
    dump: DumpInfo
    """The dump file."""


@dataclass(frozen=True)
class BackupEntry:
    """One backup folder in the repository."""

    id: str
    """Its id."""
    manifest: Manifest | None
    """None: incomplete (killed, failed, or still being written) or unreadable."""
    size: int
    """Bytes stored under it."""
    modified: datetime
    """Newest object's time."""
    problem: str | None = None
    """Why the manifest could not be read, if it exists but is broken."""

    @property
    def complete(self) -> bool:
        """A backup that can be restored (its manifest is there and readable)."""
        return self.manifest is not None


def backup_id(when: datetime) -> str:
    """The id of a backup taken at ``when`` (UTC)."""
    return when.strftime(ID_FORMAT)


def id_time(backup: str) -> datetime | None:
    """The time in an id (None if it is not one of ours)."""
    with contextlib.suppress(ValueError):
        return datetime.strptime(backup[:16], ID_FORMAT).replace(tzinfo=UTC)
    return None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class BackupRepository:
    """Backups kept in one object store (a local folder or a bucket prefix)."""

    def __init__(self, store: ObjectStore, staging: Path | None = None) -> None:
        self.store = store
        self.staging = staging

    def describe(self) -> str:
        """Where the backups are."""
        return self.store.describe()

    @property
    def local_root(self) -> Path | None:
        """The folder, when the store is a local one (dumps are then read in place)."""
        return self.store.root if isinstance(self.store, LocalFolderStore) else None

    # -- reading -----------------------------------------------------------------------------

    def entries(self) -> list[BackupEntry]:
        """Every backup folder, oldest first, complete or not."""
        objects = self.store.list()
        grouped: dict[str, list[tuple[str, int, datetime]]] = {}
        for obj in objects:
            head, _, name = obj.key.partition("/")
            if not name or id_time(head) is None:
                continue  # not one of ours
            grouped.setdefault(head, []).append((name, obj.size, obj.modified))
        out: list[BackupEntry] = []
        for ident in sorted(grouped):
            files = grouped[ident]
            names = {name for name, _, _ in files}
            manifest: Manifest | None = None
            problem: str | None = None
            if MANIFEST_NAME in names:
                try:
                    manifest = self.manifest(ident)
                except InputError as exc:
                    problem = str(exc)
            out.append(
                BackupEntry(
                    id=ident,
                    manifest=manifest,
                    size=sum(size for _, size, _ in files),
                    modified=max(m for _, _, m in files),
                    problem=problem,
                )
            )
        out.extend(self._local_leftovers(set(grouped)))
        return sorted(out, key=lambda e: e.id)

    def _local_leftovers(self, known: set[str]) -> list[BackupEntry]:
        """Folders holding only a partial file (a backup killed while dumping), local only."""
        root = self.local_root
        if root is None or not root.is_dir():
            return []
        out = []
        for folder in root.iterdir():
            if folder.name in known or id_time(folder.name) is None or not folder.is_dir():
                continue
            with contextlib.suppress(OSError):
                files = [f for f in folder.iterdir() if f.is_file()]
                size = sum(f.stat().st_size for f in files)
                mtime = max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime)
                out.append(BackupEntry(folder.name, None, size, datetime.fromtimestamp(mtime, UTC)))
        return out

    def manifest(self, backup: str) -> Manifest:
        """The manifest of ``backup`` (NotFoundError: no such backup; InputError: damaged)."""
        try:
            raw = self.store.get_bytes(f"{backup}/{MANIFEST_NAME}")
        except NotFoundError:
            raise NotFoundError(
                f"no complete backup {backup!r} in {self.describe()} (see `eomatch backup list`)"
            ) from None
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InputError(
                f"backup {backup}: damaged manifest ({where}: {first.get('msg', 'invalid')})"
            ) from None
        if manifest.id != backup:
            raise InputError(f"backup {backup}: damaged manifest (it names {manifest.id!r})")
        return manifest

    def newest(self) -> Manifest:
        """The newest complete backup (NotFoundError if there is none)."""
        complete = [e for e in self.entries() if e.manifest is not None]
        if not complete:
            raise NotFoundError(f"no backups in {self.describe()}: run `eomatch backup create`")
        manifest = complete[-1].manifest
        assert manifest is not None
        return manifest

    def pick(self, backup: str | None) -> Manifest:
        """``backup``'s manifest, or the newest one's."""
        return self.manifest(backup) if backup else self.newest()

    @contextlib.contextmanager
    def dump_file(self, manifest: Manifest) -> Iterator[Path]:
        """The dump as a local file for the block (the file itself in a local repository, else
        a download to the staging folder, removed afterwards)."""
        key = f"{manifest.id}/{manifest.dump.file}"
        root = self.local_root
        if root is not None:
            path = LocalFolderStore(root).path(key)
            if not path.is_file():
                raise NotFoundError(f"backup {manifest.id}: its dump {path} is missing")
            yield path
            return
        with self.scratch_dir() as tmp:
            target = tmp / manifest.dump.file
            try:
                self.store.get_file(key, target)
            except NotFoundError:
                raise NotFoundError(
                    f"backup {manifest.id}: its dump is missing from {self.describe()}"
                ) from None
            yield target

    @contextlib.contextmanager
    def scratch_dir(self) -> Iterator[Path]:
        """A temporary folder in the staging area, removed afterwards."""
        if self.staging is not None:
            self.staging.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="eomatch-backup-", dir=self.staging))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- writing -----------------------------------------------------------------------------

    def new_id(self, when: datetime) -> str:
        """An id for a backup taken at ``when`` that no folder uses yet."""
        base = backup_id(when)
        taken = {e.id for e in self.entries()}
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}-{n}"
        return ident

    @contextlib.contextmanager
    def writing(self, backup: str) -> Iterator[Path]:
        """A path to dump into. In a local repository it is a hidden partial file inside the
        backup's folder (same file system: the commit is a rename, no copy); else a scratch
        file uploaded on commit. Removed if the block fails."""
        root = self.local_root
        if root is not None:
            folder = root / backup
            folder.mkdir(parents=True, exist_ok=True)
            part = folder / f".{DUMP_NAME}.part"
            try:
                yield part
            except BaseException:
                part.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()
                raise
            return
        with self.scratch_dir() as tmp:
            yield tmp / DUMP_NAME

    def commit(self, manifest: Manifest, dump: Path) -> None:
        """Store the dump, then the manifest (the commit mark)."""
        key = f"{manifest.id}/{manifest.dump.file}"
        root = self.local_root
        if root is not None and dump.parent == root / manifest.id:
            os.chmod(dump, 0o600)  # the whole catalogue and the key hashes: owner only
            fd = os.open(dump, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(dump, LocalFolderStore(root).path(key))
        else:
            self.store.put_file(key, dump)
        self.store.put_bytes(
            f"{manifest.id}/{MANIFEST_NAME}", manifest.model_dump_json(indent=2).encode()
        )

    def delete(self, entry: BackupEntry) -> None:
        """Remove a backup: the manifest first, so a half-deleted one is merely incomplete."""
        self.store.delete(f"{entry.id}/{MANIFEST_NAME}")
        for obj in self.store.list(f"{entry.id}/"):
            self.store.delete(obj.key)
        root = self.local_root
        if root is not None:
            shutil.rmtree(root / entry.id, ignore_errors=True)


def select_prunable(
    entries: list[BackupEntry],
    now: datetime,
    keep_days: int,
    incomplete_grace: timedelta = timedelta(hours=12),
) -> list[BackupEntry]:
    """Backups that retention removes: complete ones taken more than ``keep_days`` ago
    (never the newest complete one), and incomplete ones untouched for ``incomplete_grace``
    (younger ones may be a backup still running)."""
    complete = [e for e in entries if e.manifest is not None]
    newest = complete[-1].id if complete else None
    cutoff = now - timedelta(days=keep_days)
    out = []
    for entry in entries:
        if entry.manifest is not None:
            if entry.id != newest and entry.manifest.started_at < cutoff:
                out.append(entry)
        elif entry.modified < now - incomplete_grace:
            out.append(entry)
    return out
