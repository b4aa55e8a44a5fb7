"""How uvicorn serves the APIs behind the gateway: the app factory it loads and its options.

Starlette answers an unhandled exception with a complete 500 and then re-raises it, and
uvicorn reacts to the re-raised exception by closing the connection, without having said
``Connection: close``. nginx has by then put that connection back into its keep-alive pool, and
the next request it sends there fails (measured: after one 500, POST searches through the
gateway got 503). :func:`keep_connection_after_errors` logs such an exception instead of letting
it reach uvicorn once the response is complete, so the connection stays usable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from eomatch.gc_tuning import settle_garbage_collector

__all__ = ["APP_FACTORY", "KEEPALIVE_S", "create_app", "keep_connection_after_errors"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

APP_FACTORY = "eomatch.service.serving:create_app"
"""What uvicorn loads (with ``--factory``)."""
KEEPALIVE_S = 75
"""uvicorn's ``--timeout-keep-alive``: longer than nginx's upstream ``keepalive_timeout``."""

log = logging.getLogger("eomatch.service")


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
    settled (:func:`eomatch.gc_tuning.settle_garbage_collector`); an app made in a test
    process is not.
    """
    from eomatch.errors import ConfigError
    from eomatch.service.app import create_app as create_api

    try:
        app = keep_connection_after_errors(create_api())
    except ConfigError as exc:
        raise SystemExit(f"eomatch API: {exc}") from None
    settle_garbage_collector()
    return app
