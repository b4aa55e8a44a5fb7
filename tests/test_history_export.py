"""``eomatch export [--at TX|TIME]``: the catalogue as it was, against a real database history.

One history is built once per module: an ``eomatch ingest``, API-style writes through pgSTAC's
own functions (create/update/delete), an ingest of a changed catalogue and an ``--prune``.
After each step the test reads what the database held (straight from pgSTAC, not through the
history store) and the point (transaction id, a time); every export ``--at`` that point must
hold exactly those documents: same ids, same content (links compared by their targets, since
the export makes them relative).
"""

from __future__ import annotations

import hashlib
import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pystac
import pytest

from catalogue_helpers import validate_tree
from eomatch.cli.main import main
from eomatch.core import stac_items as si
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.history_schema import describe_sql
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.export import MARKER, export_catalogue
from eomatch.workflows.query import item_ref
from service_fixtures import ServiceDb, _new_db, make_catalogue

Doc = dict[str, Any]
State = dict[tuple[str, str, str], str]
"""(kind, collection, id) -> content hash of the normalised document."""

STRUCTURAL = {"self", "root", "parent", "collection", "child", "item", "items"}


# --- normalising both sides to what an export must keep -------------------------------------------


def _digest(doc: Doc) -> str:
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _norm_item(doc: Doc, links: list[tuple[str, str]]) -> str:
    body = {k: v for k, v in doc.items() if k not in ("links", "bbox")}
    body["bbox"] = [float(v) for v in doc.get("bbox") or []]
    body["links"] = sorted(links)
    return _digest(body)


def _norm_collection(doc: Doc) -> str:
    # links and extent are the catalogue's own (recomputed from the items on disk)
    return _digest({k: v for k, v in doc.items() if k not in ("links", "extent")})


