"""The download engine: fetch product files concurrently, resumably, verified, atomically.

Each file is written to ``{dest}.part`` and renamed onto ``dest`` only once it is complete and
its size/checksum are verified, so ``dest`` is never half-written: a killed run leaves at most a
``.part`` file, which the next run continues with an HTTP Range request when the server allows.
The engine knows nothing of catalogues: the caller turns products into :class:`DownloadJob`
objects and registers each finished file in ``on_done``.

Credentials come per host from a :class:`~eomatch.io.credentials.CredentialStore` (the
configuration, the environment, ``~/.netrc``): each host's go to that host only, a token is
renewed on expiry or on a 401 (the retry resumes the ``.part`` file), and a 401/403 fails the
job with one line naming the host and how to give credentials. ``s3://`` hrefs are read through
the object-store client (:mod:`eomatch.io.object_store`), ranged from the ``.part`` size.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import httpx

from eomatch.errors import ConflictError, EomatchError, InputError, RemoteLimitError
from eomatch.errors import DownloadError as DownloadError
from eomatch.io.credentials import CredentialStore
from eomatch.io.http import (
    RETRY_STATUSES,
    HttpLimits,
    HttpSession,
    Retryable,
    call_with_retries,
)
from eomatch.io.safe_paths import within_root

if TYPE_CHECKING:
    from eomatch.io.object_store import S3ObjectStore

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""Read/write granularity (also how often progress is reported)."""
PART_SUFFIX = ".part"
MAX_REDIRECTS = 10
"""Redirects followed per request (download servers redirect to signed storage URLs)."""

Status = Literal["downloaded", "present", "failed"]


@dataclass(frozen=True)
class DownloadJob:
    """One file to fetch for one product.

    Attributes:
        product_id: the product the file belongs to (for reports and ``on_done``).
        href: ``http(s)://`` URL, ``file://`` URL or local path.
        dest: where the verified file ends up.
        checksum: STAC ``file:checksum`` (multihash, hex) to verify, if the asset gives one.
        size: STAC ``file:size`` in bytes to verify, if the asset gives one; a server sending
            more than this is cut off.
        root: when given, ``dest`` and its ``.part`` file must resolve (symlinks followed) inside
            this folder, checked right before anything is written.
    """

    product_id: str
    href: str
    dest: Path
    checksum: str | None = None
    size: int | None = None
    root: Path | None = None


ProgressCallback = Callable[[DownloadJob, int, int | None], None]
"""``progress(job, bytes_done, total_bytes_or_None)``; called from worker threads."""
DoneCallback = Callable[[DownloadJob, Path], None]
"""``on_done(job, path)``; called on the thread that called :func:`download`."""


@dataclass(frozen=True)
class DownloadResult:
    """What happened to one job."""

    job: DownloadJob
    status: Status
    path: Path | None = None
    """The verified file (``job.dest``) unless the job failed."""
    reason: str = ""
    """One-line cause of a failure."""
    bytes_transferred: int = 0
    """Bytes read from the source for this job (0 when it shared another job's fetch)."""


@dataclass
class DownloadReport:
    """Every job's result, in the order the jobs were given."""

    results: list[DownloadResult] = field(default_factory=list)

    def _with(self, status: Status) -> list[DownloadResult]:
        return [r for r in self.results if r.status == status]

    @property
    def downloaded(self) -> list[DownloadResult]:
        """Jobs fetched in this run."""
        return self._with("downloaded")

    @property
    def present(self) -> list[DownloadResult]:
        """Jobs whose verified file was already in place."""
        return self._with("present")

    @property
    def failed(self) -> list[DownloadResult]:
        """Jobs that failed; ``reason`` says why."""
        return self._with("failed")

    @property
    def ok(self) -> bool:
        """True when no job failed."""
        return not self.failed

    @property
    def bytes_transferred(self) -> int:
        """Bytes read from sources over the run."""
        return sum(r.bytes_transferred for r in self.results)

    def summary(self) -> str:
        """One line for the end of a CLI run."""
        return (
            f"{len(self.downloaded)} downloaded, {len(self.present)} already present, "
            f"{len(self.failed)} failed ({self.bytes_transferred} bytes transferred)"
        )


