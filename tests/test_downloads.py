"""The download engine against a real local HTTP file server (Range/206 on or off, faults)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from eomatch.errors import EomatchError
from eomatch.io.downloads import (
    DownloadJob,
    DownloadReport,
    download,
    parse_multihash,
    part_path,
)

SIZE = 300_000


def payload(seed: int = 0, size: int = SIZE) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def sha256_multihash(data: bytes) -> str:
    return "1220" + hashlib.sha256(data).hexdigest()


def md5_multihash(data: bytes) -> str:
    return "d50110" + hashlib.md5(data).hexdigest()


@dataclass
class FileServer:
    """Serves ``files`` by path; records requests; can drop, fail or pause answers."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True
    """Honour Range requests with 206 (else always 200 with the whole file)."""
    url: str = ""
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Range header) of every request."""
    bytes_sent: int = 0
    drop_after: int | None = None
    """Send only this many body bytes, then hang up (for ``drop_count`` requests)."""
    drop_count: int = 0
    fail_status: int = 503
    fail_count: int = 0
    pause_at: int | None = None
    """Stop after this many body bytes until ``resume`` is set (first request only)."""
    paused: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else keep-alive answers wait ~40 ms on delayed ACKs

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        st = self.server.state
        rng = self.headers.get("Range")
        with st.lock:
            st.requests.append((self.path, rng))
            fail = st.fail_count > 0
            if fail:
                st.fail_count -= 1
            drop = st.drop_after if st.drop_count > 0 else None
            if drop is not None:
                st.drop_count -= 1
            pause = st.pause_at
            st.pause_at = None
        if fail:
            self._plain(st.fail_status, b"try later")
            return
        data = st.files.get(self.path)
        if data is None:
            self._plain(404, b"no such file")
            return
        start = 0
        if rng and st.ranges and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
            if st.ranges:
                self.send_header("Accept-Ranges", "bytes")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if pause is not None:
            self._write(body[:pause])
            st.paused.set()
            st.resume.wait(10)
            body = body[pause:]
        if drop is not None:
            self._write(body[:drop])
            self.close_connection = True
            return
        self._write(body)

    def _write(self, chunk: bytes) -> None:
        self.wfile.write(chunk)
        self.wfile.flush()
        with self.server.state.lock:
            self.server.state.bytes_sent += len(chunk)

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FileServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@contextlib.contextmanager
def serve_files(state: FileServer) -> Iterator[FileServer]:
    server = _Server(state)
    host, port = server.server_address[:2]
    state.url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        state.resume.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def files() -> Iterator[FileServer]:
    data = {f"/f{i}.bin": payload(i) for i in range(6)}
    with serve_files(FileServer(files=data)) as state:
        yield state


def job(srv: FileServer, name: str, dest: Path, **kw: Any) -> DownloadJob:
    return DownloadJob(product_id=name, href=f"{srv.url}/{name}", dest=dest, **kw)


def run(jobs: list[DownloadJob], **kw: Any) -> DownloadReport:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5)
    return download(jobs, **kw)


# -- checksums ------------------------------------------------------------------------------


def test_parse_multihash() -> None:
    data = b"hello"
    c = parse_multihash(sha256_multihash(data))
    assert c.algorithm == "sha2-256"
    assert c.digest == hashlib.sha256(data).hexdigest()
    m = parse_multihash(md5_multihash(data))
    assert m.algorithm == "md5"
    assert m.digest == hashlib.md5(data).hexdigest()
    b = parse_multihash("a0e40220" + hashlib.blake2b(data, digest_size=32).hexdigest())
    assert b.algorithm == "blake2b-256"
    with pytest.raises(ValueError, match="malformed"):
        parse_multihash("12zz")
    with pytest.raises(ValueError, match="unsupported"):
        parse_multihash("0203aabbcc")
    with pytest.raises(ValueError, match="wrong digest length"):
        parse_multihash("1220abcd")


# -- HTTP -----------------------------------------------------------------------------------


def test_complete_download(files: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "f0.bin"
    report = run([job(files, "f0.bin", dest, checksum=sha256_multihash(payload(0)), size=SIZE)])
    assert report.ok
    assert [r.status for r in report.results] == ["downloaded"]
    assert dest.read_bytes() == payload(0)
    assert not part_path(dest).exists()
    assert report.bytes_transferred == SIZE
    assert files.requests == [("/f0.bin", None)]
    assert "1 downloaded, 0 already present, 0 failed" in report.summary()


def test_resume_from_partial_file(files: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f1.bin"
    part_path(dest).write_bytes(payload(1)[:120_000])
    report = run([job(files, "f1.bin", dest, checksum=sha256_multihash(payload(1)))])
    assert report.ok
    assert dest.read_bytes() == payload(1)
    assert files.requests == [("/f1.bin", "bytes=120000-")]
    assert report.bytes_transferred == SIZE - 120_000 < SIZE
    assert files.bytes_sent == SIZE - 120_000


def test_restart_when_server_ignores_range(tmp_path: Path) -> None:
    with serve_files(FileServer(files={"/x": payload(7)}, ranges=False)) as srv:
        dest = tmp_path / "x"
        part_path(dest).write_bytes(b"garbage that is not a prefix")
        report = run([job(srv, "x", dest, checksum=md5_multihash(payload(7)))])
    assert report.ok
    assert dest.read_bytes() == payload(7)
    assert report.bytes_transferred == SIZE


def test_complete_part_file_is_published(files: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f2.bin"
    part_path(dest).write_bytes(payload(2))
    report = run([job(files, "f2.bin", dest)])
    assert report.ok
    assert dest.read_bytes() == payload(2)
    assert report.bytes_transferred == 0  # server answered 416: nothing left to send
    assert files.requests == [("/f2.bin", f"bytes={SIZE}-")]
    dest2 = tmp_path / "f3.bin"
    part_path(dest2).write_bytes(payload(3))
    assert run([job(files, "f3.bin", dest2, size=SIZE)]).ok
    assert files.count("/f3.bin") == 0  # the known size says it is complete: no request


def test_checksum_mismatch_fails_and_removes_part(files: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f0.bin"
    wrong = sha256_multihash(b"something else")
    report = run([job(files, "f0.bin", dest, checksum=wrong)])
    (result,) = report.failed
    assert "sha2-256 checksum mismatch" in result.reason
    assert "\n" not in result.reason
    assert not dest.exists()
    assert not part_path(dest).exists()
    assert files.count("/f0.bin") == 1  # a fresh download that mismatches is not repeated


def test_resumed_mismatch_restarts_once_from_scratch(files: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f3.bin"
    part_path(dest).write_bytes(b"\x00" * 1000)  # stale bytes: the resumed file is wrong
    report = run([job(files, "f3.bin", dest, checksum=sha256_multihash(payload(3)))])
    assert report.ok
    assert dest.read_bytes() == payload(3)
    assert [r for _, r in files.requests] == ["bytes=1000-", None]


def test_size_mismatch(files: FileServer, tmp_path: Path) -> None:
    report = run([job(files, "f0.bin", tmp_path / "f0.bin", size=SIZE + 1)])
    assert "size 300000 bytes, expected 300001" in report.failed[0].reason


def test_retry_after_dropped_connection_resumes(files: FileServer, tmp_path: Path) -> None:
    files.drop_after, files.drop_count = 100_000, 2
    dest = tmp_path / "f4.bin"
    report = run([job(files, "f4.bin", dest, checksum=sha256_multihash(payload(4)))], retries=3)
    assert report.ok
    assert dest.read_bytes() == payload(4)
    assert [r for _, r in files.requests] == [None, "bytes=100000-", "bytes=200000-"]
    assert report.bytes_transferred == SIZE


def test_retry_after_503_and_persistent_failures(files: FileServer, tmp_path: Path) -> None:
    files.fail_count = 2
    report = run([job(files, "f0.bin", tmp_path / "f0.bin")], retries=2)
    assert report.ok
    files.fail_count = 100
    report = run([job(files, "f1.bin", tmp_path / "f1.bin")], retries=2)
    assert report.failed[0].reason == "gave up after 3 attempt(s): HTTP 503 Service Unavailable"


def test_one_failure_does_not_stop_the_others(files: FileServer, tmp_path: Path) -> None:
    jobs = [job(files, f"f{i}.bin", tmp_path / f"f{i}.bin") for i in range(4)]
    jobs.insert(2, job(files, "missing.bin", tmp_path / "missing.bin"))
    jobs.append(DownloadJob("gs", "gs://bucket/key.tif", tmp_path / "gs.tif"))
    report = run(jobs, concurrency=3)
    assert [r.status for r in report.results] == ["downloaded"] * 2 + ["failed"] + [
        "downloaded"
    ] * 2 + ["failed"]
    assert report.results[2].reason.startswith("HTTP 404 Not Found for http://")
    assert report.results[5].reason == "unsupported URL scheme in 'gs://bucket/key.tif'"
    assert files.count("/missing.bin") == 1  # a 404 is not retried
    again = run([job(files, "missing.bin", tmp_path / d / "m.bin") for d in ("a", "b")])
    assert [r.status for r in again.results] == ["failed", "failed"]
    assert again.results[0].reason == again.results[1].reason
    assert files.count("/missing.bin") == 2  # one more fetch for both jobs of the href
    for i in range(4):
        assert (tmp_path / f"f{i}.bin").read_bytes() == payload(i)


def test_shared_href_is_fetched_once(files: FileServer, tmp_path: Path) -> None:
    checksum = sha256_multihash(payload(5))
    jobs = [
        job(files, "f5.bin", tmp_path / "m1" / "f5.bin", checksum=checksum),
        job(files, "f5.bin", tmp_path / "m2" / "f5.bin", checksum=checksum),
        job(files, "f5.bin", tmp_path / "m1" / "f5.bin", checksum=checksum),
        job(files, "f0.bin", tmp_path / "f0.bin"),
    ]
    report = run(jobs, concurrency=4)
    assert report.ok
    assert files.count("/f5.bin") == 1
    assert files.bytes_sent == 2 * SIZE
    assert (tmp_path / "m2" / "f5.bin").read_bytes() == payload(5)
    assert [r.status for r in report.results] == [
        "downloaded",
        "downloaded",
        "present",
        "downloaded",
    ]


def test_existing_files_are_skipped_or_replaced(files: FileServer, tmp_path: Path) -> None:
    good, bad = tmp_path / "f0.bin", tmp_path / "f1.bin"
    good.write_bytes(payload(0))
    bad.write_bytes(payload(0))  # wrong content for f1
    report = run(
        [
            job(files, "f0.bin", good, checksum=sha256_multihash(payload(0))),
            job(files, "f1.bin", bad, checksum=sha256_multihash(payload(1))),
        ]
    )
    assert [r.status for r in report.results] == ["present", "downloaded"]
    assert files.count("/f0.bin") == 0
    assert bad.read_bytes() == payload(1)


def test_existing_file_without_checksum_is_present(files: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f0.bin"
    dest.write_bytes(b"whatever")
    report = run([job(files, "f0.bin", dest)])
    assert report.present[0].path == dest
    assert files.requests == []


def test_progress_reaches_the_total(files: FileServer, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    run(
        [job(files, "f0.bin", tmp_path / "f0.bin")],
        progress=lambda j, done, total: seen.append((done, total)),
    )
    assert seen[-1] == (SIZE, SIZE)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_on_done_runs_on_the_calling_thread_after_the_file_is_in_place(
    files: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "f0.bin").write_bytes(payload(0))
    jobs = [job(files, f"f{i}.bin", tmp_path / f"f{i}.bin") for i in range(4)]
    jobs.append(job(files, "missing.bin", tmp_path / "missing.bin"))
    calls: list[str] = []

    def on_done(j: DownloadJob, path: Path) -> None:
        assert threading.current_thread() is threading.main_thread()
        assert path == j.dest
        assert path.read_bytes() == files.files["/" + j.product_id]
        assert not part_path(path).exists()
        calls.append(j.product_id)

    report = run(jobs, on_done=on_done, concurrency=2)
    assert sorted(calls) == [f"f{i}.bin" for i in range(4)]  # present too; never failures
    assert len(report.failed) == 1


def test_on_done_error_marks_only_that_job_failed(files: FileServer, tmp_path: Path) -> None:
    def on_done(j: DownloadJob, path: Path) -> None:
        if j.product_id == "f1.bin":
            raise RuntimeError("catalogue is read-only")

    jobs = [job(files, f"f{i}.bin", tmp_path / f"f{i}.bin") for i in range(3)]
    report = run(jobs, on_done=on_done)
    assert [r.status for r in report.results] == ["downloaded", "failed", "downloaded"]
    assert report.results[1].reason == "on_done failed: RuntimeError: catalogue is read-only"


def test_dest_is_never_half_written(files: FileServer, tmp_path: Path) -> None:
    files.pause_at = 150_000
    dest = tmp_path / "f0.bin"
    out: list[DownloadReport] = []
    worker = threading.Thread(target=lambda: out.append(run([job(files, "f0.bin", dest)])))
    worker.start()
    assert files.paused.wait(10)
    deadline = time.monotonic() + 10
    while not part_path(dest).exists() or part_path(dest).stat().st_size < 150_000:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # mid-transfer: the received bytes are in the .part file, dest does not exist yet
    assert not dest.exists()
    files.resume.set()
    worker.join(10)
    assert out[0].ok
    assert dest.read_bytes() == payload(0)


def test_timeout_is_retried(files: FileServer, tmp_path: Path) -> None:
    files.pause_at = 1000  # first answer stalls longer than the timeout
    report = run([job(files, "f0.bin", tmp_path / "f0.bin")], timeout=0.3, retries=2)
    files.resume.set()
    assert report.ok
    assert [r for _, r in files.requests] == [None, "bytes=1000-"]


# -- local files and bad jobs ---------------------------------------------------------------


def test_local_file_copy(tmp_path: Path) -> None:
    src = tmp_path / "src dir" / "scene.zip"
    src.parent.mkdir()
    src.write_bytes(payload(9))
    checksum = sha256_multihash(payload(9))
    jobs = [
        DownloadJob("a", str(src), tmp_path / "out" / "a.zip", checksum=checksum),
        DownloadJob("b", src.as_uri(), tmp_path / "out" / "b.zip", checksum=checksum, size=SIZE),
        DownloadJob("c", str(tmp_path / "nope.zip"), tmp_path / "out" / "c.zip"),
        DownloadJob("d", str(src), tmp_path / "out" / "d.zip", checksum=md5_multihash(b"x")),
    ]
    report = run(jobs)
    assert [r.status for r in report.results] == ["downloaded", "downloaded", "failed", "failed"]
    assert (tmp_path / "out" / "a.zip").read_bytes() == payload(9)
    assert (tmp_path / "out" / "b.zip").read_bytes() == payload(9)
    assert "does not exist" in report.results[2].reason
    assert "md5 checksum mismatch" in report.results[3].reason
    assert not (tmp_path / "out" / "d.zip").exists()
    assert src.read_bytes() == payload(9)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.zip", "b.zip"]


def test_job_without_href_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EomatchError, match="product P1: no file to download"):
        download([DownloadJob("P1", "", tmp_path / "x")])


def test_two_files_for_one_destination_are_refused(tmp_path: Path) -> None:
    jobs = [
        DownloadJob("a", "/data/a", tmp_path / "x"),
        DownloadJob("b", "/data/b", tmp_path / "x"),
    ]
    with pytest.raises(EomatchError, match="destination of two different files"):
        download(jobs)


def test_bad_checksum_fails_the_job(tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.write_bytes(b"abc")
    report = download([DownloadJob("a", str(src), tmp_path / "d", checksum="nothex")])
    assert "malformed file:checksum" in report.failed[0].reason


def test_local_file_hard_link(tmp_path: Path) -> None:
    src = tmp_path / "scene.zip"
    src.write_bytes(payload(8))
    dest = tmp_path / "out" / "scene.zip"
    report = run(
        [DownloadJob("a", str(src), dest, checksum=sha256_multihash(payload(8)))],
        link_local=True,
    )
    assert report.ok
    assert dest.stat().st_ino == src.stat().st_ino
    assert not part_path(dest).exists()


def test_an_injected_transport_serves_the_download(tmp_path: Path) -> None:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(200, content=payload(7, 1000))

    jobs = [DownloadJob("p", "https://data.example.test/p.bin", tmp_path / "p.bin", size=1000)]
    report = run(jobs, transport=httpx.MockTransport(handler))
    assert report.ok
    assert (tmp_path / "p.bin").read_bytes() == payload(7, 1000)
