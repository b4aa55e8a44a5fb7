"""Fetching current element sets from a CelesTrak-style GP endpoint into the update cache.

The endpoint is queried once per satellite (``{url}?CATNR={id}&FORMAT=TLE``). Responses are
untrusted: each is bounded (bytes, time, redirects; :mod:`eomatch.io.http`), parsed strictly and
must hold element sets of exactly the satellite asked for, none with an epoch in the future.
Nothing is written unless every satellite was fetched and validated (all-or-nothing), and each
cache file is replaced atomically.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from eomatch.core.tle import ElementSet, TleError, parse_tle_text
from eomatch.errors import ConfigError, EomatchError, InputError, NetworkError, RemoteLimitError
from eomatch.io.atomic import atomic_write_text
from eomatch.io.http import Answer, Deadline, HttpLimits, HttpSession, TransportFailure

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 2_000_000
"""A GP answer for one satellite is a few hundred bytes; anything this large is not one (the
bound applies to decompressed bytes, checked while the answer streams in)."""
GP_LIMITS = HttpLimits(
    timeout_s=30.0,
    max_response_bytes=MAX_RESPONSE_BYTES,
    max_seconds=120.0,
    max_retries=2,
    backoff_s=1.0,
    max_retry_after_s=30.0,
)
"""Bounds of one satellite's GP request (the retry policy is :mod:`eomatch.io.http`'s): 2
retries after 1 s and 2 s (or ``Retry-After``, capped at 30 s), 120 s in all, retries and
waits included. :func:`fetch_gp_tles` uses these unless given others."""
MAX_EPOCH_AHEAD_S = 86_400
"""Element sets whose epoch is later than now plus this are refused: a future epoch would make
every later search look covered and so silently turn off the stale-window check. One day allows
for clock skew between us and the server; real GP data is never ahead of the present."""
NO_DATA_MARKER = "no gp data found"
"""What CelesTrak answers, with status 200, for a catalogue number it has no data for."""


def cache_file(cache_dir: Path, norad_id: int) -> Path:
    """The cache file of one satellite (TleStore reads every ``*.tle`` in the directory)."""
    return cache_dir / f"{norad_id}.tle"


def _label(norad_id: int, labels: Mapping[int, str] | None) -> str:
    name = labels.get(norad_id) if labels else None
    return f"{name} (NORAD {norad_id})" if name else f"NORAD {norad_id}"


def _first_line(text: str, limit: int = 80) -> str:
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return "(empty body)"


def _get(session: HttpSession, url: str, norad_id: int, who: str) -> Answer:
    """One GP request, bounded, retried by the one policy (transport errors, transient
    statuses)."""
    params = {"CATNR": str(norad_id), "FORMAT": "TLE"}
    deadline = Deadline(session.limits.max_seconds, f"the GP request for {who}")
    try:
        return session.request("GET", url, params=params, deadline=deadline)
    except TransportFailure as exc:
        kind = "timed out" if exc.timed_out else "failed"
        raise NetworkError(
            f"cannot fetch TLEs for {who}: request to {url} {kind} after {exc.attempts} "
            f"attempt(s) ({exc.reason})"
        ) from None
    except RemoteLimitError as exc:
        raise RemoteLimitError(f"cannot fetch TLEs for {who}: {exc}") from None


def parse_gp_response(
    text: str, norad_id: int, source: str, who: str, now: float | None = None
) -> list[ElementSet]:
    """Strictly validated element sets of ``norad_id`` from one GP answer.

    Raises:
        EomatchError: for a "no data" answer, malformed text, no element set, element sets
            of another satellite, or an epoch later than ``now`` (Unix seconds, default: the
            clock) plus :data:`MAX_EPOCH_AHEAD_S`.
    """
    if NO_DATA_MARKER in text[:200].casefold():
        raise NetworkError(f"{source}: the server has no GP data for {who} ({_first_line(text)!r})")
    try:
        sets = parse_tle_text(text, source)
    except TleError as exc:
        raise NetworkError(f"response for {who} is not TLE text: {exc}") from exc
    if not sets:
        raise NetworkError(
            f"{source}: the response for {who} holds no element set ({_first_line(text)!r})"
        )
    others = sorted({es.norad_id for es in sets} - {norad_id})
    if others:
        raise NetworkError(
            f"{source}: the response for {who} holds element sets of NORAD "
            f"{', '.join(map(str, others))} instead"
        )
    latest = (time.time() if now is None else now) + MAX_EPOCH_AHEAD_S
    future = [es for es in sets if es.epoch > latest]
    if future:
        when = datetime.fromtimestamp(max(es.epoch for es in future), UTC)
        raise NetworkError(
            f"{source}: the response for {who} holds an element set with epoch "
            f"{when:%Y-%m-%d %H:%M} UTC, later than now plus {MAX_EPOCH_AHEAD_S // 3600} h; "
            "refused (it would hide stale element sets)"
        )
    return sets


def fetch_gp_tles(
    url: str,
    norad_ids: Sequence[int],
    timeout: float = 30,
    *,
    labels: Mapping[int, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    progress: Callable[[int, int], None] | None = None,
    limits: HttpLimits | None = None,
) -> dict[int, list[ElementSet]]:
    """Current element sets of each satellite from a CelesTrak-style GP endpoint.

    Args:
        url: the endpoint, e.g. ``https://celestrak.org/NORAD/elements/gp.php``.
        norad_ids: catalogue numbers to fetch (one request each).
        timeout: seconds allowed for connecting and for each read.
        labels: names to use for the satellites in error messages.
        transport: an httpx transport (tests; defaults to the network).
        progress: called with (done, total) after each satellite.
        limits: bounds and retries per satellite (default :data:`GP_LIMITS`); ``timeout``
            overrides its ``timeout_s``.

    Returns:
        Element sets per catalogue number, in the order of ``norad_ids``.

    Raises:
        EomatchError: on an unreachable server, an HTTP error, or an invalid answer for any
            satellite; nothing is returned in part.
    """
    if not url.startswith(("http://", "https://")):
        raise InputError(f"the GP URL must start with http:// or https://, got {url!r}")
    if not timeout > 0:
        raise InputError(f"the timeout must be a positive number of seconds, got {timeout}")
    out: dict[int, list[ElementSet]] = {}
    ids = list(dict.fromkeys(norad_ids))
    bounds = replace(limits or GP_LIMITS, timeout_s=timeout)
    with HttpSession(url, limits=bounds, transport=transport) as session:
        for done, norad_id in enumerate(ids, start=1):
            who = _label(norad_id, labels)
            response = _get(session, url, norad_id, who)
            source = response.url
            text = response.text
            if response.status != 200:
                raise NetworkError(
                    f"cannot fetch TLEs for {who}: HTTP {response.status} "
                    f"{response.reason} from {source} ({_first_line(text)!r})"
                )
            out[norad_id] = parse_gp_response(text, norad_id, source, who)
            log.debug("%s: %d element set(s) from %s", who, len(out[norad_id]), source)
            if progress is not None:
                progress(done, len(ids))
    return out


def _clean_name(name: str | None) -> str | None:
    if not name:
        return None
    name = re.sub(r"[^\x20-\x7e]", "?", name).strip()[:24]
    return name or None


def render_3le(sets: Sequence[ElementSet], name: str) -> str:
    """Three-line TLE text (name, line 1, line 2) for ``sets`` in the given order."""
    lines: list[str] = []
    for es in sets:
        lines += [_clean_name(es.name) or name, es.line1, es.line2]
    return "\n".join(lines) + "\n"


def _read_cache(path: Path, norad_id: int) -> list[ElementSet]:
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="ascii")
        sets = parse_tle_text(text, str(path))
    except (OSError, UnicodeDecodeError, TleError) as exc:
        raise ConfigError(
            f"the cache file {path} is unreadable or corrupt ({exc}); delete it and re-run "
            "'eomatch tle update'"
        ) from exc
    foreign = sorted({es.norad_id for es in sets} - {norad_id})
    if foreign:
        raise ConfigError(
            f"the cache file {path} holds element sets of NORAD "
            f"{', '.join(map(str, foreign))}; delete it and re-run 'eomatch tle update'"
        )
    return sets


def update_cache(cache_dir: Path, fetched: Mapping[int, Sequence[ElementSet]]) -> dict[int, int]:
    """Merge fetched element sets into ``cache_dir/{norad}.tle``.

    Existing element sets are kept; a fetched set whose epoch is already present is not new.
    Files are sorted by epoch and written in 3-line format. Everything is validated before the
    first file is replaced, and only files that gain element sets are rewritten.

    Returns:
        The number of new element sets per catalogue number.

    Raises:
        EomatchError: if ``cache_dir`` is not a directory, a cache file is corrupt, or a fetched
            set belongs to another satellite.
    """
    if cache_dir.exists() and not cache_dir.is_dir():
        raise ConfigError(f"the TLE cache {cache_dir} exists but is not a directory")
    plans: list[tuple[Path, str]] = []
    added: dict[int, int] = {}
    for norad_id, new_sets in fetched.items():
        wrong = sorted({es.norad_id for es in new_sets} - {norad_id})
        if wrong:
            raise NetworkError(
                f"element sets of NORAD {', '.join(map(str, wrong))} cannot be cached as "
                f"NORAD {norad_id}"
            )
        path = cache_file(cache_dir, norad_id)
        by_epoch = {es.epoch: es for es in _read_cache(path, norad_id)}
        fresh = 0
        for es in new_sets:
            if es.epoch not in by_epoch:
                by_epoch[es.epoch] = es
                fresh += 1
        added[norad_id] = fresh
        if fresh:
            names = [n for es in by_epoch.values() if (n := _clean_name(es.name))]
            name = names[-1] if names else f"NORAD {norad_id}"
            merged = [by_epoch[e] for e in sorted(by_epoch)]
            plans.append((path, render_3le(merged, name)))
    for path, text in plans:
        # Re-parse what is about to be written: a cache file TleStore cannot read is worse
        # than no update at all.
        try:
            parse_tle_text(text, str(path))
        except TleError as exc:  # pragma: no cover - inputs were parsed strictly already
            raise EomatchError(f"refusing to write an unreadable cache file: {exc}") from exc
    for path, text in plans:
        atomic_write_text(path, text)
    return added
