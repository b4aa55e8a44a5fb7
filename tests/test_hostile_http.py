"""Hostile or broken servers against the one HTTP layer (issue 10 §9).

Every server here is real (tests/stac_api_server.py ``serve_scripted``, 127.0.0.1) and
misbehaves the way a compromised or broken provider would: it sends credentials' owners'
clients elsewhere, loops, never ends, trickles, bombs, or asks to be retried in an hour. Limits
are made small so that each test is fast; each failure must be one clear line.
"""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import brotli
import pytest

from eomatch.core.products import SensorKey
from eomatch.errors import EomatchError, RemoteLimitError
from eomatch.io.downloads import DownloadJob, download
from eomatch.io.http import HttpLimits, HttpSession, origin, retry_after_seconds
from eomatch.io.stac_api_client import StacApi
from eomatch.io.stac_source import StacApiSource
from stac_api_server import S2_COLLECTION, Reply, Seen, json_reply, sentinel2_item, serve_scripted

S2A = SensorKey("S2_MSI_L1C", "Sentinel-2A")
EUROPE = (0.0, 40.0, 20.0, 50.0)
MAY = (datetime(2022, 5, 1, tzinfo=UTC), datetime(2022, 5, 31, tzinfo=UTC))
SECRET = {"Authorization": "Bearer s3cret", "X-Api-Key": "k3y"}
LANDING = {
    "type": "Catalog",
    "id": "hostile",
    "stac_version": "1.0.0",
    "description": "a provider gone bad",
    "conformsTo": [],
    "links": [{"rel": "search", "href": "/search", "method": "POST"}],
}


def item(n: int) -> dict[str, Any]:
    return sentinel2_item("sentinel-2a", f"33TU{n:03d}", datetime(2022, 5, 2, 10), 10, 45)


