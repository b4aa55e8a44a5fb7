"""Atomic file writes, in this process or in a helper process fed through a pipe.

Why a helper process: a bulk catalogue write is Python work (building and serialising items)
plus kernel work (creating files), about equal on this machine class. In one process they take
turns; a writer thread would fight the caller for the GIL after every system call. A helper
process that only creates files puts the two on two cores. Parallel file creation by several
processes was measured slower on ext4, so there is exactly one.

The helper runs this file as a script (standard library only: it starts in milliseconds, not
with the package's imports). Protocol on its stdin, little-endian: ``<II`` (path length, data
length), the catalogue-relative path (UTF-8) and the bytes. Files are written in the order
received, each complete or not at all, except that a run of frames flagged :data:`PARALLEL`
(high bit of the path length) may be written concurrently by :data:`THREADS` threads: on a busy
disk creating a file mostly waits on the file system's journal, and the waits overlap. A
frame that is not flagged, a barrier (path length 0, data length 1) and a sync (both 0) wait
until every earlier file is written; a sync then answers ``ok\n`` on stdout. On end of input
(the caller closed the pipe, or died) the helper finishes the complete frames it has and
exits. It inherits the catalogue's lock, so no other writer starts while it still writes. On
an error it prints ``error <path>: <reason>`` and exits 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

FRAME = struct.Struct("<II")
PARALLEL = 1 << 31
"""Flag in a frame's path length: may be written alongside the flagged frames around it."""
BARRIER = FRAME.pack(0, 1)
"""Frame: the files before it are written before any after it (no answer)."""
THREADS = 4
"""Threads writing a run of :data:`PARALLEL` frames."""
MAX_IN_FLIGHT = 512
"""Parallel files queued to the threads before the reader waits (bounds memory)."""


def write_file_atomic(path: str | os.PathLike[str], data: bytes, durable: bool) -> None:
    """Replace ``path`` with ``data`` via ``.{name}.{pid}.tmp`` beside it (hot path: no mkstemp).

    The temp name is per process, so writers of one file must be serialised within a process
    (the catalogue's writers are). ``durable`` adds an fsync before the rename.
    """
    head, sep, name = os.fspath(path).rpartition("/")
    tmp = f"{head}{sep}.{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_under(root: str, rel: str, data: bytes, made: set[str]) -> None:
    """Write ``{root}/{rel}`` atomically (not durable), making its folder unless in ``made``."""
    folder = rel.rpartition("/")[0]
    if folder not in made:
        os.makedirs(f"{root}/{folder}", exist_ok=True)
        made.add(folder)
    write_file_atomic(f"{root}/{rel}", data, durable=False)


class _Writes:
    """Files being written by the threads; the first error."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.made: set[str] = set()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(THREADS)
        self.flying: dict[str, Future[None]] = {}
        self.order: deque[tuple[str, Future[None]]] = deque()
        self.error: str | None = None

    def _write(self, rel: str, data: bytes, before: Future[None] | None) -> None:
        if before is not None:
            before.result()
        try:
            with self.lock:  # makedirs of a shared folder once
                folder = rel.rpartition("/")[0]
                if folder not in self.made:
                    os.makedirs(f"{self.root}/{folder}", exist_ok=True)
                    self.made.add(folder)
            write_file_atomic(f"{self.root}/{rel}", data, durable=False)
        except OSError as exc:
            with self.lock:
                self.error = self.error or f"{rel}: {exc.strerror or exc}"

    def parallel(self, rel: str, data: bytes) -> None:
        fut = self.pool.submit(self._write, rel, data, self.flying.get(rel))
        self.flying[rel] = fut
        self.order.append((rel, fut))
        while len(self.order) > MAX_IN_FLIGHT:
            self._retire()

    def _retire(self) -> None:
        rel, fut = self.order.popleft()
        fut.result()
        if self.flying.get(rel) is fut:
            del self.flying[rel]

    def wait(self) -> str | None:
        """Wait for every file given so far; the first error, if any."""
        while self.order:
            self._retire()
        return self.error


def serve(root: str) -> int:
    """The helper's loop: frames from stdin until end of input."""
    inp = sys.stdin.buffer
    out = sys.stdout.buffer
    writes = _Writes(root)
    try:
        while True:
            head = inp.read(FRAME.size)
            if len(head) < FRAME.size:
                return _fail(out, writes.wait())
            n_path, n_data = FRAME.unpack(head)
            parallel = bool(n_path & PARALLEL)
            n_path &= ~PARALLEL
            if n_path == 0:
                error = writes.wait()
                if error:
                    return _fail(out, error)
                if n_data == 0:
                    out.write(b"ok\n")
                    out.flush()
                continue
            raw = inp.read(n_path + n_data)
            if len(raw) < n_path + n_data:  # the caller died mid-frame: that file is not written
                return _fail(out, writes.wait())
            rel = raw[:n_path].decode()
            if parallel:
                writes.parallel(rel, raw[n_path:])
                if writes.error:
                    return _fail(out, writes.wait())
                continue
            error = writes.wait()
            if error:
                return _fail(out, error)
            try:
                write_under(root, rel, raw[n_path:], writes.made)
            except OSError as exc:
                return _fail(out, f"{rel}: {exc.strerror or exc}")
    finally:
        writes.pool.shutdown(wait=True)


def _fail(out: BinaryIO, error: str | None) -> int:
    if error is None:
        return 0
    out.write(f"error {error}\n".encode())
    out.flush()
    return 1


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the caller handles it and closes the pipe, and
    # this process finishes the complete files it was given instead of dying mid-queue.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(serve(sys.argv[1]))
