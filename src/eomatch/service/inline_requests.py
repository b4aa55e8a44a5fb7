"""stac-fastapi's request models parsed on the event loop instead of in a worker thread.

FastAPI runs every synchronous dependency in its thread pool. stac-fastapi's request models
(attrs classes filled from the query string and path: ``bbox``, ``datetime``, ``ids``,
``limit``...) are such dependencies, so every GET search, item and collection request went to
a worker thread and back to convert a few parameters. On this 2-core machine that hop was a
quarter of the API's CPU per search (1M items, one client, alternated: bbox + datetime
2.0-2.3 -> 1.4-1.7 ms a request, 20 ids 2.6-2.7 -> 2.1-2.5 ms). Converting them is CPU work
bounded by the query string's size (``limits.MAX_QUERY_STRING``, 16 KiB, refused before any
route), so it now runs inline; every other
synchronous dependency still goes to the pool. Errors are raised as before (a bad ``bbox`` is
the same 400).
"""

from __future__ import annotations

from typing import Any

import fastapi.dependencies.utils as fastapi_dependencies
from stac_fastapi.types.search import APIRequest
from starlette.concurrency import run_in_threadpool

from eomatch.io.thirdparty import install_module_global

__all__ = ["install", "run_dependency"]


async def run_dependency(func: Any, *args: Any, **kwargs: Any) -> Any:
    """What FastAPI awaits for a synchronous dependency: a stac-fastapi request model is
    built here, anything else in the thread pool as FastAPI does."""
    if isinstance(func, type) and issubclass(func, APIRequest):
        return func(*args, **kwargs)
    return await run_in_threadpool(func, *args, **kwargs)


def install() -> None:
    """Make FastAPI's dependency solver use :func:`run_dependency` (idempotent)."""
    install_module_global(
        fastapi_dependencies, "run_in_threadpool", run_in_threadpool, run_dependency
    )
