"""Where element sets come from: the shipped archive, user files and the update cache."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from eomatch.core.satellites import Satellite
from eomatch.core.tle import ElementArchive, ElementSet, TleError, parse_tle_text
from eomatch.errors import ConfigError, InputError, NotFoundError
from eomatch.io.safe_files import read_regular_text

log = logging.getLogger(__name__)

TLE_SUFFIXES = (".txt", ".tle", ".3le", ".2le")
ARCHIVE_DISTRIBUTION = "orbitx"
ARCHIVE_SUBDIR = "orbitx/data/tle"
MAX_TLE_FILE_BYTES = 256 << 20
"""Largest TLE file read (256 MiB; the biggest shipped file is 3 MB, 20 years of one satellite)."""


def shipped_tle_dir() -> Path:
    """The historic archive shipped in the ``orbitx`` wheel (its modules are never imported)."""
    try:
        dist = metadata.distribution(ARCHIVE_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:  # pragma: no cover - it is a hard dependency
        raise ConfigError(
            "the TLE archive package 'orbitx' is not installed; reinstall eomatch"
        ) from exc
    return Path(str(dist.locate_file(ARCHIVE_SUBDIR)))


@lru_cache(maxsize=256)
def _parse_file(path: Path, mtime_ns: int, strict: bool) -> tuple[ElementSet, ...]:
    text = read_regular_text(path, "TLE file", MAX_TLE_FILE_BYTES, "ascii", errors="replace")
    skipped: list[TleError] | None = None if strict else []
    try:
        sets = parse_tle_text(text, str(path), skipped)
    except TleError as exc:
        raise InputError(f"malformed TLE: {exc}") from exc
    if skipped:
        log.debug(
            "%s: skipped %d malformed element sets (first: %s)", path, len(skipped), skipped[0]
        )
    return tuple(sets)


def read_tle_file(path: Path, strict: bool = True) -> tuple[ElementSet, ...]:
    """Element sets of one file (cached by path and modification time)."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise InputError(f"cannot read TLE file {path}: {exc.strerror or exc}") from exc
    return _parse_file(path, mtime, strict)


def _dir_files(d: Path) -> list[Path]:
    if not d.is_dir():
        raise NotFoundError(f"TLE directory not found: {d}")
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in TLE_SUFFIXES)


@dataclass
class TleStore:
    """Builds each satellite's :class:`ElementArchive` from every available source.

    Sources, merged by epoch: the shipped archive file named in the registry, a user
    satellite's own ``tle_file``, every TLE file in ``extra_dirs`` and in ``cache_dir``
    (assigned to satellites by NORAD catalogue number). The shipped archive is third-party data
    with a few corrupt entries, which are skipped; user files must be entirely valid.
    """

    extra_dirs: list[Path] = field(default_factory=list)
    cache_dir: Path | None = None
    archive_dir: Path = field(default_factory=shipped_tle_dir)
    _by_norad: dict[int, list[ElementSet]] | None = field(default=None, init=False)

    def _pooled(self) -> dict[int, list[ElementSet]]:
        if self._by_norad is None:
            pool: dict[int, list[ElementSet]] = {}
            dirs: list[Path] = list(self.extra_dirs)
            if self.cache_dir is not None and self.cache_dir.is_dir():
                dirs.append(self.cache_dir)
            for d in dirs:
                for f in _dir_files(d):
                    for es in read_tle_file(f, strict=True):
                        pool.setdefault(es.norad_id, []).append(es)
            self._by_norad = pool
        return self._by_norad

    def sources(self, sat: Satellite) -> Iterable[tuple[str, int]]:
        """(source, count) of element sets per source, for reporting."""
        counts: dict[str, int] = {}
        for es in self.element_sets(sat):
            counts[es.source] = counts.get(es.source, 0) + 1
        return sorted(counts.items())

    def element_sets(self, sat: Satellite) -> list[ElementSet]:
        """Every element set of ``sat`` from every source, unmerged (each keeps its source)."""
        sets: list[ElementSet] = []
        if sat.tle_file:
            p = Path(sat.tle_file)
            if p.is_absolute() or p.parent != Path("."):
                sets.extend(
                    es for es in read_tle_file(p, strict=True) if es.norad_id == sat.norad_id
                )
            else:
                shipped = self.archive_dir / p
                if shipped.is_file():
                    sets.extend(
                        es
                        for es in read_tle_file(shipped, strict=False)
                        if es.norad_id == sat.norad_id
                    )
        sets.extend(self._pooled().get(sat.norad_id, []))
        return sets

    def archive(self, sat: Satellite) -> ElementArchive:
        """All element sets of ``sat``.

        Raises:
            EomatchError: if no source holds any element set for it.
        """
        sets = self.element_sets(sat)
        if not sets:
            raise NotFoundError(
                f"no TLEs for {sat.short_name} (NORAD {sat.norad_id}); add a file with --tle-dir "
                "or run 'eomatch tle update'"
            )
        return ElementArchive(sat.short_name, sets)
