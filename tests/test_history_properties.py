"""Issue 12 §4: the history reproduces the catalogue at every point, whatever wrote it.

Random sequences of the real write paths (ingest of edited files, ``--prune``, the internal
API's PUT/POST/DELETE, ``add-asset --push``) run against a fresh database; after each step the
whole catalogue is snapshotted. Then the catalogue at each of those points, as the history
reconstructs it, must equal the snapshot, and rolling back to a random point must bring the
catalogue back to it exactly. A process killed with -9 in the middle of an ingest leaves the
history and the catalogue consistent, and the next run completes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.history_store import HistoryStore, Point
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.assets import register_analysis
from eomatch.workflows.ingest import ingest_catalogue
from service_fixtures import InProcessApi, ServiceDb, _new_db, http, make_catalogue

Snapshot = dict[tuple[str, str, str], str]

OPS = ["ingest", "prune", "api_put", "api_post", "api_delete", "push"]


def snapshot(db: ServiceDb) -> tuple[int, Snapshot]:
    """The last commit sequence number and every document, canonical JSON by key."""
    with psycopg.connect(db.role().conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        rows = conn.execute(
            "SELECT 'collection', id, '', content FROM collections "
            "UNION ALL SELECT 'item', i.collection, i.id, content_hydrate(i) FROM items i"
        ).fetchall()
    seq = db.query("SELECT coalesce(max(commit_seq), 0) FROM eomatch.transactions")[0][0]
    docs: Snapshot = {}
    for kind, coll, doc_id, doc in rows:
        docs[(str(kind), str(coll), str(doc_id))] = json.dumps(doc, sort_keys=True)
    return int(seq), docs  # type: ignore[call-overload]


def reconstructed(history: HistoryStore, seq: int) -> Snapshot:
    return {
        (s.kind, s.collection, s.id): json.dumps(s.doc, sort_keys=True)
        for s in history.documents_at(Point(seq, None, None))
    }


def _files(root: Path) -> list[tuple[str, str, str]]:
    cat = MatchupCatalogue.open(root)
    try:
        return sorted(cat.item_files())
    finally:
        cat.close()


class World:
    """One catalogue folder, one database, the internal API in process."""

    def __init__(self, db: ServiceDb, root: Path, api: InProcessApi, auth: dict[str, str]):
        self.db, self.root, self.api, self.auth = db, root, api, auth
        self.store = PgstacStore(db.role("eomatch_ingest"))
        self.n = 0

    def step(self, op: str, rnd: random.Random) -> None:
        self.n += 1
        files = _files(self.root)
        items = self.db.query("SELECT collection, id FROM pgstac.items ORDER BY 1, 2")
        # ids the API accepts in a path (some product ids carry a '+': ingest-only)
        api_items = [r for r in items if not set(str(r[1])) & set(":/?#[]@!$&'()*+,;=")]
        if op == "ingest" and files:
            _coll, _id, rel = rnd.choice(files)
            doc = json.loads((self.root / rel).read_text())
            doc["properties"]["test:step"] = self.n
            (self.root / rel).write_text(json.dumps(doc))
            ingest_catalogue(self.root, self.store, batch_size=7)
        elif op == "prune" and len(files) > 3:
            (self.root / rnd.choice(files)[2]).unlink()
            ingest_catalogue(self.root, self.store, prune=True, batch_size=7)
        elif op == "api_put" and api_items:
            coll, item_id = (str(x) for x in rnd.choice(api_items))
            doc = self.store.get_item(coll, item_id)
            assert doc is not None
            doc["properties"]["test:api"] = self.n
            r = http.put(
                f"{self.api.url}/collections/{coll}/items/{item_id}", json=doc, headers=self.auth
            )
            assert r.status_code == 200, r.text
        elif op == "api_post" and api_items:
            coll, item_id = (str(x) for x in rnd.choice(api_items))
            doc = self.store.get_item(coll, item_id)
            assert doc is not None
            doc["id"] = f"api-{self.n}"
            r = http.post(f"{self.api.url}/collections/{coll}/items", json=doc, headers=self.auth)
            assert r.status_code in (200, 201), r.text
        elif op == "api_delete" and api_items:
            coll, item_id = (str(x) for x in rnd.choice(api_items))
            r = http.delete(f"{self.api.url}/collections/{coll}/items/{item_id}", headers=self.auth)
            assert r.status_code == 200, r.text
        elif op == "push":
            central = {(str(c), str(i)) for c, i in items}
            local = [f for f in files if "matchup-events" not in f[0] and f[:2] in central]
            if local:
                coll, item_id, _rel = rnd.choice(local)
                result = self.root.parent / f"cmp-{self.n}.nc"
                result.write_bytes(b"netcdf %d" % self.n)
                day = f"2026-11-{1 + self.n % 28:02d}"
                register_analysis(self.root, coll, item_id, result, date=day, push=self.store)


@settings(
    max_examples=6,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a DB per example: no shrinking
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(st.sampled_from(OPS), min_size=3, max_size=7),
    seed=st.integers(0, 2**16),
)
def test_the_history_reproduces_every_point(
    pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory, ops: list[str], seed: int
) -> None:
    rnd = random.Random(seed)
    db = _new_db(pg_cluster)
    root = make_catalogue(tmp_path_factory.mktemp("prop") / "cat", n_events=2)
    key = PgstacStore(db.role()).create_key("prop")
    history = HistoryStore(PgstacStore(db.role("eomatch_ingest")))
    with InProcessApi(db, "internal") as api:
        http.apis[api.url] = api
        try:
            world = World(db, root, api, {"Authorization": f"Bearer {key}"})
            ingest_catalogue(root, world.store)
            points = [snapshot(db)]
            for op in ops:
                world.step(op, rnd)
                points.append(snapshot(db))
        finally:
            http.apis.pop(api.url, None)
    for seq, expected in points:
        assert reconstructed(history, seq) == expected, f"at commit {seq} after {ops}"
    _roll_back_and_compare(db, history, points, rnd)


def _roll_back_and_compare(
    db: ServiceDb, history: HistoryStore, points: list[tuple[int, Snapshot]], rnd: random.Random
) -> None:
    """``rollback --to`` a random recorded point: the catalogue equals it again."""
    from eomatch.workflows import history as wf

    seq, expected = rnd.choice(points)
    tx = db.query("SELECT id FROM eomatch.transactions WHERE commit_seq = %s", seq)
    target = str(tx[0][0]) if tx else None
    if target is None:
        return  # the point before any transaction of this example: nothing to name
    wf.rollback_to(history.store, target)
    assert snapshot(db)[1] == expected


# -- kill -9 ------------------------------------------------------------------------------------


def consistent(db: ServiceDb) -> None:
    """The history's last word on each document matches the catalogue now."""
    alive = {
        (str(k), str(c), str(i))
        for k, c, i, op in db.query(
            "SELECT DISTINCT ON (c.kind, c.collection, c.id) c.kind, c.collection, c.id, c.op "
            "FROM eomatch.changes c JOIN eomatch.transactions t ON t.id = c.tx "
            "WHERE t.commit_seq IS NOT NULL ORDER BY c.kind, c.collection, c.id, c.seq DESC"
        )
        if op != "delete"
    }
    now = {
        (str(k), str(c), str(i))
        for k, c, i in db.query(
            "SELECT 'collection', id, '' FROM pgstac.collections "
            "UNION ALL SELECT 'item', collection, id FROM pgstac.items"
        )
    }
    assert alive == now
    # no transaction without changes, none left uncommitted
    assert db.query(
        "SELECT count(*) FROM eomatch.transactions t WHERE t.commit_seq IS NULL "
        "OR NOT EXISTS (SELECT 1 FROM eomatch.changes c WHERE c.tx = t.id)"
    ) == [(0,)]


def test_kill_9_during_ingest_leaves_history_consistent(
    tmp_path: Path, service_db: ServiceDb
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=40)
    n_items = len(_files(root))
    env = {
        **os.environ,
        **service_db.env(),
        "PGUSER": "postgres",
    }
    cmd = [
        sys.executable,
        "-m",
        "eomatch",
        "ingest",
        "--catalogue",
        str(root),
        "--batch-size",
        "20",
        "--db-user",
        "eomatch_ingest",
    ]
    rnd = random.Random(os.getpid())
    partial = False
    for _attempt in range(3):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # once a batch of this attempt has landed, at a random moment of the batches after it
        start = service_db.item_count()
        deadline = time.monotonic() + 60
        while service_db.item_count() == start and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rnd.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        consistent(service_db)
        count = service_db.item_count()
        partial = partial or 0 < count < n_items
        if count == n_items:
            break
    assert partial, "every attempt finished before it was killed"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert service_db.item_count() == n_items
    consistent(service_db)
