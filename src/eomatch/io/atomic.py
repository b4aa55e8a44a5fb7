"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson


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


def json_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON with a final newline (orjson; the stdlib for what orjson refuses)."""
    try:
        return orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # keys that are not strings, integers beyond 64 bits
        return (json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def pretty_json_bytes(data: Any) -> bytes:
    """Indented JSON for the files people read (catalog, collections)."""
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
