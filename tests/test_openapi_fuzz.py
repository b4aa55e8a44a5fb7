"""schemathesis against both OpenAPI documents (``/api``): no request ever gets a 5xx.

Each API runs as a real uvicorn process on a real pgSTAC holding a small ingested catalogue.
``st run`` (schemathesis' CLI, as a subprocess) goes through all its phases (examples, coverage,
fuzzing, stateful) with a bounded number of examples per operation and a fixed seed, so a run
takes seconds and a failure is reproducible. Three runs:

* external: every operation in its document (GETs and ``POST /search``; the document must not
  offer any write);
* internal without a key: every write must answer 401 (custom check ``writes_need_a_live_key``)
  and the database must not change;
* internal with a live key (``-H Authorization: Bearer ...``): writes run for real; none may
  answer 401 (the key works) or 5xx. Its coverage phase sends positive data only (the negative
  coverage of the large Item/Collection bodies alone takes a minute); examples, fuzzing and
  stateful still send negative data. It runs last in the module: it writes junk items.

``POST /collections/{collection_id}/bulk_items`` is left out of the schemathesis runs because
stac-fastapi 7.0's OpenAPI document for it does not declare its path parameter, which
schemathesis rejects as a schema error; it is exercised by hand in
:func:`test_bulk_items_never_5xx` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# one worker, file order: the keyed run goes last (it writes junk into the shared database)
pytestmark = pytest.mark.xdist_group("openapi-fuzz")

MAX_EXAMPLES = "10"
SEED = "20261121"
BULK = "/collections/{collection_id}/bulk_items"

HOOKS = '''
"""schemathesis hooks for tests/test_openapi_fuzz.py."""
import os

import schemathesis

READS = {"GET", "HEAD", "OPTIONS"}


@schemathesis.check
def writes_need_a_live_key(ctx, response, case):
    """Without a key every write is 401; with a live key none is."""
    mode = os.environ.get("EOMATCH_FUZZ_AUTH", "off")
    method = case.method.upper()
    if mode == "off" or method in READS or (method == "POST" and case.path == "/search"):
        return None
    status = response.status_code
    if mode == "none" and status != 401:
        raise AssertionError(f"write without a key answered {status}, not 401")
    if mode == "key" and status == 401:
        raise AssertionError("write with a live key answered 401")
    return None
'''


@pytest.fixture(scope="module")
def stack(
    pg_cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, Any, Any, str]]:
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, api_pair, make_catalogue

    db = _new_db(pg_cluster)
    root = make_catalogue(tmp_path_factory.mktemp("cat") / "cat", n_events=2)
    ingest_catalogue(root, PgstacStore(db.role("eomatch_ingest")))
    key = PgstacStore(db.role()).create_key("fuzzer")
    with api_pair(db, tmp_path_factory.mktemp("logs")) as (internal, external):
        yield db, internal, external, key


def _schemathesis(
    api_url: str,
    work: Path,
    auth: str,
    headers: dict[str, str] | None = None,
    extra: list[str] | None = None,
    config: Path | None = None,
) -> tuple[dict[str, Any], str]:
    """Run ``st run`` on an API's document; the JSON report and the console output."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "fuzz_hooks.py").write_text(HOOKS)
    st = Path(sys.executable).with_name("st")
    args = [str(st)]
    if config is not None:
        args += ["--config-file", str(config)]
    args += [
        "run",
        f"{api_url}/api",
        "--checks",
        "not_a_server_error,writes_need_a_live_key",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--exclude-path",
        BULK,
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--no-shrink",
        "--no-color",
        "--report",
        "json",
        "--report-dir",
        str(work),
    ]
    args += extra or []
    for name, value in (headers or {}).items():
        args += ["--header", f"{name}: {value}"]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        "PYTHONPATH": str(work),
        "EOMATCH_FUZZ_AUTH": auth,
    }
    proc = subprocess.run(
        args, cwd=work, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    reports = sorted(work.glob("json-*.json"))
    assert reports, proc.stdout[-3000:] + proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(reports[-1].read_text())
    return report, proc.stdout + proc.stderr


def _assert_clean(report: dict[str, Any], output: str) -> None:
    failures = output[output.find("FAILURES") :] if "FAILURES" in output else output[-4000:]
    assert report["exit_code"] == 0, failures[:6000]
    assert report["failures"] == [], failures[:6000]
    assert report["errors"] == [], output[-4000:]
    assert report["operations"]["tested"] >= 5, report["operations"]


@pytest.mark.slow
def test_external_api_has_no_5xx(stack, tmp_path: Path) -> None:
    _db, _internal, external, _key = stack
    doc = httpx.get(f"{external.url}/api", timeout=30).json()
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    writes = {(m, p) for m, p in ops if m not in ("GET", "HEAD") and (m, p) != ("POST", "/search")}
    assert writes == set()
    report, output = _schemathesis(external.url, tmp_path, auth="off")
    _assert_clean(report, output)


@pytest.mark.slow
def test_internal_api_without_key_is_401_never_5xx(stack, tmp_path: Path) -> None:
    db, internal, _external, _key = stack
    before = db.snapshot()
    # reads are the same code as in the keyed run below: only the writes here
    writes_only = [
        "--include-method-regex",
        "^(POST|PUT|PATCH|DELETE)$",
        "--exclude-path",
        "/search",
    ]
    report, output = _schemathesis(internal.url, tmp_path, auth="none", extra=writes_only)
    _assert_clean(report, output)
    assert db.snapshot() == before


BULK_BODIES: list[Any] = [
    None,
    [],
    {},
    "text",
    {"items": []},
    {"items": {}},
    {"items": [1, 2]},
    {"items": {"x": {}}},
    {"items": {"x": None}},
    {"method": "delete", "items": {}},
    {"method": "upsert", "items": {"x": {"type": "Feature", "id": "x"}}},
]


@pytest.mark.slow
def test_bulk_items_never_5xx(stack) -> None:
    db, internal, _external, key = stack
    colls = httpx.get(f"{internal.url}/collections", timeout=30).json()["collections"]
    targets = [colls[0]["id"], "no-such-collection", "%20", "a" * 300]
    before = db.snapshot()
    for coll in targets:
        url = f"{internal.url}/collections/{coll}/bulk_items"
        for body in BULK_BODIES:
            r = httpx.post(url, json=body, timeout=30)
            assert r.status_code == 401, (coll, body, r.status_code)
    assert db.snapshot() == before
    auth = {"Authorization": f"Bearer {key}"}
    for coll in targets:
        url = f"{internal.url}/collections/{coll}/bulk_items"
        for body in BULK_BODIES:
            r = httpx.post(url, json=body, headers=auth, timeout=30)
            assert r.status_code < 500, (coll, body, r.status_code, r.text[:500])
            assert r.status_code != 401, (coll, body)


NESTED_COLLECTION = {
    "type": "GeometryCollection",
    "geometries": [
        {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 0]}]}
    ],
}


