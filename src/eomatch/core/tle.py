"""Two-line element sets: parsing, validation, and nearest-epoch selection.

Parsing works on text so the domain stays free of I/O; callers say where the text came from
(``source``) so that errors can name the file and line.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from sgp4.api import Satrec

from eomatch.errors import CoverageError as CoverageError
from eomatch.errors import InvalidValueError
from eomatch.errors import TleError as TleError

STALE_LIMIT = timedelta(days=3)
"""How far a window may reach beyond the archive's coverage before it is an error."""


@dataclass(frozen=True)
class ElementSet:
    """One TLE: its two lines, where it came from, and its epoch."""

    line1: str
    line2: str
    norad_id: int
    epoch: float
    """Epoch as Unix seconds (UTC)."""
    name: str | None = None
    source: str = "<text>"
    lineno: int = 0
    """1-based line number of line 1 in ``source``."""


_CHECKSUM_CHARS = str.maketrans(
    {"-": "1", **{c: None for c in map(chr, range(128)) if not c.isdigit() and c != "-"}}
)


def _checksum(line: str) -> int:
    """Modulo-10 sum of the digits of columns 1-68, minus signs counting 1."""
    digits = line[:68].translate(_CHECKSUM_CHARS)
    return sum(map(int, digits)) % 10


def _epoch_unix(line1: str) -> float:
    yy = int(line1[18:20])
    year = 1900 + yy if yy >= 57 else 2000 + yy
    doy = float(line1[20:32])
    if not 1.0 <= doy < 367.0:
        raise InvalidValueError(f"day of year {doy} out of range")
    return calendar.timegm((year, 1, 1, 0, 0, 0)) + (doy - 1.0) * 86400.0


def _check_line(line: str, number: str, where: str) -> None:
    if len(line) < 69:
        raise TleError(f"{where}: line {number} is {len(line)} characters long, expected 69")
    if not line.startswith(number + " "):
        raise TleError(f"{where}: expected line {number} of a TLE, got {line[:20]!r}")
    digit = line[68]
    if not digit.isdigit():
        raise TleError(f"{where}: line {number} has no checksum digit")
    if int(digit) != _checksum(line):
        raise TleError(
            f"{where}: line {number} checksum is {digit}, the line sums to {_checksum(line)}"
        )


def _element_set(l1: str, l2: str, name: str | None, source: str, lineno: int) -> ElementSet:
    _check_line(l1, "1", f"{source}:{lineno}")
    _check_line(l2, "2", f"{source}:{lineno + 1}")
    if l1[2:7] != l2[2:7]:
        raise TleError(
            f"{source}:{lineno + 1}: line 2 is for catalogue number {l2[2:7].strip()}, "
            f"line 1 for {l1[2:7].strip()}"
        )
    try:
        norad = int(l1[2:7])
        epoch = _epoch_unix(l1)
    except ValueError as exc:
        raise TleError(f"{source}:{lineno}: bad catalogue number or epoch ({exc})") from exc
    return ElementSet(l1[:69], l2[:69], norad, epoch, name, source, lineno)


def parse_tle_text(
    text: str, source: str = "<text>", skipped: list[TleError] | None = None
) -> list[ElementSet]:
    """Parse 2-line or 3-line (named) TLE text.

    Args:
        text: the file's contents.
        source: what to call it in error messages (usually the path).
        skipped: if given, malformed element sets are appended here and skipped instead of
            raising. Used for third-party archives that carry a few known-corrupt entries.

    Raises:
        TleError: on the first malformed element set, naming ``source`` and the line number.
    """
    lines = text.splitlines()
    out: list[ElementSet] = []
    name: str | None = None
    i = 0
    n = len(lines)
    while i < n:
        raw = lines[i].rstrip()
        if not raw.strip():
            i += 1
            continue
        if raw.startswith("1 ") and len(raw) >= 60:
            if i + 1 >= n:
                raise TleError(f"{source}:{i + 1}: line 1 of a TLE has no line 2 after it")
            l1 = raw
            l2 = lines[i + 1].rstrip()
            try:
                out.append(_element_set(l1, l2, name, source, i + 1))
            except TleError as exc:
                if skipped is None:
                    raise
                skipped.append(exc)
            name = None
            i += 2
            continue
        if raw.startswith("2 ") and len(raw) >= 60:
            raise TleError(f"{source}:{i + 1}: line 2 of a TLE without a line 1 before it")
        if name is not None:
            raise TleError(f"{source}:{i + 1}: expected a TLE line, got {raw[:30]!r}")
        name = raw.strip()
        if name.startswith("0 "):
            name = name[2:].strip()
        i += 1
    if name is not None:
        raise TleError(f"{source}:{n}: satellite name {name!r} is not followed by a TLE")
    return out


