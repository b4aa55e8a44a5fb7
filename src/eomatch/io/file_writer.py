"""Atomic file writes, in this process or in a helper process fed through a pipe.

Why a helper process: a bulk catalogue write is Python work (building and serialising items)
plus kernel work (creating files), about equal on this machine class. In one process they take
turns; a writer thread would fight the caller for the GIL after every system call. A helper
process that only creates files puts the two on two cores. Parallel file creation by several
processes was measured slower on ext4, so there is exactly one.

The helper runs this file as a script (standard library only: it starts in milliseconds, not
with the package's imports). Protocol on its stdin, little-endian: ``<II`` (path length, data
length), the catalogue-relative path (UTF-8) and the bytes; a frame with path length 0 asks for
``ok\\n`` on stdout once everything before it is written. Files are written in the order
received, each complete or not at all; on end of input (the caller closed the pipe, or died)
the helper finishes the complete frames it has and exits. It inherits the catalogue's lock, so
no other writer starts while it still writes. On an error it prints ``error <path>: <reason>``
and exits 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import sys

FRAME = struct.Struct("<II")


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


def serve(root: str) -> int:
    """The helper's loop: frames from stdin until end of input."""
    inp = sys.stdin.buffer
    out = sys.stdout.buffer
    made: set[str] = set()
    while True:
        head = inp.read(FRAME.size)
        if len(head) < FRAME.size:
            return 0
        n_path, n_data = FRAME.unpack(head)
        if n_path == 0:
            out.write(b"ok\n")
            out.flush()
            continue
        raw = inp.read(n_path + n_data)
        if len(raw) < n_path + n_data:
            return 0  # the caller died mid-frame: that file is not written
        rel = raw[:n_path].decode()
        try:
            write_under(root, rel, raw[n_path:], made)
        except OSError as exc:
            out.write(f"error {rel}: {exc.strerror or exc}\n".encode())
            out.flush()
            return 1


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the caller handles it and closes the pipe, and
    # this process finishes the complete files it was given instead of dying mid-queue.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(serve(sys.argv[1]))
