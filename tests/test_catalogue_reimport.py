"""Re-importing items over local copies (what an unchanged ``query`` re-pull does).

The local copy is checked only for what merging reads (assets, links, stac_extensions); the
rest is equal to the validated incoming item or replaced by it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalogue_helpers import item_files
from eomatch.io.catalogue import MatchupCatalogue
from test_catalogue_links import _event


def _pulled(root: Path) -> tuple[list[dict], dict[str, Path]]:
    files = item_files(root)
    return [json.loads(p.read_text()) for _, p in sorted(files.items())], files


def test_an_unchanged_reimport_changes_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    with MatchupCatalogue.create(src) as cat:
        cat.add_event(_event(0, [(0, 0), (1, 1)]))
    items, _ = _pulled(src)
    with MatchupCatalogue.create(dst) as cat:
        cat.import_items(items)
    before = {i: p.read_bytes() for i, p in item_files(dst).items()}
    with MatchupCatalogue.open(dst) as cat:
        statuses = cat.import_items(items)
    assert set(statuses.values()) == {"unchanged"}
    assert {i: p.read_bytes() for i, p in item_files(dst).items()} == before


@pytest.mark.parametrize(
    "damage",
    [
        {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}},
        {"geometry": None},
        {"properties": "nope"},
        {"stac_extensions": 5},
        {"links": {"rel": "self"}},
        {"assets": ["x"]},
    ],
    ids=["short-ring", "no-geometry", "properties", "extensions", "links", "assets"],
)
def test_a_damaged_local_copy_is_replaced_by_the_incoming_item(
    tmp_path: Path, damage: dict
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    with MatchupCatalogue.create(src) as cat:
        cat.add_event(_event(0, [(0, 0)]))
    items, _ = _pulled(src)
    with MatchupCatalogue.create(dst) as cat:
        cat.import_items(items)
    files = item_files(dst)
    victim_id = sorted(files)[0]
    good = files[victim_id].read_bytes()
    broken = {**json.loads(good), **damage}
    files[victim_id].write_text(json.dumps(broken))
    with MatchupCatalogue.open(dst, skip_invalid=True) as cat:
        statuses = cat.import_items(items)
    assert statuses[victim_id] == "updated"
    assert json.loads(files[victim_id].read_bytes()) == json.loads(good)
