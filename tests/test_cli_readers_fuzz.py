"""The CLI readers against generated STAC on disk (issue 10 §8): no crash, no half-write.

A small real catalogue is copied for each example and one of its files (an item, a day
catalog, a collection, ``catalog.json``) is changed: valid STAC in shapes our writers never
produce (open or 3D extents, odd but legal assets and links, offsets in times, extra members)
or any JSON at any place of the document. Then every reader runs over it — opening the
catalogue and ``get_events`` (with and without ``skip_invalid``), ``assets list``, ``remove``,
``ingest`` into a real pgSTAC and ``query`` from a real HTTP API into it — and each must end
with exit 0, or exit 2 and one line; never a traceback or an "internal error"; and a command
that fails leaves every catalogue file byte-identical (the SQLite index is a cache and may be
rebuilt).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eomatch.cli.main import main
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.pg_cluster import LocalCluster
from matchup_api_server import MatchupApi, serve
from service_fixtures import ServiceDb, _new_db, make_catalogue

EXAMPLES = int(os.environ.get("EOMATCH_FUZZ_EXAMPLES", "30"))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_catalogue(tmp_path_factory.mktemp("fuzz") / "base", n_events=1)


@pytest.fixture(scope="module")
def api(base: Path) -> Iterator[MatchupApi]:
    with serve(MatchupApi()) as state:
        state.load_catalogue(base)
        yield state


@pytest.fixture(scope="module")
def db_env(pg_cluster: LocalCluster) -> dict[str, str]:
    db: ServiceDb = _new_db(pg_cluster)
    return {**db.env(), "PGUSER": "eomatch_ingest"}


def _json_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*.json") if not p.name.startswith(".")
    )


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every catalogue file but the index (a cache) and the lock file."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".eomatch")
    }


# -- documents ---------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["", "x", "http://[x", "../../etc", "2022-05-06T12:00:00Z", "a/b.json"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["href", "rel", "type", "x", "id"]), inner, max_size=3)
    ),
    max_leaves=6,
)

HREFS = st.sampled_from(
    ["http://[x", "", "/abs/path.nc", "../../../../outside.json", "file:///etc/passwd", "a b%zz"]
) | st.text(max_size=8)
T = "2022-05-06T12:00:00Z"
UNUSUAL_TIMES = [
    "2022-05-06T14:00:00+02:00",
    "2022-05-06T12:00:00.123456Z",
    "2022-05-06t12:00:00z",
    "2022-05-06T12:00:00",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
]


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _collection_variants(doc: dict[str, Any], time: str) -> list[dict[str, Any]]:
    interval = ("extent", "temporal", "interval")
    bbox = doc["extent"]["spatial"]["bbox"][0]
    return [
        _set(doc, interval, [[T, None]]),
        _set(doc, interval, [[None, None]]),
        _set(doc, interval, [[None, T]]),
        _set(doc, interval, [[time, None], [T, T]]),
        _set(doc, ("extent", "spatial", "bbox"), [[*bbox[:2], -5, *bbox[2:], 5], bbox]),
        _set(doc, ("assets",), {"thumb": {"href": "https://x.test/t.png", "roles": ["thumbnail"]}}),
        _set(doc, ("summaries",), {"platform": ["a", "b"], "gsd": {"minimum": 1, "maximum": 2}}),
        _set(doc, ("links",), [*doc["links"], {"rel": "license", "href": "https://x.test/l"}]),
        _set(doc, ("keywords",), ["x", "y"]),
    ]


def _item_variants(doc: dict[str, Any], time: str) -> list[dict[str, Any]]:
    props = doc["properties"]
    ring = doc["geometry"]["coordinates"] if doc["geometry"]["type"] == "Polygon" else None
    out = [
        _set(doc, ("properties", "datetime"), time),
        _set(
            doc,
            ("properties",),
            {**props, "datetime": None, "start_datetime": time, "end_datetime": time},
        ),
        _set(doc, ("assets",), {}),
        {k: v for k, v in doc.items() if k not in ("assets", "links", "bbox", "stac_extensions")},
        _set(
            doc,
            ("assets", "extra"),
            {
                "href": "https://x.test/a.nc",
                "roles": ["data"],
                "alternate": {"s3": {"href": "s3://b/a.nc"}},
                "file:size": 3,
            },
        ),
        _set(doc, ("assets", "local"), {"href": "../../../../data/x.nc"}),
        _set(
            doc,
            ("links",),
            [
                *doc.get("links", []),
                {"rel": "license", "href": "https://x/l", "title": "t", "extra": {"a": [1]}},
            ],
        ),
        _set(doc, ("properties", "eomatch:extra"), {"nested": [1, {"a": None}]}),
        _set(doc, ("properties", "platform"), "sentinel-2a"),
        _set(
            doc, ("stac_extensions",), ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"]
        ),
    ]
    if "bbox" in doc:
        b = doc["bbox"]
        out.append(_set(doc, ("bbox",), [b[0], b[1], 0, b[2], b[3], 10]))
    if ring is not None:
        out.append(_set(doc, ("geometry",), {"type": "MultiPolygon", "coordinates": [ring]}))
        out.append(
            _set(
                doc,
                ("geometry",),
                {
                    "type": "GeometryCollection",
                    "geometries": [{"type": "Polygon", "coordinates": ring}],
                },
            )
        )
    return out


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


@st.composite
def edits(draw: st.DrawFn, base: Path) -> Callable[[Path], None]:
    """A change of one file of the catalogue (its docstring describes it for the report)."""
    rel = draw(st.sampled_from(_json_files(base)))
    doc = json.loads((base / rel).read_text())
    kind = draw(st.sampled_from(["unusual", "replace", "delete", "raw", "href"]))
    time = draw(st.sampled_from(UNUSUAL_TIMES))
    new: Any = doc
    raw: bytes | None = None
    if kind == "unusual" and doc.get("type") in ("Feature", "Collection"):
        variants = (_item_variants if doc["type"] == "Feature" else _collection_variants)(doc, time)
        new = draw(st.sampled_from(variants))
    elif kind == "href":  # any href of the document becomes a hostile one
        hrefs = [p for p in _paths(doc) if p[-1] == "href"] or [("links", 0, "href")]
        new = _set(doc, draw(st.sampled_from(hrefs)), draw(HREFS))
    elif kind in ("replace", "delete", "unusual"):
        path = draw(st.sampled_from(list(_paths(doc))))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if kind == "delete" and isinstance(parent, dict):
            new = copy.deepcopy(doc)
            node = new
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
        else:
            new = _set(doc, path, draw(JSON))
    else:
        raw = draw(
            st.sampled_from([b"", b"[]", b"null", b"{", b'{"type": "Feature"}', b"\xff\xfe"])
            | st.builds(lambda v: json.dumps(v).encode(), JSON)
        )
    data = raw if raw is not None else json.dumps(new).encode()
    stale = draw(st.booleans())

    def apply(root: Path) -> None:
        (root / rel).write_bytes(data)
        if stale:  # the next open rebuilds the index from the files
            for p in root.glob(".eomatch-index.sqlite*"):
                p.unlink()

    apply.__doc__ = f"{rel}: {data[:300]!r} (index {'deleted' if stale else 'kept'})"
    return apply


# -- the readers ---------------------------------------------------------------------------------


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def _check(argv: list[str], root: Path, what: str) -> int:
    before = _snapshot(root)
    code, err = _run(argv)
    context = f"{what}\n{' '.join(argv)}\n{err}"
    assert "Traceback" not in err, context
    assert "internal error" not in err, context
    assert code in (0, 2), context
    if code == 2:
        assert err.startswith("eomatch: error: "), context
        assert err.strip().count("\n") == 0, context
        assert _snapshot(root) == before, f"a failed command changed the catalogue: {context}"
    return code


def _read_back(env: dict[str, str], what: str) -> None:
    """Every stored item and collection comes back as GeoJSON (what the APIs serve)."""
    info = f"host={env['PGHOST']} port={env['PGPORT']} dbname={env['PGDATABASE']}"
    with psycopg.connect(info, user="postgres", passfile=env["PGPASSFILE"]) as conn:
        conn.execute("SET search_path TO pgstac, public")
        rows = conn.execute(
            "SELECT i.id, content_hydrate(i, c.base_item)::text FROM items i "
            "JOIN collections c ON c.id = i.collection"
        ).fetchall()
        collections = conn.execute("SELECT id, content::text FROM collections").fetchall()
    for _, text in rows + collections:
        assert isinstance(json.loads(text), dict), what


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_cli_readers_survive_generated_catalogue_files(
    data: st.DataObject,
    base: Path,
    api: MatchupApi,
    db_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in db_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(tmp_path / "user-config"))
    apply = data.draw(edits(base))
    root = tmp_path / uuid.uuid4().hex
    shutil.copytree(base, root)
    apply(root)
    what = apply.__doc__ or ""
    item_ids = [Path(r).stem for r in _json_files(base) if Path(r).parent.name.isdigit()]
    item_id = data.draw(st.sampled_from([i for i in item_ids if i != "catalog"]))
    skip_flag = ["--skip-invalid"] if data.draw(st.booleans()) else []
    # every draw above, before anything runs: a failure must not change what is drawn

    for skip in (False, True):
        before = _snapshot(root)
        message = ""
        try:
            with MatchupCatalogue.open(root, skip_invalid=skip) as cat:
                cat.get_events()
        except EomatchError as exc:
            message = str(exc)
        if message:
            assert "\n" not in message, (what, message)
            assert _snapshot(root) == before, (what, "a failed open changed the catalogue")
    _check(["assets", "list", "--catalogue", str(root), "--item", item_id], root, what)
    if _check(["ingest", "--catalogue", str(root), *skip_flag], root, what) == 0:
        _read_back(db_env, what)
    _check(["remove", "--path", str(root), "--keep-files", *skip_flag], root, what)
    _check(["query", "--api-url", api.url, "--output", str(root)], root, what)
    shutil.rmtree(root)


def test_remove_survives_a_product_href_that_does_not_parse(tmp_path: Path) -> None:
    """Regression (found by the test above with a new seed): a product asset href
    ``http://[x`` made ``eomatch remove --path ... --keep-files`` an internal error
    (``ValueError: Invalid IPv6 URL`` from urlparse)."""
    from service_fixtures import make_catalogue

    root = make_catalogue(tmp_path / "cat", n_events=1)
    products = [
        p
        for p in root.rglob("*.json")
        if p.parent.name.isdigit() and "-vs-" not in p.relative_to(root).parts[0]
    ]
    assert products
    doc = json.loads(products[0].read_text())
    for asset in doc["assets"].values():
        asset["href"] = "http://[x"
    products[0].write_text(json.dumps(doc))
    for index in root.glob(".eomatch-index.sqlite*"):
        index.unlink()
    code, err = _run(["remove", "--path", str(root), "--keep-files", "--skip-invalid"])
    assert "internal error" not in err, err
    assert "Traceback" not in err, err
    assert code in (0, 2), err
