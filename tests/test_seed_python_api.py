"""The seed documents' Python usage, run as printed (paths aside; issue #11 §8).

``shared/reference/eomatch-stac-catalogue.txt``: ``find_and_catalogue(context=ctx, path=...)``
returns the catalogue; events, matchups and products print readably and expose what the
documents and the previous generation's users read. Offline: products predicted from the orbit.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import shapely

from eomatch import EOMatchContext
from eomatch.core import stac_items as si
from eomatch.errors import EomatchError
from eomatch.find_and_catalogue import FindSummary, FoundCatalogue, find_and_catalogue
from eomatch.mu_stac import MatchupCatalogue

RUN = """\
sensors:
  - {platform: S2A, collection: S2_MSI_L1C}
  - {platform: LS9, collection: LANDSAT_C2L1}
start_time: 2022-05-06T12:00:00Z
stop_time: 2022-05-06T13:30:00Z
bbox: [-40, 40, 0, 70]
"""


@pytest.fixture(autouse=True)
def _no_user_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(tmp_path / "no-user-config"))


@pytest.fixture(scope="module")
def found(tmp_path_factory) -> tuple[Path, FoundCatalogue]:
    work = tmp_path_factory.mktemp("seed")
    (work / "my_config.yaml").write_text(RUN)  # no matchup_catalogue.path: path= gives it
    # --- as printed ---------------------------------------------------------------------------
    ctx = EOMatchContext(str(work / "my_config.yaml"))
    catalogue = find_and_catalogue(context=ctx, path=str(work / "my_catalogue"))
    # ------------------------------------------------------------------------------------------
    yield work, catalogue
    catalogue.close()


def test_find_and_catalogue_returns_the_catalogue_with_the_run_summary(found):
    work, catalogue = found
    assert isinstance(catalogue, MatchupCatalogue)
    assert catalogue.root == work / "my_catalogue"
    events = catalogue.get_events()
    assert events, "the window holds S2A x LS9 matchups"
    run = catalogue.last_run
    assert isinstance(run, FindSummary)
    assert run.catalogue == work / "my_catalogue"
    assert run.events == run.new_events == len(events)
    assert run.matchups == sum(len(e.matchup_set) for e in events)


def test_without_any_catalogue_path_the_error_says_so(tmp_path):
    (tmp_path / "run.yaml").write_text(RUN)
    with pytest.raises(EomatchError, match=r"not ready for find: matchup_catalogue\.path: not set"):
        find_and_catalogue(context=EOMatchContext(str(tmp_path / "run.yaml")))


def test_catalogue_snippets_as_printed(found, capsys):
    work, _ = found
    # --- as printed (eomatch-stac-catalogue.txt, "Opening" and "Querying") --------------------
    cat = MatchupCatalogue.open(str(work / "my_catalogue" / "catalog.json"))
    events = cat.get_events(
        collections=["S2_MSI_L1C", "LANDSAT_C2L1"],
        start_time=dt.datetime(2022, 5, 6),
        stop_time=dt.datetime(2022, 5, 7),
        bbox=[-40.0, 40.0, 0.0, 70.0],
    )
    for event in events:
        print(event)
        for mu in event.matchup_set:
            print(" ", mu)
    # ------------------------------------------------------------------------------------------
    cat.close()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(events) + sum(len(e.matchup_set) for e in events)
    first = events[0]
    assert out[0] == (
        f"event {first.id}: LANDSAT_C2L1-Landsat-9 x S2_MSI_L1C-Sentinel-2A, "
        f"{first.start:%Y-%m-%dT%H:%M:%SZ} to {first.end:%Y-%m-%dT%H:%M:%SZ}, "
        f"{len(first.matchup_set)} matchup(s)"
    )
    mu = first.matchup_set[0]
    assert out[1] == f"  matchup {mu.id}: LANDSAT_C2L1-Landsat-9 x S2_MSI_L1C-Sentinel-2A, " + (
        f"{mu.start:%Y-%m-%dT%H:%M:%SZ} to {mu.end:%Y-%m-%dT%H:%M:%SZ}, "
        f"time difference {mu.time_diff_abs_s:g} s, {mu.area_km2:.1f} km2 shared"
    )
    assert all(len(line) < 300 for line in out)  # no geometry dumps


def test_architecture_snippet_as_printed(found):
    work, _ = found
    # --- as printed (eomatch-api-and-database-architecture.txt, "Internal researcher") ------
    from eomatch import MatchupCatalogue

    cat = MatchupCatalogue.open(str(work / "my_catalogue" / "catalog.json"))
    seen = []
    for event in cat.get_events():
        for matchup in event.matchup_set:
            seen.append(matchup.id)  # (return_matchup_dataset(): reading products is not ours)
    # ------------------------------------------------------------------------------------------
    cat.close()
    assert seen


def test_objects_expose_what_the_documents_read(found):
    _work, catalogue = found
    event = catalogue.get_events()[0]
    mu = event.matchup_set[0]
    product = mu.products[0]
    # events
    assert event.start_time == event.start
    assert event.stop_time == event.end
    assert event.collections == ("LANDSAT_C2L1", "S2_MSI_L1C")
    assert event.platforms == ("Landsat-9", "Sentinel-2A")
    assert isinstance(event.properties, dict)
    assert event.assets == {}
    # matchups
    assert mu.start_time == min(p.start for p in mu.products)
    assert mu.stop_time == max(p.end for p in mu.products)
    assert mu.collections == ("LANDSAT_C2L1", "S2_MSI_L1C")
    assert mu.platforms == ("Landsat-9", "Sentinel-2A")
    starts = [p.start for p in mu.products]
    assert mu.time_diff_abs == (max(starts) - min(starts)).total_seconds()
    shared = shapely.intersection_all([p.geometry for p in mu.products])
    assert mu.collocation_region.symmetric_difference(shared).area < 1e-6 * shared.area
    assert mu.collocation_region.area > 0
    assert mu.properties["matchup:event_id"] == event.id
    assert mu.properties["matchup:time_diff_abs"] == mu.time_diff_abs
    # products
    assert product.collection == "LANDSAT_C2L1"
    assert product.platform == "Landsat-9"
    assert product.start_time == product.start
    assert product.stop_time == product.end
    assert "Product(id=" in repr(product)
    assert "predicted" in repr(product)
    assert repr(mu).startswith(f"Matchup(id={mu.id!r}, collections=")
    assert repr(event).startswith(f"MatchupEvent(id={event.id!r}, collections=")


def test_to_stac_item_gives_the_items_on_disk(found):
    work, catalogue = found
    root = work / "my_catalogue"
    event = catalogue.get_events()[0]
    mu = event.matchup_set[0]
    product = mu.products[0]

    def on_disk(obj: object) -> dict:
        return json.loads(catalogue.item_path(obj.id).read_text())  # type: ignore[attr-defined]

    assert product.to_stac_item() == on_disk(product)
    assert mu.to_stac_item(event) == on_disk(mu)
    assert event.to_stac_item() == on_disk(event)
    # without the event: the same item minus the relative link to it
    alone = mu.to_stac_item()
    links = [ln for ln in on_disk(mu)["links"] if ln.get("matchup:role") != "event"]
    assert alone == {**on_disk(mu), "links": links}
    assert si.item_problem(alone) is None
    assert root.is_dir()


def test_assets_and_enrichments_read_back_onto_the_objects(found):
    work, catalogue = found
    event = catalogue.get_events()[0]
    mu = event.matchup_set[0]
    data = work / "my_catalogue" / "stats.csv"
    data.write_text("a,b\n1,2\n")
    catalogue.add_matchup_asset(mu, "statistics", data, media_type="text/csv")
    catalogue.add_event_asset(event, "thumbnail", "https://example.org/t.png")
    again = next(e for e in catalogue.get_events() if e.id == event.id)
    mu2 = next(m for m in again.matchup_set if m.id == mu.id)
    assert mu2.assets["statistics"]["type"] == "text/csv"
    assert again.assets["thumbnail"]["href"] == "https://example.org/t.png"
    assert (
        mu2.to_stac_item(again)["assets"]
        == json.loads(catalogue.item_path(mu.id).read_text())["assets"]
    )
    catalogue.remove_matchup_asset(mu, "statistics")
    catalogue.remove_event_asset(event, "thumbnail")


def test_query_catalogue_takes_stop_time_or_end_time(tmp_path, monkeypatch):
    """The window's end is ``stop_time``; ``end_time`` (eomatch-query's name) is the same."""
    from eomatch.workflows import query

    seen = []

    class Stop(Exception):
        pass

    def interval(start, stop):
        seen.append((start, stop))
        raise Stop

    monkeypatch.setattr(query, "_interval", interval)
    for kw in ({"stop_time": "2022-05-07"}, {"end_time": "2022-05-07"}):
        with pytest.raises(Stop):
            query.query_catalogue(
                "http://127.0.0.1:9/", tmp_path / "out", start_time="2022-05-06", **kw
            )
    assert seen == [("2022-05-06", "2022-05-07")] * 2
    with pytest.raises(EomatchError, match="end_time is another name of stop_time"):
        query.query_catalogue(
            "http://127.0.0.1:9/", tmp_path / "out", stop_time="2022-05-07", end_time="2022-05-07"
        )
    assert not (tmp_path / "out").exists()
