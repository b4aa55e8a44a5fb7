"""``eomatch crossovers``: find where and when two satellites see the same place."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from eomatch.cli.common import load_run_config, progress_bar, stderr
from eomatch.errors import EomatchError
from eomatch.extras import require_extra
from eomatch.io.crossover_output import OutputFormat, write_events
from eomatch.workflows.crossovers import find_crossovers


def _platforms(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if len(names) < 2:
        raise argparse.ArgumentTypeError("give at least two comma-separated names, e.g. S2A,LS9")
    return names


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add the subcommand to the top-level parser."""
    p = sub.add_parser(
        "crossovers",
        parents=[parent],
        help="find crossover events between satellites (offline, from TLEs)",
        description=(
            "Find times when satellites' sub-satellite points come within D km of each other "
            "within T seconds. Every pair of --platforms is searched; A < B by short name."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--platforms",
        type=_platforms,
        required=True,
        metavar="A,B[,C...]",
        help="satellite names (any alias: S2A, Sentinel-2A, LS9, landsat-9, ...)",
    )
    p.add_argument("--start", required=True, help="window start, ISO 8601 UTC (2022-05-01)")
    p.add_argument("--end", required=True, help="window end (exclusive), ISO 8601 UTC")
    p.add_argument(
        "--max-distance-km",
        type=float,
        default=100.0,
        metavar="D",
        help="largest distance between sub-satellite points",
    )
    p.add_argument(
        "--max-time-diff-s",
        type=int,
        default=1800,
        metavar="T",
        help="largest time difference between the satellites",
    )
    p.add_argument(
        "--max-event-duration-s",
        type=int,
        default=900,
        help="split longer runs (tandem phases) into events of at most this length",
    )
    p.add_argument(
        "--bbox",
        type=float,
        nargs=4,
        metavar=("W", "S", "E", "N"),
        default=None,
        help="keep events whose closest approach lies inside; W > E crosses 180°",
    )
    p.add_argument(
        "--daylight-only",
        action="store_true",
        help="keep events with the Sun above the horizon at the closest approach",
    )
    p.add_argument(
        "--max-lat-abs",
        type=float,
        default=None,
        metavar="DEG",
        help="drop events poleward of this latitude",
    )
    p.add_argument(
        "--format",
        choices=[f.value for f in OutputFormat],
        default=OutputFormat.table.value,
        help="output format",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        metavar="FILE",
        help="write here (atomically) instead of stdout",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PNG",
        help="also draw a map of the events and their ground tracks",
    )
    p.add_argument(
        "--tle-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="extra directory of TLE files (repeatable)",
    )
    p.add_argument(
        "--allow-stale",
        action="store_true",
        help="allow windows more than 3 days outside the TLE coverage",
    )
    p.add_argument("--coarse-step-s", type=int, default=30, help=argparse.SUPPRESS)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Search, then write records (and the map) only once everything succeeded."""
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise EomatchError(f"--plot must name a .png file, got {args.plot}")
    if args.plot is not None:  # before the search, not after it
        require_extra("plot", "eomatch crossovers --plot")
    for target in (args.output, args.plot):
        if target is not None and target.exists() and target.is_dir():
            raise EomatchError(f"{target} is a directory")
    config = load_run_config(args)
    with progress_bar("crossovers", total=1) as bar:
        task = bar.task_ids[0]

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        events = find_crossovers(
            args.platforms,
            args.start,
            args.end,
            max_distance_km=args.max_distance_km,
            max_time_diff_s=args.max_time_diff_s,
            bbox=tuple(args.bbox) if args.bbox else None,
            daylight_only=args.daylight_only,
            max_lat_abs=args.max_lat_abs,
            max_event_duration_s=args.max_event_duration_s,
            coarse_step_s=args.coarse_step_s,
            allow_stale=args.allow_stale,
            tle_dirs=args.tle_dir,
            config=config,
            progress=progress,
        )
    write_events(events, OutputFormat(args.format), args.output)
    if args.plot is not None:
        from eomatch.viz.maps import plot_crossovers

        names = sorted({n for e in events for n in (e.platform_a, e.platform_b)} or args.platforms)
        title = (
            f"{' × '.join(names)} crossovers, {args.start} to {args.end} "  # noqa: RUF001
            f"(D = {args.max_distance_km:g} km, T = {args.max_time_diff_s} s)"
        )
        plot_crossovers(
            events,
            args.plot,
            config=config,
            tle_dirs=args.tle_dir,
            title=title,
            bbox=tuple(args.bbox) if args.bbox else None,
        )
    if args.output is not None or args.plot is not None:
        written = [str(p) for p in (args.output, args.plot) if p is not None]
        stderr.print(f"{len(events)} event(s); wrote {', '.join(written)}")
    sys.stdout.flush()
    return 0