def page(items: list[dict[str, Any]], nxt: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": items, "links": [nxt] if nxt else []}


def provider(search: Callable[[Seen], Reply]) -> Callable[[Seen], Reply]:
    """A script answering the landing page itself and ``/search`` with ``search``."""

    def script(seen: Seen) -> Reply:
        if seen.path in ("", "/"):
            return json_reply(LANDING)
        return search(seen)

    return script


def source(url: str, **limits: Any) -> StacApiSource:
    base = {"timeout_s": 5.0, "max_retries": 0, "backoff_s": 0.01}
    return StacApiSource(
        url,
        {"S2_MSI_L1C": S2_COLLECTION},
        headers=SECRET,
        max_retries=limits.pop("max_retries", 0),
        backoff_factor=0.01,
        timeout=5,
        limits=HttpLimits(**{**base, **limits}),
    )


def one_line_error(fn: Callable[[], object], match: str) -> str:
    with pytest.raises(EomatchError, match=match) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    return message


# --- credentials stay with their origin ---------------------------------------------------------


def test_origin_compares_scheme_host_and_port() -> None:
    assert origin("http://Example.org/a") == ("http", "example.org", 80)
    assert origin("https://example.org:443/") == origin("https://example.org/x")
    assert origin("http://example.org:8080/") != origin("http://example.org/")
    assert origin("https://example.org/") != origin("http://example.org/")


def test_credentials_never_follow_a_next_link_to_another_origin() -> None:
    with serve_scripted(lambda s: json_reply(page([item(2)]))) as other:
        nxt = {"rel": "next", "href": f"{other.url}/search", "method": "POST", "body": {"t": 1}}
        with serve_scripted(provider(lambda s: json_reply(page([item(1)], nxt)))) as home:
            products = source(home.url).search(S2A, EUROPE, *MAY)
    assert len(products) == 2  # the other origin was asked, without credentials
    assert [h.get("authorization") for h in home.headers_of("/search")] == ["Bearer s3cret"]
    assert all(h.get("x-api-key") == "k3y" for h in home.headers_of("/"))
    assert other.headers_of("/search")
    for headers in other.headers_of("/search"):
        assert "authorization" not in headers
        assert "x-api-key" not in headers


def test_credentials_never_follow_a_redirect_to_another_origin() -> None:
    with serve_scripted(lambda s: json_reply(page([item(1)]))) as other:

        def redirect(seen: Seen) -> Reply:
            return Reply(307, headers={"Location": f"{other.url}/search"})

        with serve_scripted(provider(redirect)) as home:
            assert len(source(home.url).search(S2A, EUROPE, *MAY)) == 1
    assert home.headers_of("/search")[0]["authorization"] == "Bearer s3cret"
    (headers,) = other.headers_of("/search")
    assert "authorization" not in headers
    assert "x-api-key" not in headers
    assert json.loads(other.seen[0].body)["collections"] == [S2_COLLECTION]  # 307 keeps the body


def test_matchup_api_key_stays_with_its_origin() -> None:
    with serve_scripted(lambda s: json_reply(page([]))) as other:
        nxt = {"rel": "next", "href": f"{other.url}/search?token=2", "method": "GET"}
        with (
            serve_scripted(lambda s: json_reply(page([item(1)], nxt))) as home,
            StacApi(home.url, "s3cret", max_retries=0) as api,
        ):
            assert len(list(api.search({"collections": ["x"]}))) == 2
    assert home.seen[0].headers["authorization"] == "Bearer s3cret"
    assert "authorization" not in other.seen[0].headers


def test_download_credentials_stay_with_their_origin(tmp_path: Path) -> None:
    with (
        serve_scripted(lambda s: Reply(200, b"payload")) as other,
        serve_scripted(lambda s: Reply(302, headers={"Location": f"{other.url}/f"})) as home,
    ):
        job = DownloadJob("p", f"{home.url}/f", tmp_path / "f.bin", size=7)
        report = download([job], headers=SECRET, retries=0)
    assert report.ok, report.results
    assert (tmp_path / "f.bin").read_bytes() == b"payload"
    assert home.seen[0].headers["authorization"] == "Bearer s3cret"
    assert "authorization" not in other.seen[0].headers
    assert "x-api-key" not in other.seen[0].headers


# --- paging bounds ------------------------------------------------------------------------------


def test_a_next_link_that_repeats_is_a_paging_loop() -> None:
    nxt = {"rel": "next", "href": "/search", "method": "POST", "body": {"token": "same"}}
    with serve_scripted(provider(lambda s: json_reply(page([item(1)], nxt)))) as home:
        started = time.monotonic()
        msg = one_line_error(lambda: source(home.url).search(S2A, EUROPE, *MAY), "paging loop")
    assert "search of collection 'sentinel-2-l1c'" in msg
    assert time.monotonic() - started < 5
    assert len(home.seen) == 3  # landing, first page, the repeated page: then refused


def test_endless_paging_stops_at_max_pages() -> None:
    def endless(seen: Seen) -> Reply:
        n = int(json.loads(seen.body).get("token", 0)) if seen.body else 0
        nxt = {"rel": "next", "href": "/search", "method": "POST", "body": {"token": n + 1}}
        return json_reply(page([item(n % 900)], nxt))

    with serve_scripted(provider(endless)) as home:
        src = source(home.url, max_pages=5)
        one_line_error(lambda: src.search(S2A, EUROPE, *MAY), "more than 5 pages .*max_pages")
    assert len(home.seen) == 1 + 6


def test_items_per_search_are_capped() -> None:
    def pages(seen: Seen) -> Reply:
        n = int(json.loads(seen.body).get("token", 0))
        nxt = {"rel": "next", "href": "/search", "method": "POST", "body": {"token": n + 1}}
        return json_reply(page([item(3 * n + i) for i in range(3)], nxt))

    with serve_scripted(provider(pages)) as home:
        src = source(home.url, max_items=5)
        one_line_error(lambda: src.search(S2A, EUROPE, *MAY), "more than 5 items .*max_items")


# --- bytes per response -------------------------------------------------------------------------


def test_an_endless_body_is_cut_off_while_streaming() -> None:
    with serve_scripted(provider(lambda s: Reply(200, endless=b"[" * 65536))) as home:
        src = source(home.url, max_response_bytes=200_000)
        one_line_error(
            lambda: src.search(S2A, EUROPE, *MAY), "larger than 200000 bytes .*max_response_bytes"
        )


def test_a_declared_oversized_body_is_refused_before_reading() -> None:
    big = json.dumps(page([item(i) for i in range(50)])).encode()
    with serve_scripted(provider(lambda s: Reply(200, big))) as home:
        src = source(home.url, max_response_bytes=len(big) - 1)
        one_line_error(lambda: src.search(S2A, EUROPE, *MAY), "larger than")
        assert len(source(home.url, max_response_bytes=len(big)).search(S2A, EUROPE, *MAY)) == 50


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", lambda data: gzip.compress(data, compresslevel=9)),
        ("br", lambda data: brotli.compress(data, quality=5)),  # output_buffer_limit steps
    ],
)
def test_a_compression_bomb_is_stopped_after_the_decompressed_limit(
    coding: str, compress: Callable[[bytes], bytes]
) -> None:
    bomb = compress(b" " * (64 << 20))  # 64 MiB of spaces, ~64 kB (gzip) or a few (br)
    assert len(bomb) < 200_000
    headers = {"Content-Encoding": coding, "Content-Type": "application/json"}
    with serve_scripted(provider(lambda s: Reply(200, bomb, headers))) as home:
        src = source(home.url, max_response_bytes=1 << 20)
        src.client()
        tracemalloc.start()
        try:
            one_line_error(lambda: src.search(S2A, EUROPE, *MAY), r"larger than 1048576 bytes \(de")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak} bytes: the bomb was inflated"


