"""``eomatch download`` and ``eomatch remove``: source products of catalogued matchups."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from eomatch.cli.common import int_arg, progress_bar, stderr
from eomatch.context import EOMatchContext
from eomatch.core.satellites import UnknownSatelliteError
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.downloads import DownloadJob
from eomatch.workflows.products import (
    Selection,
    credential_store,
    download_products,
    remove_products,
)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _bbox(values: list[str]) -> tuple[float, float, float, float]:
    parts = [v for chunk in values for v in chunk.split(",") if v.strip()]
    try:
        nums = [float(v) for v in parts]
    except ValueError:
        raise EomatchError(f"--bbox needs four numbers W S E N, got {' '.join(values)}") from None
    if len(nums) != 4:
        raise EomatchError(f"--bbox needs four numbers W S E N, got {len(nums)}")
    return (nums[0], nums[1], nums[2], nums[3])


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--path",
        type=Path,
        default=None,
        metavar="DIR",
        help="catalogue root or its catalog.json (default: matchup_catalogue.path)",
    )
    p.add_argument(
        "--collections",
        type=_names,
        default=None,
        metavar="C1,C2",
        help="only events involving these collections",
    )
    p.add_argument(
        "--platforms",
        type=_names,
        default=None,
        metavar="P1,P2",
        help="only events involving these platforms (any alias: S2A, Sentinel-2A, LS9...)",
    )
    p.add_argument(
        "--start-time",
        default=None,
        metavar="T",
        help="ISO 8601; events ending before this are excluded",
    )
    p.add_argument(
        "--stop-time",
        default=None,
        metavar="T",
        help="ISO 8601; events starting after this are excluded",
    )
    p.add_argument(
        "--bbox",
        nargs="+",
        default=None,
        metavar="W S E N",
        help="events intersecting this box (W,S,E,N or four numbers; W > E wraps)",
    )
    p.add_argument(
        "--filter", default=None, metavar="CQL2", help="CQL2 text over matchup item properties"
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip unreadable or hand-broken item files (logged) instead of stopping",
    )


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add both subcommands to the top-level parser."""
    d = sub.add_parser(
        "download",
        parents=[parent],
        help="download the source products of matching events into the catalogue",
        description=(
            "Download every distinct product of the matching events once (concurrently, "
            "resumably, checksum-verified) into {catalogue}/data/ (or --products-root) and "
            "register it as the item's 'data' asset. Files already on disk are registered "
            "in place without downloading. http(s):// and s3:// hrefs; credentials per host "
            "from credentials: in --config, EOMATCH_TOKEN_<HOST> / EOMATCH_USERNAME_<HOST> + "
            "EOMATCH_PASSWORD_<HOST>, or ~/.netrc (docs/catalogue.md#credentials)."
        ),
    )
    _filters(d)
    d.add_argument(
        "--products-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="put files here in the {platform}/{collection}/YYYY/MM/DD/ layout, e.g. a shared "
        "drive (default: downloads.products_root, else {catalogue}/data)",
    )
    d.add_argument(
        "--concurrency",
        type=int_arg(1, 64, "a number of downloads"),
        default=4,
        help="parallel downloads",
    )
    d.set_defaults(handler=run_download)
    r = sub.add_parser(
        "remove",
        parents=[parent],
        help="remove downloaded products (files and 'data' assets) of matching events",
        description=(
            "Unregister the local 'data' asset of the matching events' products and delete the "
            "files. Only files inside the catalogue's own data/ folder are ever deleted."
        ),
    )
    _filters(r)
    r.add_argument(
        "--keep-files",
        action="store_true",
        help="unregister the assets but leave the files on disk",
    )
    r.set_defaults(handler=run_remove)


def _platforms(names: list[str] | None, ctx: EOMatchContext) -> list[str] | None:
    """``--platforms`` as the names the catalogue writes (any registry alias accepted).

    Raises:
        EomatchError: a name the registry (built-in plus configured satellites) does not know.
    """
    if names is None:
        return None
    registry = ctx.registry()
    out: list[str] = []
    for name in names:
        try:
            sat = registry.get(name)
        except UnknownSatelliteError:
            raise EomatchError(
                f"--platforms: unknown platform {name!r} (see `eomatch satellites`; satellites "
                "of your own go under satellites: in --config)"
            ) from None
        if sat.name not in out:
            out.append(sat.name)
    return out


def _open(
    args: argparse.Namespace, need_config: bool = False
) -> tuple[MatchupCatalogue, Selection, EOMatchContext | None]:
    path = args.path
    ctx: EOMatchContext | None = None
    if path is None or args.platforms is not None or need_config:
        ctx = EOMatchContext(getattr(args, "config", None))
    if path is None:
        assert ctx is not None
        path = ctx.config.matchup_catalogue.path
        if path is None:
            raise EomatchError("no catalogue: give --path or set matchup_catalogue.path")
    sel = Selection(
        collections=args.collections,
        platforms=_platforms(args.platforms, ctx) if ctx is not None else None,
        start_time=args.start_time,
        stop_time=args.stop_time,
        bbox=_bbox(args.bbox) if args.bbox else None,
        filter=args.filter,
    )
    return MatchupCatalogue.open(path, skip_invalid=args.skip_invalid), sel, ctx


def run_download(args: argparse.Namespace) -> int:
    """Download and summarise; exit 1 if any product failed."""
    if args.concurrency < 1:
        raise EomatchError("--concurrency must be >= 1")
    cat, sel, ctx = _open(args, need_config=True)
    assert ctx is not None
    root = args.products_root or ctx.config.downloads.products_root
    try:
        with progress_bar("download", total=1) as bar:
            task = bar.task_ids[0]
            sizes: dict[str, tuple[int, int]] = {}

            def progress(job: DownloadJob, done: int, total: int | None) -> None:
                sizes[job.product_id] = (done, total or done)
                bar.update(
                    task,
                    completed=sum(d for d, _ in sizes.values()),
                    total=max(sum(t for _, t in sizes.values()), 1),
                )

            with credential_store(ctx.config) as creds:
                report = download_products(
                    cat,
                    sel,
                    concurrency=args.concurrency,
                    progress=progress,
                    products_root=root,
                    credentials=creds,
                )
    finally:
        cat.close()
    Console().print(report.summary())
    for r in report.failed:
        stderr.print(f"failed: {r.job.product_id}: {r.reason}")
    return 1 if report.failed else 0


def run_remove(args: argparse.Namespace) -> int:
    """Remove and summarise."""
    cat, sel, _ = _open(args)
    try:
        report = remove_products(cat, sel, delete_files=not args.keep_files)
    finally:
        cat.close()
    Console().print(
        f"unregistered {report.unregistered} product file(s), deleted {report.deleted_files}"
    )
    for path in report.kept_files:
        stderr.print(f"kept (outside the catalogue's data folder): {path}")
    return 0
