"""Backups of the central database: create, list, verify, restore, prune (``eomatch backup``).

Each step is one function over a :class:`~eomatch.io.backup_repo.BackupRepository` and a
database target; the CLI only parses arguments and prints. What is kept where, and why
pg_dump rather than pgBackRest: :mod:`eomatch.io.pg_dump`, :mod:`eomatch.io.backup_repo`,
docs/deployment.md ("Backups and restore").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from eomatch._version import __version__
from eomatch.config.settings import BackupSettings, Settings, read_settings
from eomatch.errors import ConfigError, DatabaseError, EomatchError, InputError
from eomatch.io.backup_repo import (
    BackupEntry,
    BackupRepository,
    DbFacts,
    DumpInfo,
    Manifest,
    file_sha256,
    select_prunable,
)
from eomatch.io.db_target import DbTarget
from eomatch.io.object_store import LocalFolderStore, ObjectStore, S3Config, S3ObjectStore
from eomatch.io.pg_conn import ConnectionInfo

__all__ = [
    "BackupStatus",
    "CheckReport",
    "RestoreResult",
    "backup_status",
    "create_backup",
    "open_repository",
    "prune_backups",
    "restore_backup",
    "verify_backup",
]

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def open_repository(
    where: str | Path | None = None, settings: BackupSettings | None = None
) -> BackupRepository:
    """The repository: ``where`` (a folder or ``s3://bucket/prefix``), else the settings'
    bucket (``EOMATCH_BACKUP_S3_BUCKET``), else the local folder (``EOMATCH_BACKUP_DIR`` or
    ``<data dir>/backups``)."""
    cfg = settings or read_settings(BackupSettings)
    store: ObjectStore
    text = str(where) if where is not None else ""
    if text.startswith("s3://"):
        parts = urlsplit(text)
        if not parts.netloc:
            raise ConfigError(f"--repo {text}: give s3://BUCKET[/PREFIX]")
        store = S3ObjectStore(_s3_config(cfg, parts.netloc, parts.path.strip("/")))
    elif where is not None:
        store = LocalFolderStore(Path(where))
    elif cfg.s3_bucket:
        store = S3ObjectStore(_s3_config(cfg, cfg.s3_bucket, cfg.s3_prefix))
    else:
        store = LocalFolderStore(cfg.local_dir(Settings().data_dir))
    return BackupRepository(store, staging=cfg.staging_dir)


def _s3_config(cfg: BackupSettings, bucket: str, prefix: str) -> S3Config:
    return S3Config(
        bucket=bucket,
        prefix=prefix,
        endpoint=cfg.s3_endpoint,
        region=cfg.s3_region,
        allow_http=cfg.s3_allow_http,
        requester_pays=cfg.s3_requester_pays,
    )


# -- create -------------------------------------------------------------------------------------


def create_backup(target: DbTarget, repo: BackupRepository, report: Report = _quiet) -> Manifest:
    """Dump the target database into a new backup; it appears in ``repo`` only once complete."""
    from eomatch.io.pg_dump import tool_version

    if target.cluster is not None:
        target.cluster.start()
    admin = target.admin()
    ident = repo.new_id(datetime.now(UTC))
    report(f"backing up {target.describe()} to {repo.describe()} as {ident}")
    try:
        return _create(admin, repo, ident, tool_version("pg_dump"))
    except OSError as exc:  # the repository or the staging folder: permissions, disk full
        raise EomatchError(f"backup {ident} failed: {exc}") from None


def _create(admin: ConnectionInfo, repo: BackupRepository, ident: str, pg_dump: str) -> Manifest:
    from eomatch.io.backup_db import dump_snapshot

    with repo.writing(ident) as path:
        info = dump_snapshot(admin, path)
        manifest = Manifest(
            id=ident,
            started_at=info.started_at,
            finished_at=info.finished_at,
            source=f"{admin.host}:{admin.port}/{admin.dbname}",
            database=admin.dbname,
            server_version=info.server_version,
            pg_dump_version=pg_dump,
            eomatch_version=__version__,
            facts=info.facts,
            roles=info.roles,
            database_grants=info.database_grants,
            role_settings=info.role_settings,
            dump=DumpInfo(size=path.stat().st_size, sha256=file_sha256(path)),
        )
        repo.commit(manifest, path)
    return manifest


# -- verify -------------------------------------------------------------------------------------


@dataclass
class CheckReport:
    """The outcome of checking one backup."""

    backup: str
    """The backup's id."""
    expected: DbFacts | None = None
    """What its manifest says."""
    found: DbFacts | None = None
    """What the restored copy holds (None: it could not be restored)."""
    problems: list[str] = field(default_factory=list)
    """Why it is not good (empty: good)."""
    seconds: float = 0.0
    """How long the check took."""

    @property
    def ok(self) -> bool:
        """The backup restores and matches its manifest."""
        return not self.problems and self.found is not None


def _check_dump_file(manifest: Manifest, path: Path) -> str | None:
    size = path.stat().st_size
    if size != manifest.dump.size:
        return f"dump is {size} bytes, the manifest says {manifest.dump.size}: damaged copy"
    if file_sha256(path) != manifest.dump.sha256:
        return "dump's SHA-256 differs from the manifest: damaged copy"
    return None


def verify_backup(
    repo: BackupRepository,
    backup: str | None = None,
    report: Report = _quiet,
) -> CheckReport:
    """Restore a backup (default: the newest) into a throwaway cluster and compare it with
    its manifest. Errors of the repository (missing backup, unreachable bucket) raise; a
    damaged or non-matching backup is a report with problems."""
    from eomatch.io.backup_db import compare_facts, create_database, restore_database
    from eomatch.io.scratch_cluster import scratch_cluster

    t0 = time.monotonic()
    manifest = repo.pick(backup)
    result = CheckReport(manifest.id, expected=manifest.facts)
    report(f"verifying backup {manifest.id} from {repo.describe()}")
    with repo.dump_file(manifest) as dump:
        problem = _check_dump_file(manifest, dump)
        if problem:
            result.problems.append(problem)
        else:
            with scratch_cluster(repo.staging) as admin:
                create_database(admin, "verify", roles=manifest.roles)
                try:
                    result.found = restore_database(admin, "verify", dump, manifest)
                except EomatchError as exc:
                    result.problems.append(str(exc))
                else:
                    result.problems.extend(compare_facts(manifest.facts, result.found))
    result.seconds = time.monotonic() - t0
    return result


# -- restore ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did."""

    backup: str
    """The backup restored."""
    database: str
    """The database now serving it."""
    replaced: str | None
    """The name the previous database was kept under (None: there was none)."""
    check: CheckReport
    """The check of the restored database before the switch."""


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def restore_backup(
    target: DbTarget,
    repo: BackupRepository,
    backup: str | None = None,
    report: Report = _quiet,
) -> RestoreResult:
    """Restore beside the current database, check it, then switch by renaming.

    The current database is untouched until the restored one is complete and matches its
    manifest; it is kept as ``<db>_replaced_<stamp>``. Leftovers of a killed restore
    (``<db>_restore_*``) are dropped first, under a server-wide lock.
    """
    from eomatch.io.backup_db import (
        compare_facts,
        create_database,
        databases_like,
        drop_database,
        restore_database,
        restore_lock,
        switch_databases,
    )

    t0 = time.monotonic()
    manifest = repo.pick(backup)
    if target.cluster is not None:
        target.cluster.start()
    admin = target.admin()
    current = admin.dbname
    stamp = _stamp()
    restored, replaced = f"{current}_restore_{stamp}", f"{current}_replaced_{stamp}"
    if len(restored) > 63 or len(replaced) > 63:
        raise InputError(f"database name {current!r} is too long to restore beside it")
    check = CheckReport(manifest.id, expected=manifest.facts)
    lock = restore_lock(admin)
    try:
        for leftover in databases_like(admin, f"{current}_restore_"):
            report(f"removing {leftover}, left by an interrupted restore")
            drop_database(admin, leftover)
        with repo.dump_file(manifest) as dump:
            problem = _check_dump_file(manifest, dump)
            if problem:
                raise InputError(f"backup {manifest.id}: {problem}")
            report(f"restoring backup {manifest.id} into {restored} (beside {current})")
            create_database(admin, restored)
            try:
                check.found = restore_database(admin, restored, dump, manifest)
                check.problems = compare_facts(manifest.facts, check.found)
                if check.problems:
                    raise DatabaseError(
                        f"restored copy of {manifest.id} does not match its manifest: "
                        + "; ".join(check.problems)
                    )
            except BaseException:
                with contextlib.suppress(EomatchError):
                    drop_database(admin, restored)
                raise
        report(f"switching: {current} -> {replaced}, {restored} -> {current}")
        had_current = current in databases_like(admin, current)
        switch_databases(admin, current, restored, replaced, on_retry=report)
    finally:
        lock.close()
    check.seconds = time.monotonic() - t0
    return RestoreResult(manifest.id, current, replaced if had_current else None, check)


# -- prune and list -----------------------------------------------------------------------------


def prune_backups(
    repo: BackupRepository, keep_days: int, dry_run: bool = False, now: datetime | None = None
) -> list[BackupEntry]:
    """Remove what retention says (see :func:`~eomatch.io.backup_repo.select_prunable`)."""
    doomed = select_prunable(repo.entries(), now or datetime.now(UTC), keep_days)
    if not dry_run:
        for entry in doomed:
            repo.delete(entry)
    return doomed


@dataclass(frozen=True)
class BackupStatus:
    """The newest good backup, for ``eomatch serve``'s start-up lines."""

    newest: Manifest | None
    """None: no complete backup in the repository."""
    age: timedelta | None
    """How long ago it was taken."""
    stale: bool
    """True: none, or older than ``max_age_hours``."""
    where: str
    """The repository."""

    def line(self) -> str:
        """One line for people."""
        if self.newest is None or self.age is None:
            return (
                f"WARNING: no backup of the database in {self.where} "
                "(`eomatch backup create`; schedule it: docs/deployment.md)"
            )
        hours = self.age.total_seconds() / 3600
        text = (
            f"last good backup {self.newest.id} ({hours:.1f} h ago, "
            f"{self.newest.facts.items} items) in {self.where}"
        )
        return f"WARNING: {text}: older than expected" if self.stale else text


def backup_status(
    repo: BackupRepository | None = None, now: datetime | None = None
) -> BackupStatus:
    """The newest complete backup and whether it is older than ``EOMATCH_BACKUP_MAX_AGE_HOURS``."""
    settings = read_settings(BackupSettings)
    repo = repo or open_repository(settings=settings)
    complete = [e.manifest for e in repo.entries() if e.manifest is not None]
    if not complete:
        return BackupStatus(None, None, True, repo.describe())
    newest = complete[-1]
    age = (now or datetime.now(UTC)) - newest.started_at
    stale = age > timedelta(hours=settings.max_age_hours)
    return BackupStatus(newest, age, stale, repo.describe())


def backup_status_line() -> str:
    """:meth:`BackupStatus.line` for the configured repository; never raises (``eomatch serve``
    must start even when the bucket is unreachable: the line then says so)."""
    try:
        return backup_status().line()
    except EomatchError as exc:
        return f"WARNING: cannot check the backups: {exc}"
