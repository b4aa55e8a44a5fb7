"""The ``catalogue`` job kind: a pystac-made static catalogue (relative hrefs, not eomatch's
layout) from a folder and from a local HTTP server, into a real pgSTAC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eomatch.errors import InputError, NotFoundError
from eomatch.workflows.jobs import get_kind
from eomatch.workflows.jobs.catalogue_kind import CatalogueParams, ingest_static_catalogue
from job_kind_helpers import job_store, make_static_catalogue, serve_folder
from service_fixtures import ServiceDb, pg_cluster, service_db

__all__ = ["pg_cluster", "service_db"]


def test_static_catalogue_from_a_folder_then_again(service_db: ServiceDb, tmp_path: Path) -> None:
    root = tmp_path / "cat"
    make_static_catalogue(root, n_items=3)
    # the files really use relative hrefs
    item_file = next(root.rglob("static-item-0.json"))
    assert json.loads(item_file.read_text())["assets"]["data"]["href"] == "./data-0.tif"
    store = job_store(service_db, 21)

    result = ingest_static_catalogue(CatalogueParams(source=str(root)), store)
    assert sorted(result.created) == [("static-coll", f"static-item-{n}") for n in range(3)]
    assert result.info["collections"] == ["static-coll"]
    item = store.get_item("static-coll", "static-item-0")
    assert item is not None
    assert item["assets"]["data"]["href"] == (item_file.parent / "data-0.tif").as_uri()
    rels = {link["rel"] for link in item.get("links", [])}
    assert not rels & {"parent", "root", "self"} or all(
        "://" in link["href"] for link in item["links"]
    )
    again = ingest_static_catalogue(CatalogueParams(source=str(root / "catalog.json")), store)
    assert again.created == []
    assert len(again.updated) == 3
    assert service_db.item_count() == 3
    kinds = service_db.query("SELECT DISTINCT actor, kind FROM eomatch.transactions")
    assert kinds == [("job:21", "job")]


def test_static_catalogue_over_http(service_db: ServiceDb, tmp_path: Path) -> None:
    root = tmp_path / "www"
    make_static_catalogue(root, n_items=2)
    store = job_store(service_db, 22)
    with serve_folder(root) as base:
        result = ingest_static_catalogue(
            CatalogueParams(source=f"{base}/static-coll/collection.json"), store
        )
        assert len(result.created) == 2
        item = store.get_item("static-coll", "static-item-1")
        assert item is not None
        assert item["assets"]["data"]["href"] == f"{base}/static-coll/static-item-1/data-1.tif"
        with pytest.raises(NotFoundError, match="404"):
            ingest_static_catalogue(CatalogueParams(source=f"{base}/nope.json"), store)


def test_items_outside_a_collection_need_a_target(service_db: ServiceDb, tmp_path: Path) -> None:
    import pystac

    root = tmp_path / "bare"
    catalog = pystac.Catalog("bare", "items with no collection")
    catalog.add_item(
        pystac.Item(
            "lonely",
            {"type": "Point", "coordinates": [1.0, 2.0]},
            [1.0, 2.0, 1.0, 2.0],
            None,
            {"start_datetime": "2024-01-01T00:00:00Z", "end_datetime": "2024-01-02T00:00:00Z"},
        )
    )
    catalog.normalize_hrefs(str(root))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    store = job_store(service_db, 23, "target")
    with pytest.raises(InputError, match=r"give params\.collection"):
        ingest_static_catalogue(CatalogueParams(source=str(root)), store)
    kind = get_kind("catalogue")
    assert kind.precheck is not None
    with pytest.raises(NotFoundError, match="no collection 'absent'"):
        kind.precheck(CatalogueParams(source=str(root), collection="absent"), store)
    result = ingest_static_catalogue(CatalogueParams(source=str(root), collection="target"), store)
    assert result.created == [("target", "lonely")]
    (root / "catalog.json").write_text("{not json")
    with pytest.raises(InputError, match=r"unreadable STAC|not a STAC"):
        ingest_static_catalogue(CatalogueParams(source=str(root), collection="target"), store)
