"""``eomatch tle update`` / ``tle info`` against a local CelesTrak-style GP server (no internet)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from eomatch.cli.main import main
from eomatch.config.settings import Settings
from eomatch.core.satellites import BUILTIN_SATELLITES, Satellite
from eomatch.core.tle import ElementSet, _checksum, parse_tle_text
from eomatch.errors import EomatchError
from eomatch.io import celestrak
from eomatch.io.celestrak import update_cache
from eomatch.io.tle_store import read_tle_file, shipped_tle_dir
from eomatch.workflows.crossovers import find_crossovers

S2A, LS9 = 40697, 49260
SATS = {s.norad_id: s for s in BUILTIN_SATELLITES}
FAKE_EPOCH = "23160.50000000"  # 2023-06-09 12:00 UTC, beyond the shipped S2A archive (2023-05-01)


def shipped_sets(sat: Satellite, n: int) -> list[ElementSet]:
    """The last ``n`` valid element sets (distinct epochs) of a satellite's shipped archive."""
    assert sat.tle_file is not None
    by_epoch = {
        es.epoch: es
        for es in read_tle_file(shipped_tle_dir() / sat.tle_file, strict=False)
        if es.norad_id == sat.norad_id
    }
    return [by_epoch[e] for e in sorted(by_epoch)[-n:]]


def with_epoch(es: ElementSet, epoch_field: str) -> tuple[str, str]:
    """A valid TLE equal to ``es`` but for its epoch (checksum recomputed)."""
    assert len(epoch_field) == 14
    body = es.line1[:18] + epoch_field + es.line1[32:68]
    return body + str(_checksum(body)), es.line2


def tle_text(name: str, lines: list[tuple[str, str]]) -> str:
    """What CelesTrak sends for FORMAT=TLE: 24-character name line, CRLF line ends."""
    out = []
    for l1, l2 in lines:
        out += [f"{name:<24}", l1, l2]
    return "\r\n".join(out) + "\r\n"


def s2a_lines(n: int = 3, fake: bool = True) -> list[tuple[str, str]]:
    real = shipped_sets(SATS[S2A], n)
    lines = [(es.line1, es.line2) for es in real]
    if fake:
        lines.append(with_epoch(real[-1], FAKE_EPOCH))
    return lines


def ls9_lines(n: int = 2) -> list[tuple[str, str]]:
    return [(es.line1, es.line2) for es in shipped_sets(SATS[LS9], n)]


@dataclass
class GpServer:
    """A local GP endpoint: answers per CATNR, records every request."""

    url: str = ""
    routes: dict[int, tuple[int, str]] = field(default_factory=dict)
    default: tuple[int, str] = (200, "No GP data found")
    delay_s: float = 0.0
    requests: list[int] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def count(self, norad: int) -> int:
        return self.requests.count(norad)


