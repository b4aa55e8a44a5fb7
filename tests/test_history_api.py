"""``GET /history`` and ``/history/{tx}`` on the internal API: filters, paging, 400s, not external.

The history is made by real writes through the internal API (key ``alice``; one with a message
header) and by ``eomatch ingest``; the answers are checked against the history tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.ingest import ingest_catalogue
from service_fixtures import http, make_catalogue, seeded_api_pair

COLL = "hist"
T0 = "2022-05-06T12:00:00Z"
RING = [[-5.0, 45.0], [-4.0, 45.0], [-4.0, 46.0], [-5.0, 46.0], [-5.0, 45.0]]


def collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": COLL,
        "description": "history",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-10.0, 40.0, 0.0, 50.0]]},
            "temporal": {"interval": [[T0, None]]},
        },
        "links": [],
    }


def item(item_id: str, note: str = "") -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": COLL,
        "geometry": {"type": "Polygon", "coordinates": [RING]},
        "bbox": [-5.0, 45.0, -4.0, 46.0],
        "properties": {"datetime": T0, "note": note},
        "links": [],
        "assets": {"data": {"href": "https://example.org/x.nc"}},
    }


@pytest.fixture(scope="module")
def stack(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with seeded_api_pair(pg_cluster, "alice", collection(), item("a")) as s:
        internal, auth = s["internal"], s["auth"]
        base = f"{internal.url}/collections/{COLL}/items"
        r = http.put(
            f"{base}/a",
            json=item("a", "edited"),
            headers={**auth, "X-Eomatch-Message": "fix the note"},
        )
        assert r.status_code == 200, r.text
        r = http.post(  # one transaction of 3 inserts
            f"{internal.url}/collections/{COLL}/bulk_items",
            json={"items": {f"b{k}": item(f"b{k}") for k in range(3)}, "method": "insert"},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        r = http.delete(f"{base}/b1", headers=auth)
        assert r.status_code == 200, r.text
        root = make_catalogue(tmp_path_factory.mktemp("hist") / "cat", n_events=1)
        ingest_catalogue(root, PgstacStore(s["db"].role("eomatch_ingest")))
        yield s


def _get(stack: dict[str, Any], path: str, **params: Any) -> Any:
    r = http.get(f"{stack['internal'].url}{path}", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def _table(stack: dict[str, Any]) -> list[tuple[Any, ...]]:
    return stack["db"].query(
        "SELECT id, actor, kind, message FROM eomatch.transactions "
        "WHERE commit_seq IS NOT NULL ORDER BY commit_seq DESC"
    )


def test_list_is_the_history_newest_first(stack: dict[str, Any]) -> None:
    body = _get(stack, "/history")
    rows = _table(stack)
    assert [t["id"] for t in body["transactions"]] == [r[0] for r in rows]
    assert [(t["actor"], t["kind"], t["message"]) for t in body["transactions"]] == [
        tuple(r[1:]) for r in rows
    ]
    assert body["links"] == []
    newest = body["transactions"][0]
    assert newest["kind"] == "ingest"
    assert newest["inserted"] > 0
    first = body["transactions"][-1]
    assert (first["actor"], first["inserted"]) == ("key:alice", 1)  # the collection


def test_filters(stack: dict[str, Any]) -> None:
    everything = _get(stack, "/history")["transactions"]
    of_a = _get(stack, "/history", item="a")["transactions"]
    assert len(of_a) == 2  # created, then edited
    assert of_a[0]["message"] == "fix the note"
    assert of_a[0]["updated"] == 1
    mine = _get(stack, "/history", collection=COLL)["transactions"]
    assert {t["actor"] for t in mine} == {"key:alice"}
    ingests = _get(stack, "/history", kind="ingest")["transactions"]
    assert ingests
    assert all(t["kind"] == "ingest" for t in ingests)
    assert _get(stack, "/history", actor="key:alice")["transactions"] == [
        t for t in everything if t["actor"] == "key:alice"
    ]
    assert _get(stack, "/history", actor="nobody")["transactions"] == []
    middle = everything[len(everything) // 2]["committed_at"]
    since = _get(stack, "/history", since=middle)["transactions"]
    until = _get(stack, "/history", until=middle)["transactions"]
    assert {t["id"] for t in since} | {t["id"] for t in until} == {t["id"] for t in everything}
    assert {t["id"] for t in since} & {t["id"] for t in until} == {
        everything[len(everything) // 2]["id"]
    }


def test_paging_follows_next_links(stack: dict[str, Any]) -> None:
    everything = _get(stack, "/history")["transactions"]
    seen: list[int] = []
    body = _get(stack, "/history", limit=2)
    while True:
        seen += [t["id"] for t in body["transactions"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not nxt:
            break
        r = http.get(nxt[0])
        assert r.status_code == 200, r.text
        body = r.json()
    assert seen == [t["id"] for t in everything]


def test_show_transaction_before_after_and_paging(stack: dict[str, Any]) -> None:
    edit = _get(stack, "/history", item="a")["transactions"][0]
    body = _get(stack, f"/history/{edit['id']}")
    assert body["transaction"] == edit
    (change,) = body["changes"]
    assert (change["kind"], change["collection"], change["id"], change["op"]) == (
        "item",
        COLL,
        "a",
        "update",
    )
    assert change["before"]["properties"]["note"] == ""
    assert change["after"]["properties"]["note"] == "edited"
    assert change["later"] is None
    assert {"path": "properties.note", "change": "changed", "old": '""', "new": '"edited"'} in (
        change["diff"]
    )
    compact = _get(stack, f"/history/{edit['id']}", documents="false")["changes"][0]
    assert "before" not in compact
    assert "after" not in compact
    assert compact["diff"] == change["diff"]
    bulk = next(
        t for t in _get(stack, "/history", collection=COLL)["transactions"] if t["inserted"] == 3
    )
    body = _get(stack, f"/history/{bulk['id']}")
    by_id = {c["id"]: c for c in body["changes"]}
    assert set(by_id) == {"b0", "b1", "b2"}
    assert by_id["b1"]["before"] is None
    assert by_id["b1"]["diff"] is None  # an insert: its document is the diff
    assert by_id["b1"]["after"]["id"] == "b1"  # as inserted; then deleted by ``later``
    assert by_id["b0"]["later"] is None
    deleted = _get(stack, f"/history/{by_id['b1']['later']}")
    (gone,) = deleted["changes"]
    assert (gone["id"], gone["op"], gone["after"]) == ("b1", "delete", None)
    assert gone["before"] == by_id["b1"]["after"]
    ingest = _get(stack, "/history", kind="ingest")["transactions"][-1]
    total = ingest["inserted"] + ingest["updated"] + ingest["deleted"]
    got: list[tuple[str, str]] = []
    body = _get(stack, f"/history/{ingest['id']}", limit=3)
    while True:
        assert body["total"] == total
        got += [(c["collection"], c["id"]) for c in body["changes"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not nxt:
            break
        body = http.get(nxt[0]).json()
    assert len(got) == total
    assert len(set(got)) == total
    assert got[0][1] is None  # collections first (their own row has no item id)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/history?limit=0", "limit"),
        ("/history?limit=1001", "limit"),
        ("/history?limit=abc", "limit"),
        ("/history?limit=" + "9" * 40, "limit"),
        ("/history?offset=-1", "offset"),
        ("/history?since=yesterday", "ISO 8601"),
        ("/history?until=" + "2" * 100, "ISO 8601"),
        ("/history?since=2022-05-02&until=2022-05-01", "before"),
        ("/history?collection=", "collection"),
        ("/history?actor=" + "x" * 300, "actor"),
        ("/history?kind=a%00b", "kind"),
        ("/history?item=a&item=b", "once"),
        ("/history?colection=x", "unknown parameter"),
        ("/history/abc", "not a transaction id"),
        ("/history/-1", "not a transaction id"),
        ("/history/1?limit=5000", "limit"),
        ("/history/1?offset=x", "offset"),
        ("/history/1?since=2022-01-01", "unknown parameter"),
        ("/history/1?documents=maybe", "documents"),
    ],
)
def test_bad_parameters_are_400_with_one_line(stack: dict[str, Any], path: str, words: str) -> None:
    r = http.get(f"{stack['internal'].url}{path}")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "BadRequest"
    assert words in body["description"]
    assert "\n" not in body["description"]


def test_unknown_transaction_is_404(stack: dict[str, Any]) -> None:
    for tx in ("999999", "9" * 19, "9" * 5000):
        r = http.get(f"{stack['internal'].url}/history/{tx}")
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "NotFound"


def test_external_api_has_no_history(stack: dict[str, Any]) -> None:
    newest = _get(stack, "/history")["transactions"][0]["id"]
    for path in ("/history", f"/history/{newest}", "/history?limit=5"):
        r = http.get(f"{stack['external'].url}{path}")
        assert r.status_code == 404, (path, r.text)
        assert "transactions" not in r.text
    paths = http.get(f"{stack['external'].url}/api").json()["paths"]
    assert not [p for p in paths if p.startswith("/history")]
    internal_paths = http.get(f"{stack['internal'].url}/api").json()["paths"]
    assert "/history" in internal_paths
