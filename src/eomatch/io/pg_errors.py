"""psycopg's errors as the error tree, decided in one place.

Every database call of the synchronous side (``eomatch db``, ``keys``, ``ingest``, ``--push``)
goes through :func:`translated` or :func:`database_error`, so a driver error reaches the user
as one line of the right branch (:class:`~eomatch.errors.ConflictError` for a name taken,
:class:`~eomatch.errors.DatabaseError` for the rest) and never as a traceback. The APIs use
asyncpg, whose errors :mod:`eomatch.service.app` maps to HTTP statuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from eomatch.errors import ConflictError, DatabaseError


def one_line(exc: BaseException) -> str:
    """A database error as one line (the driver's message, without its DETAIL/HINT lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def database_error(
    exc: psycopg.Error, what: str, *, conflict: str | None = None
) -> DatabaseError | ConflictError:
    """The tree error for ``exc``: ``what: <driver's line>``.

    Args:
        exc: the driver's error.
        what: what was being done, as the start of the message (``cannot create API key``).
        conflict: the whole message when ``exc`` is a unique violation (a name already
            taken); None to report that as any other database error.
    """
    if conflict is not None and isinstance(exc, psycopg.errors.UniqueViolation):
        return ConflictError(conflict)
    return DatabaseError(f"{what}: {one_line(exc)}")


@contextmanager
def translated(what: str, *, conflict: str | None = None) -> Iterator[None]:
    """Run the block; a psycopg error in it becomes :func:`database_error` (chain dropped:
    the driver's DETAIL lines may quote row values, and the user needs one line)."""
    try:
        yield
    except psycopg.Error as exc:
        raise database_error(exc, what, conflict=conflict) from None
