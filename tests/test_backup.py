"""``eomatch backup``: end to end through the real CLI, against the real stack (PostgreSQL +
pgSTAC, pg_dump/pg_restore, a throwaway cluster for verify, moto's S3 over HTTP), and the
faults of issue #12 §4: a corrupt or missing backup, an unreachable S3 endpoint, a full disk
during a backup, kill -9 of a backup and of a restore at a random point."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from eomatch.cli.main import main
from eomatch.io.backup_repo import BackupRepository, Manifest
from eomatch.io.object_store import LocalFolderStore
from eomatch.io.pg_cluster import LocalCluster
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.backups import backup_status
from eomatch.workflows.ingest import ingest_catalogue
from s3_server import S3Bucket, s3_bucket, s3_server
from service_fixtures import ServiceDb, make_catalogue

__all__ = ["s3_bucket", "s3_server"]

pytestmark = pytest.mark.xdist_group("backup")

SEED = int(os.environ.get("EOMATCH_TEST_SEED", "0")) or random.randrange(1, 10**6)


# -- fixtures -----------------------------------------------------------------------------------


def _admin(cluster: LocalCluster) -> psycopg.Connection[Any]:
    return psycopg.connect(cluster.connection().with_db("postgres").conninfo(), autocommit=True)


def _clone(cluster: LocalCluster, template: str) -> ServiceDb:
    name = "b_" + uuid.uuid4().hex[:12]
    with _admin(cluster) as c:
        c.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
        for role in LocalCluster.ROLES:
            c.execute(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path TO pgstac, public").format(
                    sql.Identifier(role), sql.Identifier(name)
                )
            )
            c.execute(
                sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(name), sql.Identifier(role)
                )
            )
    return ServiceDb(cluster, name)


@pytest.fixture(scope="module")
def populated(pg_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database with a small real catalogue (ingested, so with history) and an API key;
    tests get copies of it."""
    db = _clone(pg_cluster, "eomatch")
    root = make_catalogue(tmp_path_factory.mktemp("cat") / "cat", n_events=3)
    ingest_catalogue(root, PgstacStore(db.role("eomatch_ingest")))
    PgstacStore(db.role()).create_key("backup-test")
    assert db.item_count() > 5
    yield db.dbname
    drop(db, db.dbname)


@pytest.fixture
def db(
    pg_cluster: LocalCluster, populated: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServiceDb]:
    """A copy of the populated database; the CLI points at it through PG* as its admin."""
    copy = _clone(pg_cluster, populated)
    for k, v in copy.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PGUSER", "postgres")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    for var in [v for v in os.environ if v.startswith("EOMATCH_BACKUP_")]:
        monkeypatch.delenv(var)
    yield copy
    for name in databases(copy, copy.dbname):  # the copy, and what restores left beside it
        drop(copy, name)


@pytest.fixture
def repo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "backups"
    monkeypatch.setenv("EOMATCH_BACKUP_DIR", str(path))
    return path