def _handler(gp: GpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            assert query.get("FORMAT") == ["TLE"], query
            catnr = int(query["CATNR"][0])
            gp.requests.append(catnr)
            if gp.delay_s:
                gp.release.wait(gp.delay_s)
            status, body = gp.routes.get(catnr, gp.default)
            data = body.encode("ascii", errors="replace")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def gp() -> Iterator[GpServer]:
    state = GpServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/NORAD/elements/gp.php"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private cache and config directories; short retry waits; wide, plain tables.

    The CLI runs with :data:`celestrak.GP_LIMITS`, its documented default policy: only its
    backoff is shortened here (tests calling ``fetch_gp_tles`` pass ``limits=`` instead)."""
    monkeypatch.setenv("EOMATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("EOMATCH_TLE_DIRS", raising=False)
    monkeypatch.delenv("EOMATCH_GP_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(celestrak, "GP_LIMITS", replace(celestrak.GP_LIMITS, backoff_s=0.01))
    return tmp_path


def cache_dir() -> Path:
    return Settings().tle_cache_dir


def cache_files() -> list[str]:
    d = cache_dir()
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def update(gp: GpServer, *extra: str) -> int:
    return main(["tle", "update", "--url", gp.url, *extra])


# --- update ---------------------------------------------------------------------------------


def test_update_fills_cache_and_rerun_adds_nothing(
    gp: GpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gp.routes = {
        S2A: (200, tle_text("SENTINEL-2A", s2a_lines())),
        LS9: (200, tle_text("LANDSAT 9", ls9_lines())),
    }

    assert update(gp, "--platforms", "S2A,landsat-9") == 0
    out = capsys.readouterr().out
    assert cache_files() == [f"{S2A}.tle", f"{LS9}.tle"]
    s2a_file = cache_dir() / f"{S2A}.tle"
    text = s2a_file.read_text()
    sets = parse_tle_text(text, "cache")
    assert len(sets) == 4
    assert [es.epoch for es in sets] == sorted(es.epoch for es in sets)
    assert text.splitlines()[0] == "SENTINEL-2A"  # 3-line format, name line kept
    assert len(text.splitlines()) == 12
    assert "\r" not in text
    assert "S2A" in out
    assert "LS9" in out
    assert "2023-06-09 12:00" in out  # newest S2A epoch (the fake one)
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if line[:3] in {"S2A", "LS9"}
    }
    assert rows["S2A"][2] == "4"
    assert rows["LS9"][2] == "2"
    assert sorted(gp.requests) == [S2A, LS9]

    before = (s2a_file.read_bytes(), s2a_file.stat().st_mtime_ns)
    assert update(gp, "--platforms", "S2A,LS9") == 0
    second = capsys.readouterr()
    rows = {
        line.split()[0]: line.split()
        for line in second.out.splitlines()
        if line[:3] in {"S2A", "LS9"}
    }
    assert rows["S2A"][2] == "0"
    assert rows["LS9"][2] == "0"
    assert "0 new element set(s)" in second.err
    assert (s2a_file.read_bytes(), s2a_file.stat().st_mtime_ns) == before  # not even rewritten
    assert cache_files() == [f"{S2A}.tle", f"{LS9}.tle"]  # no temporary files left


def test_update_keeps_existing_sets_and_deduplicates(gp: GpServer) -> None:
    lines = s2a_lines(n=4, fake=False)
    gp.routes = {S2A: (200, tle_text("SENTINEL-2A", lines[:2]))}
    assert update(gp, "--platforms", "S2A") == 0
    gp.routes = {S2A: (200, tle_text("SENTINEL-2A", lines[1:] + lines[1:2]))}  # overlap + repeat
    assert update(gp, "--platforms", "S2A") == 0
    sets = parse_tle_text((cache_dir() / f"{S2A}.tle").read_text(), "cache")
    assert [(es.line1, es.line2) for es in sets] == lines


def test_default_platforms_are_the_whole_registry(gp: GpServer) -> None:
    gp.routes = {
        sat.norad_id: (
            200,
            tle_text(sat.name.upper(), [(es.line1, es.line2) for es in shipped_sets(sat, 1)]),
        )
        for sat in BUILTIN_SATELLITES
    }
    assert update(gp) == 0
    assert sorted(gp.requests) == sorted(SATS)
    assert cache_files() == sorted(f"{n}.tle" for n in SATS)


def test_gp_url_from_environment(gp: GpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    gp.routes = {LS9: (200, tle_text("LANDSAT 9", ls9_lines()))}
    monkeypatch.setenv("EOMATCH_GP_URL", gp.url)
    assert main(["tle", "update", "--platforms", "LS9"]) == 0
    assert gp.requests == [LS9]


# --- the cache is used -----------------------------------------------------------------------


def test_new_sets_are_used_by_info_and_crossovers(
    gp: GpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    window = ("2023-06-09", "2023-06-10")  # beyond the shipped S2A coverage (ends 2023-05-01)
    with pytest.raises(EomatchError, match=r"S2A: element sets cover .* tle update"):
        find_crossovers(["S2A", "LS9"], *window)

    gp.routes = {S2A: (200, tle_text("SENTINEL-2A", s2a_lines()))}
    assert update(gp, "--platforms", "S2A") == 0
    capsys.readouterr()

    assert main(["tle", "info", "--platforms", "S2A,LS9"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    shipped = next(line for line in lines if "shipped TLEset_S2A.txt" in line)
    cached = next(line for line in lines if f"cache {S2A}.tle" in line)
    assert "2015-06-23" in shipped
    assert "2023-05-01" in shipped
    assert cached.split()[3] == "4"
    assert cached.rstrip().endswith("2023-06-09 12:00")
    merged = [line for line in lines if "merged (searches use)" in line]
    assert len(merged) == 2
    assert merged[0].rstrip().endswith("2023-06-09 12:00")
    assert f"cache {LS9}.tle" not in out

    events = find_crossovers(["S2A", "LS9"], *window)  # legal now, without allow_stale
    assert all(e.platform_b == "S2A" for e in events)


def test_info_lists_user_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = tmp_path / "mytles"
    user.mkdir()
    (user / "s2a.tle").write_text(
        tle_text("S2A", [with_epoch(shipped_sets(SATS[S2A], 1)[0], "23200.00000000")])
    )
    assert main(["tle", "info", "--platforms", "S2A", "--tle-dir", str(user)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "s2a.tle" in line)
    assert "user" in row
    assert "2023-07-19 00:00" in row


def test_info_without_any_tles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("satellites:\n  - short_name: NEWSAT\n    norad_id: 99999\n")
    assert main(["tle", "info", "--config", str(cfg), "--platforms", "NEWSAT"]) == 0
    assert "none: run 'eomatch tle update'" in capsys.readouterr().out


# --- errors: exit 2, one line, nothing written -----------------------------------------------


def run_failing(gp: GpServer, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert update(gp, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("eomatch: error: "), err
    assert err.count("\n") == 1, err
    assert cache_files() == []
    return err


def test_http_500_is_retried_then_fails_writing_nothing(
    gp: GpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gp.routes = {LS9: (200, tle_text("LANDSAT 9", ls9_lines())), S2A: (500, "internal error")}
    err = run_failing(gp, capsys, "--platforms", "LS9,S2A")  # LS9 fetched fine first
    assert "HTTP 500" in err
    assert "S2A (NORAD 40697)" in err
    assert gp.count(S2A) == 1 + celestrak.GP_LIMITS.max_retries


def test_http_404_is_not_retried(gp: GpServer, capsys: pytest.CaptureFixture[str]) -> None:
    gp.routes = {S2A: (404, "not here")}
    err = run_failing(gp, capsys, "--platforms", "S2A")
    assert "HTTP 404" in err
    assert "not here" in err
    assert gp.count(S2A) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("No GP data found", r"no GP data for S2A \(NORAD 40697\)"),
        ("<html><body>Service temporarily unavailable</body></html>", "S2A .* is not TLE text"),
        ("", "S2A .* holds no element set"),
        ("1 40697U 15028A   23121.93479008", "S2A .* is not TLE text"),
    ],
)
def test_invalid_answers_write_nothing(
    gp: GpServer, capsys: pytest.CaptureFixture[str], body: str, expected: str
) -> None:
    gp.routes = {LS9: (200, tle_text("LANDSAT 9", ls9_lines())), S2A: (200, body)}
    err = run_failing(gp, capsys, "--platforms", "LS9,S2A")
    assert re.search(expected, err), err


def test_bad_checksum_is_rejected(gp: GpServer, capsys: pytest.CaptureFixture[str]) -> None:
    l1, l2 = s2a_lines(1, fake=False)[0]
    bad = l1[:68] + str((int(l1[68]) + 1) % 10)
    gp.routes = {S2A: (200, tle_text("SENTINEL-2A", [(bad, l2)]))}
    err = run_failing(gp, capsys, "--platforms", "S2A")
    assert "checksum" in err
    assert "CATNR=40697" in err


def test_element_sets_of_another_satellite_are_rejected(
    gp: GpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gp.routes = {S2A: (200, tle_text("LANDSAT 9", ls9_lines()))}
    err = run_failing(gp, capsys, "--platforms", "S2A")
    assert "NORAD 49260 instead" in err


def test_unreachable_server(gp: GpServer, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    gp.url = f"http://127.0.0.1:{port}/gp.php"
    err = run_failing(gp, capsys, "--platforms", "S2A")
    assert "cannot fetch TLEs for S2A" in err
    assert f"after {1 + celestrak.GP_LIMITS.max_retries} attempt(s)" in err


def test_timeout(gp: GpServer, capsys: pytest.CaptureFixture[str]) -> None:
    gp.routes = {S2A: (200, tle_text("SENTINEL-2A", s2a_lines()))}
    gp.delay_s = 5.0
    err = run_failing(gp, capsys, "--platforms", "S2A", "--timeout", "0.2")
    assert "timed out" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--url", "ftp://example.org/gp"], "must start with http"),
        (["--platforms", "S2A,NOPE"], "unknown satellite 'NOPE'"),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], args: list[str], expected: str) -> None:
    assert main(["tle", "update", *args]) == 2
    assert expected in capsys.readouterr().err
    assert cache_files() == []


def test_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(["tle", "update", "--timeout", "0"])
    except SystemExit as exc:  # older main() let argparse exit
        rc = exc.code  # type: ignore[assignment]
    assert rc == 2
    assert "positive number of seconds" in capsys.readouterr().err


def test_corrupt_cache_file_is_reported_and_kept(
    gp: GpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_dir().mkdir(parents=True)
    corrupt = cache_dir() / f"{S2A}.tle"
    corrupt.write_text("garbage\nmore garbage\n")
    gp.routes = {S2A: (200, tle_text("SENTINEL-2A", s2a_lines()))}
    assert update(gp, "--platforms", "S2A") == 2
    err = capsys.readouterr().err
    assert str(corrupt) in err
    assert "delete it" in err
    assert corrupt.read_text() == "garbage\nmore garbage\n"


# --- update_cache directly -------------------------------------------------------------------


def test_update_cache_validates_before_writing(tmp_path: Path) -> None:
    s2a = parse_tle_text(tle_text("SENTINEL-2A", s2a_lines()), "x")
    ls9 = parse_tle_text(tle_text("LANDSAT 9", ls9_lines()), "y")
    with pytest.raises(EomatchError, match="cannot be cached as NORAD 40697"):
        update_cache(tmp_path / "c", {LS9: ls9, S2A: ls9})
    assert not (tmp_path / "c").exists()  # LS9 was valid, but nothing is written
    assert update_cache(tmp_path / "c", {S2A: s2a, LS9: ls9}) == {S2A: 4, LS9: 2}
    assert update_cache(tmp_path / "c", {S2A: s2a[:1]}) == {S2A: 0}


def test_update_cache_names_unnamed_sets(tmp_path: Path) -> None:
    two_line = "\n".join(f"{a}\n{b}" for a, b in ls9_lines()) + "\n"
    sets = parse_tle_text(two_line, "x")
    assert all(es.name is None for es in sets)
    update_cache(tmp_path, {LS9: sets})
    text = (tmp_path / f"{LS9}.tle").read_text()
    assert text.splitlines()[0] == "NORAD 49260"
    assert len(parse_tle_text(text, "cache")) == 2


def test_update_cache_refuses_a_file_as_directory(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(EomatchError, match="not a directory"):
        update_cache(target, {})


# --- hostile endpoints: future epochs, unbounded answers (issue 10 §9) ------------------------


def epoch_field(when: datetime) -> str:
    """The 14-character TLE epoch field (YYDDD.DDDDDDDD) of a UTC time."""
    start = datetime(when.year, 1, 1, tzinfo=UTC)
    day = 1 + (when - start).total_seconds() / 86_400
    return f"{when.year % 100:02d}{day:012.8f}"


@pytest.mark.parametrize("ahead", [timedelta(days=2), timedelta(days=365 * 30)])
def test_element_sets_from_the_future_are_refused(
    gp: GpServer, capsys: pytest.CaptureFixture[str], ahead: timedelta
) -> None:
    real = shipped_sets(SATS[S2A], 1)[0]
    future = with_epoch(real, epoch_field(datetime.now(UTC) + ahead))
    gp.routes = {S2A: (200, tle_text("SENTINEL-2A", [(real.line1, real.line2), future]))}
    err = run_failing(gp, capsys, "--platforms", "S2A")
    assert "later than now plus 24 h" in err
    assert "S2A (NORAD 40697)" in err


def test_an_epoch_within_the_clock_margin_is_accepted(gp: GpServer) -> None:
    real = shipped_sets(SATS[S2A], 1)[0]
    soon = with_epoch(real, epoch_field(datetime.now(UTC) + timedelta(hours=1)))
    gp.routes = {S2A: (200, tle_text("SENTINEL-2A", [soon]))}
    assert update(gp, "--platforms", "S2A") == 0
    assert cache_files() == [f"{S2A}.tle"]


def test_the_future_check_uses_the_given_clock() -> None:
    real = shipped_sets(SATS[S2A], 1)[0]
    text = tle_text("SENTINEL-2A", [(real.line1, real.line2)])
    assert celestrak.parse_gp_response(text, S2A, "src", "S2A", now=real.epoch)
    with pytest.raises(EomatchError, match="later than now"):
        celestrak.parse_gp_response(
            text, S2A, "src", "S2A", now=real.epoch - celestrak.MAX_EPOCH_AHEAD_S - 1
        )


def test_an_oversized_answer_is_refused_while_streaming(
    gp: GpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    gp.routes = {S2A: (200, "1" * (celestrak.MAX_RESPONSE_BYTES + 1))}
    err = run_failing(gp, capsys, "--platforms", "S2A")
    assert f"larger than {celestrak.MAX_RESPONSE_BYTES} bytes" in err


def test_gp_bombs_trickles_and_retry_after_are_bounded() -> None:
    import gzip

    from stac_api_server import Reply, serve_scripted

    bomb = gzip.compress(b"1" * (64 << 20))
    with (
        serve_scripted(lambda s: Reply(200, bomb, {"Content-Encoding": "gzip"})) as srv,
        pytest.raises(EomatchError, match=r"larger than 2000000 bytes \(decompressed\)"),
    ):
        celestrak.fetch_gp_tles(f"{srv.url}/gp.php", [S2A])
    capped = replace(celestrak.GP_LIMITS, max_retry_after_s=0.2, backoff_s=0)
    with serve_scripted(lambda s: Reply(429, b"later", {"Retry-After": "3600"})) as srv:
        started = time.monotonic()
        with pytest.raises(EomatchError, match="HTTP 429"):
            celestrak.fetch_gp_tles(f"{srv.url}/gp.php", [S2A], limits=capped)
        # two waits of Retry-After capped to 0.2 s (the backoff alone would wait nothing)
        assert 0.4 <= time.monotonic() - started < 3
        assert len(srv.seen) == 1 + capped.max_retries
    text = tle_text("SENTINEL-2A", s2a_lines(1, fake=False)).encode()
    trickle = Reply(200, text[:5], trickle=text[5:], trickle_s=0.05)
    with serve_scripted(lambda s: trickle) as srv:
        started = time.monotonic()
        with pytest.raises(EomatchError, match=r"took longer than the 0\.5 s"):
            celestrak.fetch_gp_tles(
                f"{srv.url}/gp.php", [S2A], limits=replace(celestrak.GP_LIMITS, max_seconds=0.5)
            )
        assert time.monotonic() - started < 3
