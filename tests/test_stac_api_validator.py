"""stac-api-validator 0.6.8 on both real APIs: core, collections, features, item-search, filter.

Nothing is skipped. The validator's JSON-schema checks (stac-validator 4.1, run on every
collection and item it fetches, and again by stac-check) download the STAC schemas from
schemas.stacspec.org, which cannot work offline, and the validator has no option to pass a
schema map (stac-validator 4.1 would look for bundled copies in ``local_schemas/``, but the
wheel does not ship that folder). So this module runs the validator through its Python API
(:func:`stac_api_validator.validations.validate_api`, the function its CLI calls) in a child
process that first serves every schema our documents use from local copies:

* the STAC 1.1.0 item/collection/catalog schemas and the GeoJSON Feature/Geometry schemas that
  pystac bundles (``pystac.validation.local_validator.get_local_schema_cache``): every document
  our APIs serve is STAC 1.1.0;
* our own extension schema, ``src/eomatch/schemas/eomatch-extension-v1.0.0.json``.

It does so by wrapping ``stac_validator.utilities.fetch_and_parse_file`` behind stac-validator's
schema cache, so the real validation code runs unchanged. Any schema outside that map is still
fetched from the network, fails, and shows up as an error, so a new extension cannot slip
through unvalidated. The child also validates one deliberately broken item first (a control),
to prove the local schemas really reject bad documents.

Validator limitations that remain (none hides a failure of ours):

* asset and link URLs are opened by stac-validator but failures to open them are not errors;
* warnings are allowed, but only of the known kinds in ``KNOWN_WARNINGS`` (stac-check style
  recommendations and "bbox=20,20,21,21 returned 0 results" — our data has nothing there);
* the query, sort, fields and transaction classes are not run (native-stack.md §5: the
  validator crashes or tests things the pgstac extensions do not offer).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CONFORMANCE = ["core", "collections", "features", "item-search", "filter"]
# warning kinds that are recommendations, not conformance failures
KNOWN_WARNINGS = (
    "has these stac-check recommendations:",
    "returned 0 results",
)
EXTENSION_URI = "https://eomatch.github.io/stac-extension/v1.0.0/schema.json"
BAD_ITEM: dict[str, Any] = {
    "type": "Feature",
    "stac_version": "1.1.0",
    "id": "control",
    "geometry": {"type": "Point", "coordinates": [0.0, 0.0]},
    "bbox": [0.0, 0.0, 0.0, 0.0],
    "properties": {"datetime": "yesterday"},
    "links": [],
    "assets": {},
}


@pytest.fixture(scope="module")
def stack(pg_cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, api_pair, make_catalogue

    db = _new_db(pg_cluster)
    root = make_catalogue(tmp_path_factory.mktemp("cat") / "cat", n_events=3)
    ingest_catalogue(root, PgstacStore(db.role("eomatch_ingest")))
    with api_pair(db, tmp_path_factory.mktemp("logs")) as pair:
        yield pair


def _run_validator(root_url: str, collection: str, geometry: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, root_url, collection, json.dumps(geometry)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _target(api_url: str, kind: Callable[[str], bool]) -> tuple[str, dict[str, Any]]:
    """A collection of the given kind with items, and a polygon over its extent."""
    colls = httpx.get(f"{api_url}/collections", timeout=30).json()["collections"]
    coll = next(c for c in colls if kind(c["id"]))
    w, s, e, n = coll["extent"]["spatial"]["bbox"][0][:4]
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return coll["id"], {"type": "Polygon", "coordinates": [ring]}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        # a product collection on the internal API, a matchup collection on the external one
        ("internal", lambda cid: "-vs-" not in cid),
        ("external", lambda cid: "-vs-" in cid and not cid.startswith("matchup-events")),
    ],
    ids=["internal", "external"],
)
def test_validator_passes(stack, mode: str, kind: Callable[[str], bool]) -> None:
    internal, external = stack
    api = internal if mode == "internal" else external
    collection, geometry = _target(api.url, kind)
    out = _run_validator(api.url + "/", collection, geometry)

    # the control: the local schemas reject a broken item without any network
    assert out["control_valid"] is False
    assert "datetime" in out["control_message"]
    # schema validation really ran, on local copies, for items, collections and our extension
    local = set(out["local_schemas"])
    assert {
        "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
        "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json",
        EXTENSION_URI,
    } <= local
    # nothing but the API itself was fetched from the network
    assert all(u.startswith(api.url + "/") for u in out["remote"]), out["remote"]

    assert out["errors"] == []
    unknown = [w for w in out["warnings"] if not any(k in w for k in KNOWN_WARNINGS)]
    assert unknown == []


# -- the child process ---------------------------------------------------------------------------


def _child(root_url: str, collection: str, geometry: str) -> None:
    import stac_validator.utilities as su
    from pystac.validation.local_validator import get_local_schema_cache
    from stac_validator.validate import StacValidate

    import eomatch

    schemas: dict[str, Any] = dict(get_local_schema_cache())
    ext = Path(eomatch.__file__).parent / "schemas" / "eomatch-extension-v1.0.0.json"
    schemas[EXTENSION_URI] = json.loads(ext.read_text())
    used: set[str] = set()
    remote: set[str] = set()
    fetch = su.fetch_and_parse_file

    def local_first(path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        if path in schemas:
            used.add(path)
            return dict(schemas[path])
        remote.add(path)
        result: dict[str, Any] = fetch(path, headers)
        return result

    # stac-validator's schema cache looks this name up in its module at call time
    su.fetch_and_parse_file = local_first

    control = StacValidate(links=False, assets=False)
    control_valid = control.validate_dict(BAD_ITEM)
    control_message = json.dumps(control.message)

    from stac_api_validator.validations import QueryConfig, validate_api

    warnings, errors = validate_api(
        root_url=root_url,
        ccs_to_validate=CONFORMANCE,
        collection=collection,
        geometry=geometry,
        auth_bearer_token=None,
        auth_query_parameter=None,
        fields_nested_property=None,
        validate_pagination=False,
        query_config=QueryConfig(*([None] * 13)),
        transaction_collection=None,
        headers={},
        stac_check_config=None,
    )
    report = {
        "warnings": warnings.as_list(),
        "errors": errors.as_list(),
        "control_valid": bool(control_valid),
        "control_message": control_message,
        "local_schemas": sorted(used),
        "remote": sorted(remote),
    }
    sys.stdout.write("\n" + json.dumps(report) + "\n")


if __name__ == "__main__":
    _child(*sys.argv[1:4])
