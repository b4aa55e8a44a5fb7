"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import orjson

from eomatch.io.file_writer import write_file_atomic

__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "json_bytes",
    "pretty_json_bytes",
    "sync_files",
    "write_file_atomic",
    "write_files",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[str]]:
    """Write to a temporary file beside ``path``; rename over it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from colleagues
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_open(path) as fh:
        fh.write(text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_open(path, "wb", encoding=None) as fh:
        fh.write(data)  # type: ignore[arg-type]


def json_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON with a final newline (orjson; the stdlib for what orjson refuses)."""
    try:
        return orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # keys that are not strings, integers beyond 64 bits
        return (json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def pretty_json_bytes(data: Any) -> bytes:
    """Indented JSON for the files people read (catalog, collections; orjson: a collection
    lists every day, and is rewritten whenever a day is added)."""
    try:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


@functools.cache
def _syncfs() -> Any:
    """libc's ``syncfs`` (Linux), or None."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return libc.syncfs
    return None


def sync_files(path: Path) -> None:
    """Make every file written so far on the file system holding ``path`` durable.

    One ``syncfs`` (Linux; ``sync`` elsewhere) instead of an fsync per file: a batch of
    thousands of files is flushed in one journal commit instead of one each, the difference
    between seconds and minutes on a busy disk.
    """
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


PARALLEL_FILES = 4
"""Threads creating the files of one :func:`write_files` call."""


def write_files(writes: Sequence[tuple[str, bytes]], durable: bool) -> None:
    """Write independent files (distinct paths, each atomically), in parallel when many.

    The bytes are ready, so the threads only make system calls (no GIL contention): on a busy
    disk, creating a file waits on the file system's journal, and several waits overlap
    (measured here: 1 200 files/s with one thread, 2 400 with two to four).
    """
    if len(writes) < 2 * PARALLEL_FILES:
        for path, data in writes:
            write_file_atomic(path, data, durable)
        return
    with ThreadPoolExecutor(PARALLEL_FILES, thread_name_prefix="eomatch-files") as pool:
        for _ in pool.map(lambda w: write_file_atomic(w[0], w[1], durable), writes):
            pass
