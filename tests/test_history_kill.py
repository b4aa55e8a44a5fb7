"""kill -9 of ``eomatch rollback`` at a random point of a 5000-item rollback: the rollback's
transaction is in the database whole or not at all, and running it again completes it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from eomatch.cli.main import main
from eomatch.io.pgstac_store import PgstacStore
from service_fixtures import *  # noqa: F403
from service_fixtures import ServiceDb

N = 5000


def _docs(n_value: int) -> list[dict[str, object]]:
    return [
        {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": f"k{k:05d}",
            "collection": "K",
            "geometry": {"type": "Point", "coordinates": [k % 360 - 180, 0]},
            "bbox": [k % 360 - 180, 0, k % 360 - 180, 0],
            "properties": {"datetime": "2022-05-06T12:00:00Z", "n": n_value},
            "assets": {"data": {"href": f"https://example.org/{k}.nc"}},
            "links": [],
        }
        for k in range(N)
    ]


def _digest(db: ServiceDb) -> list[tuple[object, ...]]:
    with psycopg.connect(db.role("eomatch_ingest").conninfo()) as conn:
        return conn.execute(
            "SELECT id, md5(content::text || geometry::text) FROM pgstac.items ORDER BY id"
        ).fetchall()


def _rollbacks(db: ServiceDb) -> list[tuple[object, ...]]:
    return db.query(
        "SELECT t.id, count(c.*) FROM eomatch.transactions t "
        "LEFT JOIN eomatch.changes c ON c.tx = t.id WHERE t.kind = 'rollback' GROUP BY t.id"
    )


def _wait_for_writes(db: ServiceDb, proc: subprocess.Popen[bytes]) -> bool:
    """Until the rollback's session writes (it has a transaction id only from its first
    write on: the reads before it have none); False if the process ended first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        rows = db.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL",
            db.dbname,
        )
        if rows[0][0]:
            return True
        time.sleep(0.01)
    return False


def _wait_for_backends(db: ServiceDb) -> None:
    """Until the killed client's server process has noticed and ended its transaction."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        others = db.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            db.dbname,
        )
        if others[0][0] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the killed rollback's database session did not end")


def test_kill_9_of_a_rollback_leaves_all_or_nothing_and_a_rerun_completes(
    service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = service_db
    collection = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": "K",
        "description": "kill test",
        "license": "CC-BY-4.0",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2022-01-01T00:00:00Z", None]]},
        },
    }
    with psycopg.connect(db.role("eomatch_ingest").conninfo()) as conn:
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (json.dumps(collection),))
    ingest = PgstacStore(db.role("eomatch_ingest"))
    ingest.upsert_items(_docs(1))
    loaded = _digest(db)
    ingest.upsert_items(_docs(2))  # the 5000-item transaction to roll back
    (tx,) = db.query("SELECT max(id) FROM eomatch.transactions")[0]
    updated = _digest(db)
    assert updated != loaded

    seed = int.from_bytes(os.urandom(4), "big")
    delay = random.Random(seed).uniform(0.0, 1.0)
    env = {**os.environ, **db.env(), "PGUSER": "eomatch_ingest"}
    env.pop("PGPASSWORD", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "eomatch", "rollback", str(tx)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    writing = _wait_for_writes(db, proc)
    time.sleep(delay)  # a random point of the write (or just after its commit)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    _wait_for_backends(db)

    done = _rollbacks(db)
    now = _digest(db)
    context = (
        f"seed {seed}, killed {delay:.2f} s into the write (seen: {writing}), "
        f"finished before: {finished}"
    )
    if done:  # the whole rollback committed
        assert done == [(done[0][0], N)], context
        assert now == loaded, context
    else:  # none of it
        assert now == updated, context

    # a re-run completes (or finds nothing left to do), and the end state is the same
    for k, v in db.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PGUSER", "eomatch_ingest")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert main(["rollback", str(tx)]) == 0, context
    assert _digest(db) == loaded, context
    after = _rollbacks(db)
    assert len(after) == 1, context
    assert after[0][1] == N, context