def state(db: ServiceDb) -> list[tuple[object, ...]]:
    """Items, collections, keys (content hashes) and the history's size."""
    history = db.query("SELECT count(*) FROM eomatch.transactions")
    return [*db.snapshot(), ("history", history[0][0])]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    code = main([*argv, "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("eomatch:")]
    assert len(errors) == 1, err  # one line says what went wrong (progress lines aside)
    return errors[0]


DELETE_TWO = "DELETE FROM pgstac.items WHERE id IN (SELECT id FROM pgstac.items LIMIT 2)"


def execute(db: ServiceDb, statement: str) -> None:
    with psycopg.connect(db.role().conninfo(), autocommit=True) as c:
        c.execute(statement)  # type: ignore[arg-type]


def databases(db: ServiceDb, prefix: str) -> list[str]:
    with _admin(db.cluster) as c:
        rows = c.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (prefix + "%",)
        ).fetchall()
    return [r[0] for r in rows]


def drop(db: ServiceDb, name: str) -> None:
    with _admin(db.cluster) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- the commands -------------------------------------------------------------------------------


def test_create_list_verify_restore_prune(
    db: ServiceDb, repo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = state(db)
    created = run_json(capsys, "backup", "create")
    assert created["facts"]["items"] == db.item_count()
    assert created["facts"]["history_transactions"] >= 1
    assert created["facts"]["api_keys"] == 1
    ident = created["id"]
    assert sorted(p.name for p in (repo_dir / ident).iterdir()) == ["eomatch.dump", "manifest.json"]
    manifest = Manifest.model_validate_json((repo_dir / ident / "manifest.json").read_text())
    assert len(manifest.facts.sample) == db.item_count()  # small catalogue: all sampled
    assert ("eomatch_api", "CONNECT") in manifest.database_grants

    listed = run_json(capsys, "backup", "list")
    assert [(b["id"], b["complete"], b["items"]) for b in listed] == [
        (ident, True, db.item_count())
    ]

    capsys.readouterr()
    assert main(["backup", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"backup {ident}: GOOD" in out
    assert "sampled item hashes" in out

    # a mistake after the backup: items deleted, a key revoked
    execute(db, "DELETE FROM pgstac.items WHERE id IN (SELECT id FROM pgstac.items LIMIT 3)")
    execute(db, "UPDATE eomatch.api_keys SET revoked_at = now()")
    assert state(db) != before

    capsys.readouterr()
    assert main(["backup", "restore", "--yes"]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert f"restored backup {ident}" in out
    replaced = databases(db, db.dbname + "_replaced_")
    assert len(replaced) == 1
    assert f"DROP DATABASE {replaced[0]}" in out
    assert state(db) == before  # the history came back with it
    assert databases(db, db.dbname + "_restore_") == []
    # the roles still reach the restored database (grants and search_path came along)
    assert PgstacStore(db.role("eomatch_api")).item_count() == db.item_count()
    drop(db, replaced[0])

    # retention: an old backup goes, the newest good one stays even when it is old too
    old = repo_dir / "20200101T000000Z"
    shutil.copytree(repo_dir / ident, old)
    doc = json.loads((old / "manifest.json").read_text())
    doc.update(id=old.name, started_at="2020-01-01T00:00:00Z")
    (old / "manifest.json").write_text(json.dumps(doc))
    (repo_dir / "20200102T000000Z").mkdir()  # an interrupted backup's folder, long ago
    (repo_dir / "20200102T000000Z" / ".eomatch.dump.part").write_bytes(b"half")
    os.utime(repo_dir / "20200102T000000Z" / ".eomatch.dump.part", (0, 0))
    listed = run_json(capsys, "backup", "list")
    assert [(b["id"], b["complete"]) for b in listed] == [
        (old.name, True),
        ("20200102T000000Z", False),
        (ident, True),
    ]
    assert run_json(capsys, "backup", "prune", "--dry-run")["removed"] == [
        old.name,
        "20200102T000000Z",
    ]
    assert old.exists()
    assert run_json(capsys, "backup", "prune")["removed"] == [old.name, "20200102T000000Z"]
    assert sorted(p.name for p in repo_dir.iterdir()) == [ident]
    repo = BackupRepository(LocalFolderStore(repo_dir))
    shutil.copytree(repo_dir / ident, old)
    (old / "manifest.json").write_text(json.dumps(doc))
    (repo_dir / ident / "manifest.json").unlink()  # now the newest good one is the old one
    assert run_json(capsys, "backup", "prune", "--keep-days", "1")["removed"] == []
    assert repo.newest().id == old.name


def test_local_cluster_backup(
    pg_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """``eomatch db``'s own cluster (no PG*): found by --dir, dumped as its superuser."""
    for var in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(var, raising=False)
    repo = tmp_path / "r"
    made = run_json(capsys, "backup", "create", "--dir", str(pg_cluster.root), "--repo", str(repo))
    assert made["source"].endswith(f":{pg_cluster.port}/eomatch")
    assert made["facts"]["pgstac_version"] == PgstacStore(pg_cluster.connection()).schema_version()
    assert [b["id"] for b in run_json(capsys, "backup", "list", "--repo", str(repo))] == [
        made["id"]
    ]


def test_s3_repository(db: ServiceDb, s3_bucket: S3Bucket, monkeypatch, capsys) -> None:
    for k, v in s3_bucket.env(prefix="site/backups").items():
        monkeypatch.setenv(k, v)
    made = run_json(capsys, "backup", "create")
    assert s3_bucket.keys() == [
        f"site/backups/{made['id']}/eomatch.dump",
        f"site/backups/{made['id']}/manifest.json",
    ]
    assert [b["id"] for b in run_json(capsys, "backup", "list")] == [made["id"]]
    report = run_json(capsys, "backup", "verify")
    assert report["ok"] is True
    assert report["backup"] == made["id"]
    # an upload killed before its manifest: listed as incomplete, never used
    s3_bucket.server.client().put_object(
        Bucket=s3_bucket.name, Key="site/backups/20990101T000000Z/eomatch.dump", Body=b"half"
    )
    listed = run_json(capsys, "backup", "list")
    assert [(b["id"], b["complete"]) for b in listed] == [
        (made["id"], True),
        ("20990101T000000Z", False),
    ]
    assert run_json(capsys, "backup", "status")["newest"] == made["id"]
    # --repo s3://... says the same (endpoint and credentials still from the environment)
    url = f"s3://{s3_bucket.name}/site/backups"
    assert len(run_json(capsys, "backup", "list", "--repo", url)) == 2


def test_restore_asks_and_refuses_without_a_terminal(db: ServiceDb, repo_dir: Path, capsys) -> None:
    assert main(["backup", "create"]) == 0
    before = state(db)
    err = one_line_error(capsys, ["backup", "restore"])  # pytest's stdin is not a TTY
    assert "confirm with --yes" in err
    assert state(db) == before
    assert databases(db, db.dbname + "_") == []


def test_serve_status_line(tmp_path: Path, db: ServiceDb, monkeypatch, capsys) -> None:
    repo = BackupRepository(LocalFolderStore(tmp_path / "b"))
    status = backup_status(repo)
    assert status.stale
    assert status.line().startswith("WARNING: no backup")
    capsys.readouterr()
    assert main(["backup", "status", "--repo", str(tmp_path / "b")]) == 1  # for health checks
    assert "WARNING: no backup" in capsys.readouterr().out
    assert main(["backup", "create", "--repo", str(tmp_path / "b")]) == 0
    assert run_json(capsys, "backup", "status", "--repo", str(tmp_path / "b"))["stale"] is False
    fresh = backup_status(repo)
    assert not fresh.stale
    assert fresh.line().startswith("last good backup")
    later = datetime.now(UTC) + timedelta(days=3)
    assert backup_status(repo, now=later).line().endswith("older than expected")


# -- faults -------------------------------------------------------------------------------------


def test_corrupt_and_missing_backups(db: ServiceDb, repo_dir: Path, capsys) -> None:
    made = run_json(capsys, "backup", "create")
    before = state(db)
    dump = repo_dir / made["id"] / "eomatch.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))

    capsys.readouterr()
    assert main(["backup", "verify"]) == 1  # a verdict with its report, not a crash
    out = capsys.readouterr().out
    assert "damaged copy" in out
    assert "BAD" in out
    err = one_line_error(capsys, ["backup", "restore", "--yes"])
    assert "damaged copy" in err
    assert state(db) == before
    assert databases(db, db.dbname + "_") == []

    err = one_line_error(capsys, ["backup", "verify", "--backup", "20990101T000000Z"], code=1)
    assert "no complete backup '20990101T000000Z'" in err
    err = one_line_error(capsys, ["backup", "restore", "--yes", "--backup", "20990101T000000Z"])
    assert "no complete backup" in err

    dump.unlink()  # the manifest without its dump
    err = one_line_error(capsys, ["backup", "verify"], code=1)
    assert "dump" in err
    assert "missing" in err
    (repo_dir / made["id"] / "manifest.json").write_text("{not json")
    capsys.readouterr()
    listed = run_json(capsys, "backup", "list")
    assert listed[0]["complete"] is False
    assert "damaged manifest" in listed[0]["problem"]
    err = one_line_error(capsys, ["backup", "verify", "--backup", made["id"]], code=1)
    assert "damaged manifest" in err
    assert state(db) == before


def test_unreachable_s3_endpoint(db: ServiceDb, monkeypatch, capsys) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("EOMATCH_BACKUP_S3_BUCKET", "nowhere")
    monkeypatch.setenv("EOMATCH_BACKUP_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("EOMATCH_BACKUP_S3_ALLOW_HTTP", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    before = state(db)
    for argv in (["backup", "create"], ["backup", "list"], ["backup", "restore", "--yes"]):
        err = one_line_error(capsys, argv)
        assert f"127.0.0.1:{port}" in err
    assert "127.0.0.1" in one_line_error(capsys, ["backup", "verify"], code=1)
    assert state(db) == before


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only): room for a manifest, not for a dump."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    path = tmp_path / "tiny"
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)])
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_during_backup(db: ServiceDb, tiny_disk: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EOMATCH_BACKUP_DIR", str(tiny_disk))
    before = state(db)
    err = one_line_error(capsys, ["backup", "create"])
    assert "No space left on device" in err or "could not write" in err
    assert state(db) == before
    assert list(tiny_disk.iterdir()) == []  # nothing half-written stays
    assert run_json(capsys, "backup", "list") == []


def _cli(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "eomatch", *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_after(proc: subprocess.Popen[bytes], delay: float) -> bool:
    """SIGKILL the process group after ``delay`` s; False if it had finished already."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    return True


STARTUP = 1.0
"""Seconds a fresh ``python -m eomatch`` needs before it does anything (imports)."""


def test_kill_9_during_backup_and_restore(db: ServiceDb, repo_dir: Path, capsys) -> None:
    rng = random.Random(SEED)
    env = dict(os.environ)
    before = state(db)
    repo = BackupRepository(LocalFolderStore(repo_dir))

    t0 = time.monotonic()
    assert main(["backup", "create"]) == 0
    took = time.monotonic() - t0
    good = repo.newest().id
    delay = rng.uniform(0.2, STARTUP + took)
    killed = _kill_after(_cli(["backup", "create"], env), delay)
    why = f"seed {SEED}, delay {delay:.2f} s, killed: {killed}"
    for entry in repo.entries():  # a killed backup is incomplete, never mistaken for a good one
        if entry.manifest is not None:
            dump = repo_dir / entry.id / "eomatch.dump"
            assert entry.manifest.dump.size == dump.stat().st_size, why
    assert state(db) == before, why
    assert main(["backup", "create"]) == 0  # the next run completes
    assert repo.newest().id != good
    samples = [e.manifest.facts.sample for e in repo.entries() if e.manifest is not None]
    assert all(sample == samples[0] for sample in samples)  # the sample is deterministic

    execute(db, DELETE_TWO)
    t0 = time.monotonic()
    assert main(["backup", "restore", "--yes", "--backup", good]) == 0
    took = time.monotonic() - t0
    assert state(db) == before
    for name in databases(db, db.dbname + "_replaced_"):
        drop(db, name)
    execute(db, DELETE_TWO)
    changed = state(db)

    delay = rng.uniform(0.2, STARTUP + took)
    killed = _kill_after(_cli(["backup", "restore", "--yes", "--backup", good], env), delay)
    why = f"seed {SEED}, delay {delay:.2f} s, killed: {killed}"
    # the database is serving, with the old content or (switch done) the restored one
    assert state(db) in (changed, before), why
    capsys.readouterr()
    assert main(["backup", "restore", "--yes", "--backup", good]) == 0, why  # the next run
    assert state(db) == before
    assert databases(db, db.dbname + "_restore_") == [], why  # leftovers removed


def test_every_backup_setting_is_documented() -> None:
    from eomatch.config.settings import BackupSettings

    docs = (Path(__file__).resolve().parents[1] / "docs" / "service.md").read_text()
    for name in BackupSettings.model_fields:
        assert f"`EOMATCH_BACKUP_{name.upper()}`" in docs, name