@pytest.mark.slow
def test_a_written_geometry_never_breaks_reads(stack) -> None:
    """Found by the keyed run: PostGIS stores a nested GeometryCollection that its
    ST_AsGeoJSON then refuses, so one accepted write made every read that includes the item
    (item, items, search, on both APIs) a 500. A write must be refused or readable."""
    _db, internal, external, key = stack
    coll = httpx.get(f"{internal.url}/collections", timeout=30).json()["collections"][0]["id"]
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "nested-geometry-collection",
        "collection": coll,
        "geometry": NESTED_COLLECTION,
        "bbox": [0, 0, 0, 0],
        "properties": {"datetime": "2022-05-06T12:00:00Z"},
        "links": [],
        "assets": {},
    }
    r = httpx.post(
        f"{internal.url}/collections/{coll}/items",
        json=item,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code < 500, r.text
    try:
        for api in (internal, external):
            for path in (
                f"/collections/{coll}/items/nested-geometry-collection",
                f"/collections/{coll}/items?limit=100",
                "/search?limit=100",
            ):
                got = httpx.get(api.url + path, timeout=30)
                assert got.status_code < 500, (api.url + path, r.status_code, got.text[:300])
    finally:  # do not leave the poison for the next test
        httpx.delete(
            f"{internal.url}/collections/{coll}/items/nested-geometry-collection",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )


@pytest.mark.slow
def test_internal_api_with_key_never_5xx(stack, tmp_path: Path) -> None:
    _db, internal, _external, key = stack
    # negative coverage of the big Item/Collection bodies alone takes ~60 s: keep the
    # coverage phase positive here (the other phases still send negative data)
    config = tmp_path / "schemathesis.toml"
    config.write_text('[phases.coverage.generation]\nmode = "positive"\n')
    report, output = _schemathesis(
        internal.url,
        tmp_path,
        auth="key",
        headers={"Authorization": f"Bearer {key}"},
        config=config,
    )
    _assert_clean(report, output)