# -- checksums ------------------------------------------------------------------------------


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


def _blake2b(bits: int) -> Callable[[], _Hasher]:
    return lambda: hashlib.blake2b(digest_size=bits // 8)


_MULTIHASH: dict[int, tuple[str, Callable[[], _Hasher]]] = {
    0x11: ("sha1", hashlib.sha1),
    0x12: ("sha2-256", hashlib.sha256),
    0x13: ("sha2-512", hashlib.sha512),
    0x14: ("sha3-512", hashlib.sha3_512),
    0x16: ("sha3-256", hashlib.sha3_256),
    0xD5: ("md5", hashlib.md5),
    0xB220: ("blake2b-256", _blake2b(256)),
    0xB240: ("blake2b-512", _blake2b(512)),
}


@dataclass(frozen=True)
class Checksum:
    """A parsed STAC ``file:checksum``: the algorithm and the expected hex digest."""

    algorithm: str
    digest: str
    factory: Callable[[], _Hasher] = field(repr=False, compare=False)

    def of_file(self, path: Path) -> str:
        """Hex digest of a file's content."""
        h = self.factory()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                h.update(chunk)
        return h.hexdigest()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def parse_multihash(text: str) -> Checksum:
    """Parse a multihash hex string (``1220…`` sha2-256, ``d50110…`` md5, …).

    Raises:
        ValueError: malformed, of an unsupported algorithm, or with a wrong digest length.
    """
    try:
        raw = bytes.fromhex(text.strip())
        code, pos = _varint(raw, 0)
        length, pos = _varint(raw, pos)
    except ValueError as exc:
        raise ValueError(f"malformed file:checksum {text!r} ({exc})") from None
    if code not in _MULTIHASH:
        raise ValueError(f"file:checksum {text!r}: unsupported multihash code 0x{code:x}")
    name, factory = _MULTIHASH[code]
    digest = raw[pos:]
    if len(digest) != length or length != len(factory().hexdigest()) // 2:
        raise ValueError(f"file:checksum {text!r}: wrong digest length for {name}")
    return Checksum(name, digest.hex(), factory)


# -- verification and local files -----------------------------------------------------------


def part_path(dest: Path) -> Path:
    """The partial file a download of ``dest`` writes to."""
    return dest.with_name(dest.name + PART_SUFFIX)


def _problem(path: Path, job: DownloadJob, checksum: Checksum | None) -> str | None:
    """Why ``path`` is not the file ``job`` wants, or None when it is (as far as we can tell)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{path} does not exist"
    if job.size is not None and size != job.size:
        return f"size {size} bytes, expected {job.size}"
    if checksum is not None:
        got = checksum.of_file(path)
        if got != checksum.digest:
            return f"{checksum.algorithm} checksum mismatch (got {got}, expected {checksum.digest})"
    return None


def _local_source(href: str) -> Path | None:
    """The local path an href names, or None for a remote URL."""
    parsed = urlparse(href)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DownloadError(f"remote file:// host {parsed.netloc!r} is not supported")
        return Path(url2pathname(unquote(parsed.path)))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(href)
    return None


def _open_part(part: Path, mode: str) -> IO[Any]:
    """Open a ``.part`` file for writing without following a symlink planted in its place."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    flags |= os.O_APPEND if mode == "ab" else os.O_TRUNC
    try:
        fd = os.open(part, flags, 0o666)
    except OSError as exc:
        if os.path.islink(part):
            raise DownloadError(
                f"{part} is a symbolic link; refusing to write through it"
            ) from None
        raise exc
    return os.fdopen(fd, mode)


def _check_place(job: DownloadJob) -> None:
    """Refuse a destination (or its ``.part``) that resolves outside the job's root."""
    if job.root is not None:
        within_root(job.root, job.dest)
        within_root(job.root, part_path(job.dest))


def _publish(part: Path, dest: Path) -> None:
    """Make the finished ``.part`` file durable, then rename it onto ``dest`` atomically."""
    with open(part, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(part, dest)
    if os.name == "posix":  # make the rename itself survive a crash
        with contextlib.suppress(OSError):
            fd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _verified_publish(part: Path, job: DownloadJob, checksum: Checksum | None) -> None:
    problem = _problem(part, job, checksum)
    if problem is not None:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise DownloadError(f"{problem}; partial file removed")
    _publish(part, job.dest)


# -- the engine -----------------------------------------------------------------------------


@dataclass
class _Engine:
    session: HttpSession
    """Shared by the worker threads; credentials only to the origin of each job's href."""
    progress: ProgressCallback | None
    link_local: bool = False
    credentials: CredentialStore = field(default_factory=CredentialStore)
    _buckets: dict[str, S3ObjectStore] = field(default_factory=dict)
    _buckets_lock: threading.Lock = field(default_factory=threading.Lock)

    def _report(self, job: DownloadJob, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(job, done, total)

    def copy_local(self, src: Path, job: DownloadJob, checksum: Checksum | None) -> int:
        """Copy a local file into place through a ``.part`` file; returns bytes copied."""
        if not src.is_file():
            raise DownloadError(f"local source {src} does not exist or is not a file")
        part = part_path(job.dest)
        total = src.stat().st_size
        if self.link_local:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            try:
                os.link(src, part)
            except OSError as exc:  # other file system, or links not supported: copy
                log.debug("cannot hard-link %s (%s); copying", src, exc)
            else:
                self._report(job, total, total)
                _verified_publish(part, job, checksum)
                return 0
        done = 0
        with open(src, "rb") as fin, _open_part(part, "wb") as fout:
            while chunk := fin.read(CHUNK_BYTES):
                fout.write(chunk)
                done += len(chunk)
                self._report(job, done, total)
        _verified_publish(part, job, checksum)
        return done

    def fetch_http(self, job: DownloadJob, checksum: Checksum | None) -> int:
        """Download ``job.href`` into place, resuming a ``.part`` file; returns bytes read.

        Attempts follow the one retry policy (:func:`~eomatch.io.http.call_with_retries`):
        each retry resumes the ``.part`` file where the server honours Range requests.
        """
        part = part_path(job.dest)
        counter = [0]  # bytes received, including attempts that later failed
        # bytes left by an earlier run may be stale (the file changed on the server since)
        stale_possible = part.exists() and part.stat().st_size > 0

        def attempt(last: bool) -> None:
            nonlocal stale_possible
            self._attempt(job, part, counter)
            try:
                _verified_publish(part, job, checksum)
            except DownloadError:
                if not stale_possible or last:
                    raise
                stale_possible = False  # the .part was removed: one fresh try
                raise Retryable("verification failed; restarting from scratch") from None

        limits = self.session.limits
        try:
            call_with_retries(attempt, limits, what=f"download {job.href}")
        except RemoteLimitError as exc:  # redirect loop or too many redirects
            raise DownloadError(str(exc)) from None
        except Retryable as exc:
            raise DownloadError(
                f"gave up after {limits.max_retries + 1} attempt(s): {exc.reason}"
            ) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise DownloadError(
                f"gave up after {limits.max_retries + 1} attempt(s): "
                f"{type(exc).__name__}: {exc or 'no details'}"
            ) from None
        return counter[0]

    def _attempt(self, job: DownloadJob, part: Path, counter: list[int]) -> None:
        """One GET (ranged when a ``.part`` exists), adding the bytes received to ``counter``."""
        offset = part.stat().st_size if part.exists() else 0
        if job.size is not None and offset > job.size:
            offset = 0  # not a prefix of the file we want
        if offset and offset == job.size:
            return  # complete already: verification decides
        headers = {"Accept-Encoding": "identity"}  # byte offsets must be offsets in the file
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with self.session.open("GET", job.href, headers=headers) as resp:
            status = resp.status_code
            if status == 416 and offset:
                total = _content_range_total(resp.headers.get("Content-Range"))
                if total is not None and total == offset:
                    return  # the .part is already complete
                part.unlink()
                raise Retryable(f"HTTP 416 for a resume at byte {offset}; restarting")
            if status in RETRY_STATUSES:
                raise Retryable(
                    f"HTTP {status} {resp.reason_phrase}", resp.headers.get("Retry-After")
                )
            if status in (401, 403):
                raise DownloadError(self.credentials.explain(str(resp.url), status, job.href))
            if status >= 400:
                raise DownloadError(f"HTTP {status} {resp.reason_phrase} for {job.href}")
            if status == 206 and offset and _content_range_start(resp.headers) == offset:
                mode, done = "ab", offset
                total = _content_range_total(resp.headers.get("Content-Range"))
            elif status == 206:
                raise Retryable("unexpected partial content; retrying")
            else:
                mode, done = "wb", 0  # no Range support: start again
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else job.size
            if job.size is not None and total is not None and total > job.size:
                raise DownloadError(
                    f"the server announces {total} bytes, more than the expected file:size "
                    f"{job.size}"
                )
            with _open_part(part, mode) as fh:
                # unbuffered: a drop loses nothing received (an injected transport's in-memory
                # answer is already read)
                chunks = [resp.content] if resp.is_stream_consumed else resp.iter_raw()
                for chunk in chunks:
                    if job.size is not None and done + len(chunk) > job.size:
                        fh.close()
                        with contextlib.suppress(FileNotFoundError):
                            part.unlink()
                        raise DownloadError(
                            f"the server sent more than the expected file:size {job.size} "
                            "bytes; partial file removed"
                        )
                    fh.write(chunk)
                    counter[0] += len(chunk)
                    done += len(chunk)
                    self._report(job, done, total)

    def _bucket(self, bucket: str) -> S3ObjectStore:
        """One client per bucket (its ``credentials: s3://bucket`` entry, else AWS_*)."""
        from eomatch.io.object_store import S3Config, S3ObjectStore

        with self._buckets_lock:
            if bucket not in self._buckets:
                access = self.credentials.s3(bucket)
                keys = {
                    name: secret.reveal()
                    for name, secret in (
                        ("access_key_id", access.access_key_id),
                        ("secret_access_key", access.secret_access_key),
                        ("token", access.session_token),
                    )
                    if secret is not None
                }
                config = S3Config(
                    bucket,
                    endpoint=access.endpoint,
                    region=access.region,
                    allow_http=bool(access.endpoint and access.endpoint.startswith("http://")),
                    requester_pays=access.requester_pays,
                    anonymous=access.anonymous,
                    timeout_s=self.session.limits.timeout_s,
                )
                self._buckets[bucket] = S3ObjectStore(config, keys)
            return self._buckets[bucket]

    def fetch_s3(self, job: DownloadJob, checksum: Checksum | None) -> int:
        """Stream ``s3://bucket/key`` into place, resuming a ``.part`` file with a ranged GET;
        returns bytes read. The client retries requests itself; a failed run leaves the
        ``.part`` file for the next one."""
        parsed = urlparse(job.href)
        bucket, key = parsed.netloc, unquote(parsed.path.lstrip("/"))
        if not bucket or not key:
            raise DownloadError(f"{job.href!r} names no bucket and key")
        store = self._bucket(bucket)
        part = part_path(job.dest)
        offset = part.stat().st_size if part.exists() else 0
        if job.size is not None and offset > job.size:
            offset = 0
        try:
            size, chunks = store.stream(key, offset)
            if offset > size:  # not a prefix of this object
                offset = 0
                size, chunks = store.stream(key, 0)
            if job.size is not None and size > job.size:
                raise DownloadError(
                    f"the object has {size} bytes, more than the expected file:size {job.size}"
                )
            done = 0
            with _open_part(part, "ab" if offset else "wb") as fh:
                done = offset
                for chunk in chunks:
                    fh.write(chunk)
                    done += len(chunk)
                    self._report(job, done, size)
        except EomatchError as exc:
            if isinstance(exc, DownloadError):
                raise
            hint = ""
            if f"s3://{bucket.lower()}" not in self.credentials.config:
                hint = (
                    f"; a private or requester-pays bucket needs credentials: s3://{bucket} "
                    "(type: s3) in the configuration, or the AWS_* variables"
                )
            elif "403" in str(exc) and not self.credentials.s3(bucket).requester_pays:
                hint = (
                    f"; if the bucket is requester-pays, set requester_pays: true under "
                    f"credentials: s3://{bucket}"
                )
            raise DownloadError(f"{exc}{hint}") from None
        _verified_publish(part, job, checksum)
        return done - offset


def _content_range_start(headers: httpx.Headers) -> int | None:
    value = headers.get("Content-Range", "")
    try:
        unit, rest = value.split(" ", 1)
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _content_range_total(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _fetch_group(engine: _Engine, jobs: list[DownloadJob]) -> list[DownloadResult]:
    """Jobs sharing one href: fetch it once, then place it at every other destination."""
    results: list[DownloadResult] = []
    source: Path | None = None
    fetch_failed: dict[tuple[str | None, int | None], str] = {}
    """Reasons a fetch failed, by what was expected of the file: not tried again."""
    for job in jobs:
        try:
            checksum = parse_multihash(job.checksum) if job.checksum else None
        except ValueError as exc:
            results.append(DownloadResult(job, "failed", reason=str(exc)))
            continue
        try:
            _check_place(job)
            if job.dest.exists() and _problem(job.dest, job, checksum) is None:
                results.append(DownloadResult(job, "present", job.dest))
                source = source or job.dest
                continue
            job.dest.parent.mkdir(parents=True, exist_ok=True)
            _check_place(job)  # again: the folders exist now
            if source is not None:  # already fetched for an earlier job of this href
                engine.copy_local(source, job, checksum)
                results.append(DownloadResult(job, "downloaded", job.dest))
                continue
            expected = (job.checksum, job.size)
            if expected in fetch_failed:
                raise DownloadError(fetch_failed[expected])
            local = _local_source(job.href)
            if local is not None:
                if job.dest.exists() and local.exists() and os.path.samefile(local, job.dest):
                    raise DownloadError(f"{job.dest} is its own source and fails verification")
                n = engine.copy_local(local, job, checksum)
            elif urlparse(job.href).scheme in ("http", "https"):
                try:
                    n = engine.fetch_http(job, checksum)
                except DownloadError as exc:
                    fetch_failed[expected] = str(exc)
                    raise
            elif urlparse(job.href).scheme == "s3":
                n = engine.fetch_s3(job, checksum)
            else:
                raise DownloadError(f"unsupported URL scheme in {job.href!r}")
            results.append(DownloadResult(job, "downloaded", job.dest, bytes_transferred=n))
            source = job.dest
        except (EomatchError, OSError) as exc:
            reason = str(exc) if isinstance(exc, EomatchError) else f"{type(exc).__name__}: {exc}"
            results.append(DownloadResult(job, "failed", reason=reason))
    return results


def download(
    jobs: Sequence[DownloadJob],
    *,
    concurrency: int = 4,
    retries: int = 3,
    timeout: float = 60,
    progress: ProgressCallback | None = None,
    on_done: DoneCallback | None = None,
    headers: Mapping[str, str] | None = None,
    backoff: float = 0.5,
    link_local: bool = False,
    transport: httpx.BaseTransport | None = None,
    limits: HttpLimits | None = None,
    credentials: CredentialStore | None = None,
) -> DownloadReport:
    """Fetch every job's file; one job failing never stops the others.

    Args:
        jobs: the files to fetch. Jobs with the same href are fetched once (copied to any
            further destination). A job whose ``dest`` already holds the right file is
            reported ``present`` without any transfer.
        concurrency: files fetched at the same time (threads).
        retries: further attempts after a dropped connection, a timeout or a transient
            answer (:data:`~eomatch.io.http.RETRY_STATUSES`); each attempt resumes the
            ``.part`` file when the server honours Range requests. ``Retry-After`` is
            honoured up to ``limits.max_retry_after_s``.
        timeout: seconds allowed to connect and between received bytes.
        progress: ``progress(job, bytes_done, total_or_None)``, called from worker threads.
        on_done: ``on_done(job, path)`` after each downloaded or present job, called on the
            calling thread (one at a time) so it may save catalogue items without locking. An
            exception from it marks that job failed.
        headers: credentials, sent only to the origin (scheme, host, port) of each job's href,
            never on a redirect to another origin.
        backoff: wait before the first retry; doubled for each further one.
        link_local: hard-link local sources instead of copying them (falls back to a copy
            across file systems); the link shares the source's bytes, so edits show in both.
        transport: an httpx transport (tests; the network by default).
        limits: further HTTP bounds (:class:`~eomatch.io.http.HttpLimits`: redirects,
            ``Retry-After`` cap); ``retries``, ``timeout`` and ``backoff`` override its fields.
            Default: 10 redirects (download servers redirect to signed storage URLs).
        credentials: per-host credentials (and S3 bucket options); default: the environment
            and ``~/.netrc`` (:class:`~eomatch.io.credentials.CredentialStore`). Each host's go
            to that host only; a token is renewed on expiry or on a 401.

    Raises:
        EomatchError: a job has no href (e.g. a predicted product), or two jobs want different
            files at one destination; raised before anything is fetched.
    """
    if concurrency < 1:
        raise InputError(f"download concurrency must be at least 1, got {concurrency}")
    bounds = replace(
        limits or HttpLimits(max_redirects=MAX_REDIRECTS),
        timeout_s=timeout,
        max_retries=retries,
        backoff_s=backoff,
    )
    groups: dict[str, list[tuple[int, DownloadJob]]] = {}
    dest_href: dict[Path, str] = {}
    for index, job in enumerate(jobs):
        if not job.href or not job.href.strip():
            raise InputError(
                f"product {job.product_id}: no file to download (no href; predicted products "
                "have no data to fetch)"
            )
        dest = Path(os.path.abspath(job.dest))
        other = dest_href.setdefault(dest, job.href)
        if other != job.href:
            raise ConflictError(
                f"product {job.product_id}: {job.dest} is the destination of two different "
                f"files ({other} and {job.href})"
            )
        groups.setdefault(job.href, []).append((index, job))

    results: list[DownloadResult | None] = [None] * len(jobs)
    store = credentials or CredentialStore(limits=bounds, transport=transport)
    with (
        contextlib.closing(store) if credentials is None else contextlib.nullcontext(),
        HttpSession(
            None,  # credentials go to each job's own origin, never to a redirect elsewhere
            credentials=headers,
            auth=store,
            limits=bounds,
            transport=transport,
            max_connections=max(concurrency, 4),
        ) as session,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eomatch-dl") as pool,
    ):
        engine = _Engine(session, progress, link_local, store)
        futures: dict[Future[list[DownloadResult]], list[int]] = {
            pool.submit(_fetch_group, engine, [job for _, job in members]): [i for i, _ in members]
            for members in groups.values()
        }
        try:
            for future in as_completed(futures):
                for index, result in zip(futures[future], future.result(), strict=True):
                    results[index] = _notify(result, on_done)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # running files finish as .part
            raise
    return DownloadReport([r for r in results if r is not None])


def _notify(result: DownloadResult, on_done: DoneCallback | None) -> DownloadResult:
    if result.status == "failed" or on_done is None or result.path is None:
        if result.status == "failed":
            log.warning("download of %s failed: %s", result.job.product_id, result.reason)
        return result
    try:
        on_done(result.job, result.path)
    except Exception as exc:
        reason = f"on_done failed: {type(exc).__name__}: {exc}"
        log.warning("download of %s: %s", result.job.product_id, reason)
        return DownloadResult(result.job, "failed", result.path, reason, result.bytes_transferred)
    return result