@dataclass
class ElementArchive:
    """All element sets of one satellite, sorted by epoch, with lazy SGP4 records."""

    satellite: str
    sets: list[ElementSet]
    epochs: npt.NDArray[np.float64] = field(init=False)
    _satrecs: dict[int, Satrec] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sets:
            raise TleError(f"no element sets for {self.satellite}")
        by_epoch: dict[float, ElementSet] = {}
        for es in sorted(self.sets, key=lambda e: e.epoch):
            by_epoch[es.epoch] = es  # later duplicates of an epoch win
        self.sets = list(by_epoch.values())
        self.epochs = np.array([e.epoch for e in self.sets], dtype=np.float64)

    @classmethod
    def merge(cls, satellite: str, parts: Iterable[Sequence[ElementSet]]) -> ElementArchive:
        """One archive from several sources (shipped archive, user files, update cache)."""
        sets: list[ElementSet] = []
        for p in parts:
            sets.extend(p)
        return cls(satellite, sets)

    @property
    def coverage(self) -> tuple[datetime, datetime]:
        """First and last epoch."""
        return (
            datetime.fromtimestamp(float(self.epochs[0]), UTC),
            datetime.fromtimestamp(float(self.epochs[-1]), UTC),
        )

    def check_window(self, start: float, end: float, allow_stale: bool = False) -> None:
        """Refuse windows reaching more than :data:`STALE_LIMIT` beyond the coverage.

        Raises:
            CoverageError: naming the satellite and its coverage.
        """
        if allow_stale:
            return
        limit = STALE_LIMIT.total_seconds()
        if start < self.epochs[0] - limit or end > self.epochs[-1] + limit:
            first, last = self.coverage
            raise CoverageError(
                f"{self.satellite}: element sets cover {first:%Y-%m-%d %H:%M} to "
                f"{last:%Y-%m-%d %H:%M} UTC; the requested window "
                f"{_iso(start)} to {_iso(end)} reaches more than "
                f"{STALE_LIMIT.days} days beyond it (run 'eomatch tle update', add TLEs with "
                "--tle-dir, or pass --allow-stale)"
            )

    def nearest(
        self, times: npt.NDArray[np.int64] | npt.NDArray[np.float64]
    ) -> npt.NDArray[np.intp]:
        """Index of the element set whose epoch is nearest to each time (Unix seconds)."""
        if len(self.epochs) == 1:
            return np.zeros(len(times), dtype=np.intp)
        mids = (self.epochs[1:] + self.epochs[:-1]) / 2.0
        return np.searchsorted(mids, times.astype(np.float64), side="right").astype(np.intp)

    def satrec(self, index: int) -> Satrec:
        """The SGP4 record of element set ``index``, built on first use."""
        rec = self._satrecs.get(index)
        if rec is None:
            es = self.sets[index]
            try:
                rec = Satrec.twoline2rv(es.line1, es.line2)
            except ValueError as exc:  # pragma: no cover - checksums catch most cases first
                raise TleError(f"{es.source}:{es.lineno}: {exc}") from exc
            self._satrecs[index] = rec
        return rec


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")
