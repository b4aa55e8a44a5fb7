"""The ``eomatch`` command: one parser, one subcommand per module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from eomatch._version import __version__
from eomatch.cli import (
    assets,
    config,
    crossovers,
    db,
    find,
    ingest,
    products,
    satellites,
    serve,
    tle,
)
from eomatch.cli import query as query_cmd
from eomatch.cli.common import global_parent, stderr
from eomatch.errors import EomatchError

log = logging.getLogger("eomatch")

SUBCOMMANDS = (
    assets,
    config,
    crossovers,
    db,
    find,
    ingest,
    products,
    query_cmd,
    satellites,
    serve,
    tle,
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser (also used to render help in docs and tests)."""
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
    for module in SUBCOMMANDS:
        module.register(sub, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # retries are reported by our own one-line error, not per attempt
        for noisy in ("urllib3", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EomatchError as exc:
        print(f"eomatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eomatch: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one top-level handler: traceback only with -v
        log.debug("unexpected failure", exc_info=True)
        stderr.print(f"eomatch: internal error: {type(exc).__name__}: {exc} (re-run with -v)")
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
