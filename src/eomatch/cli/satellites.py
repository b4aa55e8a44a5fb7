"""``eomatch satellites``: the registry and each satellite's TLE coverage."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from eomatch.cli.common import load_run_config
from eomatch.errors import EomatchError
from eomatch.wiring import build_registry, build_store


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add the subcommand to the top-level parser."""
    p = sub.add_parser(
        "satellites",
        parents=[parent],
        help="list known satellites, their aliases, sensors and TLE coverage",
        description="List the satellite registry (built-in plus config) with TLE coverage.",
    )
    p.add_argument(
        "--tle-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="extra directory of TLE files (repeatable)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print one row per satellite."""
    config = load_run_config(args)
    registry = build_registry(config)
    store = build_store(config, args.tle_dir)
    t = Table(title="satellites")
    for col in ("short", "name", "NORAD", "aliases", "sensors (swath km)", "TLE coverage (UTC)"):
        t.add_column(col)
    for sat in sorted(registry, key=lambda s: s.short_name):
        try:
            first, last = store.archive(sat).coverage
            cov = f"{first:%Y-%m-%d} .. {last:%Y-%m-%d}"
        except EomatchError:
            cov = "none"
        sensors = ", ".join(f"{s.name} ({s.swath_km:g})" for s in sat.sensors)
        t.add_row(sat.short_name, sat.name, str(sat.norad_id), ", ".join(sat.aliases), sensors, cov)
    Console().print(t)
    return 0
