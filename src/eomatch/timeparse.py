"""Parsing of user-supplied instants: one rule for every command."""

from __future__ import annotations

from datetime import UTC, date, datetime

from eomatch.errors import EomatchError

TimeLike = datetime | date | str


def parse_time(value: TimeLike, what: str = "time") -> datetime:
    """An aware UTC datetime from ISO 8601 text, a date, or a datetime (naive means UTC).

    Accepts ``2022-05-01``, ``2022-05-01T08:30``, ``2022-05-01 08:30:00``, ``...Z`` and offsets.
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
            raise EomatchError(
                f"{what}: {value!r} is not an ISO 8601 date or time (e.g. 2022-05-01 or "
                "2022-05-01T08:30:00Z)"
            ) from None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)
