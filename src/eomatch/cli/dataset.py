"""``eomatch dataset``: a matchup's collocated product data as a NetCDF or Zarr file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eomatch.cli.common import float_arg
from eomatch.core.collocation import MAX_MARGIN_M, DatasetOptions, GridMode, Resampling
from eomatch.errors import InputError
from eomatch.extras import require_extra
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.workflows.dataset import (
    select_matchups,
    write_matchup_dataset,
    write_matchup_datasets,
)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``dataset`` to the top-level parser."""
    p = sub.add_parser(
        "dataset",
        parents=[parent],
        help="write a matchup's collocated product pixels to a NetCDF or Zarr file",
        description=(
            "Read each product of the matchup where it is (catalogue data/, a shared drive, "
            "remote COGs by range requests), keep the pixels of the collocation region (plus "
            "--margin), and write one group per sensor with CF metadata. With --filter or "
            "--collections instead of an id: one file per matchup in the --output folder. "
            "See docs/matchup-datasets.md."
        ),
    )
    p.add_argument(
        "matchup_id",
        nargs="?",
        default=None,
        metavar="MATCHUP_ID",
        help="the matchup (omit with --filter/--collections)",
    )
    p.add_argument(
        "--catalogue",
        "--path",
        dest="catalogue",
        type=Path,
        required=True,
        metavar="PATH",
        help="catalogue root or its catalog.json",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        required=True,
        metavar="FILE|DIR",
        help="FILE.nc or FILE.zarr for one matchup; a folder for --filter/--collections",
    )
    p.add_argument(
        "--filter", default=None, metavar="CQL2", help="CQL2 text over matchup item properties"
    )
    p.add_argument(
        "--collections",
        type=_names,
        default=None,
        metavar="C1,C2",
        help="matchups of events involving these collections",
    )
    p.add_argument(
        "--margin",
        type=float_arg(0.0, MAX_MARGIN_M, "metres"),
        default=0.0,
        metavar="M",
        help="metres added around the collocation region (default 0)",
    )
    p.add_argument(
        "--grid",
        choices=[g.value for g in GridMode],
        default=GridMode.NATIVE.value,
        help="native (default): each product's own pixels; common: all resampled onto one grid",
    )
    p.add_argument(
        "--target",
        default=None,
        metavar="SENSOR",
        help="with --grid common: the sensor whose grid is used (collection, platform or "
        "collection-platform); default the coarser",
    )
    p.add_argument(
        "--resampling",
        choices=[r.value for r in Resampling],
        default=Resampling.AUTO.value,
        help="auto (default): average when downsampling, nearest at equal size, bilinear when "
        "upsampling",
    )
    p.add_argument(
        "--assets", type=_names, default=None, metavar="K1,K2", help="only these asset keys"
    )
    p.add_argument(
        "--file-format",
        choices=["nc", "zarr"],
        default="nc",
        help="with --filter/--collections: the format of each file (default nc)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--format", choices=["text", "json"], default="text", help="how to print what was written"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the dataset(s); exit 1 if any matchup of a selection failed."""
    many = args.filter is not None or args.collections is not None
    if args.matchup_id is None and not many:
        raise InputError("give a MATCHUP_ID, or --filter/--collections for several matchups")
    if args.matchup_id is not None and many:
        raise InputError("give either a MATCHUP_ID or --filter/--collections, not both")
    if args.target is not None and args.grid != GridMode.COMMON.value:
        raise InputError("--target needs --grid common")
    require_extra("data", "eomatch dataset")
    options = DatasetOptions(
        margin_m=args.margin,
        grid=GridMode(args.grid),
        target=args.target,
        resampling=Resampling(args.resampling),
        assets=tuple(args.assets) if args.assets else None,
    )
    with MatchupCatalogue.open(args.catalogue) as cat:
        if not many:
            out = write_matchup_dataset(
                cat.get_matchup(args.matchup_id), args.output, options, args.overwrite
            )
            _print(args, [(args.matchup_id, out)], [])
            return 0
        matchups = select_matchups(cat, args.collections, args.filter)
    report = write_matchup_datasets(
        matchups, args.output, options, f".{args.file_format}", args.overwrite
    )
    _print(args, report.written, report.failed)
    return 1 if report.failed else 0


def _print(
    args: argparse.Namespace, written: list[tuple[str, Path]], failed: list[tuple[str, str]]
) -> None:
    if args.format == "json":
        doc = {
            "written": [{"matchup": m, "path": str(p)} for m, p in written],
            "failed": [{"matchup": m, "error": e} for m, e in failed],
        }
        print(json.dumps(doc, indent=2))
        return
    for _mid, path in written:  # plain lines: paths and messages are never wrapped
        print(f"wrote {path}")
    for mid, error in failed:
        print(f"failed: {mid}: {error}", file=sys.stderr)
    print(f"{len(written)} dataset(s) written, {len(failed)} failed")
