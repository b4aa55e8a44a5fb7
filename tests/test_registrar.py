"""The registrar and the consistency rule: an item and its record are one row, in every snapshot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eomatch.cli.main import main
from eomatch.errors import ConflictError, InputError
from eomatch.io.history_schema import WriteNote
from eomatch.io.pgstac_store import PgstacStore
from eomatch.io.records_schema import PUBLIC_VIEW, RECORDS_VIEW
from eomatch.io.registrar import Registrar
from service_fixtures import *  # noqa: F403
from service_fixtures import ServiceDb, _new_db, make_catalogue


@pytest.fixture(scope="module")
def ingested(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> ServiceDb:
    """One small catalogue ingested through the CLI (the tests leave it as they found it)."""
    db = _new_db(pg_cluster)
    root = make_catalogue(tmp_path_factory.mktemp("registrar") / "cat", n_events=1)
    mp = pytest.MonkeyPatch()
    for k, v in db.env().items():
        mp.setenv(k, v)
    mp.setenv("PGUSER", "eomatch_ingest")
    try:
        assert main(["ingest", "--catalogue", str(root)]) == 0
    finally:
        mp.undo()
    return db


def _counts(db: ServiceDb) -> tuple[Any, ...]:
    return db.query(
        f"SELECT (SELECT count(*) FROM pgstac.items), (SELECT count(*) FROM {RECORDS_VIEW}), "
        f"(SELECT count(*) FROM {PUBLIC_VIEW})"
    )[0]


def test_register_replace_deregister(ingested: ServiceDb) -> None:
    db = ingested
    store = PgstacStore(db.role("eomatch_ingest"))
    reg = Registrar(store, WriteNote("harvester:test", "harvest", "registrar test"))
    n, records, public = _counts(db)
    assert n == records == public > 0
    item = store.get_item(*db.query("SELECT collection, id FROM pgstac.items LIMIT 1")[0])  # type: ignore[misc]
    assert item is not None
    new = {**item, "id": "registered-by-registrar", "links": []}
    key = (new["collection"], new["id"])
    assert reg.register([new]).items == 1
    assert reg.registered([key]) == reg.records([key]) == {key}
    assert _counts(db) == (n + 1, n + 1, n + 1)
    with pytest.raises(ConflictError, match="already registered"):
        reg.register([new])
    with pytest.raises(InputError, match="twice"):
        reg.replace([new, new])
    new["properties"] = {**new["properties"], "title": "replaced"}
    assert reg.replace([new]).items == 1
    title = db.query(f"SELECT title FROM {RECORDS_VIEW} WHERE identifier = %s",
                     f"{key[0]}:{key[1]}")  # fmt: skip
    assert title == [("replaced",)]
    # described for the history like any other write
    kinds = db.query("SELECT DISTINCT actor, kind FROM eomatch.transactions WHERE kind = 'harvest'")
    assert kinds == [("harvester:test", "harvest")]
    bad = {**new, "id": "not-a-feature", "type": "Nope"}
    with pytest.raises(InputError):
        reg.register([bad])
    assert reg.deregister([key, key]).items == 1
    assert reg.registered([key]) == reg.records([key]) == set()
    assert _counts(db) == (n, n, n)


def test_records_change_in_the_same_transaction(ingested: ServiceDb) -> None:
    db = ingested
    coll, item_id = db.query("SELECT collection, id FROM pgstac.items LIMIT 1")[0]
    ident = f"{coll}:{item_id}"
    info = db.role("eomatch_ingest").conninfo()
    with psycopg.connect(info) as writer, psycopg.connect(db.role("eomatch_reader").conninfo(),
                                                          autocommit=True) as reader:  # fmt: skip
        writer.execute("DELETE FROM pgstac.items WHERE collection = %s AND id = %s",
                       (coll, item_id))  # fmt: skip
        inside = writer.execute(
            f"SELECT count(*) FROM {RECORDS_VIEW} WHERE identifier = %s", (ident,)
        ).fetchone()
        assert inside == (0,)  # the writer's own snapshot: gone from both at once
        seen = reader.execute(
            f"SELECT count(*) FROM {PUBLIC_VIEW} WHERE identifier = %s", (ident,)
        ).fetchone()
        assert seen == (1,)  # others: still there until commit
        writer.rollback()  # a crash is a rollback: both stay
    n, records, public = _counts(db)
    assert n == records == public
    assert db.query(f"SELECT count(*) FROM {PUBLIC_VIEW} WHERE identifier = %s", ident) == [(1,)]


def test_reader_cannot_write_records(ingested: ServiceDb) -> None:
    with (
        psycopg.connect(ingested.role("eomatch_reader").conninfo()) as conn,
        pytest.raises(psycopg.Error),
    ):
        conn.execute(f"DELETE FROM {PUBLIC_VIEW}")


def test_kill_9_mid_ingest_leaves_items_and_records_equal(
    tmp_path: Path, service_db: ServiceDb
) -> None:
    db = service_db
    root = make_catalogue(tmp_path / "cat", n_events=30)
    env = {**os.environ, **db.env(), "PGUSER": "eomatch_ingest"}
    env.pop("PGPASSWORD", None)
    cmd = [
        sys.executable,
        "-m",
        "eomatch",
        "ingest",
        "--catalogue",
        str(root),
        "--batch-size",
        "10",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 60
    try:
        # while it writes, every snapshot has as many records as items (one statement each)
        while time.monotonic() < deadline and proc.poll() is None:
            seen.append(_counts(db))
            if seen[-1][0] > 20:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    for _ in range(100):  # the killed client's session ends, its open batch rolled back
        if not db.query("SELECT count(*) FROM pg_stat_activity WHERE usename = 'eomatch_ingest'")[
            0
        ][0]:
            break
        time.sleep(0.05)
    seen.append(_counts(db))
    assert all(n == records == public for n, records, public in seen), seen
    assert any(n > 0 for n, _r, _p in seen), seen
    proc2 = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc2.returncode == 0, proc2.stderr
    n, records, public = _counts(db)
    assert n == records == public == 30 * 7, (n, records, public)