def db_state(db: ServiceDb) -> State:
    """What the database holds now, read straight from pgSTAC."""
    with psycopg.connect(db.role().conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        items = conn.execute(
            "SELECT collection, id, content_hydrate(i) FROM pgstac.items i"
        ).fetchall()
        colls = conn.execute("SELECT id, content FROM pgstac.collections").fetchall()
    present = {i for _, i, _ in items}
    out: State = {}
    for coll, item_id, doc in items:
        links = []
        for link in doc.get("links") or []:
            ref = item_ref(str(link.get("href", "")))
            if link.get("rel") in STRUCTURAL:
                continue
            if ref is not None and link.get("rel") in ("related", "derived_from"):
                if ref[1] in present:
                    links.append((link["rel"], ref[1]))
            elif str(link.get("href", "")).startswith(("http://", "https://")):
                links.append((link["rel"], link["href"]))
        out[("item", coll, item_id)] = _norm_item(doc, links)
    # the on-disk layout holds collections of items only
    with_items = {c for c, _, _ in items}
    for coll, doc in colls:
        if coll in with_items:
            out[("collection", coll, "")] = _norm_collection(doc)
    return out


def export_state(root: Path) -> State:
    """What an exported catalogue holds, read from its files (as pystac or a person would)."""
    cat = MatchupCatalogue.open(root)
    try:
        files = cat.item_files()
        colls = cat.collection_files()
    finally:
        cat.close()
    out: State = {}
    for coll, item_id, rel in files:
        doc = orjson.loads((root / rel).read_bytes())
        links = []
        for link in doc["links"]:
            href = str(link["href"])
            if link["rel"] in STRUCTURAL:
                continue
            if href.startswith(("http://", "https://")):
                links.append((link["rel"], href))
            else:
                target = (root / rel).parent / href
                assert target.is_file(), (rel, link)
                links.append((link["rel"], target.stem))
        out[("item", coll, item_id)] = _norm_item(doc, links)
    for coll, rel in colls.items():
        doc = orjson.loads((root / rel).read_bytes())
        out[("collection", coll, "")] = _norm_collection(doc)
    return out


# --- one history for the module -----------------------------------------------------------------


@dataclass
class Step:
    name: str
    tx: int
    time: str
    state: State


@dataclass
class History:
    db: ServiceDb
    env: dict[str, str]
    steps: list[Step]
    began: datetime


def _newest_tx(db: ServiceDb) -> int:
    rows = db.query("SELECT max(id) FROM eomatch.transactions WHERE commit_seq IS NOT NULL")
    return int(rows[0][0])  # type: ignore[call-overload]


def _api_write(db: ServiceDb, sql: str, *args: object) -> None:
    """One write as the internal API makes it: pgSTAC's function, described as an API call."""
    with psycopg.connect(db.role("eomatch_api").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute(describe_sql(), ("api:test-key", "api", "from the test", None))
        conn.execute(sql, args)


@pytest.fixture(scope="module")
def history(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    db = _new_db(pg_cluster)
    env = {**db.env(), "PGUSER": "eomatch_ingest"}
    began = datetime.now(UTC)
    work = tmp_path_factory.mktemp("history")
    root = make_catalogue(work / "cat", n_events=3)
    steps: list[Step] = []
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)

    def record(name: str) -> None:
        time.sleep(0.02)  # the time of the step lies strictly between two commits
        when = db.query("SELECT clock_timestamp()")[0][0]
        assert isinstance(when, datetime)
        steps.append(Step(name, _newest_tx(db), when.isoformat(), db_state(db)))
        time.sleep(0.02)

    try:
        assert main(["ingest", "--catalogue", str(root)]) == 0
        record("ingest")
        store = PgstacStore(db.role("eomatch_ingest"))
        coll, item_id, _ = next(f for f in _files(root) if si.collection_kind(f[0]) == "product")
        stored = store.get_item(coll, item_id)
        assert stored is not None
        new = {**stored, "id": "api-made-product", "links": []}
        _api_write(db, "SELECT pgstac.create_item(%s::jsonb)", orjson.dumps(new).decode())
        record("api create")
        mu = next(f for f in _files(root) if si.collection_kind(f[0]) == "matchup")
        changed = store.get_item(mu[0], mu[1])
        assert changed is not None
        changed["properties"]["eomatch:note"] = "edited through the API"
        changed["assets"]["extra"] = {"href": "https://example.org/extra.tif", "roles": ["data"]}
        _api_write(db, "SELECT pgstac.update_item(%s::jsonb)", orjson.dumps(changed).decode())
        record("api update")
        _api_write(db, "SELECT pgstac.delete_item(%s, %s)", "api-made-product", coll)
        record("api delete")
        cat = MatchupCatalogue.open(root)
        try:
            event = cat.get_events()[0]
            cat.remove_event(event.id)
        finally:
            cat.close()
        assert main(["ingest", "--catalogue", str(root), "--prune"]) == 0
        record("prune")
        yield History(db, env, steps, began)
    finally:
        mp.undo()


def _files(root: Path) -> list[tuple[str, str, str]]:
    cat = MatchupCatalogue.open(root)
    try:
        return cat.item_files()
    finally:
        cat.close()


@pytest.fixture
def cli_env(history: History, monkeypatch: pytest.MonkeyPatch) -> History:
    for k, v in history.env.items():
        monkeypatch.setenv(k, v)
    return history


def _store(h: History) -> PgstacStore:
    return PgstacStore(h.db.role("eomatch_ingest"))


# --- the catalogue at each point -----------------------------------------------------------------


def test_history_steps_differ(history: History) -> None:
    """The steps really changed the catalogue (else the comparisons below prove little)."""
    states = [s.state for s in history.steps]
    assert all(a != b for a, b in itertools.pairwise(states))
    assert len({s.tx for s in history.steps}) == len(history.steps)


def test_export_at_each_transaction_equals_the_catalogue_then(
    history: History, tmp_path: Path
) -> None:
    for k, step in enumerate(history.steps):
        out = tmp_path / f"at-tx-{k}"
        summary = export_catalogue(_store(history), out, at=str(step.tx))
        assert export_state(out) == step.state, step.name
        assert summary.tx == step.tx
        assert summary.items == sum(1 for key in step.state if key[0] == "item")


def test_export_at_each_time_equals_the_catalogue_then(history: History, tmp_path: Path) -> None:
    for k, step in enumerate(history.steps):
        out = tmp_path / f"at-time-{k}"
        export_catalogue(_store(history), out, at=step.time)
        assert export_state(out) == step.state, step.name


def test_export_now_cli_is_valid_stac_readable_by_pystac(
    cli_env: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "now"
    assert main(["export", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "as it is now" in printed
    assert export_state(out) == cli_env.steps[-1].state
    items = sum(1 for key in cli_env.steps[-1].state if key[0] == "item")
    assert f"exported {items} item(s)" in printed
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    assert len(list(catalog.get_items(recursive=True))) == items
    assert validate_tree(out) > items  # items, collections, day catalogs, root: all STAC-valid
    assert {p.name for p in tmp_path.iterdir()} == {"now"}  # no temporary folder left


def test_export_collections_filter_and_unknown_collection(
    cli_env: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step = cli_env.steps[1]
    coll = next(c for kind, c, _ in step.state if kind == "item" and "-vs-" not in c)
    out = tmp_path / "one"
    assert main(["export", "--at", str(step.tx), "--output", str(out), "--collections", coll]) == 0
    want = {k: v for k, v in step.state.items() if k[1] == coll}
    assert export_state(out) == want
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["export", "--output", str(bad), "--collections", coll, "no-such-coll"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no-such-coll" in err
    assert len(err.splitlines()) == 1
    assert not bad.exists()


# --- refusals: one line, nothing written ----------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "words"),
    [
        ("99999", "no transaction 99999"),
        ("99999999999999999999999", "no transaction"),
        ("2001-01-01", "before the history begins"),
        ("last tuesday", "not an ISO 8601"),
        ("", "empty"),
    ],
)
def test_bad_at_is_one_line_and_writes_nothing(
    cli_env: History,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    at: str,
    words: str,
) -> None:
    out = tmp_path / "out"
    assert main(["export", "--at", at, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err, err
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_output_folder_rules(
    cli_env: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["export", "--output", str(other), "--overwrite"]) == 2
    assert "holds no earlier export" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["export", "--output", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    first = cli_env.steps[0]
    assert main(["export", "--at", str(first.tx), "--output", str(empty)]) == 0
    assert export_state(empty) == first.state
    capsys.readouterr()
    assert main(["export", "--output", str(empty)]) == 2  # an earlier export: needs --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert export_state(empty) == first.state
    assert main(["export", "--output", str(empty), "--overwrite"]) == 0
    assert export_state(empty) == cli_env.steps[-1].state
    marker = orjson.loads((empty / MARKER).read_bytes())
    assert marker["at"] is None
    assert marker["tx"] == cli_env.steps[-1].tx
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "mine"]


def test_failure_midway_leaves_no_output(
    history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails after some items: neither the output nor a temporary folder stays."""
    from eomatch.workflows import export as export_mod

    calls = 0
    real = MatchupCatalogue.import_items

    def failing(self: MatchupCatalogue, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk full (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(export_mod.MatchupCatalogue, "import_items", failing)
    with pytest.raises(OSError, match="disk full"):
        export_catalogue(_store(history), tmp_path / "out")
    assert calls == 2
    assert list(tmp_path.iterdir()) == []


# --- stac-geoparquet ------------------------------------------------------------------------------


def test_geoparquet_round_trip(history: History, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import stac_table_to_items

    step = history.steps[-1]  # now: compared with the documents pgSTAC returns
    out = tmp_path / "gp"
    summary = export_catalogue(_store(history), out, at=str(step.tx), format="geoparquet")
    with psycopg.connect(history.db.role().conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        colls = dict(conn.execute("SELECT id, content FROM pgstac.collections").fetchall())
        now = {
            i: doc for i, doc in conn.execute("SELECT id, content_hydrate(i) FROM pgstac.items i")
        }
    want = {k for k in step.state if k[0] == "item"}
    got: set[tuple[str, str, str]] = set()
    files = sorted(out.glob("*.parquet"))
    assert len(files) == summary.collections
    for path in files:
        table = pq.read_table(path)
        coll = path.stem
        meta = orjson.loads(table.schema.metadata[b"stac-geoparquet"])
        assert meta["collections"][coll]["id"] == coll
        assert meta["collections"][coll]["description"] == colls[coll]["description"]
        for item in stac_table_to_items(table):
            assert item["collection"] == coll
            got.add(("item", coll, item["id"]))
            assert item["type"] == "Feature"
            assert item["geometry"]["type"] in ("Polygon", "MultiPolygon")
            # the same document back, up to Arrow's notation: times with microseconds, and
            # links/assets as structs of the union of their fields (absent ones come back null)
            assert _arrow_notation(item) == _arrow_notation(now[item["id"]])
    assert got == want
    assert (out / MARKER).is_file()


def _no_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_nulls(v) for v in value]
    return value


def _arrow_notation(item: Doc) -> Doc:
    props = dict(item["properties"])
    for key in ("datetime", "start_datetime", "end_datetime", "created", "updated"):
        if isinstance(props.get(key), str):
            props[key] = datetime.fromisoformat(props[key].replace("Z", "+00:00"))
    return {
        **item,
        "properties": props,
        "links": _no_nulls(item.get("links")),
        "assets": _no_nulls(item.get("assets")),
    }


def test_geoparquet_without_the_extra_is_one_line(
    cli_env: History,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "stac_geoparquet", None)  # blocked: as if not installed
    out = tmp_path / "gp"
    assert main(["export", "--output", str(out), "--format", "geoparquet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'eomatch[geoparquet]'" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
