"""Issue 11 §8: the catalogue's Python API as the seed documents print it.

``get_events(collections=[...])`` selects events of that combination, platform filters take
any registry alias (an unknown name is an error), ``download_products(event_set=...)`` is a
method, assets go on any item or collection in the positional or the ``asset_key=, asset=``
form; and the bulk writer does not write through a planted symlink.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest

from catalogue_helpers import L9, S2, S3, item_files, make_event, validate_tree
from eomatch.core import stac_items as si
from eomatch.errors import EomatchError, UnknownSatelliteError, UnsafePathError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.mu_stac import MatchupCatalogue as SeedCatalogue

JUNE = datetime(2023, 6, 10, 10, 0, tzinfo=UTC)


def _three_pairs(root: Path) -> dict[str, str]:
    """A catalogue with one L9-S2, one S2-S3 and one L9-S3 event; name -> event id."""
    events = {
        "l9-s2": make_event(when=JUNE, sensors=(L9, S2)),
        "s2-s3": make_event(when=JUNE, sensors=(S2, S3), lon=12.0),
        "l9-s3": make_event(when=JUNE, sensors=(L9, S3), lon=14.0),
    }
    with MatchupCatalogue.create(root) as cat:
        for ev in events.values():
            cat.add_event(ev)
    return {k: v.id for k, v in events.items()}


def test_collections_select_events_of_that_combination(tmp_path: Path) -> None:
    ids = _three_pairs(tmp_path)
    with MatchupCatalogue.open(tmp_path) as cat:

        def got(colls: list[str]) -> set[str]:
            return {e.id for e in cat.get_events(collections=colls)}

        assert got(["S2_MSI_L1C", "S3_EFR"]) == {ids["s2-s3"]}
        assert got(["S3_EFR", "S2_MSI_L1C"]) == {ids["s2-s3"]}
        assert got(["S2_MSI_L1C"]) == {ids["l9-s2"], ids["s2-s3"]}
        assert got(["S2_MSI_L1C", "S3_EFR", "LANDSAT_C2L1"]) == set()
        assert got(["NOT_A_COLLECTION"]) == set()


@pytest.mark.parametrize("name", ["S2A", "Sentinel-2A", "sentinel-2a", " s2a "])
def test_platforms_accept_every_alias(tmp_path: Path, name: str) -> None:
    ids = _three_pairs(tmp_path)
    with MatchupCatalogue.open(tmp_path) as cat:
        assert {e.id for e in cat.get_events(platforms=[name])} == {ids["l9-s2"], ids["s2-s3"]}
        both = cat.get_events(platforms=[name, "LS9"])
        assert {e.id for e in both} == set(ids.values())


def test_an_unknown_platform_is_an_error_not_an_empty_result(tmp_path: Path) -> None:
    _three_pairs(tmp_path)
    with MatchupCatalogue.open(tmp_path) as cat:
        with pytest.raises(UnknownSatelliteError, match="unknown platform 'S9Z'") as err:
            cat.get_events(platforms=["S9Z"])
        assert "\n" not in str(err.value)


def test_assets_on_every_item_and_collection_in_both_forms(tmp_path: Path) -> None:
    _three_pairs(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "stats.csv").write_text("a,b\n")
    with SeedCatalogue.open(tmp_path / "catalog.json") as cat:
        event = cat.get_events(collections=["S2_MSI_L1C", "S3_EFR"])[0]
        mu = event.matchup_set[0]
        product = mu.products[0]
        asset = pystac.Asset(href=str(data / "stats.csv"), media_type="text/csv", roles=["data"])
        item = cat.add_matchup_asset(mu, asset_key="statistics", asset=asset)
        assert item["assets"]["statistics"] == {
            "href": si.relative_href(si.matchup_path(mu), "data/stats.csv"),
            "type": "text/csv",
            "roles": ["data"],
        }
        cat.add_event_asset(
            event, asset_key="thumbnail", asset=pystac.Asset(href="https://x/t.png")
        )
        cat.add_product_asset(product, asset_key="quicklook", asset=pystac.Asset(href="q.png"))
        report = pystac.Asset(href="https://x/r.pdf")
        coll = cat.add_matchup_collection_asset(mu, asset_key="report", asset=report)
        assert coll["assets"]["report"] == {"href": "https://x/r.pdf", "type": "application/pdf"}
        cat.add_event_collection_asset(event, asset_key="summary", asset={"href": "https://x/s"})
        cat.add_product_collection_asset(product, "notes", "https://x/n.txt")  # positional
        cat.add_matchup_asset(mu.id, "plot", "https://x/p.png", None, "a plot", ["overview"])
        with pytest.raises(EomatchError, match="asset key once"):
            cat.add_matchup_asset(mu, "k", asset_key="k", asset=asset)
        with pytest.raises(EomatchError, match="asset once"):
            cat.add_matchup_asset(mu, "k", "https://x/a", asset=asset)
    files = item_files(tmp_path)
    assert set(json.loads(files[mu.id].read_text())["assets"]) == {"plot", "statistics"}
    assert "thumbnail" in json.loads(files[event.id].read_text())["assets"]
    assert "quicklook" in json.loads(files[product.id].read_text())["assets"]
    colls = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("*/collection.json")}
    assert "report" in colls[si.matchup_collection(mu)]["assets"]
    assert "summary" in colls[si.events_collection_id(event.sensors)]["assets"]
    assert "notes" in colls[product.sensor.collection]["assets"]
    validate_tree(tmp_path)
    with MatchupCatalogue.open(tmp_path) as cat:
        cat.remove_matchup_asset(mu, asset_key="statistics", delete_file=True)
        cat.remove_event_collection_asset(event, asset_key="summary")
        cat.remove_product_collection_asset(product.sensor.collection, "notes")
        cat.remove_product_asset(product.id, "quicklook")
        with pytest.raises(EomatchError, match="has no asset"):
            cat.remove_event_asset(event, asset_key="nothing")
    assert not (data / "stats.csv").exists()
    colls = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("*/collection.json")}
    assert "assets" not in colls[si.events_collection_id(event.sensors)]
    assert "assets" not in colls[product.sensor.collection]


def test_the_seed_documents_snippets_run_as_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """eomatch-stac-catalogue.txt and eomatch-api-and-database-architecture.txt, paths aside
    (and ``pystac.Asset(...)`` given an href)."""
    root = tmp_path / "my_catalogue"
    ids = _three_pairs(root)
    (root / "data").mkdir()
    with MatchupCatalogue.open(root) as cat:  # one event fully downloaded already
        ev = cat.get_events(collections=["S2_MSI_L1C", "S3_EFR"])[0]
        for mu in ev.matchups:
            for p in mu.products:
                (root / "data" / p.id).write_bytes(b"x")
                cat.set_product_data(p.id, root / "data" / p.id)
    results = tmp_path / "results"
    results.mkdir()
    (results / "mu_stats.csv").write_text("a\n")
    stac_catalogue = f"""
        from eomatch.mu_stac import MatchupCatalogue
        cat = MatchupCatalogue.open("{root}/catalog.json")
        import datetime as dt
        events = cat.get_events(
        collections=["S2_MSI_L1C", "S3_EFR"],
        start_time=dt.datetime(2023, 6, 1),
        stop_time=dt.datetime(2023, 6, 30),
        bbox=[-10.0, 40.0, 30.0, 70.0],
        )
        for event in events:
            print(event)
            for mu in event.matchup_set:
                print(" ", mu)
        events = cat.get_events(products_downloaded=True)
        cat.download_products(event_set=events)
        import pystac
        asset = pystac.Asset(href="{results}/mu_stats.csv", media_type="text/csv")
        # Attach to a single matchup Item
        cat.add_matchup_asset(mu, asset_key="statistics", asset=asset)
        # Attach to a matchup event Item
        cat.add_event_asset(event, asset_key="thumbnail", asset=pystac.Asset("https://x/t.png"))
        # Attach to the matchup Collection (sensor-pair level)
        cat.add_matchup_collection_asset(mu, asset_key="report", asset=pystac.Asset("https://x/r"))
        cat.close()
    """
    architecture = f"""
        from eomatch import MatchupCatalogue
        cat = MatchupCatalogue.open("{root}/catalog.json")
        for event in cat.get_events():
            for matchup in event.matchup_set:
                seen.append(matchup.id)
        cat.close()
    """
    exec(textwrap.dedent(stac_catalogue), {})
    printed = capsys.readouterr().out
    assert ids["s2-s3"] in printed
    assert ids["l9-s2"] not in printed
    seen: list[str] = []
    exec(textwrap.dedent(architecture), {"seen": seen})
    files = item_files(root)
    matchups = {
        i
        for i, f in files.items()
        if si.collection_kind(f.parent.parent.parent.parent.name) == "matchup"
    }
    assert sorted(seen) == sorted(matchups)
    event_item = json.loads(files[ids["s2-s3"]].read_text())
    assert "thumbnail" in event_item["assets"]
    mu_ids = [m for m in seen if json.loads(files[m].read_text())["assets"].get("statistics")]
    assert len(mu_ids) == 1


def test_download_products_event_set_takes_only_those_events(tmp_path: Path) -> None:
    ids = _three_pairs(tmp_path)
    with SeedCatalogue.open(tmp_path) as cat:
        chosen = cat.get_events(collections=["S2_MSI_L1C", "S3_EFR"])
        assert [e.id for e in chosen] == [ids["s2-s3"]]
        (tmp_path / "data").mkdir()
        wanted = {p.id for m in chosen[0].matchups for p in m.products}
        for pid in wanted:  # already there: registered without a download (no network)
            p = cat.products([pid])[0]
            from eomatch.workflows.products import product_destination

            dest = product_destination(cat, p, p.assets["data"]["href"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(b"x")
        report = cat.download_products(event_set=chosen)
        assert report.failed == []
        downloaded = cat.get_events(products_downloaded=True)
        assert [e.id for e in downloaded] == [ids["s2-s3"]]


def test_the_bulk_writer_does_not_write_through_a_planted_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "cat", tmp_path / "outside"
    outside.mkdir()
    event = make_event()
    with MatchupCatalogue.create(root) as cat:
        pass
    (root / L9.collection).symlink_to(outside, target_is_directory=True)
    with (
        MatchupCatalogue.open(root) as cat,
        pytest.raises(UnsafePathError, match="resolves outside"),
        cat.batch(),
    ):
        cat.add_event(event)
    assert list(outside.iterdir()) == []
    (root / L9.collection).unlink()
    with MatchupCatalogue.open(root) as cat:
        with cat.batch():
            cat.add_event(event)
        assert cat.counts()["event"] == 1
