"""Issue 12 §1: every change of the central database is recorded by the database itself.

Each write path is exercised for real (ingest and prune through the CLI, the internal API's
transactions in process, ``add-asset --push``, plain SQL as the API role) and the history is
read back from ``eomatch.transactions``/``eomatch.changes``. The roles' limits are tried with
the statements a careless or hostile client would send.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eomatch.cli.main import main
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.assets import register_analysis
from service_fixtures import ServiceDb, http, make_catalogue, seeded_api_pair
from test_service_writes import collection, item


def _txs(db: ServiceDb) -> list[tuple[Any, ...]]:
    return db.query(
        "SELECT t.id, t.actor, t.kind, t.message, t.run, "
        "count(*) FILTER (WHERE c.op = 'insert'), count(*) FILTER (WHERE c.op = 'update'), "
        "count(*) FILTER (WHERE c.op = 'delete') FROM eomatch.transactions t "
        "JOIN eomatch.changes c ON c.tx = t.id WHERE t.commit_seq IS NOT NULL "
        "GROUP BY t.id ORDER BY t.commit_seq"
    )


def _files(root: Path) -> list[tuple[str, str, str]]:
    cat = MatchupCatalogue.open(root)
    try:
        return sorted(cat.item_files())
    finally:
        cat.close()


def _db_args(db: ServiceDb) -> list[str]:
    return [
        "--db-host",
        "127.0.0.1",
        "--db-port",
        str(db.cluster.port),
        "--db-name",
        db.dbname,
    ]


@pytest.fixture
def pgpass(service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch) -> ServiceDb:
    monkeypatch.setenv("PGPASSFILE", str(service_db.cluster.passfile))
    return service_db


def test_ingest_batches_prune_and_unchanged_reingest(tmp_path: Path, pgpass: ServiceDb) -> None:
    db = pgpass
    root = make_catalogue(tmp_path / "cat", n_events=3)
    n_items = len(_files(root))
    args = ["ingest", "--catalogue", str(root), *_db_args(db), "--batch-size", "5"]
    assert main([*args, "--message", "first load"]) == 0
    first = _txs(db)
    # collections in a transaction of their own, then one per batch of 5 items
    assert len(first) == 1 + -(-n_items // 5)
    assert {t[2] for t in first} == {"ingest"}
    assert {t[3] for t in first} == {"first load"}
    assert len({t[4] for t in first}) == 1
    assert first[0][4]
    assert first[0][1].startswith("user:")
    assert sum(t[5] for t in first) == n_items + 4  # and the collections

    # unchanged: nothing written, nothing recorded
    assert main(args) == 0
    assert _txs(db) == first

    # a prune is one transaction of its own, kind prune, with the deleted items' contents
    _coll, victim_id, rel = _files(root)[-1]
    (root / rel).unlink()
    assert main([*args, "--prune"]) == 0
    last = _txs(db)[-1]
    assert last[2] == "prune"
    assert (last[5], last[6], last[7]) == (0, 0, 1)
    before = db.query(
        "SELECT before->>'id', before->'properties' IS NOT NULL FROM eomatch.changes WHERE tx = %s",
        last[0],
    )
    assert before == [(victim_id, True)]


def test_api_writes_record_key_message_and_merge_per_transaction(pg_cluster: Any) -> None:
    with seeded_api_pair(pg_cluster, "alice", collection(), item()) as stack:
        db, url, auth = stack["db"], stack["internal"].url, stack["auth"]
        changed = {**item(), "properties": {**item()["properties"], "v": 2}}
        r = http.put(
            f"{url}/collections/writes/items/plain-item",
            json=changed,
            headers={**auth, "X-Eomatch-Message": "fix v"},
        )
        assert r.status_code == 200, r.text
        r = http.delete(f"{url}/collections/writes/items/plain-item", headers=auth)
        assert r.status_code == 200, r.text
        txs = _txs(db)
        assert [t[1:4] for t in txs] == [
            ("key:alice", "api", None),  # the collection
            ("key:alice", "api", None),  # the item
            ("key:alice", "api", "fix v"),  # PUT is pgSTAC's delete + insert: one update
            ("key:alice", "api", None),
        ]
        assert [t[5:] for t in txs] == [(1, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
        # the update kept the state before it, the delete the state before that
        befores = db.query(
            "SELECT c.op, c.before->'properties'->>'v' FROM eomatch.changes c "
            "WHERE c.kind = 'item' ORDER BY c.seq"
        )
        assert befores == [("insert", None), ("update", None), ("delete", "2")]
        # a header too long or with control characters is cut and cleaned, never a 500
        r = http.post(
            f"{url}/collections/writes/items",
            json=item("other"),
            headers={**auth, "X-Eomatch-Message": "x" * 5000},
        )
        assert r.status_code in (200, 201), r.text
        assert len(_txs(db)[-1][3]) == 2000
        # the setting does not leak to the next request on the pooled connection
        r = http.post(f"{url}/collections/writes/items", json=item("third"), headers=auth)
        assert r.status_code in (200, 201), r.text
        assert _txs(db)[-1][3] is None


def test_collection_delete_records_its_items(pg_cluster: Any) -> None:
    with seeded_api_pair(pg_cluster, "bob", collection(), item()) as stack:
        db, url, auth = stack["db"], stack["internal"].url, stack["auth"]
        for n in range(3):
            r = http.post(f"{url}/collections/writes/items", json=item(f"x{n}"), headers=auth)
            assert r.status_code in (200, 201), r.text
        r = http.delete(f"{url}/collections/writes", headers=auth)
        assert r.status_code == 200, r.text
        last = _txs(db)[-1]
        assert last[5:] == (0, 0, 5)  # 4 items and the collection
        gone = db.query(
            "SELECT kind, id, before IS NOT NULL FROM eomatch.changes WHERE tx = %s "
            "ORDER BY kind, id",
            last[0],
        )
        assert gone == [
            ("collection", "", True),
            ("item", "plain-item", True),
            ("item", "x0", True),
            ("item", "x1", True),
            ("item", "x2", True),
        ]


def test_push_is_recorded_as_push(tmp_path: Path, service_db: ServiceDb) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=1)
    store = PgstacStore(service_db.role("eomatch_ingest"))
    from eomatch.workflows.ingest import ingest_catalogue

    ingest_catalogue(root, store)
    coll, item_id, _ = next(f for f in _files(root) if "matchup-events" not in f[0])
    result = tmp_path / "cmp.nc"
    result.write_bytes(b"netcdf")
    register_analysis(root, coll, item_id, result, date="2026-11-01", push=store)
    last = _txs(service_db)[-1]
    assert last[2] == "push"
    assert last[5:] == (0, 1, 0)
    assert "comparison" in last[3]
    assert item_id in last[3]


def test_changes_that_cancel_out_leave_no_transaction(service_db: ServiceDb) -> None:
    doc = collection("cancel")
    with psycopg.connect(service_db.role("eomatch_api").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(doc),))
        conn.commit()
        n = len(_txs(service_db))
        conn.execute("SELECT create_item(%s::jsonb)", (json.dumps(item("tmp", "cancel")),))
        conn.execute("SELECT delete_item('tmp', 'cancel')")
        conn.commit()
    assert len(_txs(service_db)) == n
    assert service_db.query("SELECT count(*) FROM eomatch.transactions")[0][0] == n


@pytest.mark.parametrize("role", ["eomatch_api", "eomatch_ingest", "eomatch_reader"])
def test_roles_cannot_change_or_bypass_the_history(service_db: ServiceDb, role: str) -> None:
    with psycopg.connect(service_db.role("eomatch_api").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(collection("h")),))
        conn.execute("SELECT create_item(%s::jsonb)", (json.dumps(item("a", "h")),))
        conn.commit()
    before = service_db.query("SELECT * FROM eomatch.changes ORDER BY seq")
    attempts = [
        "UPDATE eomatch.changes SET op = 'insert'",
        "DELETE FROM eomatch.changes",
        "DELETE FROM eomatch.transactions",
        "INSERT INTO eomatch.transactions (xid, actor, kind) VALUES ('1', 'x', 'y')",
        "SELECT eomatch.history_record('item', 'h', 'a', 'delete', NULL)",
        "TRUNCATE pgstac.items",
        "TRUNCATE eomatch.changes",
        "ALTER TABLE pgstac.items DISABLE TRIGGER eomatch_history",
        "DROP TRIGGER eomatch_history ON pgstac.items",
        "SET session_replication_role = replica",
    ]
    for statement in attempts:
        with (
            psycopg.connect(service_db.role(role).conninfo()) as conn,
            pytest.raises(psycopg.Error),
        ):
            conn.execute(statement)
    assert service_db.query("SELECT * FROM eomatch.changes ORDER BY seq") == before


def test_a_forged_transaction_id_is_not_believed(service_db: ServiceDb) -> None:
    with psycopg.connect(service_db.role("eomatch_api").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(collection("f")),))
        conn.commit()
        old = service_db.query("SELECT max(id) FROM eomatch.transactions")[0][0]
        # claim this transaction is the old one: the xid in the cached value gives it away
        conn.execute(
            "SELECT set_config('eomatch.history_tx', pg_current_xact_id()::text || ':' || %s, "
            "true)",
            (str(old),),
        )
        conn.execute("SELECT create_item(%s::jsonb)", (json.dumps(item("b", "f")),))
        conn.commit()
    rows = service_db.query("SELECT tx FROM eomatch.changes WHERE id = 'b'")
    assert rows
    assert rows[0][0] != old


def test_install_is_idempotent_and_keeps_history(service_db: ServiceDb) -> None:
    with psycopg.connect(service_db.role("eomatch_api").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(collection("i")),))
        conn.commit()
    before = _txs(service_db)
    PgstacStore(service_db.role()).install()
    assert _txs(service_db) == before
    triggers = service_db.query(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'eomatch_history' "
        "AND tgrelid = 'pgstac.items'::regclass"
    )
    assert triggers[0][0] == 1


def test_a_failed_ingest_batch_records_nothing(tmp_path: Path, pgpass: ServiceDb) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=1)
    assert main(["ingest", "--catalogue", str(root), *_db_args(pgpass)]) == 0
    n = len(_txs(pgpass))
    # a file the API would refuse stops the batch before anything is written
    bad = root / _files(root)[0][2]
    doc = json.loads(bad.read_text())
    doc["properties"]["datetime"] = "not a time"
    bad.write_text(json.dumps(doc))
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    assert main(["ingest", "--catalogue", str(root), *_db_args(pgpass)]) != 0
    assert len(_txs(pgpass)) == n


def test_old_rows_survive_their_collection(service_db: ServiceDb) -> None:
    """An item's old row is kept as pgSTAC stored it (cheap) and hydrated on read; when its
    collection (and with it the base items it was dehydrated against) is deleted, the kept
    rows are hydrated first, so they read the same afterwards."""
    doc = collection("keep")
    doc["item_assets"] = {"data": {"type": "application/x-netcdf", "roles": ["data"]}}
    first = item("k", "keep")
    first["assets"]["data"]["type"] = "application/x-netcdf"
    first["assets"]["data"]["roles"] = ["data"]
    with psycopg.connect(service_db.role("eomatch_api").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(doc),))
        conn.execute("SELECT create_item(%s::jsonb)", (json.dumps(first),))
        conn.commit()
        stored = conn.execute("SELECT get_item('k', 'keep')").fetchone()
        assert stored is not None
        second = {**first, "properties": {**first["properties"], "v": 2}}
        conn.execute("SELECT update_item(%s::jsonb)", (json.dumps(second),))
        conn.commit()
        raw = service_db.query(
            "SELECT b_content IS NOT NULL, before IS NULL FROM eomatch.change_log "
            "WHERE id = 'k' AND op = 'update'"
        )
        assert raw == [(True, True)]  # the row as stored, not hydrated in the trigger

        def kept() -> object:
            row = conn.execute(
                "SELECT before FROM eomatch.changes WHERE id = 'k' AND op = 'update'"
            ).fetchone()
            return row[0] if row else None

        assert kept() == stored[0]
        conn.execute("SELECT delete_collection('keep')")
        conn.commit()
        assert kept() == stored[0]
    assert service_db.query(
        "SELECT count(*) FROM eomatch.change_log "
        "WHERE b_content IS NOT NULL AND collection = 'keep'"
    ) == [(0,)]


def test_a_past_state_that_breaks_the_rules_is_not_restored(service_db: ServiceDb) -> None:
    """A row stored by SQL before the write checks (links without ``rel``) is in the history;
    rolling back to it is refused whole, like any other write of such a document."""
    from eomatch.errors import InputError
    from eomatch.workflows.history import rollback

    bad = item("legacy", "old")
    bad["links"] = [{"href": "https://example.org/x"}]
    with psycopg.connect(service_db.role("eomatch_api").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(collection("old")),))
        conn.execute("SELECT create_item(%s::jsonb)", (json.dumps(bad),))
        conn.commit()
        conn.execute("SELECT update_item(%s::jsonb)", (json.dumps(item("legacy", "old")),))
        conn.commit()
    fix = service_db.query("SELECT max(id) FROM eomatch.transactions")[0][0]
    before = service_db.snapshot()
    store = PgstacStore(service_db.role("eomatch_ingest"))
    with pytest.raises(InputError, match="cannot be restored"):
        rollback(store, int(fix))  # type: ignore[call-overload]
    assert service_db.snapshot() == before


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ("x" * 2001, "at most 2000 characters"),
        ("two\nlines", "printable"),
        ("bell\x07", "printable"),
    ],
)
def test_cli_message_is_bounded_and_printable(
    tmp_path: Path, pgpass: ServiceDb, capsys: pytest.CaptureFixture[str], message: str, said: str
) -> None:
    """``--message`` reaches the history: a huge or multi-line one is refused before any write."""
    root = make_catalogue(tmp_path / "cat", n_events=1)
    args = ["ingest", "--catalogue", str(root), *_db_args(pgpass), "--message", message]
    assert main(args) == 2
    assert said in capsys.readouterr().err
    assert pgpass.item_count() == 0
    assert _txs(pgpass) == []
