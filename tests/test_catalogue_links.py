"""Issue 11 §7: a matchup belongs to exactly one event; every link has its reverse.

Two crossovers close in time can share a product pair. Each gets its own matchup (the event id
is part of the matchup id), so an event never lists a matchup that links another event, on
disk, in the index, and after an import of some events (what ``query`` does).
"""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import box

from catalogue_helpers import L9, S2, T0, check_link_symmetry, item_files
from eomatch.core.matchups import event_matchup_id, find_matchups, with_matchups
from eomatch.core.products import MatchupEvent, Product, event_id, pair_id
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.ingest import ingest_catalogue
from service_fixtures import ServiceDb

PAIR = pair_id([L9, S2])


def _product(sensor_i: int, k: int) -> Product:
    sensor = (L9, S2)[sensor_i]
    start = T0 + timedelta(seconds=60 * k + 30 * sensor_i)
    return Product(
        id=f"{sensor.platform}_{k}",
        sensor=sensor,
        start=start,
        end=start + timedelta(seconds=20),
        geometry=box(10.0 + 0.1 * k, 45.0, 12.0 + 0.1 * k, 47.0),
    )


def _event(n: int, picks: list[tuple[int, int]]) -> MatchupEvent:
    """Event ``n`` (crossovers 10 s apart at one place) matching the picked product pairs."""
    when = T0 + timedelta(seconds=10 * n)
    event = MatchupEvent(
        id=event_id(PAIR, when, 45.5 + 0.01 * n, 11.0),
        sensors=(L9, S2),
        start=when,
        end=when + timedelta(minutes=10),
        geometry=box(9.0, 44.0, 14.0, 48.0),
    )
    matchups = []
    for a, b in picks:
        found, _ = find_matchups(
            event, {L9: [_product(0, a)], S2: [_product(1, b)]}, max_time_diff_s=3600
        )
        matchups += found
    return with_matchups(event, matchups)


def _events_of(cat: MatchupCatalogue) -> set[tuple[str, str, str]]:
    """(event, matchup, product) triples as ``get_events`` (the index) returns them."""
    out = set()
    for ev in cat.get_events():
        for mu in ev.matchups:
            assert mu.event_id == ev.id
            out |= {(ev.id, mu.id, p.id) for p in mu.products}
    return out


def _check(root: Path) -> None:
    g = check_link_symmetry(root)
    with MatchupCatalogue.open(root) as cat:
        from_index = _events_of(cat)
    products = {}
    for m, p in g["matchup->product"]:
        products.setdefault(m, set()).add(p)
    from_files = {(e, m, p) for e, m in g["event->matchup"] for p in products.get(m, ())}
    assert from_index == from_files


def test_two_events_sharing_a_product_pair_get_a_matchup_each(tmp_path: Path) -> None:
    first, second = _event(0, [(0, 0)]), _event(1, [(0, 0)])
    (mu1,), (mu2,) = first.matchups, second.matchups
    assert mu1.id != mu2.id
    assert (mu1.event_id, mu2.event_id) == (first.id, second.id)
    assert mu1.id == event_matchup_id(PAIR, first.id, mu1.products)  # deterministic
    with MatchupCatalogue.create(tmp_path) as cat:
        cat.add_event(first)
        res = cat.add_event(second)
        assert (res.matchups_new, res.products_existing) == (1, 2)
        assert cat.counts() == {"event": 2, "matchup": 2, "product": 2}
    g = check_link_symmetry(tmp_path)
    assert g["event->matchup"] == {(first.id, mu1.id), (second.id, mu2.id)}
    _check(tmp_path)


def test_a_matchup_owned_by_another_event_is_refused_before_any_write(tmp_path: Path) -> None:
    first = _event(0, [(0, 0)])
    other = _event(1, [])
    stolen = with_matchups(other, first.matchups)  # hand-built: same matchup id, other event
    with MatchupCatalogue.create(tmp_path) as cat:
        cat.add_event(first)
        before = {p: p.read_bytes() for p in tmp_path.rglob("*.json")}
        with pytest.raises(EomatchError, match="already belongs to event"):
            cat.add_event(stolen)
        with pytest.raises(EomatchError, match="already belongs to event"), cat.batch():
            cat.add_event(stolen)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json")} == before
    _check(tmp_path)


def test_a_matchup_is_written_with_the_event_it_is_added_with(tmp_path: Path) -> None:
    event = _event(0, [(0, 0)])
    (mu,) = event.matchups
    import dataclasses

    wrong = dataclasses.replace(event, matchups=(dataclasses.replace(mu, event_id="elsewhere"),))
    with MatchupCatalogue.create(tmp_path) as cat:
        cat.add_event(wrong)
    item = json.loads(item_files(tmp_path)[mu.id].read_text())
    assert item["properties"]["matchup:event_id"] == event.id
    _check(tmp_path)


_pick = st.tuples(st.integers(0, 2), st.integers(0, 2))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    events=st.lists(st.lists(_pick, max_size=3, unique=True), min_size=1, max_size=5),
    batched=st.booleans(),
    removed=st.sets(st.integers(0, 4), max_size=2),
    imported=st.sets(st.integers(0, 4), max_size=3),
)
def test_links_are_symmetric_in_random_catalogues(
    events: list[list[tuple[int, int]]], batched: bool, removed: set[int], imported: set[int]
) -> None:
    built = [_event(n, picks) for n, picks in enumerate(events)]
    with tempfile.TemporaryDirectory() as tmp:
        root, copy = Path(tmp) / "cat", Path(tmp) / "copy"
        with MatchupCatalogue.create(root) as cat:
            if batched:
                with cat.batch():
                    for ev in built:
                        cat.add_event(ev)
            else:
                for ev in built:
                    cat.add_event(ev)
            for ev in built:  # a re-run changes nothing
                assert cat.add_event(ev).matchups_new == 0
            for n in sorted(removed):
                if n < len(built):
                    cat.remove_event(built[n].id)
        _check(root)
        # an import of some events with their matchups and products (what ``query`` pulls)
        files = item_files(root)
        g = check_link_symmetry(root)
        chosen = {built[n].id for n in imported if n < len(built) and built[n].id in files}
        mus = {m for e, m in g["event->matchup"] if e in chosen}
        prods = {p for m, p in g["matchup->product"] if m in mus}
        items = [json.loads(files[i].read_text()) for i in sorted(chosen | mus | prods)]
        with MatchupCatalogue.create(copy) as cat:
            cat.import_items(items)
        _check(copy)
        assert set(item_files(copy)) == chosen | mus | prods


def test_links_are_symmetric_in_the_database_after_ingest(
    tmp_path: Path, service_db: ServiceDb
) -> None:
    first, second = _event(0, [(0, 0), (1, 1)]), _event(1, [(0, 0)])
    with MatchupCatalogue.create(tmp_path) as cat:
        cat.add_event(first)
        cat.add_event(second)
        files = cat.item_files()
    store = PgstacStore(service_db.role("eomatch_ingest"))
    ingest_catalogue(tmp_path, store)
    stored = {i: store.get_item(c, i) for c, i, _ in files}
    forward, backward = set(), set()
    for item_id, item in stored.items():
        assert item is not None
        targets = [
            unquote(lk["href"].rsplit("/", 1)[-1]) for lk in item["links"] if lk["rel"] == "related"
        ]
        if item["collection"].startswith("matchup-events-"):
            forward |= {(item_id, t) for t in targets}
        elif targets:
            assert targets == [item["properties"]["matchup:event_id"]]
            backward |= {(t, item_id) for t in targets}
    assert forward == backward
    assert len(forward) == 3  # two matchups of the first event, one of the second
