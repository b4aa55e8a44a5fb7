from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from catalogue_helpers import (
    T0,
    check_down_links,
    item_files,
    make_event,
    pystac_item_ids,
    validate_tree,
)
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.catalogue_index import INDEX_NAME

HERE = Path(__file__).parent


def _fill(root: Path, n: int = 3) -> list:
    events = [make_event(lon=10.0 * i, when=T0 + timedelta(hours=i)) for i in range(n)]
    with MatchupCatalogue.create(root) as cat:
        for e in events:
            cat.add_event(e)
    return events


def test_corrupt_item_names_the_file_and_skip_invalid(tmp_path):
    root = tmp_path / "cat"
    events = _fill(root)
    with MatchupCatalogue.open(root) as cat:
        bad = cat.item_path(events[1].matchups[0].id)
    bad.write_text('{"type": "Feature", "id": "trunc')
    (root / INDEX_NAME).unlink()
    with pytest.raises(EomatchError, match=re.escape(bad.name)):
        MatchupCatalogue.open(root)
    with MatchupCatalogue.open(root, skip_invalid=True) as cat:
        assert cat.counts() == {"event": 3, "matchup": 5, "product": 12}
        assert len(cat.get_events()) == 3


def test_corrupt_item_found_by_query_names_the_file(tmp_path):
    root = tmp_path / "cat"
    events = _fill(root, 1)
    with MatchupCatalogue.open(root) as cat:
        path = cat.item_path(events[0].id)
        with path.open("r+") as fh:  # in-place edit: directory mtime unchanged
            fh.write("garbage!")
        with pytest.raises(EomatchError, match=re.escape(path.name)):
            cat.get_events()


def test_stale_index_is_rebuilt(tmp_path):
    root = tmp_path / "cat"
    events = _fill(root)
    (root / INDEX_NAME).unlink()
    with MatchupCatalogue.open(root) as cat:
        assert cat.counts() == {"event": 3, "matchup": 6, "product": 12}
        path = cat.item_path(events[0].matchups[0].id)
    # hand edit saved the way editors do (new file renamed over the old one)
    item = json.loads(path.read_text())
    item["properties"]["matchup:time_diff_abs"] = 5000.0
    tmp = path.with_name("edit.tmp")
    tmp.write_text(json.dumps(item))
    os.replace(tmp, path)
    with MatchupCatalogue.open(root) as cat:
        got = cat.get_events(filter='"matchup:time_diff_abs" > 4000')
        assert [e.id for e in got] == [events[0].id]
    # a hand-deleted item is noticed too
    os.unlink(path)
    with MatchupCatalogue.open(root) as cat:
        assert cat.counts()["matchup"] == 5


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*.json")
        if not p.name.startswith(".")
    }


def _kill_after(monkeypatch, limit: int) -> None:
    """Make ``os.replace`` succeed ``limit`` times, then die like a killed process."""
    real_replace = os.replace
    calls = 0

    def dying_replace(src, dst):
        nonlocal calls
        calls += 1
        if calls > limit:
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)


