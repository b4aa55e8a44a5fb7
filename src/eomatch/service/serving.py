"""How uvicorn serves the APIs behind the gateway: the app factory it loads and its options.

Starlette answers an unhandled exception with a complete 500 and then re-raises it, and
uvicorn reacts to the re-raised exception by closing the connection, without having said
``Connection: close``. nginx has by then put that connection back into its keep-alive pool, and
the next request it sends there fails (measured: after one 500, POST searches through the
gateway got 503). :func:`keep_connection_after_errors` logs such an exception instead of letting
it reach uvicorn once the response is complete, so the connection stays usable.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "APP_FACTORY",
    "GC_THRESHOLDS",
    "KEEPALIVE_S",
    "create_app",
    "keep_connection_after_errors",
    "settle_garbage_collector",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

APP_FACTORY = "eomatch.service.serving:create_app"
"""What uvicorn loads (with ``--factory``)."""
KEEPALIVE_S = 75
"""uvicorn's ``--timeout-keep-alive``: longer than nginx's upstream ``keepalive_timeout``."""

GC_THRESHOLDS = (50_000, 20, 20)
"""The cyclic garbage collector's thresholds in an API process (Python's default: 700, 10, 10)."""

log = logging.getLogger("eomatch.service")


def settle_garbage_collector() -> None:
    """Freeze what start-up made out of the cyclic collector's scans and let it run every
    50 000 new objects instead of every 700.

    A page of 1000 items decodes into ~50 000 dicts and lists that die with the answer; with
    Python's default thresholds the collector ran dozens of times a page, and every few pages
    a full collection walked every object the process holds (modules, models, routes). Once
    frozen, those are never scanned again. Reference counting frees the answers anyway; the
    collector is left with the rare cycles; cyclic garbage (a traceback, say) waits for at
    most 50 000 new objects. Measured at 1M items, 10 clients: the API's CPU per 20-id search
    2.0-2.3 -> 1.7-1.8 ms, per link walk 7.7-7.9 -> 4.8-5.2 ms (docs/service.md, "Scale").
    The thresholds are set on Pythons before 3.14 only, whose collector they were measured
    with (3.14's incremental collector reads them differently); the freeze on every one.
    """
    gc.collect()
    gc.freeze()
    if sys.version_info < (3, 14):
        gc.set_threshold(*GC_THRESHOLDS)


def keep_connection_after_errors(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so an exception raised after its response was fully sent ends there."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        complete = False

        async def tracking_send(message: Message) -> None:
            nonlocal complete
            await send(message)
            if message.get("type") == "http.response.body" and not message.get("more_body"):
                complete = True

        try:
            await app(scope, receive, tracking_send)
        except Exception:
            if not complete:
                raise
            log.exception("error after the response was sent (%s)", scope.get("path", "?"))

    return wrapped


def create_app() -> ASGIApp:
    """The API of ``EOMATCH_API_MODE`` (see :func:`eomatch.service.app.create_app`), wrapped.

    A bad setting ends the process with one line naming the variable (uvicorn prints a
    ``SystemExit`` message as is), not a traceback. The process's garbage collector is then
    settled (:func:`settle_garbage_collector`); an app made in a test process is not.
    """
    from eomatch.errors import ConfigError
    from eomatch.service.app import create_app as create_api

    try:
        app = keep_connection_after_errors(create_api())
    except ConfigError as exc:
        raise SystemExit(f"eomatch API: {exc}") from None
    settle_garbage_collector()
    return app
