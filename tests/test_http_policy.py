"""The one retry policy (issue 11 §4): every remote caller retries the same answers, the same way.

The four callers (the STAC API client, the ``stac`` product source, ``tle update``'s GP requests
and downloads) each get an injected ``httpx.MockTransport`` answering a chosen status first, then
a good answer; nothing is patched. Real-server tests of the same paths live in
test_hostile_http.py, test_stac_source.py, test_tle_update.py and test_downloads.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from eomatch.core.products import SensorKey
from eomatch.core.satellites import BUILTIN_SATELLITES
from eomatch.errors import EomatchError, RemoteLimitError
from eomatch.io import celestrak
from eomatch.io.downloads import DownloadJob, download
from eomatch.io.http import (
    RETRY_STATUSES,
    Deadline,
    HttpLimits,
    Retryable,
    call_with_retries,
)
from eomatch.io.stac_api_client import StacApi
from eomatch.io.stac_source import StacApiSource
from eomatch.io.tle_store import read_tle_file, shipped_tle_dir
from stac_api_server import S2_COLLECTION, sentinel2_item

BASE = "https://remote.example.test"
FAST = HttpLimits(timeout_s=5, max_retries=2, backoff_s=0.0)
S2A = next(s for s in BUILTIN_SATELLITES if s.short_name == "S2A")
RETRIED = (408, 425, 429, 500, 502, 503, 504)
"""As documented (docs/catalogue.md, Limits: untrusted servers)."""
NOT_RETRIED = (400, 401, 404, 410, 501)


def gp_text() -> bytes:
    assert S2A.tle_file is not None
    es = read_tle_file(shipped_tle_dir() / S2A.tle_file, strict=False)[-1]
    return f"SENTINEL-2A\r\n{es.line1}\r\n{es.line2}\r\n".encode()


def good_answer(request: httpx.Request) -> httpx.Response:
    """What a healthy server answers to each of the four callers."""
    path = request.url.path
    if path == "/":
        links = [{"rel": "search", "href": "/search", "method": "POST"}]
        return httpx.Response(200, json={"type": "Catalog", "conformsTo": [], "links": links})
    if path == "/search":
        item = sentinel2_item("sentinel-2a", "33TUN", datetime(2022, 5, 2, 10), 10, 45)
        return httpx.Response(200, json={"type": "FeatureCollection", "features": [item]})
    if path == "/gp.php":
        return httpx.Response(200, content=gp_text())
    if path == "/file.bin":
        return httpx.Response(200, content=b"x" * 100)
    return httpx.Response(200, json={"ok": True})


class Server:
    """Answers ``first`` (status, headers) to the first ``times`` requests on ``path``."""

    def __init__(self, path: str, first: int, headers: dict[str, str], times: int = 1) -> None:
        self.path, self.first, self.headers, self.left = path, first, headers, times
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.url.path)
        if request.url.path == self.path and self.left > 0:
            self.left -= 1
            return httpx.Response(self.first, headers=self.headers, content=b"not now")
        return good_answer(request)

    def hits(self) -> int:
        return self.seen.count(self.path)


def stac_api(transport: httpx.MockTransport, limits: HttpLimits) -> object:
    with StacApi(
        BASE, max_retries=limits.max_retries, backoff=0, limits=limits, transport=transport
    ) as api:
        return api.get("status")


def stac_source(transport: httpx.MockTransport, limits: HttpLimits) -> object:
    src = StacApiSource(
        BASE,
        {"S2_MSI_L1C": S2_COLLECTION},
        max_retries=limits.max_retries,
        backoff_factor=0,
        limits=limits,
        transport=transport,
    )
    may = (datetime(2022, 5, 1, tzinfo=UTC), datetime(2022, 5, 31, tzinfo=UTC))
    return src.search(SensorKey("S2_MSI_L1C", "Sentinel-2A"), (0, 40, 20, 50), *may)


def gp(transport: httpx.MockTransport, limits: HttpLimits) -> object:
    return celestrak.fetch_gp_tles(
        f"{BASE}/gp.php", [S2A.norad_id], 5, limits=limits, transport=transport
    )


def downloads(tmp: Path) -> Callable[[httpx.MockTransport, HttpLimits], object]:
    def run(transport: httpx.MockTransport, limits: HttpLimits) -> object:
        dest = tmp / f"file-{time.monotonic_ns()}.bin"
        report = download(
            [DownloadJob("p", f"{BASE}/file.bin", dest, size=100)],
            retries=limits.max_retries,
            backoff=limits.backoff_s,
            timeout=limits.timeout_s,
            limits=limits,
            transport=transport,
        )
        if not report.ok:
            raise EomatchError(report.results[0].reason)
        return report

    return run


CALLERS = {
    "stac api client": ("/status", lambda tmp: stac_api),
    "stac product source": ("/search", lambda tmp: stac_source),
    "tle update": ("/gp.php", lambda tmp: gp),
    "download": ("/file.bin", downloads),
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("status", RETRIED)
def test_every_caller_retries_the_same_statuses(caller: str, status: int, tmp_path: Path) -> None:
    path, make = CALLERS[caller]
    server = Server(path, status, {})
    assert make(tmp_path)(httpx.MockTransport(server), FAST)
    assert server.hits() == 2
    assert frozenset(RETRIED) == RETRY_STATUSES


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("status", NOT_RETRIED)
def test_no_caller_retries_a_final_answer(caller: str, status: int, tmp_path: Path) -> None:
    path, make = CALLERS[caller]
    server = Server(path, status, {})
    with pytest.raises(EomatchError, match=str(status)) as info:
        make(tmp_path)(httpx.MockTransport(server), FAST)
    assert "\n" not in str(info.value)
    assert server.hits() == 1


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_every_caller_gives_up_after_max_retries(caller: str, tmp_path: Path) -> None:
    path, make = CALLERS[caller]
    server = Server(path, 503, {}, times=100)
    with pytest.raises(EomatchError, match="503"):
        make(tmp_path)(httpx.MockTransport(server), FAST)
    assert server.hits() == 1 + FAST.max_retries


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_every_caller_honours_retry_after_within_its_cap(caller: str, tmp_path: Path) -> None:
    path, make = CALLERS[caller]
    server = Server(path, 429, {"Retry-After": "3600"})
    limits = replace(FAST, max_retry_after_s=0.3)  # backoff 0: any wait is Retry-After's
    started = time.monotonic()
    assert make(tmp_path)(httpx.MockTransport(server), limits)
    assert 0.3 <= time.monotonic() - started < 3
    assert server.hits() == 2


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_every_caller_retries_a_dropped_connection(caller: str, tmp_path: Path) -> None:
    path, make = CALLERS[caller]
    drops = [0]

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path == path and not drops[0]:
            drops[0] += 1
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        return good_answer(request)

    assert make(tmp_path)(httpx.MockTransport(flaky), FAST)
    assert drops == [1]


# --- the policy itself ---------------------------------------------------------------------


def test_backoff_doubles_and_the_last_attempt_is_told() -> None:
    calls: list[tuple[bool, float]] = []
    started = time.monotonic()

    def attempt(last: bool) -> str:
        calls.append((last, time.monotonic() - started))
        if not last:
            raise Retryable("HTTP 503")
        return "done"

    limits = HttpLimits(max_retries=2, backoff_s=0.1)
    assert call_with_retries(attempt, limits, what="t") == "done"
    assert [last for last, _ in calls] == [False, False, True]
    waits = [b[1] - a[1] for a, b in itertools.pairwise(calls)]
    assert 0.1 <= waits[0] < 1  # backoff_s
    assert 0.2 <= waits[1] < 1  # doubled (the same 0.1 s again would fail this)


def test_the_last_failure_is_raised_as_it_was() -> None:
    def attempt(last: bool) -> None:
        raise Retryable("HTTP 502 Bad Gateway")

    with pytest.raises(Retryable, match="HTTP 502 Bad Gateway"):
        call_with_retries(attempt, HttpLimits(max_retries=1, backoff_s=0), what="t")


def test_other_errors_end_the_call_at_once() -> None:
    calls = []

    def attempt(last: bool) -> None:
        calls.append(last)
        raise EomatchError("HTTP 404")

    with pytest.raises(EomatchError, match="404"):
        call_with_retries(attempt, HttpLimits(max_retries=3, backoff_s=0), what="t")
    assert calls == [False]


def test_a_wait_past_the_deadline_fails_with_the_deadline() -> None:
    def attempt(last: bool) -> None:
        raise Retryable("HTTP 503", retry_after="5")

    deadline = Deadline(0.3, "the test operation")
    started = time.monotonic()
    with pytest.raises(RemoteLimitError, match=r"the test operation took longer than the 0.3 s"):
        call_with_retries(attempt, HttpLimits(max_retries=3), what="t", deadline=deadline)
    assert 0.25 <= time.monotonic() - started < 2


def test_retry_after_as_an_http_date() -> None:
    calls: list[float] = []
    when = datetime.now(UTC).timestamp() + 2.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))

    def attempt(last: bool) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise Retryable("HTTP 429", retry_after=date)

    call_with_retries(attempt, HttpLimits(max_retries=1, backoff_s=0), what="t")
    # an HTTP date names whole seconds: the wait ends at the named second, 1 to 2 s away
    assert 0.9 < calls[1] - calls[0] < 2.5


@pytest.mark.parametrize("header", ["\u00b2", "\u0661", "1e3", "-5", "", "Mon, 99 Foo"])
def test_a_nonsense_retry_after_falls_back_to_the_backoff(header: str) -> None:
    """A hostile Retry-After (a superscript digit once crashed float()) is ignored."""
    hostile = httpx.Response(503, headers=[(b"Retry-After", header.encode())])
    answers = iter([hostile, httpx.Response(200)])
    transport = httpx.MockTransport(lambda request: next(answers))
    started = time.monotonic()
    with StacApi(BASE, max_retries=1, backoff=0.01, transport=transport) as api:
        assert api.session.request("GET", f"{BASE}/x").status == 200
    assert time.monotonic() - started < 2


def test_transport_failures_name_their_attempts() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(EomatchError, match=r"cannot reach the API .*ConnectError") as info:
        StacApi(BASE, max_retries=1, backoff=0, transport=httpx.MockTransport(refuse)).get("")
    assert "\n" not in str(info.value)
    with pytest.raises(EomatchError, match=r"failed after 2 attempt\(s\)"):
        gp(httpx.MockTransport(refuse), replace(FAST, max_retries=1))


def test_limits_of_the_policy_are_checked() -> None:
    with pytest.raises(EomatchError, match="max_retries"):
        HttpLimits(max_retries=-1)
    with pytest.raises(EomatchError, match="max_retry_after_s"):
        HttpLimits(max_retry_after_s=0)


def test_status_sets_are_one() -> None:
    """No module keeps its own list of retryable statuses any more."""
    import eomatch.io.celestrak as c
    import eomatch.io.downloads as d
    import eomatch.io.stac_api_client as a
    import eomatch.io.stac_source as s

    for module in (a, s, c, d):
        own = [
            name
            for name, value in vars(module).items()
            if isinstance(value, frozenset | tuple | set)
            and value
            and all(isinstance(v, int) for v in value)
            and value is not RETRY_STATUSES
        ]
        assert own == [], f"{module.__name__} defines its own status set {own}"
