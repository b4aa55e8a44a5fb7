"""``eomatch serve``: the database, both STAC APIs, the gateway and STAC Browser, until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from eomatch.cli.common import PORT, PORT_OR_ANY, int_arg, user_name
from eomatch.cli.db import db_options, target_from
from eomatch.config.settings import Settings
from eomatch.errors import ConflictError, EomatchError
from eomatch.service.gateway import (
    DEFAULT_API_ALLOW,
    nginx_value,
    parse_api_allow,
    parse_public_url,
)
from eomatch.service.stack import API_USER, Stack, read_status
from eomatch.workflows.backups import backup_status_line


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``serve``."""
    p = sub.add_parser(
        "serve",
        parents=[parent],
        help="run the whole catalogue service locally (database, APIs, gateway, browser)",
        description=(
            "Start the local database (or use --db-host/PG*), the internal API (/api/, writes "
            "need an API key), the external read-only API (/external/), STAC Browser (/) and "
            "the nginx gateway in front of them; print the URLs and serve until Ctrl-C, then "
            "stop everything this command started."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="gateway listen address")
    p.add_argument("--port", type=PORT, default=8090, help="gateway port")
    p.add_argument(
        "--public-url",
        default=None,
        metavar="URL",
        help="scheme://host[:port] people use; every link the APIs write starts with it "
        "(default: http://HOST:PORT of the gateway; set it behind another proxy or with "
        "--host 0.0.0.0)",
    )
    p.add_argument(
        "--api-allow",
        default=",".join(DEFAULT_API_ALLOW),
        metavar="CIDR[,CIDR...]",
        help="client networks allowed on the internal API (/api/); others get 403 "
        "(default: loopback and the private ranges)",
    )
    p.add_argument(
        "--api-user",
        type=user_name,
        default=API_USER,
        metavar="USER",
        help="when run as root: the unprivileged system user the APIs run as (created if missing)",
    )
    p.add_argument(
        "--internal-port", type=PORT_OR_ANY, default=0, help="internal API port (0: any)"
    )
    p.add_argument(
        "--external-port", type=PORT_OR_ANY, default=0, help="external API port (0: any)"
    )
    p.add_argument(
        "--run-dir", type=Path, default=None, metavar="DIR", help="logs, pid and config files"
    )
    p.add_argument(
        "--no-browser-build",
        action="store_true",
        help="do not build STAC Browser if it is missing (serve a placeholder page)",
    )
    p.add_argument(
        "--workers",
        type=int_arg(1, 64, "a number of workers"),
        default=1,
        help="API worker processes each (about one per core)",
    )
    p.add_argument(
        "--instances",
        type=int_arg(1, 16, "a number of instances"),
        default=1,
        help="supervised API processes each, on their own ports behind the gateway (a dead "
        "one is left out by nginx and restarted); with --internal-port/--external-port P "
        "they take P, P+1, ...",
    )
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="do not start the job worker (run `eomatch worker` elsewhere, or no jobs at all)",
    )
    p.add_argument("--status", action="store_true", help="report a running serve and exit")
    db_options(p)
    p.set_defaults(handler=run_serve)


def interruptible() -> None:
    """Let Ctrl-C (SIGINT) stop ``serve`` from the start, not only once it waits.

    A process started in the background by a shell script inherits SIGINT ignored;
    ``Stack.wait`` installs its own handler, but a Ctrl-C during start-up was lost and serve
    then never stopped (the clean-clone CI, started that way, hung in the stop test when the
    test's Ctrl-C came before the stack waited). In the main thread, an ignored SIGINT gets
    Python's default handler back: KeyboardInterrupt, as in a terminal.
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _jobs_installed() -> bool:
    """Whether the jobs extra is here (without it, serve runs without a worker)."""
    import importlib.util

    return importlib.util.find_spec("procrastinate") is not None


def _run_dir(args: argparse.Namespace) -> Path:
    run_dir: Path = args.run_dir or Settings().data_dir / "run"
    return run_dir.expanduser().absolute()


def run_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C/SIGTERM, restarting any part that dies."""
    run_dir = _run_dir(args)
    if args.status:
        state = read_status(run_dir)
        if state is None:
            Console().print(f"not running (run dir {run_dir})")
            return 3
        console = Console()
        console.print(json.dumps(state, indent=2))
        for problem in state["problems"]:
            console.print(f"problem: {problem}")
        healthy = all(v == "up" for v in state["checks"].values()) and not state["problems"]
        return 0 if healthy else 1
    # the numbers were checked by argparse (cli.common); what nginx's configuration will hold
    # is checked here, before anything starts (it used to fail after the database and APIs)
    nginx_value("--host", args.host)
    nginx_value("--run-dir", run_dir)
    try:
        api_allow = parse_api_allow(args.api_allow)
    except ValueError as exc:
        raise EomatchError(f"--api-allow: {exc}") from None
    if args.public_url is not None:
        try:
            parse_public_url(args.public_url.rstrip("/"))
        except ValueError as exc:
            raise EomatchError(f"--public-url: {exc}") from None
    if read_status(run_dir) is not None:
        raise ConflictError(f"already serving from {run_dir} (see `eomatch serve --status`)")
    console = Console()
    stack = Stack(
        target=target_from(args),
        run_dir=run_dir,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        internal_port=args.internal_port,
        external_port=args.external_port,
        build_browser=not args.no_browser_build,
        workers=args.workers,
        instances=args.instances,
        api_allow=api_allow,
        api_user=args.api_user,
        job_worker=not args.no_worker and _jobs_installed(),
        report=lambda msg: console.print(msg, markup=False, highlight=False),
    )
    console.print("starting the database, the APIs and the gateway…")
    interruptible()
    reason = "stopped"
    try:
        stack.start()
        for name, url in stack.urls().items():
            console.print(f"  {name:<13} {url}")
        console.print(
            "writes to the internal API need a key: `eomatch keys create NAME`. Ctrl-C stops."
        )
        console.print(f"  /api/ answers clients from {', '.join(api_allow)} only")
        if stack.job_worker:
            console.print("  one job worker runs queued jobs (`eomatch jobs list`)")
        if stack.identity is not None:
            console.print(f"  the APIs run as user {stack.identity.user!r}")
        if stack.instances > 1:
            console.print(f"  {stack.instances} instances of each API behind the gateway")
        if stack.read_hosts:
            console.print(f"  the APIs read from the replica at {stack.read_hosts}")
        console.print(f"  {backup_status_line()}", markup=False, highlight=False)
        reason = stack.wait()
    except KeyboardInterrupt:
        pass  # Ctrl-C before the stack was waiting: stop what started, as after
    finally:
        # a second Ctrl-C must not leave half the stack running
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            stack.stop()
        finally:
            signal.signal(signal.SIGINT, previous)
    console.print(f"eomatch serve: {reason}")
    return 0
