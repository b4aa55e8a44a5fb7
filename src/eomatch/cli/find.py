"""``eomatch find`` (also ``eomatch-find``): crossovers to a STAC matchup catalogue."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from eomatch.cli.common import progress_bar, stderr
from eomatch.context import EOMatchContext
from eomatch.errors import EomatchError
from eomatch.extras import require_extra
from eomatch.workflows.find import find_and_catalogue


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add the subcommand to the top-level parser."""
    p = sub.add_parser(
        "find",
        parents=[parent],
        help="find matchups for a run configuration and add them to a STAC catalogue",
        description=(
            "Find crossovers of the configured sensors, their products (predicted from the orbit "
            "or from a STAC API) and the overlapping product combinations (matchups), and merge "
            "them into the catalogue on disk. Re-running adds what is new and duplicates nothing."
        ),
    )
    p.add_argument(
        "--path",
        type=Path,
        default=None,
        metavar="DIR",
        help="catalogue root (overrides matchup_catalogue.path)",
    )
    p.add_argument("--start-time", default=None, metavar="T", help="override start_time")
    p.add_argument(
        "--stop-time",
        "--end-time",
        dest="stop_time",
        default=None,
        metavar="T",
        help="override stop_time (--end-time: the same)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PNG",
        help="also draw a map of the matchups: product footprints and collocation regions",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the layered configuration, run, and print a summary."""
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise EomatchError(f"--plot must name a .png file, got {args.plot}")
    if args.plot is not None:  # before the search, not after it
        require_extra("plot", "eomatch find --plot")
    overrides = {
        "matchup_catalogue.path": str(args.path) if args.path else None,
        "start_time": args.start_time,
        "stop_time": args.stop_time,
    }
    ctx = EOMatchContext(getattr(args, "config", None), overrides)
    with progress_bar("find", total=1) as bar:
        task = bar.task_ids[0]

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=max(total, 1))

        summary = find_and_catalogue(ctx, progress=progress)
    out = Console()
    out.print(
        f"{summary.crossovers} crossover(s) → {summary.events} event(s) with "
        f"{summary.matchups} matchup(s) of {summary.products} product(s)\n"
        f"new in the catalogue: {summary.new_events} event(s), {summary.new_matchups} "
        f"matchup(s), {summary.new_products} product(s) "
        f"(already present: {summary.events - summary.new_events} event(s))\n"
        f"catalogue: {summary.catalogue / 'catalog.json'}"
    )
    for w in summary.warnings[:10]:
        stderr.print(f"warning: {w}")
    if len(summary.warnings) > 10:
        stderr.print(f"... and {len(summary.warnings) - 10} more warning(s)")
    if args.plot is not None:
        from eomatch.io.catalogue import MatchupCatalogue
        from eomatch.viz.footprints import plot_matchups

        cfg = ctx.config
        start, end = cfg.window()
        with MatchupCatalogue.open(summary.catalogue) as cat:
            events = cat.get_events(start_time=start, stop_time=end, bbox=cfg.region_bbox())
        sensors = " \N{MULTIPLICATION SIGN} ".join(
            s.label() for s in sorted(cfg.resolved_sensors(ctx.registry()))
        )
        plot_matchups(
            events,
            args.plot,
            title=f"{sensors}: matchups {start:%Y-%m-%d} to {end:%Y-%m-%d}",
            bbox=cfg.region_bbox(),
        )
        out.print(f"map: {args.plot}")
    return 0
