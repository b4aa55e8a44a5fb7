"""``eomatch tle``: element-set management (update from a GP endpoint, coverage)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from eomatch.cli.common import float_arg, load_run_config, progress_bar, stderr
from eomatch.config.settings import Settings
from eomatch.core.satellites import Satellite, SatelliteRegistry, UnknownSatelliteError
from eomatch.core.tle import ElementSet
from eomatch.errors import EomatchError
from eomatch.io.tle_store import TleStore
from eomatch.wiring import build_registry, build_store


def _names(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give one or more comma-separated names, e.g. S2A,LS9")
    return names


def _add_platforms(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--platforms",
        type=_names,
        default=None,
        metavar="A[,B...]",
        help="satellites (any alias: S2A, Sentinel-2A, LS9, ...); default: every satellite "
        "in the registry, built-in plus configured",
    )


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``tle update`` and ``tle info`` to the top-level parser."""
    p = sub.add_parser(
        "tle",
        parents=[parent],
        help="update and inspect the element sets (TLEs) used for propagation",
        description=(
            "Element sets come from the archive shipped with eomatch, from directories you "
            "give (--tle-dir, config tle_dirs, EOMATCH_TLE_DIRS) and from the update cache "
            "that 'eomatch tle update' fills. All are merged by epoch."
        ),
    )
    tsub = p.add_subparsers(dest="tle_command", required=True, metavar="ACTION")

    up = tsub.add_parser(
        "update",
        parents=[parent],
        help="fetch current element sets from CelesTrak into the local cache",
        description=(
            "Fetch the current element set of each satellite from a CelesTrak-style GP "
            "endpoint (one request per satellite) and merge it into the cache directory "
            "(EOMATCH_CACHE_DIR/tle, default ~/.cache/eomatch/tle). Old element sets are kept, "
            "so the cache grows into a history over repeated runs. Every answer is validated "
            "before anything is written; on any error nothing changes."
        ),
    )
    _add_platforms(up)
    up.add_argument(
        "--url",
        default=None,
        help="GP endpoint queried as URL?CATNR=<id>&FORMAT=TLE (default: EOMATCH_GP_URL or "
        "CelesTrak's gp.php)",
    )
    up.add_argument(
        "--timeout",
        type=float_arg(0, None, "a positive number of seconds", above=True),
        default=30.0,
        metavar="S",
        help="seconds allowed to connect and for each read (default: %(default)g)",
    )
    up.set_defaults(handler=run_update)

    info = tsub.add_parser(
        "info",
        parents=[parent],
        help="show where each satellite's element sets come from and what they cover",
        description=(
            "For each satellite list its element-set sources (shipped archive, user files and "
            "directories, update cache) with counts and first/last epoch, and the merged "
            "coverage a search uses. Reads local files only."
        ),
    )
    _add_platforms(info)
    info.add_argument(
        "--tle-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="extra directory of TLE files (repeatable), as for 'eomatch crossovers'",
    )
    info.set_defaults(handler=run_info)


def _select(registry: SatelliteRegistry, names: Sequence[str] | None) -> list[Satellite]:
    if names is None:
        return sorted(registry, key=lambda s: s.short_name)
    try:
        return registry.resolve(names)
    except UnknownSatelliteError as exc:
        raise EomatchError(str(exc.args[0])) from exc


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def run_update(args: argparse.Namespace) -> int:
    """Fetch every requested satellite, then update the cache only if all succeeded."""
    from eomatch.io.celestrak import fetch_gp_tles, update_cache  # httpx: only when fetching

    settings = Settings()
    config = load_run_config(args)
    sats = _select(build_registry(config), args.platforms)
    url = args.url if args.url is not None else settings.gp_url
    by_norad: dict[int, list[Satellite]] = {}
    for sat in sats:
        by_norad.setdefault(sat.norad_id, []).append(sat)
    labels = {n: "/".join(s.short_name for s in group) for n, group in by_norad.items()}
    with progress_bar("fetching TLEs", total=len(by_norad), unit="sat") as bar:
        task = bar.task_ids[0]

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        fetched = fetch_gp_tles(url, list(by_norad), args.timeout, labels=labels, progress=progress)
    cache_dir = settings.tle_cache_dir
    added = update_cache(cache_dir, fetched)

    t = Table(title=f"TLE update from {url}", box=None, pad_edge=False, header_style="bold")
    for col in ("satellite", "NORAD", "new sets", "newest epoch (UTC)"):
        t.add_column(col, no_wrap=True, justify="right" if col == "new sets" else "left")
    for sat in sats:
        newest = max(es.epoch for es in fetched[sat.norad_id])
        t.add_row(sat.short_name, str(sat.norad_id), str(added[sat.norad_id]), _utc(newest))
    Console().print(t)
    total = sum(added.values())
    files = sum(1 for n in added.values() if n)
    stderr.print(f"{total} new element set(s); updated {files} file(s) in {cache_dir}")
    return 0


def _source_kind(source: str, store: TleStore) -> tuple[int, str]:
    """(sort order, label) of an element-set source path."""
    path = Path(source)
    if path.parent == store.archive_dir:
        return 0, f"shipped {path.name}"
    if store.cache_dir is not None and path.parent == store.cache_dir:
        return 2, f"cache {path.name}"
    return 1, f"user {path}"


def run_info(args: argparse.Namespace) -> int:
    """Print one block of rows per satellite: each source, then the merged coverage."""
    config = load_run_config(args)
    sats = _select(build_registry(config), args.platforms)
    store = build_store(config, args.tle_dir)
    t = Table(
        title=f"TLE sources, epochs in UTC (update cache: {store.cache_dir})",
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    t.add_column("satellite", no_wrap=True)
    t.add_column("source", overflow="fold")
    t.add_column("sets", justify="right", no_wrap=True)
    t.add_column("first epoch", no_wrap=True)
    t.add_column("last epoch", no_wrap=True)
    for i, sat in enumerate(sats):
        # The same collection the search uses, before merging, so per-source counts are real.
        sets: list[ElementSet] = store.element_sets(sat)
        names = [sat.short_name, f"({sat.norad_id})"]
        last_row = i == len(sats) - 1
        if not sets:
            t.add_row(names[0], "none: run 'eomatch tle update'", "0", "-", "-")
            t.add_row(names[1])
            if not last_row:
                t.add_row()
            continue
        groups: dict[str, list[float]] = {}
        for es in sets:
            groups.setdefault(es.source, []).append(es.epoch)
        ordered = sorted(groups.items(), key=lambda kv: (_source_kind(kv[0], store), kv[0]))
        rows = [
            (_source_kind(src, store)[1], len(epochs), min(epochs), max(epochs))
            for src, epochs in ordered
        ]
        archive = store.archive(sat)
        rows.append(
            (
                "[bold]merged (searches use)[/bold]",
                len(archive.sets),
                float(archive.epochs[0]),
                float(archive.epochs[-1]),
            )
        )
        for j, (label, count, first, last) in enumerate(rows):
            t.add_row(
                names[j] if j < len(names) else "",
                label,
                str(count),
                _utc(first),
                _utc(last),
            )
        if not last_row:
            t.add_row()
    Console().print(t)
    return 0