def test_gzip_answers_within_the_limit_are_read() -> None:
    body = gzip.compress(json.dumps(page([item(1)])).encode())
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    with serve_scripted(provider(lambda s: Reply(200, body, headers))) as home:
        assert len(source(home.url).search(S2A, EUROPE, *MAY)) == 1


def test_br_answers_are_asked_for_and_read_whole() -> None:
    """Every session asks for br first; a br answer of several reads and several output
    buffers (2 MB of items, 1 MB a step) is read whole, and a corrupt one is one line."""
    body = json.dumps(page([item(i) for i in range(800)])).encode()
    assert len(body) > 1 << 20
    headers = {"Content-Encoding": "br", "Content-Type": "application/json"}
    compressed = brotli.compress(body, quality=1)
    seen: list[str] = []

    def reply(s: Seen) -> Reply:
        seen.append({k.lower(): v for k, v in s.headers.items()}.get("accept-encoding", ""))
        return Reply(200, compressed, headers)

    with serve_scripted(provider(reply)) as home:
        assert len(source(home.url).search(S2A, EUROPE, *MAY)) == 800
    assert seen, seen
    assert seen[0].startswith("br"), seen
    corrupt = compressed[:100] + bytes(64) + compressed[164:]
    with serve_scripted(provider(lambda s: Reply(200, corrupt, headers))) as home:
        one_line_error(lambda: source(home.url).search(S2A, EUROPE, *MAY), "corrupt br body")
    cut = compressed[: len(compressed) // 2]  # a whole answer as far as HTTP can tell
    with serve_scripted(provider(lambda s: Reply(200, cut, headers))) as home:
        one_line_error(lambda: source(home.url).search(S2A, EUROPE, *MAY), "truncated br body")


# --- total time of a search ---------------------------------------------------------------------


def test_a_trickling_server_is_stopped_by_the_search_deadline() -> None:
    body = json.dumps(page([item(1)])).encode()
    reply = Reply(200, body[:10], trickle=body[10:], trickle_s=0.05)
    with serve_scripted(provider(lambda s: reply)) as home:
        src = source(home.url, max_seconds=0.6)
        started = time.monotonic()
        one_line_error(
            lambda: src.search(S2A, EUROPE, *MAY), r"took longer than the 0.6 s .*max_seconds"
        )
    assert time.monotonic() - started < 3


def test_retry_after_an_hour_is_capped() -> None:
    always_429 = Reply(429, b"slow down", {"Retry-After": "3600"})
    with serve_scripted(provider(lambda s: always_429)) as home:
        src = source(home.url, max_retries=2, max_retry_after_s=0.05)
        src.client()
        started = time.monotonic()
        one_line_error(lambda: src.search(S2A, EUROPE, *MAY), "HTTP 429 after 2 retries")
    assert time.monotonic() - started < 3
    assert sum(1 for s in home.seen if s.path == "/search") == 3


def test_retry_after_never_outlasts_the_deadline() -> None:
    always_503 = Reply(503, b"", {"Retry-After": "3600"})
    with serve_scripted(provider(lambda s: always_503)) as home:
        src = source(home.url, max_retries=5, max_retry_after_s=3600, max_seconds=0.5)
        src.client()
        started = time.monotonic()
        one_line_error(lambda: src.search(S2A, EUROPE, *MAY), "took longer than the 0.5 s")
    assert time.monotonic() - started < 3


def test_retry_after_forms() -> None:
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60
    assert retry_after_seconds("Wed, 31 Dec 2025 00:00:00 GMT", now) == 0


# --- redirects ----------------------------------------------------------------------------------


def test_redirect_loops_and_chains_are_refused() -> None:
    with serve_scripted(provider(lambda s: Reply(302, headers={"Location": "/search"}))) as home:
        src = source(home.url)
        one_line_error(lambda: src.search(S2A, EUROPE, *MAY), "redirect loop")

    def chain(seen: Seen) -> Reply:
        n = int(seen.query.get("n", 0))
        return Reply(307, headers={"Location": f"/search?n={n + 1}"})

    with serve_scripted(provider(chain)) as home:
        one_line_error(
            lambda: source(home.url, max_redirects=3).search(S2A, EUROPE, *MAY),
            "more than 3 redirects",
        )
    with serve_scripted(
        provider(lambda s: Reply(302, headers={"Location": "file:///etc/passwd"}))
    ) as home:
        one_line_error(lambda: source(home.url).search(S2A, EUROPE, *MAY), "non-http")


def test_download_redirect_loop_fails_the_job_with_one_line(tmp_path: Path) -> None:
    with serve_scripted(lambda s: Reply(302, headers={"Location": "/f"})) as home:
        report = download([DownloadJob("p", f"{home.url}/f", tmp_path / "f")], retries=0)
    (result,) = report.results
    assert result.status == "failed"
    assert "redirect loop" in result.reason
    assert not (tmp_path / "f").exists()


def test_download_stops_a_server_sending_more_than_file_size(tmp_path: Path) -> None:
    with serve_scripted(lambda s: Reply(200, endless=b"x" * 65536)) as home:
        job = DownloadJob("p", f"{home.url}/f", tmp_path / "f", size=100_000)
        report = download([job], retries=0)
    (result,) = report.results
    assert result.status == "failed"
    assert "more than the expected file:size 100000" in result.reason
    assert list(tmp_path.iterdir()) == []


def test_session_limits_are_validated() -> None:
    with pytest.raises(EomatchError, match="max_seconds"):
        HttpLimits(max_seconds=0)
    with pytest.raises(EomatchError, match="max_pages"):
        HttpLimits(max_pages=0)


def test_session_injects_a_transport() -> None:
    import httpx

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    with HttpSession(
        "https://api.example.test/", credentials=SECRET, transport=httpx.MockTransport(handler)
    ) as session:
        assert session.request("GET", "https://api.example.test/x").json() == {"ok": True}
        assert session.request("GET", "https://elsewhere.example.test/x").status == 200
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert "authorization" not in seen[1].headers
    with pytest.raises(RemoteLimitError):
        raise RemoteLimitError("is an EomatchError")


def test_query_against_a_looping_matchup_api_fails_cleanly_and_writes_nothing(
    tmp_path: Path,
) -> None:
    from eomatch.workflows.query import query_catalogue

    coll = "LANDSAT_C2L1-Landsat-9-vs-S2_MSI_L1C-Sentinel-2A"

    def script(seen: Seen) -> Reply:
        if seen.path in ("", "/"):
            return json_reply({**LANDING, "links": []})
        if seen.path == "/collections":
            return json_reply({"collections": [{"id": coll, "type": "Collection"}], "links": []})
        nxt = {"rel": "next", "href": "/search", "method": "POST", "body": {"token": "t"}}
        return json_reply(page([], nxt) | {"features": [{"id": "m", "collection": "x"}]})

    out = tmp_path / "pulled"
    with serve_scripted(script) as api:
        started = time.monotonic()
        msg = one_line_error(lambda: query_catalogue(api.url, out, max_retries=0), "paging loop")
    assert time.monotonic() - started < 5
    assert "search at" in msg
    assert not out.exists()
