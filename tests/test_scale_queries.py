"""Every query shape of the scale benchmark on a 20 000-item catalogue, on both APIs.

The catalogue is the benchmark's own (``benchmarks/catalogue_synth.py``: 13 satellites, 78
pairs, ~165 collections, 10 years), loaded once for the module with pypgstac's Loader as
``eomatch ingest`` stores it. Each shape must return exactly the items a brute-force filter in
Python over the generated items picks: bbox + datetime, collection + CQL2 on
``matchup:time_diff_abs`` and on ``matchup:collocation_area_km2``, ids, sortby datetime, and
the matchup -> event -> products link walk of ``eomatch query``. Correctness, not speed.

The property indexes :mod:`eomatch.io.pgstac_tuning` installs at ``db init`` exist on every
matchup partition and no other (partitions made after the install included, and after a
migrate from when they were on all), the CQL2 shape's SQL uses them, and installing again
changes nothing; so does its geometry-time index, on every partition. pgSTAC's SQL carries no
infinite time bound, and the servers keep their files open.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import psycopg
import pytest
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from shapely.geometry import box, shape

from eomatch.core.stac_items import collection_kind
from eomatch.io.pgstac_tuning import INDEXED_QUERYABLES, install_tuning
from eomatch.io.thirdparty import ITEM_TIME_RANGE
from eomatch.workflows.query import IDS_PER_REQUEST, linked_searches, page_window
from service_fixtures import *  # noqa: F403
from service_fixtures import _new_db, api_pair_in_process, http

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import catalogue_synth as synth

pytestmark = pytest.mark.xdist_group("scale-queries")
N_ITEMS = 20_000
SATS = synth.SATELLITES[::2]
"""7 of the 13 satellites: 21 pairs, ~50 collections (each a partition, whose creation is
most of the load's time), every kind of pair (imagers, altimeters, both)."""
APIS = ("internal", "external")


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def scale(pg_cluster: Any) -> Iterator[dict[str, Any]]:
    """The generated items (by id), loaded once into a fresh database; both APIs in process."""
    items = list(synth.stored_items(N_ITEMS, sats=SATS))
    db = _new_db(pg_cluster)
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        # what is tested here is reading: the history of the load is not
        conn.execute("ALTER TABLE pgstac.items DISABLE TRIGGER eomatch_history")
        conn.execute("ALTER TABLE pgstac.collections DISABLE TRIGGER z_eomatch_history")
    with PgstacDB(dsn=db.role("eomatch_ingest").conninfo()) as pg:
        loader = Loader(db=pg)
        loader.load_collections(iter(synth.collections(SATS)), Methods.insert)
        loader.load_items(iter(items), Methods.insert)
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        conn.execute("ANALYZE pgstac.items")
    with api_pair_in_process(db) as (internal, external):
        yield {"db": db, "items": items, "internal": internal, "external": external}


def _search(api: Any, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every feature of a GET /search, following ``next`` links."""
    r = http.get(f"{api.url}/search", params=params)
    assert r.status_code == 200, r.text
    out = []
    while True:
        body = r.json()
        out.extend(body["features"])
        nxt = [link["href"] for link in body.get("links", []) if link.get("rel") == "next"]
        if not nxt:
            return out
        r = http.get(nxt[0])
        assert r.status_code == 200, r.text


def _matchup_collections(items: list[dict[str, Any]]) -> list[str]:
    counts: dict[str, int] = {}
    for it in items:
        if it["properties"]["eomatch:kind"] == "matchup":
            counts[it["collection"]] = counts.get(it["collection"], 0) + 1
    return sorted(counts, key=lambda c: (-counts[c], c))[:5]


def _times(it: dict[str, Any]) -> tuple[datetime, datetime]:
    p = it["properties"]
    return _t(p["datetime"]), _t(p["end_datetime"])


def test_loaded(scale: dict[str, Any]) -> None:
    items = scale["items"]
    assert scale["db"].item_count() == len(items) > 19_000
    kinds = {k: sum(it["properties"]["eomatch:kind"] == k for it in items) for k in
             ("event", "matchup", "product")}  # fmt: skip
    assert 2.0 < kinds["matchup"] / kinds["event"] < 2.5  # 2.25 a event on average
    assert len({it["collection"] for it in items}) > 45


@pytest.mark.parametrize("mode", APIS)
def test_bbox_datetime(scale: dict[str, Any], mode: str) -> None:
    items, api = scale["items"], scale[mode]
    rng = random.Random(1)
    lo = min(_times(it)[0] for it in items)
    found = 0
    for _ in range(4):
        lon, lat = rng.uniform(-170, 130), rng.uniform(-80, 40)
        bbox = [round(lon, 2), round(lat, 2), round(lon + 40, 2), round(lat + 40, 2)]
        start = lo + timedelta(days=rng.uniform(0, 3000))
        end = start + timedelta(days=60)
        got = _search(
            api,
            {"bbox": ",".join(map(str, bbox)), "datetime": f"{_iso(start)}/{_iso(end)}",
             "limit": "500"},
        )  # fmt: skip
        area = box(*bbox)
        want = {
            it["id"]
            for it in items
            if _times(it)[0] <= end and _times(it)[1] >= start
            and shape(it["geometry"]).intersects(area)
        }  # fmt: skip
        assert sorted(f["id"] for f in got) == sorted(want)
        dts = [_t(f["properties"]["datetime"]) for f in got]
        assert dts == sorted(dts, reverse=True)
        found += len(want)
    assert found > 20


@pytest.mark.parametrize("mode", APIS)
@pytest.mark.parametrize(
    ("prop", "op", "values"),
    [("matchup:time_diff_abs", "<", (30, 300, 900)),
     ("matchup:collocation_area_km2", ">", (10, 1000, 20000))],
)  # fmt: skip
def test_collection_cql2(
    scale: dict[str, Any], mode: str, prop: str, op: str, values: tuple[float, ...]
) -> None:
    items, api = scale["items"], scale[mode]
    nonempty = 0
    for coll in _matchup_collections(items)[:3]:
        for value in values:
            got = _search(
                api,
                {"collections": coll, "filter-lang": "cql2-text",
                 "filter": f'"{prop}" {op} {value}', "limit": "1000"},
            )  # fmt: skip
            want = {
                it["id"]
                for it in items
                if it["collection"] == coll
                and (
                    it["properties"][prop] < value if op == "<" else it["properties"][prop] > value
                )
            }
            assert {f["id"] for f in got} == want
            assert len(got) == len(want)
            nonempty += bool(want)
    assert nonempty >= 5


@pytest.mark.parametrize("mode", APIS)
def test_ids(scale: dict[str, Any], mode: str) -> None:
    items, api = scale["items"], scale[mode]
    rng = random.Random(3)
    for coll in sorted({it["collection"] for it in items})[::40]:
        ids = [it["id"] for it in items if it["collection"] == coll]
        asked = [*rng.sample(ids, min(20, len(ids))), "no-such-item"]
        got = _search(api, {"collections": coll, "ids": ",".join(asked), "limit": "50"})
        assert sorted(f["id"] for f in got) == sorted(asked[:-1])
        assert all(f["collection"] == coll for f in got)


@pytest.mark.parametrize("mode", APIS)
def test_sortby_datetime(scale: dict[str, Any], mode: str) -> None:
    items, api = scale["items"], scale[mode]
    lo = min(_times(it)[0] for it in items)
    for days in (0, 1234, 3000):
        start = lo + timedelta(days=days)
        r = http.get(
            f"{api.url}/search",
            params={"datetime": f"{_iso(start)}/..", "sortby": "+datetime", "limit": "50"},
        )
        assert r.status_code == 200, r.text
        got = r.json()["features"]
        ranked = sorted(
            (it for it in items if _times(it)[1] >= start), key=lambda it: _times(it)[0]
        )
        want = ranked[:50]
        assert [_t(f["properties"]["datetime"]) for f in got] == [_times(it)[0] for it in want]
        # equal datetimes (matchups sharing a first product) may come in either order
        last = _times(want[-1])[0]
        assert {f["id"] for f in got} <= {it["id"] for it in ranked if _times(it)[0] <= last}


@pytest.mark.parametrize("mode", APIS)
def test_link_walk(scale: dict[str, Any], mode: str) -> None:
    """A page of matchups, then their events and products by id, as ``eomatch query`` does
    (:func:`linked_searches`: ids of several collections a search)."""
    items, api = scale["items"], scale[mode]
    by_id = {it["id"]: it for it in items}
    coll = _matchup_collections(items)[0]
    lo = min(_times(it)[0] for it in items if it["collection"] == coll)
    start, end = lo, lo + timedelta(days=3 * 365)
    page = _search(
        api, {"collections": coll, "datetime": f"{_iso(start)}/{_iso(end)}", "limit": "100"}
    )
    want = {
        it["id"]
        for it in items
        if it["collection"] == coll and _times(it)[0] <= end and _times(it)[1] >= start
    }
    assert {m["id"] for m in page} == want
    assert len(page) == len(want) > 5
    wanted: dict[str, set[str]] = {}
    for mu in page:
        refs = [
            [unquote(x) for x in link["href"].split("/collections/", 1)[1].split("/items/")]
            for link in mu["links"]
            if link["rel"] in ("related", "derived_from")
        ]
        truth = by_id[mu["id"]]
        expected = [
            (f"matchup-events-{coll}", truth["properties"]["matchup:event_id"]),
            *((by_id[link["title"]]["collection"], link["title"])
              for link in truth["links"] if link["rel"] == "derived_from"),
        ]  # fmt: skip
        assert sorted(map(tuple, refs)) == sorted(expected)
        for c, i in refs:
            wanted.setdefault(c, set()).add(i)
    window = page_window(page)
    assert window is not None
    # one pair's events are one collection: asked for with the products, no window
    searches = linked_searches(wanted, window=window)
    assert len(searches) == -(-sum(map(len, wanted.values())) // IDS_PER_REQUEST)
    assert any(len(b["collections"]) > 1 for b in searches)
    assert all("datetime" not in b for b in searches)
    fetched: dict[str, str] = {}
    for body in searches:
        got = _search(
            api,
            {k: ",".join(body[k]) for k in ("collections", "ids")}
            | {"limit": str(body["limit"])}
            | ({"datetime": body["datetime"]} if "datetime" in body else {}),
        )
        assert len(got) == body["limit"]
        fetched.update({f["id"]: f["collection"] for f in got})
    assert fetched == {i: c for c, ids in wanted.items() for i in ids}
    kinds = {by_id[i]["properties"]["eomatch:kind"] for i in fetched}
    assert kinds == {"event", "product"}


def _property_indexes(conn: psycopg.Connection[Any], prop: str) -> dict[str, str]:
    """Items partition -> name of its index on the property."""
    rows = conn.execute(
        "SELECT t.relname, i.relname FROM pg_partition_tree('pgstac.items') p "
        "JOIN pg_class t ON t.oid = p.relid JOIN pg_index x ON x.indrelid = p.relid "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE p.isleaf AND pg_get_indexdef(x.indexrelid) LIKE %s",
        (f"%{prop}%",),
    ).fetchall()
    return {t: i for t, i in rows}


def test_property_indexes_exist_and_are_used(scale: dict[str, Any]) -> None:
    db, items = scale["db"], scale["items"]
    coll = _matchup_collections(items)[0]
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        leaves = {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_partition_tree('pgstac.items') p "
                "JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf"
            )
        }
        assert len(leaves) > 45  # every partition was made after db init
        matchup_leaves = {
            f"_items_{key}"
            for key, cid in conn.execute("SELECT key, id FROM collections")
            if collection_kind(cid) == "matchup"
        }
        assert 15 < len(matchup_leaves) < len(leaves) - 20
        matchup_ids = sorted(
            {it["collection"] for it in items if collection_kind(it["collection"]) == "matchup"}
        )
        for q in INDEXED_QUERYABLES:
            row = conn.execute(
                "SELECT property_index_type, collection_ids FROM queryables WHERE name = %s",
                (q.name,),
            ).fetchone()
            assert row == ("BTREE", matchup_ids)
            indexes = _property_indexes(conn, q.name)
            assert set(indexes) == matchup_leaves  # none on event and product partitions
            op = "<" if "time_diff" in q.name else ">"
            value = 1 if op == "<" else 1e9  # selective: the index is the way in
            search = {"collections": [coll], "filter-lang": "cql2-json",
                      "filter": {"op": op, "args": [{"property": q.name}, value]}}  # fmt: skip
            where = conn.execute(
                "SELECT stac_search_to_where(%s::jsonb)", (psycopg.types.json.Jsonb(search),)
            ).fetchone()[0]  # type: ignore[index]
            conn.execute("SET enable_seqscan = off")
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    f"EXPLAIN SELECT * FROM items WHERE {where} ORDER BY datetime DESC, id DESC "
                    "LIMIT 10"
                )
            )
            conn.execute("RESET enable_seqscan")
            key = conn.execute("SELECT key FROM collections WHERE id = %s", (coll,)).fetchone()
            assert key is not None
            assert f" using {indexes[f'_items_{key[0]}']} on " in plan.lower(), plan


def test_install_again_changes_nothing(scale: dict[str, Any]) -> None:
    db = scale["db"]
    with psycopg.connect(db.role().conninfo()) as conn:
        before = conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE pg_get_indexdef(indexrelid) LIKE '%matchup:%' ORDER BY 1"
        ).fetchall()
        assert install_tuning(conn) == []
        conn.commit()
        after = conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE pg_get_indexdef(indexrelid) LIKE '%matchup:%' ORDER BY 1"
        ).fetchall()
        settings = conn.execute(
            "SELECT rolname, rolconfig FROM pg_roles WHERE rolname IN "
            "('eomatch_api', 'eomatch_reader') ORDER BY 1"
        ).fetchall()
    assert before == after
    assert len(before) > 30
    for _role, config in settings:
        assert "max_parallel_workers_per_gather=0" in config
        assert "jit=off" in config


@pytest.mark.parametrize("mode", APIS)
def test_a_paging_token_is_found_by_index_in_its_partition(
    scale: dict[str, Any], mode: str
) -> None:
    """pgSTAC 0.10.0 looked a ``next`` token's item up with a full scan of every partition
    (convert_from's "C" collation against the columns' "default"): each page after the first
    of a large catalogue cost a pass over the table. ``db init`` fixes the lookup
    (:data:`eomatch.io.thirdparty.TOKEN_LOOKUP`); the pages stay the same."""
    db, items, api = scale["db"], scale["items"], scale[mode]
    coll = _matchup_collections(items)[0]
    r = http.get(f"{api.url}/search", params={"collections": coll, "limit": "7"})
    assert r.status_code == 200, r.text
    href = next(link["href"] for link in r.json()["links"] if link["rel"] == "next")
    token = unquote(href.split("token=")[1].split("&")[0])
    with psycopg.connect(db.role("eomatch_reader").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        key = conn.execute("SELECT key FROM collections WHERE id = %s", (coll,)).fetchone()
        assert key is not None
        for _ in range(7):  # past PL/pgSQL's switch to a generic plan (after five)
            row = conn.execute("SELECT (get_token_record(%s)).item", (token,)).fetchone()
            assert row is not None
            assert row[0] is not None
        scans = conn.execute(
            "SELECT relname, seq_scan, idx_scan FROM pg_stat_xact_user_tables "
            "WHERE schemaname = 'pgstac' AND relname LIKE '\\_items\\_%' "
            "AND seq_scan + idx_scan > 0"
        ).fetchall()
    assert scans == [(f"_items_{key[0]}", 0, 7)]
    pages = _search(api, {"collections": coll, "limit": "7"})
    assert sorted(f["id"] for f in pages) == sorted(
        it["id"] for it in items if it["collection"] == coll
    )


def _pages(api: Any, first: str, rel: str) -> list[list[str]]:
    """Ids of each page from ``first`` on, following ``rel`` links."""
    out = []
    url: str | None = first
    while url is not None:
        r = http.get(url)
        assert r.status_code == 200, r.text
        out.append([f["id"] for f in r.json()["features"]])
        url = next((x["href"] for x in r.json()["links"] if x["rel"] == rel), None)
    return out


@pytest.mark.parametrize("mode", APIS)
def test_paging_tokens_bound_the_first_sort_key(scale: dict[str, Any], mode: str) -> None:
    """A token's filter, ``(datetime < T) OR (datetime = T AND ...)``, is an OR no index can
    start from: each page of a sorted window scanned everything the pages before it had
    returned (TOKEN_BOUND_*). Its SQL now also says ``datetime <= T`` (``>=`` going up), and
    paging down, up and back gives every item of the window once, in order."""
    db, items, api = scale["db"], scale["items"], scale[mode]
    lo = min(_times(it)[0] for it in items) + timedelta(days=300)
    hi = lo + timedelta(days=400)
    keep = {it["id"]: _times(it)[0] for it in items if _times(it)[1] >= lo and _times(it)[0] <= hi}
    assert len(keep) > 300
    window = f"{_iso(lo)}/{_iso(hi)}"
    for sortby in ("-datetime", "+datetime"):
        query = urlencode({"datetime": window, "limit": "97", "sortby": sortby})
        down = _pages(api, f"{api.url}/search?{query}", "next")
        ids = [i for page in down for i in page]
        assert sorted(ids) == sorted(keep)  # each once
        times = [keep[i] for i in ids]
        assert times == sorted(times, reverse=sortby == "-datetime")
        # and back from the last page by its prev links: the same pages
        r = http.get(f"{api.url}/search?{query}")
        for _ in down[1:]:
            r = http.get(next(x["href"] for x in r.json()["links"] if x["rel"] == "next"))
        last = next(x["href"] for x in r.json()["links"] if x["rel"] == "previous")
        up = _pages(api, last, "previous")
        assert up[::-1] == down[:-1]
    with psycopg.connect(db.role().conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        for direction, op in (("desc", "<"), ("asc", ">")):
            body = {"datetime": window, "limit": 5,
                    "sortby": [{"field": "datetime", "direction": direction}]}  # fmt: skip
            page = conn.execute("SELECT search(%s::jsonb)", (json.dumps(body),)).fetchone()
            assert page is not None
            href = next(x["href"] for x in page[0]["links"] if x["rel"] == "next")
            token = unquote(href.split("token=")[1])
            (query,) = _queries(conn, {**body, "token": token})
            # the token's own time, T: "(datetime < T) OR ..." and now "datetime <= T AND"
            found = re.search(rf"\(datetime {op} ('[^']+')\)", query)
            assert found is not None, query[-600:]
            assert f"datetime {op}= {found.group(1)} AND " in query, query[-600:]


def test_the_pgstac_edits_are_made_once(scale: dict[str, Any]) -> None:
    from eomatch.io.thirdparty import PGSTAC_EDITS, edit_pgstac_functions

    with psycopg.connect(scale["db"].role().conninfo()) as conn:
        for edit in PGSTAC_EDITS:
            row = conn.execute(
                "SELECT pg_get_functiondef(%s::regprocedure)", (edit.function,)
            ).fetchone()
            assert row is not None
            assert str(row[0]).count(edit.done) == edit.count  # made once, not twice
        assert edit_pgstac_functions(conn) == []
        conn.rollback()  # the module's database stays as db init left it, whatever happened


def _year_partitioned(conn: Any, like: dict[str, Any]) -> None:
    """Collection ``by-year`` partitioned by year, holding a copy of ``like`` (id ``one``)."""
    coll = dict(next(iter(synth.collections(SATS))))
    coll["id"] = "by-year"
    conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(coll),))
    conn.execute("UPDATE collections SET partition_trunc = 'year' WHERE id = 'by-year'")
    item = json.loads(json.dumps(like))
    item["collection"], item["id"] = "by-year", "one"
    conn.execute("SELECT create_item(%s::jsonb)", (json.dumps(item),))


def _debug_notices(conn: Any, query: str, params: tuple[Any, ...]) -> tuple[list[Any], list[str]]:
    """Rows of ``query`` and pgSTAC's debug notices while it ran."""
    notes: list[str] = []

    def note(diag: Any) -> None:
        notes.append(diag.message_primary or "")

    conn.add_notice_handler(note)
    conn.execute("SET client_min_messages = debug1")
    try:
        rows = conn.execute(query, params).fetchall()
    finally:
        conn.execute("RESET client_min_messages")
        conn.remove_notice_handler(note)
    return rows, notes


def _chunks(conn: Any, where: str) -> tuple[list[tuple[Any, Any]], bool]:
    """pgSTAC's chunks of a search's WHERE clause, and whether it ran its EXPLAIN for them."""
    conn.execute("SET TIME ZONE 'UTC'")  # the chunker truncates months in the session's zone
    rows, notes = _debug_notices(conn, "SELECT s::text, e::text FROM chunker(%s)", (where,))
    return rows, any(n.startswith("EXPLAIN:") for n in notes)


def test_the_chunker_skips_its_explain_while_no_partition_has_a_time_range(
    scale: dict[str, Any],
) -> None:
    """Partitions by collection alone all span all time: pgSTAC's chunker planned every search
    twice to learn that (an EXPLAIN, then the search). It now answers the one chunk at once;
    once a collection is partitioned by time it plans and chunks as pgSTAC does."""
    db, items = scale["db"], scale["items"]
    lo = min(_times(it)[0] for it in items)
    where = f"datetime >= '{_iso(lo)}' AND collection = '{_matchup_collections(items)[0]}'"
    with psycopg.connect(db.role().conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        rows, explained = _chunks(conn, where)
        assert len(rows) == 1
        assert rows == [("-infinity", "infinity")]
        assert not explained
        # a collection partitioned by year, with one item: its partition has a time range
        _year_partitioned(conn, items[0])
        rows, explained = _chunks(conn, "collection = 'by-year'")
        assert explained
        assert len(rows) == 1
        year = _times(items[0])[0].year
        assert (rows[0][0][:4], rows[0][1][:4]) == (str(year), str(year + 1))
        rows, explained = _chunks(conn, where)  # pgSTAC's own way, the same answer here
        assert explained
        assert rows == [("-infinity", "infinity")]
        conn.rollback()


def _queries(conn: Any, body: dict[str, Any]) -> list[str]:
    """The SQL of each chunk pgSTAC's ``search()`` runs for ``body`` (its debug notices) on the
    partitions (a search over every collection would read the footprints instead)."""
    conn.execute("SET eomatch.footprints = off")
    try:
        _, notes = _debug_notices(conn, "SELECT search(%s::jsonb)", (json.dumps(body),))
    finally:
        conn.execute("RESET eomatch.footprints")
    return [n.removeprefix("QUERY:") for n in notes if n.startswith("QUERY:")]


def test_searches_carry_no_infinite_time_bound(scale: dict[str, Any]) -> None:
    """A bound at -infinity/infinity made the planner descend the datetime index of every
    partition for its real end (twice per all-time chunk, once per open interval): half the
    planning of an all-collection search at 1M items. pgSTAC's SQL now leaves them out; the
    bounds of a finite interval and of a time-partitioned chunk stay."""
    db, items = scale["db"], scale["items"]
    lo = min(_times(it)[0] for it in items) + timedelta(days=1000)
    hi = lo + timedelta(days=2)
    with psycopg.connect(db.role().conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SET TIME ZONE 'UTC'")
        for dt, sortby in ((f"{_iso(lo)}/..", "asc"), (f"../{_iso(hi)}", "desc"),
                           (f"{_iso(lo)}/{_iso(hi)}", "desc")):  # fmt: skip
            body = {"datetime": dt, "sortby": [{"field": "datetime", "direction": sortby}]}
            (query,) = _queries(conn, body)
            assert "infinity" not in query
            assert ("end_datetime >= " in query) == (not dt.startswith(".."))
            assert ("datetime <= " in query) == (not dt.endswith(".."))
            assert ITEM_TIME_RANGE not in query  # without a bbox (RANGE_WITH_GEOMETRY)
            # with one, a closed interval's overlap also as the geometry-time index reads it
            (query,) = _queries(conn, {**body, "bbox": [-180, -90, 180, 90]})
            closed = ".." not in dt
            assert (f"({ITEM_TIME_RANGE}) && tstzrange('{_iso(lo)[:10]}" in query) == closed
        # a year-partitioned collection: its chunk keeps both bounds
        _year_partitioned(conn, items[0])
        year = _times(items[0])[0].year
        queries = _queries(conn, {"collections": ["by-year"]})
        assert len(queries) == 1
        assert f"datetime >= '{year}-01-01 00:00:00+00'" in queries[0]
        assert f"datetime < '{year + 1}-" in queries[0]  # the chunker's end (a month boundary)
        conn.rollback()


@pytest.mark.parametrize("mode", APIS)
def test_open_intervals(scale: dict[str, Any], mode: str) -> None:
    """Intervals open at either end return what a brute-force filter picks, asked for from
    their closed end (newest first before ``t``, oldest first after it)."""
    items, api = scale["items"], scale[mode]
    lo = min(_times(it)[0] for it in items)
    for days in (15, 1500):
        t = lo + timedelta(days=days)
        for dt, open_end in ((f"../{_iso(t)}", False), (f"{_iso(t)}/..", True)):
            keep = [it for it in items if (_times(it)[1] >= t if open_end else _times(it)[0] <= t)]
            # the first 40 from the interval's closed end: newest before t, oldest after it
            params = {
                "datetime": dt,
                "limit": "40",
                "sortby": "+datetime" if open_end else "-datetime",
            }
            r = http.get(f"{api.url}/search", params=params)
            assert r.status_code == 200, r.text
            got = r.json()["features"]
            want = sorted(keep, key=lambda it: _times(it)[0], reverse=not open_end)
            assert [_t(f["properties"]["datetime"]) for f in got] == [
                _times(it)[0] for it in want[:40]
            ]


def test_servers_keep_their_files_open(scale: dict[str, Any]) -> None:
    """With PostgreSQL's default of 1 000 files a process, a search over ~165 partitions
    closed and reopened every file it planned with; eomatch's servers start with more."""
    from eomatch.io.pg_cluster import MAX_FILES_PER_PROCESS

    with psycopg.connect(scale["db"].role().conninfo()) as conn:
        row = conn.execute("SHOW max_files_per_process").fetchone()
    assert row is not None
    assert int(row[0]) == MAX_FILES_PER_PROCESS > 1014


def test_the_matchup_queryables_follow_the_matchup_collections(scale: dict[str, Any]) -> None:
    """A new pair's partition gets the property indexes, a new product collection's does
    not; without any matchup collection left the queryables stay, for every collection."""
    db, items = scale["db"], scale["items"]
    names = [q.name for q in INDEXED_QUERYABLES]
    by_kind = {collection_kind(it["collection"]): it for it in items}
    # as the internal API's role writes (the trigger's function runs as pgSTAC's owner)
    with psycopg.connect(db.role("eomatch_api").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        for kind, cid in (("matchup", "NEW_A-x-vs-NEW_B-y"), ("product", "NEW_PRODUCTS")):
            coll = dict(next(iter(synth.collections(SATS))))
            coll["id"] = cid
            conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(coll),))
            item = json.loads(json.dumps(by_kind[kind]))
            item["collection"], item["id"] = cid, "one"
            conn.execute("SELECT create_item(%s::jsonb)", (json.dumps(item),))
            key = conn.execute("SELECT key FROM collections WHERE id = %s", (cid,)).fetchone()
            assert key is not None
            for name in names:
                indexed = f"_items_{key[0]}" in _property_indexes(conn, name)
                assert indexed == (kind == "matchup"), (kind, name)
                ids = conn.execute(
                    "SELECT collection_ids FROM queryables WHERE name = %s", (name,)
                ).fetchone()
                assert ids is not None
                assert (cid in ids[0]) == (kind == "matchup")
        conn.execute(
            "DELETE FROM collections WHERE strpos(id, '-vs-') > 0 "
            "AND NOT starts_with(id, 'matchup-events-')"
        )
        rows = conn.execute(
            "SELECT name, collection_ids FROM queryables WHERE name = ANY(%s) ORDER BY name",
            (names,),
        ).fetchall()
        assert rows == sorted((name, None) for name in names)
        conn.rollback()


@pytest.mark.parametrize("mode", APIS)
def test_queryables_of_each_kind_of_collection(scale: dict[str, Any], mode: str) -> None:
    """The matchup properties are queryables of the catalogue and of each matchup collection,
    not of event or product collections (whose items never have them)."""
    items, api = scale["items"], scale[mode]
    names = {q.name for q in INDEXED_QUERYABLES}
    colls = {collection_kind(it["collection"]): it["collection"] for it in items}
    r = http.get(f"{api.url}/queryables")
    assert r.status_code == 200, r.text
    assert names <= set(r.json()["properties"])
    for kind, cid in colls.items():
        r = http.get(f"{api.url}/collections/{cid}/queryables")
        assert r.status_code == 200, r.text
        listed = names & set(r.json()["properties"])
        assert listed == (names if kind == "matchup" else set()), kind


def test_bbox_and_datetime_use_the_geometry_time_index(scale: dict[str, Any]) -> None:
    """Every items partition has the (geometry, time range) GiST index, and pgSTAC's SQL for a
    bbox + closed interval can use it (its range clause is the index's expression)."""
    db, items = scale["db"], scale["items"]
    t0 = min(_times(it)[0] for it in items) + timedelta(days=400)
    body = {"bbox": [-180, -90, 180, 90], "datetime": f"{_iso(t0)}/{_iso(t0 + timedelta(days=1))}"}
    with psycopg.connect(db.role().conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        leaves = conn.execute(
            "SELECT c.relname, (SELECT i.relname FROM pg_index x JOIN pg_class i "
            "ON i.oid = x.indexrelid WHERE x.indrelid = c.oid AND pg_get_indexdef(x.indexrelid) "
            "LIKE %s) FROM pg_partition_tree('pgstac.items') p "
            "JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf",
            ("%USING gist (geometry, (%CASE%tstzrange(datetime, end_datetime, '[]'::text)%",),
        ).fetchall()
        assert len(leaves) > 45
        assert all(index for _, index in leaves), [name for name, index in leaves if not index]
        (query,) = _queries(conn, body)
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query))
        assert any(f" {index} on " in plan for _, index in leaves), plan[:2000]
        conn.rollback()


INTERVAL = "2019-01-01T00:00:00Z/2022-01-01T00:00:00Z"


def test_collection_search_with_a_reversed_extent(scale: dict[str, Any]) -> None:
    """The datetime clause also searches collections, whose temporal extents pgSTAC does not
    check: one that ends before it starts must not make the range clause fail the search."""
    with psycopg.connect(scale["db"].role("eomatch_api").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        coll = dict(next(iter(synth.collections(SATS))))
        coll["id"] = "reversed-extent"
        coll["extent"] = {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2021-01-01T00:00:00Z", "2020-01-01T00:00:00Z"]]},
        }
        conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(coll),))
        found = conn.execute(
            "SELECT collection_search(%s::jsonb)",
            # bbox + closed interval: the range clause (the CASE) is in the collection search
            (json.dumps({"bbox": [-180, -90, 180, 90], "limit": 500, "datetime": INTERVAL}),),
        ).fetchone()
        assert found is not None
        ids = {c["id"] for c in found[0]["collections"]}
        assert "reversed-extent" in ids  # what the comparisons alone pick: the range adds nothing
        assert len(ids) > 10
        conn.rollback()


@pytest.mark.parametrize("mode", APIS)
def test_instants_and_bboxes(scale: dict[str, Any], mode: str) -> None:
    """A single instant (a closed interval of zero length) with a bbox finds every item whose
    interval holds it, as a brute-force filter does."""
    items, api = scale["items"], scale[mode]
    rng = random.Random(5)
    found = 0
    for it in rng.sample([i for i in items if _times(i)[0] < _times(i)[1]], 3) + items[:2]:
        t = _times(it)[0] + (_times(it)[1] - _times(it)[0]) / 2
        t = t.replace(microsecond=0)
        bbox = [-180, -90, 180, 90]
        got = _search(api, {"bbox": ",".join(map(str, bbox)), "datetime": _iso(t), "limit": "500"})
        want = {i["id"] for i in items if _times(i)[0] <= t <= _times(i)[1]}
        assert {f["id"] for f in got} == want
        found += len(want)
    assert found > 0


def test_migrate_takes_the_property_indexes_off_other_partitions(scale: dict[str, Any]) -> None:
    """A database from before (the queryables for every collection, their indexes on every
    partition) ends up as a new one after ``install_tuning`` (what ``db migrate`` runs)."""
    db = scale["db"]
    names = [q.name for q in INDEXED_QUERYABLES]
    with psycopg.connect(db.role().conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        before = {n: set(_property_indexes(conn, n)) for n in names}
        conn.execute("UPDATE queryables SET collection_ids = NULL WHERE name = ANY(%s)", (names,))
        leaves = conn.execute(
            "SELECT count(*) FROM pg_partition_tree('pgstac.items') WHERE isleaf"
        ).fetchone()
        assert leaves is not None
        for n in names:  # pgSTAC indexed every partition
            assert len(_property_indexes(conn, n)) == leaves[0] > len(before[n])
        assert sorted(install_tuning(conn)) == sorted(names)
        assert {n: set(_property_indexes(conn, n)) for n in names} == before
        conn.rollback()


# -- the footprint index (eomatch.io.footprint_index) ---------------------------------------

_MIRROR = (
    "SELECT count(*) FROM ((SELECT collection, id, datetime, end_datetime, ST_AsEWKB(geometry) "
    "FROM pgstac.items EXCEPT SELECT collection, id, datetime, end_datetime, ST_AsEWKB(geometry) "
    "FROM eomatch.item_footprints) UNION ALL (SELECT collection, id, datetime, end_datetime, "
    "ST_AsEWKB(geometry) FROM eomatch.item_footprints EXCEPT SELECT collection, id, datetime, "
    "end_datetime, ST_AsEWKB(geometry) FROM pgstac.items)) d"
)
"""Rows in one of items and the footprints and not in the other (0: a mirror)."""


def _footprint_scans(conn: Any) -> int:
    row = conn.execute(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables "
        "WHERE relid = 'eomatch.item_footprints'::regclass"
    ).fetchone()
    return int(row[0]) if row else 0


def _both_paths(conn: Any, body: dict[str, Any]) -> tuple[Any, Any, bool]:
    """pgSTAC's search() of ``body`` on the partitions, then as eomatch runs it, and whether
    the latter read the footprints."""
    conn.execute("SET eomatch.footprints = off")
    off = conn.execute("SELECT search(%s::jsonb)", (json.dumps(body),)).fetchone()[0]
    conn.execute("RESET eomatch.footprints")
    before = _footprint_scans(conn)
    on = conn.execute("SELECT search(%s::jsonb)", (json.dumps(body),)).fetchone()[0]
    return off, on, _footprint_scans(conn) > before


def test_the_footprints_mirror_the_items(scale: dict[str, Any]) -> None:
    with psycopg.connect(scale["db"].role().conninfo()) as conn:
        assert conn.execute(_MIRROR).fetchone() == (0,)
        n = conn.execute("SELECT count(*) FROM eomatch.item_footprints").fetchone()
        assert n == (len(scale["items"]),)


def test_searches_over_every_collection_read_the_footprints(scale: dict[str, Any]) -> None:
    """A search naming no collection and reading no property is answered from the footprints,
    with exactly the answer (links and paging tokens included) the partitions give; pages
    after the first too. Searches naming collections or reading properties are not."""
    items = scale["items"]
    rng = random.Random(11)
    lo = min(_times(it)[0] for it in items)
    some = rng.sample(items, 30)
    mcoll = _matchup_collections(items)[0]
    served = [
        {"bbox": [-30, -20, 40, 50], "datetime": f"{_iso(lo)}/{_iso(lo + timedelta(days=60))}"},
        {"bbox": [100, -60, 180, 0], "limit": 7},
        {"intersects": {"type": "Point", "coordinates": [10, 45]}, "limit": 5},
        {"ids": [it["id"] for it in some] + ["no-such-item"], "limit": 40},
        {
            "datetime": f"{_iso(lo + timedelta(days=900))}/..",
            "sortby": [{"field": "datetime", "direction": "asc"}],
            "limit": 25,
        },
        {"datetime": f"../{_iso(lo + timedelta(days=30))}", "limit": 30},
        {"limit": 50},
        {"sortby": [{"field": "id", "direction": "asc"}], "limit": 12},
        {
            "filter-lang": "cql2-json",
            "filter": {
                "op": "s_intersects",
                "args": [{"property": "geometry"}, box(-60, 0, -20, 40).__geo_interface__],
            },
        },
    ]
    kept = [
        {"collections": [mcoll], "bbox": [-180, -90, 180, 90], "limit": 5},
        {
            "filter-lang": "cql2-json",
            "limit": 5,
            "filter": {"op": "<", "args": [{"property": "matchup:time_diff_abs"}, 60]},
        },
        {"sortby": [{"field": "matchup:time_diff_abs", "direction": "asc"}], "limit": 5},
    ]
    with psycopg.connect(scale["db"].role("eomatch_reader").conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        pages = 0
        for body in served:
            for _page in range(3):
                off, on, read = _both_paths(conn, body)
                assert read, body
                assert on == off, body
                assert off["features"] or body.get("ids"), body  # every search finds items
                nxt = [x["href"] for x in off["links"] if x["rel"] == "next"]
                if not nxt:
                    break
                body = {**body, "token": unquote(nxt[0].split("token=")[1])}
                pages += 1
        assert pages >= 8
        for body in kept:
            off, on, read = _both_paths(conn, body)
            assert not read, body
            assert on == off, body
            assert on["features"], body
        conn.rollback()


@pytest.mark.parametrize("mode", APIS)
def test_ids_of_every_collection(scale: dict[str, Any], mode: str) -> None:
    items, api = scale["items"], scale[mode]
    asked = [it["id"] for it in random.Random(5).sample(items, 25)]
    got = _search(api, {"ids": ",".join([*asked, "no-such-item"]), "limit": "100"})
    assert sorted(f["id"] for f in got) == sorted(asked)


def test_every_write_keeps_the_footprints(scale: dict[str, Any]) -> None:
    """Insert, update (in place and a move in time and space), delete, and a collection deleted
    with its items (pgSTAC drops the partition: no row trigger): the footprints follow in the
    same transaction, and a search over every collection sees each state."""
    db, items = scale["db"], scale["items"]
    item = json.loads(json.dumps(items[0]))
    item["id"] = "footprint-probe"
    item["geometry"] = {"type": "Point", "coordinates": [-150.5, -75.5]}
    item["bbox"] = [-150.5, -75.5, -150.5, -75.5]
    for key in ("datetime", "start_datetime", "end_datetime"):  # alone in its time
        if key in item["properties"]:
            item["properties"][key] = "2031-01-01T00:00:00Z"
    where = {"bbox": [-151, -76, -150, -75], "datetime": "2030-06-01T00:00:00Z/..", "limit": 50}

    def found(conn: Any) -> list[str]:
        conn.execute("SAVEPOINT s")
        conn.execute("SET LOCAL ROLE eomatch_reader")
        got = conn.execute("SELECT search(%s::jsonb)", (json.dumps(where),)).fetchone()[0]
        conn.execute("ROLLBACK TO SAVEPOINT s")
        return sorted(f["id"] for f in got["features"])

    with psycopg.connect(db.role().conninfo()) as conn:
        conn.execute("SET search_path TO pgstac, public")
        assert "footprint-probe" not in found(conn)
        conn.execute("SELECT create_item(%s::jsonb)", (json.dumps(item),))
        assert "footprint-probe" in found(conn)
        assert conn.execute(_MIRROR).fetchone() == (0,)
        item["geometry"]["coordinates"] = [10.0, 10.0]
        item["bbox"] = [10.0, 10.0, 10.0, 10.0]
        conn.execute("SELECT update_item(%s::jsonb)", (json.dumps(item),))
        assert "footprint-probe" not in found(conn)
        assert conn.execute(_MIRROR).fetchone() == (0,)
        item["properties"]["title"] = "only the document changes"
        conn.execute("SELECT upsert_item(%s::jsonb)", (json.dumps(item),))
        assert conn.execute(_MIRROR).fetchone() == (0,)
        conn.execute("SELECT delete_item(%s, %s)", (item["id"], item["collection"]))
        assert conn.execute(_MIRROR).fetchone() == (0,)
        # a collection deleted with its items
        coll = {**json.loads(json.dumps(synth.collections(SATS)[0])), "id": "footprint-gone"}
        conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(coll),))
        item = {**item, "id": "in-a-gone-collection", "collection": "footprint-gone"}
        item["geometry"] = {"type": "Point", "coordinates": [-150.5, -75.5]}
        item["bbox"] = [-150.5, -75.5, -150.5, -75.5]
        conn.execute("SELECT create_item(%s::jsonb)", (json.dumps(item),))
        assert "in-a-gone-collection" in found(conn)
        conn.execute("SELECT delete_collection('footprint-gone')")
        assert "in-a-gone-collection" not in found(conn)
        assert conn.execute(_MIRROR).fetchone() == (0,)
        conn.rollback()


def test_only_the_triggers_write_the_footprints(scale: dict[str, Any]) -> None:
    for role in ("eomatch_api", "eomatch_ingest"):  # the reader is read-only already
        with (
            psycopg.connect(scale["db"].role(role).conninfo()) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("DELETE FROM eomatch.item_footprints")


def test_migrate_fills_the_footprints_of_a_catalogue(scale: dict[str, Any]) -> None:
    """A database from before the footprints gets them, filled, at migrate; again, nothing."""
    from eomatch.io.footprint_index import FOOTPRINT_SQL

    with psycopg.connect(scale["db"].role().conninfo()) as conn:
        conn.execute("DROP TABLE eomatch.item_footprints")
        conn.execute("DROP TRIGGER eomatch_item_footprint ON pgstac.items")
        conn.execute(FOOTPRINT_SQL)
        assert conn.execute(_MIRROR).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM eomatch.item_footprints").fetchone() == (
            len(scale["items"]),
        )
        conn.execute(FOOTPRINT_SQL)
        assert conn.execute(_MIRROR).fetchone() == (0,)
        conn.rollback()


def test_footprints_serve(scale: dict[str, Any]) -> None:
    """Which WHERE clauses the footprints answer: no collection restriction, no other column."""
    cases = {
        "TRUE": True,
        "st_intersects(geometry, '0101000020E610000000000000000000000000000000000000')": True,
        "id = ANY ('{a,b}')": True,
        "collection = ANY ('{a}')": False,
        "collection IN ('a')": False,
        "COLLECTION = 'a'": False,
        "to_float(content->'properties'->'x') < 3": False,
        "private IS NULL": False,
    }
    with psycopg.connect(scale["db"].role("eomatch_reader").conninfo()) as conn:
        for where, want in cases.items():
            got = conn.execute("SELECT eomatch.footprints_serve(%s, 'datetime DESC')", (where,))
            assert got.fetchone() == (want,), where
        conn.execute("SET eomatch.footprints = off")
        assert conn.execute("SELECT eomatch.footprints_serve('TRUE', 'id')").fetchone() == (False,)
        # both of its queries read one snapshot (a review found a page cut short, with no next
        # link, when an item changed between them under two)
        volatility = conn.execute(
            "SELECT provolatile FROM pg_proc "
            "WHERE oid = 'eomatch.search_footprints(text,text,integer)'::regprocedure"
        ).fetchone()
        assert volatility == ("s",)


def test_no_writer_can_hang_the_definer_trigger_functions_on_its_own_table(
    scale: dict[str, Any],
) -> None:
    """The history's and the footprint index's trigger functions run as the admin: a role that
    could EXECUTE them could attach them to a temporary table of its own and write history
    rows or footprints (a review found it; CREATE TRIGGER asks only for EXECUTE)."""
    db = scale["db"]
    with psycopg.connect(db.role().conninfo()) as conn:
        triggers = [
            r[0]
            for r in conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = "
                "'eomatch'::regnamespace AND p.prorettype = 'trigger'::regtype"
            )
        ]
        assert {"eomatch.item_footprint()", "eomatch.history_item()"} <= set(triggers)
        for role in ("eomatch_api", "eomatch_ingest", "eomatch_reader"):
            held = [
                f
                for f in triggers
                if conn.execute(
                    "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, f)
                ).fetchone()
                != (False,)
            ]
            assert held == [], role
    for role, fn in (
        ("eomatch_reader", "eomatch.collection_footprints()"),
        ("eomatch_api", "eomatch.history_item()"),
    ):
        with psycopg.connect(db.role(role).conninfo()) as conn:
            conn.execute("BEGIN READ WRITE")
            conn.execute("CREATE TEMP TABLE mine (id text)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    f"CREATE TRIGGER t AFTER DELETE ON mine FOR EACH ROW EXECUTE FUNCTION {fn}"
                )


