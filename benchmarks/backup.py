"""Backup and verify at 100 000 items (issue #12 §3), next to references from the same run.

The catalogue is the synthetic one of ``benchmarks/service.py`` (7 items per event), ingested
into a throwaway cluster (``eomatch db init`` code path) in ``--dir``; building and ingesting
it is not part of any figure. Figures:

* ``backup create`` (snapshot, facts and sample hashes, ``pg_dump -Fc``, SHA-256, commit to
  a local repository) next to a bare ``pg_dump -Fc`` of the same database to a file, and
  next to ``pg_dump -Fd -j 2`` (the directory format, two parallel jobs: the alternative);
* ``backup verify`` (throwaway cluster: initdb + start, restore, facts, comparison) next to the
  bare restore of the same dump (``pg_restore | psql``) into a new database of the running
  cluster, i.e. what any restore costs;
* ``backup restore`` (beside, check, switch) for completeness.

Run: ``uv run python benchmarks/backup.py [--scale 0.1] [--dir /work/main/out]``
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ITEMS_PER_EVENT = 7
HERE = Path(__file__).resolve().parent


def _imports() -> None:
    for path in (HERE, HERE.parent / "tests"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 100 000 items")
    parser.add_argument("--dir", type=Path, default=HERE.parent / "out", help="work directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    _imports()
    from catalogue import load as build_catalogue  # benchmarks/catalogue.py
    from eomatch.io.backup_repo import BackupRepository
    from eomatch.io.db_target import DbTarget
    from eomatch.io.object_store import LocalFolderStore
    from eomatch.io.pg_cluster import LocalCluster
    from eomatch.io.pg_dump import restore_custom, tool
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.backups import create_backup, restore_backup, verify_backup
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, free_port

    n_events = max(10, math.ceil(100_000 * args.scale / ITEMS_PER_EVENT))
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=args.dir))
    work.chmod(0o711)
    cluster = LocalCluster(work / "db")
    try:
        root = work / "catalogue"
        t_gen = build_catalogue(root, n_events)
        cluster.init(port=free_port())
        import psycopg

        with psycopg.connect(cluster.connection().with_db("postgres").conninfo()) as conn:
            conn.autocommit = True
            conn.execute("ALTER DATABASE eomatch WITH is_template true")
        db = _new_db(cluster)
        t0 = time.perf_counter()
        report = ingest_catalogue(root, PgstacStore(db.role("eomatch_ingest")))
        t_ingest = time.perf_counter() - t0
        print(
            f"catalogue: {report.items} items, generated in {t_gen:.1f} s, ingested in "
            f"{t_ingest:.1f} s (neither counted)"
        )
        os.environ["PGPASSFILE"] = str(cluster.passfile)
        target = DbTarget("127.0.0.1", cluster.port, db.dbname, "postgres", None)
        admin = target.admin()
        env = {**os.environ, **admin.env(), "PGPASSFILE": str(cluster.passfile)}
        repo = BackupRepository(LocalFolderStore(work / "backups"), staging=work)

        def timed(cmd: list[str]) -> float:
            t = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t

        # alternate the two so a neighbour's load does not favour one
        ref = str(work / "reference.dump")
        t_raw = timed([str(tool("pg_dump")), "-Fc", "-f", ref, db.dbname])
        t0 = time.perf_counter()
        manifest = create_backup(target, repo)
        t_create = time.perf_counter() - t0
        t_raw = min(t_raw, timed([str(tool("pg_dump")), "-Fc", "-f", ref, db.dbname]))
        os.unlink(ref)
        fd_dir = work / "dump-dir"
        t_fd = timed([str(tool("pg_dump")), "-Fd", "-j", "2", "-f", str(fd_dir), db.dbname])
        size_fd = _size(fd_dir)
        shutil.rmtree(fd_dir)

        t0 = time.perf_counter()
        check = verify_backup(repo)
        t_verify = time.perf_counter() - t0
        assert check.ok, check.problems
        dump = work / "backups" / manifest.id / manifest.dump.file
        from eomatch.io.backup_db import create_database, drop_database

        create_database(admin, "bench_restore")
        t0 = time.perf_counter()
        restore_custom(admin.with_db("bench_restore"), dump)
        t_bare_restore = time.perf_counter() - t0
        drop_database(admin, "bench_restore")
        t0 = time.perf_counter()
        restored = restore_backup(target, repo)
        t_restore = time.perf_counter() - t0
        assert restored.check.ok

        n = manifest.facts.items
        mib = manifest.dump.size / 2**20
        print()
        print(
            f"== backup of {n} items ({manifest.facts.collections} collections), dump {mib:.1f} MiB"
        )
        print(f"{'backup create (-Fc)':<34}{t_create:8.2f} s")
        print(f"{'  bare pg_dump -Fc to a file':<34}{t_raw:8.2f} s  (reference, best of two)")
        print(f"{'  create / reference':<34}{t_create / t_raw:8.2f}")
        print(f"{'  pg_dump -Fd -j 2 (alternative)':<34}{t_fd:8.2f} s  ({size_fd / 2**20:.1f} MiB)")
        print(f"{'backup verify':<34}{t_verify:8.2f} s  (throwaway cluster, restore, checks)")
        print(f"{'  bare restore (pg_restore|psql)':<34}{t_bare_restore:8.2f} s  (reference)")
        print(f"{'  verify / reference':<34}{t_verify / t_bare_restore:8.2f}")
        print(f"{'backup restore (beside + switch)':<34}{t_restore:8.2f} s")
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
