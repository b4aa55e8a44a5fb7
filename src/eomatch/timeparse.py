"""Parsing of user-supplied instants: one rule for every command."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from eomatch.errors import InputError

TimeLike = datetime | date | str

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Instants accepted: [1900, 2200). Satellites (and TLE epochs, 1957-2056) lie well inside,
and the margin keeps every later ``± timedelta`` away from ``datetime``'s year 1 / 9999 edges."""


def _shown(value: object) -> str:
    text = repr(str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def parse_time(value: TimeLike, what: str = "time") -> datetime:
    """An aware UTC datetime from ISO 8601 text, a date, or a datetime (naive means UTC).

    Accepts ``2022-05-01``, ``2022-05-01T08:30``, ``2022-05-01 08:30:00``, ``...Z`` and offsets.

    Raises:
        EomatchError: not ISO 8601, or outside [:data:`EARLIEST`, :data:`LATEST`) (one line).
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(
                f"{what}: {_shown(value)} is not an ISO 8601 date or time (e.g. 2022-05-01 or "
                "2022-05-01T08:30:00Z)"
            ) from None
    try:
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past year 9999 in UTC
        dt = LATEST if dt.year > 2000 else EARLIEST - timedelta(seconds=1)
    if not EARLIEST <= dt < LATEST:
        raise InputError(
            f"{what}: {_shown(value)} is outside the supported years {EARLIEST.year} to "
            f"{LATEST.year - 1}"
        )
    return dt