def test_no_writer_can_truncate_a_partition(scale: dict[str, Any]) -> None:
    """TRUNCATE of one partition fires no row trigger and not the guard on pgstac.items: the
    writers may not (partitions made by pgSTAC after db init, and those made before it, whose
    grants migrate takes back); they keep what they write with."""
    from eomatch.io.history_schema import HISTORY_GRANTS_SQL

    db = scale["db"]
    with psycopg.connect(db.role().conninfo()) as conn:
        parts = [
            r[0]
            for r in conn.execute(
                "SELECT relid::text FROM pg_partition_tree('pgstac.items') WHERE level > 0"
            )
        ]
        assert len(parts) > 45
        for part in parts:
            got = conn.execute(
                "SELECT has_table_privilege('eomatch_ingest', %s, 'TRUNCATE'), "
                "has_table_privilege('eomatch_ingest', %s, 'INSERT, UPDATE, DELETE')",
                (part, part),
            ).fetchone()
            assert got == (False, True), part
        # a partition granted everything, as pgSTAC did before: migrate takes it back
        conn.execute(f"GRANT ALL ON {parts[0]} TO pgstac_ingest")
        conn.execute(HISTORY_GRANTS_SQL)
        assert conn.execute(
            "SELECT has_table_privilege('pgstac_ingest', %s, 'TRUNCATE')", (parts[0],)
        ).fetchone() == (False,)
        conn.rollback()
    with (
        psycopg.connect(db.role("eomatch_ingest").conninfo()) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(f"TRUNCATE {parts[0]}")