def test_kill_at_every_replace_leaves_valid_catalogue(tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    _fill(ref, 2)
    expected = _snapshot(ref)
    events = [make_event(lon=10.0 * i, when=T0 + timedelta(hours=i)) for i in range(2)]
    real_replace = os.replace
    n = 0
    while True:
        root = tmp_path / f"c{n}"
        MatchupCatalogue.create(root).close()
        _kill_after(monkeypatch, n)
        finished = True
        try:
            with MatchupCatalogue.open(root) as cat:
                for e in events:
                    cat.add_event(e)
        except KeyboardInterrupt:
            finished = False
        monkeypatch.setattr(os, "replace", real_replace)
        check_down_links(root)  # before any repair: no child/item link dangles
        with MatchupCatalogue.open(root) as cat:
            validate_tree(root)  # complete, valid files whose links all resolve; day catalogs
            assert pystac_item_ids(root) == sorted(item_files(root))
            for e in events:
                cat.add_event(e)
            assert cat.counts() == {"event": 2, "matchup": 4, "product": 8}
        validate_tree(root)
        assert _snapshot(root) == expected
        assert not list(root.rglob(".*.tmp"))
        if finished:
            break
        n += 1
    assert n > 10


def test_kill_at_every_file_operation_of_a_remove(tmp_path, monkeypatch):
    events = [
        make_event(lon=0.0, when=T0),
        make_event(lon=10.0, when=T0 + timedelta(hours=1)),  # same day: its catalogs shrink
        make_event(lon=20.0, when=T0 + timedelta(days=1)),  # alone on its day: catalogs go
    ]
    ref = tmp_path / "ref"
    with MatchupCatalogue.create(ref) as cat:
        cat.add_event(events[0])
    expected = _snapshot(ref)
    real = {"replace": os.replace, "unlink": os.unlink, "rmdir": os.rmdir}
    n = 0
    while True:
        root = tmp_path / f"c{n}"
        with MatchupCatalogue.create(root) as cat:
            for e in events:
                cat.add_event(e)
        calls = 0

        def dying(name, limit=n):
            def op(*args, **kwargs):
                nonlocal calls
                calls += 1
                if calls > limit:
                    raise KeyboardInterrupt("killed")
                return real[name](*args, **kwargs)

            return op

        for name in real:
            monkeypatch.setattr(os, name, dying(name))
        finished = True
        try:
            with MatchupCatalogue.open(root) as cat:
                cat.remove_event(events[1].id)
                cat.remove_event(events[2].id)
        except KeyboardInterrupt:
            finished = False
        for name, fn in real.items():
            monkeypatch.setattr(os, name, fn)
        check_down_links(root)
        with MatchupCatalogue.open(root) as cat:
            validate_tree(root)
            assert pystac_item_ids(root) == sorted(item_files(root))
            for e in events[1:]:
                if cat._index.get(e.id) is not None:
                    cat.remove_event(e.id)
            assert cat.counts() == {"event": 1, "matchup": 2, "product": 4}
        validate_tree(root)
        assert _snapshot(root) == expected
        if finished:
            break
        n += 1
    assert n > 10


def test_kill_inside_batch_then_open_validates(tmp_path, monkeypatch):
    root = tmp_path / "cat"
    MatchupCatalogue.create(root).close()
    events = [make_event(lon=5.0 * i, when=T0 + timedelta(days=i)) for i in range(6)]
    real_replace = os.replace
    _kill_after(monkeypatch, 20)

    def bulk() -> None:
        with MatchupCatalogue.open(root) as cat, cat.batch():
            for e in events:
                cat.add_event(e)

    with pytest.raises(KeyboardInterrupt):
        bulk()
    monkeypatch.setattr(os, "replace", real_replace)
    check_down_links(root)
    with MatchupCatalogue.open(root) as cat:
        validate_tree(root)  # collections and day catalogs repaired from the items that made it
        assert pystac_item_ids(root) == sorted(item_files(root))
        with cat.batch():
            for e in events:
                cat.add_event(e)
        assert cat.counts() == {"event": 6, "matchup": 12, "product": 24}
    validate_tree(root)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_kill_at_every_replace_of_a_threaded_batch(tmp_path, monkeypatch, workers):
    """Writer threads keep the serial order's guarantees: after a kill at any replace, no link
    dangles, the catalogue opens valid, and re-running the batch gives the reference bytes."""
    events = [
        make_event(lon=0.0, when=T0),
        make_event(lon=10.0, when=T0 + timedelta(hours=1)),
        make_event(lon=0.0, when=T0, n_matchups=3),  # same event again, one more matchup
        make_event(lon=20.0, when=T0 + timedelta(days=1)),
    ]
    ref = tmp_path / "ref"
    with MatchupCatalogue.create(ref) as cat:
        for e in events:
            cat.add_event(e)
    expected = _snapshot(ref)
    real_replace = os.replace
    n = 0
    while True:
        root = tmp_path / f"c{n}"
        MatchupCatalogue.create(root).close()
        _kill_after(monkeypatch, n)
        finished = True
        try:
            with MatchupCatalogue.open(root) as cat, cat.batch(workers=workers):
                for e in events:
                    cat.add_event(e)
        except KeyboardInterrupt:
            finished = False
        monkeypatch.setattr(os, "replace", real_replace)
        check_down_links(root)
        with MatchupCatalogue.open(root) as cat:
            validate_tree(root)
            assert pystac_item_ids(root) == sorted(item_files(root))
            with cat.batch(workers=workers):
                for e in events:
                    cat.add_event(e)
            assert cat.counts() == {"event": 3, "matchup": 7, "product": 14}
        validate_tree(root)
        assert _snapshot(root) == expected
        assert not list(root.rglob(".*.tmp"))
        if finished:
            break
        n += 1
    assert n > 20


_WORKER = textwrap.dedent(
    """
    import contextlib
    import sys
    from datetime import timedelta
    sys.path.insert(0, {tests!r})
    from catalogue_helpers import T0, make_event
    from eomatch.io import catalogue_bulk
    from eomatch.io.catalogue import MatchupCatalogue
    root, offset, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if sys.argv[6:]:
        catalogue_bulk.BulkWriter.PROCESS_AFTER = int(sys.argv[6])
    cat = MatchupCatalogue.open(root)
    with cat.batch() if sys.argv[4] == "batch" else contextlib.nullcontext():
        for i in range(n):
            k = offset + i
            cat.add_event(make_event(lon=float(k % 50), when=T0 + timedelta(minutes=k)))
            if i == int(sys.argv[5]):
                print("signal", flush=True)
    cat.close()
    """
)


def _worker(
    root: Path,
    offset: int,
    n: int,
    batch: bool = False,
    signal_at: int = -1,
    process_after: int | None = None,
) -> subprocess.Popen[bytes]:
    """Add events ``offset..offset+n`` (in a batch); print a line after event ``signal_at``;
    the batch's helper process starts after ``process_after`` events."""
    code = _WORKER.format(tests=str(HERE))
    args = [sys.executable, "-c", code, str(root), str(offset), str(n)]
    args += ["batch" if batch else "serial", str(signal_at)]
    args += [] if process_after is None else [str(process_after)]
    return subprocess.Popen(args, stdout=subprocess.PIPE if signal_at >= 0 else None)


def test_concurrent_writers_are_serialised(tmp_path):
    root = tmp_path / "cat"
    MatchupCatalogue.create(root).close()
    procs = [_worker(root, 0, 30), _worker(root, 10, 30)]  # 20 events in common
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with MatchupCatalogue.open(root) as cat:
        assert cat.counts() == {"event": 40, "matchup": 80, "product": 160}
        assert len(cat.get_events()) == 40
    validate_tree(root)


@pytest.mark.slow
def test_kill_9_subprocess_then_rerun(tmp_path):
    root = tmp_path / "cat"
    MatchupCatalogue.create(root).close()
    for delay in (0.4, 0.8, 1.2):
        p = _worker(root, 0, 200)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        check_down_links(root)
        with MatchupCatalogue.open(root):
            validate_tree(root)
    assert _worker(root, 0, 200).wait(timeout=300) == 0
    with MatchupCatalogue.open(root) as cat:
        assert cat.counts() == {"event": 200, "matchup": 400, "product": 800}
    validate_tree(root)


@pytest.mark.slow
@pytest.mark.parametrize("process_after", [1000, 3], ids=["caller", "helper"])
def test_kill_9_during_a_batch_then_rerun_gives_the_serial_files(tmp_path, process_after):
    """SIGKILL while the bulk writer writes (itself, or through its helper process, which
    finishes the files it was given, holding the lock): the catalogue opens valid every time,
    and the re-run completes it to exactly the files of one-by-one adds."""
    ref = tmp_path / "ref"
    with MatchupCatalogue.create(ref) as cat:
        for k in range(60):
            cat.add_event(make_event(lon=float(k % 50), when=T0 + timedelta(minutes=k)))
    root = tmp_path / "cat"
    MatchupCatalogue.create(root).close()
    before, partial = 0, False
    for at in (5, 20, 40):
        p = _worker(root, 0, 60, batch=True, signal_at=at, process_after=process_after)
        assert p.stdout is not None
        assert p.stdout.readline() == b"signal\n"
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        check_down_links(root)
        with MatchupCatalogue.open(root) as cat:
            validate_tree(root)
            assert pystac_item_ids(root) == sorted(item_files(root))
            # killed mid-batch; what was written is kept (what the caller had not yet handed
            # to the helper process is lost, and written by the re-run). An event the last kill
            # left without some matchups gains them on the slow path, whose write starts the
            # helper process whatever PROCESS_AFTER: from then on this run's files may all be
            # still in the caller's pipe buffer, so only what was there before is certain
            # (the test assumed otherwise and failed under load: 21 <= 8)
            counts = cat.counts()
            assert (before if partial else min(at + 1, process_after)) <= counts["event"] < 60
            assert counts["event"] >= before
            before, partial = counts["event"], counts["matchup"] < 2 * counts["event"]
    assert _worker(root, 0, 60, batch=True, process_after=process_after).wait(timeout=300) == 0
    assert _snapshot(root) == _snapshot(ref)
    assert not list(root.rglob(".*.tmp"))
