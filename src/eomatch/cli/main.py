"""The ``eomatch`` command: one parser, one subcommand per module, imported only when chosen.

The console scripts (``eomatch-find``, ...) live here too, so no subcommand module imports this
one (no import cycle, see docs/design/layers.md).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from eomatch._version import __version__
from eomatch.errors import EomatchError, MissingExtraError, exit_code
from eomatch.gc_tuning import COMMAND_GC_THRESHOLDS, settle_garbage_collector

log = logging.getLogger("eomatch")

COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("add-asset", "assets", "register an analysis file as a dated version on a catalogue item"),
    ("assets", "assets", "inspect the analysis assets of catalogue items"),
    ("config", "config", "write, validate or show configuration files"),
    ("crossovers", "crossovers", "find crossover events between satellites (offline, from TLEs)"),
    (
        "db",
        "db",
        "the central database: a local cluster, or pgSTAC migrations on a server",
    ),
    ("keys", "db", "API keys for writes to the internal API"),
    (
        "backup",
        "backup",
        "back up, verify and restore the central database (pg_dump; local folder or S3)",
    ),
    (
        "find",
        "find",
        "find matchups for a run configuration and add them to a STAC catalogue",
    ),
    (
        "ingest",
        "ingest",
        "push a local catalogue's collections and items into the central database",
    ),
    (
        "harvest",
        "harvest",
        "copy provider catalogues (STAC API, static STAC, OpenSearch) into the database",
    ),
    (
        "jobs",
        "jobs",
        "submit and follow ingestion jobs (the durable queue in the central database)",
    ),
    ("worker", "jobs", "run queued jobs (and the configured schedules) until stopped"),
    (
        "history",
        "history",
        "the catalogue's recorded transactions: list, show, purge",
    ),
    (
        "rollback",
        "history",
        "undo a transaction, or return to an earlier state, as a new transaction",
    ),
    (
        "export",
        "export",
        "write the central catalogue, now or as it was at a point of its history, to a folder",
    ),
    ("download", "products", "download the source products of matching events into the catalogue"),
    (
        "remove",
        "products",
        "remove downloaded products (files and 'data' assets) of matching events",
    ),
    (
        "dataset",
        "dataset",
        "write a matchup's collocated product pixels to a NetCDF or Zarr file",
    ),
    (
        "query",
        "query",
        "pull matchups with their events and products from a STAC API into a catalogue",
    ),
    (
        "processors",
        "processors",
        "list the processor plug-ins that turn non-STAC files into STAC items",
    ),
    (
        "process",
        "processors",
        "describe a non-STAC file with a processor and add its items to the database",
    ),
    ("satellites", "satellites", "list known satellites, their aliases, sensors and TLE coverage"),
    (
        "serve",
        "serve",
        "run the whole catalogue service locally (database, APIs, gateway, browser)",
    ),
    ("tle", "tle", "update and inspect the element sets (TLEs) used for propagation"),
)
"""(command, module under ``eomatch.cli`` that registers it, its one-line help), in help order.

The help is repeated here so that ``eomatch --help`` and the choice of a subcommand need no
subcommand module (they pull in numpy, pydantic, the catalogue...); a test checks that it
matches what the modules register."""


def global_parent(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """Options accepted before and after the subcommand.

    The subcommands' copies use ``SUPPRESS`` defaults so that ``eomatch -v find`` keeps the
    value given before the subcommand instead of resetting it.
    """
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options")
    g.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress_defaults else False,
        help="debug logging",
    )
    g.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS if suppress_defaults else None,
        metavar="FILE",
        help="YAML configuration layered over ~/.config/eomatch/config.yaml",
    )
    return p


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser (the full one, as docs and tests render it, when ``only`` is None).

    With ``only`` a module name of :data:`COMMANDS` (or ``""`` for none), only that module is
    imported and registers its subcommands; the others are listed by name and help alone, so
    the top-level help, choices and errors are the same.
    """
    parser = _Parser(
        prog="eomatch",
        description="Find, catalogue and serve Earth-observation satellite matchups.",
        parents=[global_parent()],
    )
    parent = global_parent(suppress_defaults=True)
    parser.add_argument("--version", action="version", version=f"eomatch {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    registered: set[str] = set()
    for command, module, text in COMMANDS:
        if only is not None and module != only:
            sub.add_parser(command, help=text, add_help=False)  # a name in the list, no more
        elif module not in registered:
            registered.add(module)
            importlib.import_module(f"eomatch.cli.{module}").register(sub, parent)
    return parser


def _chosen_module(argv: Sequence[str] | None) -> str:
    """The module of the subcommand named in ``argv``, found without importing any.

    Raises:
        SystemExit: what the full parser does for ``--help``, ``--version`` and a missing or
            unknown subcommand (same output).
    """
    args, _ = build_parser(only="").parse_known_args(argv)
    return next(module for command, module, _ in COMMANDS if command == args.command)


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run the command line; returns the process exit code.

    ``own_process``: this is the process's entry point (the console scripts), so the garbage
    collector is settled once the subcommand is loaded (:mod:`eomatch.gc_tuning`); a call from
    a test or another program leaves its collector alone.
    """
    try:
        args = build_parser(only=_chosen_module(argv)).parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else 2
    except MissingExtraError as exc:  # the subcommand's module needs a pip extra
        command = build_parser(only="").parse_known_args(argv)[0].command
        print(f"eomatch: error: {exc.for_feature(f'eomatch {command}')}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # retries are reported by our own one-line error, not per attempt
        for noisy in ("urllib3", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    handler: Callable[[argparse.Namespace], int] = args.handler
    if own_process:
        settle_garbage_collector(COMMAND_GC_THRESHOLDS)
    try:
        return handler(args)
    except EomatchError as exc:  # one line; the branch decides the code (errors.EXIT_CODES)
        print(f"eomatch: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("eomatch: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one top-level handler: traceback only with -v
        log.debug("unexpected failure", exc_info=True)
        from eomatch.cli.common import stderr  # loaded by every subcommand already

        stderr.print(f"eomatch: internal error: {type(exc).__name__}: {exc} (re-run with -v)")
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(own_process=True))


def _script(command: str) -> Callable[[], None]:
    def entry() -> None:
        sys.exit(main([command, *sys.argv[1:]], own_process=True))

    entry.__doc__ = f"``eomatch-{command}``: same code as ``eomatch {command}``."
    return entry


find_script = _script("find")
download_script = _script("download")
remove_script = _script("remove")
add_asset_script = _script("add-asset")
ingest_script = _script("ingest")
query_script = _script("query")
