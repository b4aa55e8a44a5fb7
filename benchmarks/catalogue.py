"""Catalogue speed: bulk load, open + filtered get_events, one more event (figures, no asserts).

Full scale: 100 000 events / 200 000 matchups / 400 000 products. ``--scale 0.1`` runs a tenth.
Targets (issue #3 §7): bulk write < 60 s, open + filtered get_events < 1 s, one more event in
O(1) (compared with the same add on a 1 000-event catalogue). The bulk write is also compared
with what the file system alone needs for the same files, measured in the same run: the same
number of files of the same total size written the same way (temp file + rename, into the same
folders), with no JSON built: the floor no catalogue writer on this disk can beat. ``--dir``
picks the file system (default: the temp folder; ``/dev/shm`` is tmpfs).

One more event is timed twice: on a new day (its items, the new day catalogs, and the
collections gaining a ``child`` link) and on a day already in the catalogue (its items and the
catalogs of that day only); both catalogues have the same number of events per day, so a ratio
near 1 means the add does not grow with the catalogue.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shapely.geometry import box

from eomatch.core.products import (
    Matchup,
    MatchupEvent,
    Product,
    SensorKey,
    event_id,
    matchup_id,
    pair_id,
)
from eomatch.io.catalogue import MatchupCatalogue

S2 = SensorKey("S2_MSI_L1C", "Sentinel-2A")
L9 = SensorKey("LANDSAT_C2L1", "Landsat-9")
PAIR = pair_id([L9, S2])
T0 = datetime(2022, 1, 1, tzinfo=UTC)


def synthetic_event(i: int, when: datetime | None = None) -> MatchupEvent:
    """Event i: 2 matchups of 2 products each, spread over a year and the globe."""
    when = when or T0 + timedelta(seconds=i * 311)
    lon = -170.0 + (i * 7.31) % 340.0
    lat = -70.0 + (i * 3.17) % 140.0
    eid = event_id(PAIR, when, lat, lon)
    mus = []
    for k in range(2):
        prods = []
        for j, sensor in enumerate((L9, S2)):
            start = when + timedelta(seconds=60 * k + 200 * j)
            prods.append(
                Product(
                    id=f"{sensor.platform}_{i:06d}_{k}",
                    sensor=sensor,
                    start=start,
                    end=start + timedelta(seconds=25),
                    geometry=box(lon + 0.1 * j, lat, lon + 1.5, lat + 1.5),
                    assets={"data": {"href": f"https://example.test/{i}/{k}/{j}.zip"}},
                    properties={"eo:cloud_cover": float(i % 100)},
                )
            )
        mus.append(
            Matchup(
                id=matchup_id(PAIR, prods),
                products=tuple(prods),
                geometry=box(lon + 0.1, lat, lon + 1.5, lat + 1.5),
                area_km2=20000.0,
                time_diff_abs_s=float(200 + (i % 7) * 100),
                event_id=eid,
            )
        )
    return MatchupEvent(
        id=eid,
        sensors=(L9, S2),
        start=when,
        end=when + timedelta(seconds=400),
        geometry=box(lon - 1, lat - 1, lon + 2.5, lat + 2.5),
        properties={"distance_km": 10.0},
        matchups=tuple(mus),
    )


def load(root: Path, n: int) -> float:
    events = [synthetic_event(i) for i in range(n)]
    t = time.perf_counter()
    with MatchupCatalogue.create(root) as cat, cat.batch():
        for e in events:
            cat.add_event(e)
    return time.perf_counter() - t


def fs_floor(root: Path, dest: Path) -> tuple[float, int]:
    """Seconds to write the files of ``root`` again into ``dest`` (same folders and sizes, no
    JSON work). Deleting them is left to the caller's final clean-up: on ext4, creating files
    within minutes of deleting many is several times slower (``recently_deleted`` inode scans),
    which would slow whatever runs next."""
    files = [p for p in root.rglob("*.json") if not p.name.startswith(".")]
    sizes = [(p.relative_to(root).as_posix(), p.stat().st_size) for p in files]
    blob = b"x" * max(s for _, s in sizes)
    t = time.perf_counter()
    made: set[str] = set()
    for rel, size in sizes:
        head, _, name = rel.rpartition("/")
        if head not in made:
            os.makedirs(dest / head, exist_ok=True)
            made.add(head)
        path = os.path.join(dest, rel)
        tmp = os.path.join(dest, head, f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.write(fd, blob[:size])
        os.close(fd)
        os.replace(tmp, path)
    return time.perf_counter() - t, len(sizes)


def file_system(path: Path) -> str:
    """Type of the file system holding ``path`` (from /proc/self/mounts)."""
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/self/mounts") as fh:
        for line in fh:
            parts = line.split()
            mount = parts[1]
            if str(path).startswith(mount) and len(mount) > len(best):
                best, kind = mount, parts[2]
    return f"{kind} at {best or '?'}"


def one_more(root: Path, i: int, repeat: int = 5, known_day: bool = False) -> float:
    """Best time of adding one new event (on a new day, or on day 2 of the catalogue)."""
    best = float("inf")
    with MatchupCatalogue.open(root) as cat:
        for r in range(repeat):
            when = T0 + timedelta(days=1, seconds=3600 + 311 * r) if known_day else None
            e = synthetic_event(i + r, when)
            t = time.perf_counter()
            cat.add_event(e)
            best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: tmp)")
    args = parser.parse_args()
    n = max(1000, int(100_000 * args.scale))
    work = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        small = work / "small"
        load(small, 1000)
        t_small = one_more(small, 10_000_000)
        t_small_day = one_more(small, 20_000_000, known_day=True)

        big = work / "big"
        t_load = load(big, n)
        print(f"events={n} matchups={2 * n} products={4 * n}; {file_system(work)}")
        print(f"bulk write (batch)     : {t_load:8.2f} s   ({n / t_load:,.0f} events/s)")
        target = 60.0 * args.scale
        print(f"  target {target:.1f} s at this scale -> ratio {t_load / target:.2f}")
        t_floor, n_files = fs_floor(big, work / "floor")
        print(
            f"  file system alone, same {n_files:,} files: {t_floor:.2f} s"
            f" -> bulk write / floor = {t_load / t_floor:.2f}"
        )

        t = time.perf_counter()
        with MatchupCatalogue.open(big) as cat:
            t_open = time.perf_counter() - t
            t = time.perf_counter()
            got = cat.get_events(
                collections=["S2_MSI_L1C"],
                start_time=T0 + timedelta(days=10),
                stop_time=T0 + timedelta(days=12),
                bbox=[-20.0, 30.0, 40.0, 70.0],
                filter='"matchup:time_diff_abs" < 600',
            )
            t_query = time.perf_counter() - t
            t = time.perf_counter()
            n_all = len(cat.get_events(start_time=T0, stop_time=T0 + timedelta(days=3)))
            t_3days = time.perf_counter() - t
        print(f"open                   : {t_open:8.3f} s")
        print(f"filtered get_events    : {t_query:8.3f} s   ({len(got)} events)")
        print(f"open + filtered query  : {t_open + t_query:8.3f} s   (target < 1 s)")
        print(f"get_events, 3 days     : {t_3days:8.3f} s   ({n_all} events with all items)")

        t_big = one_more(big, 10_000_000)
        t_big_day = one_more(big, 20_000_000, known_day=True)
        print(f"one more event, 1k cat : {t_small * 1e3:8.2f} ms   (new day)")
        ratio = t_big / t_small
        print(f"one more event, {n // 1000}k cat: {t_big * 1e3:8.2f} ms   (ratio {ratio:.2f})")
        print(f"one more event, 1k cat : {t_small_day * 1e3:8.2f} ms   (day already there)")
        ratio = t_big_day / t_small_day
        print(f"one more event, {n // 1000}k cat: {t_big_day * 1e3:8.2f} ms   (ratio {ratio:.2f})")
        t = time.perf_counter()
        with MatchupCatalogue.open(big) as cat:
            cat.rebuild_index()
        print(f"index rebuild from files: {time.perf_counter() - t:8.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
