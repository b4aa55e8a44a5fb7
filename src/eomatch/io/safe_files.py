"""Reading a file the user or a catalogue names, with its cost bounded before it is paid.

A FIFO blocks ``open`` until a writer appears and then streams forever; ``/dev/zero`` or
``/dev/urandom`` never end; a multi-gigabyte file is read whole by ``read_text``. Every reader
of a file that comes from outside (configuration, TLE files, catalogue JSON, files to hash)
goes through :func:`open_regular` or :func:`read_regular_bytes`: the path is checked with
``os.stat`` (no open of a device or FIFO at all), opened with ``O_NONBLOCK`` so that a FIFO
swapped in between cannot hang the open, checked again on the descriptor, and read with a
byte cap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from eomatch.errors import EomatchError, UnreadableFileError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def _os_error(exc: OSError, what: str, path: Path) -> Exception:
    """The one-line error for ``exc``. Callers with ``raw_os_errors`` re-raise ``exc``
    itself instead (a bare ``raise``, not ``raise exc from exc``: an exception that is its own
    cause is a reference cycle holding its traceback's frames until the cyclic collector runs;
    ``eomatch query`` made ~2 a new day folder, most of what its collector found)."""
    return EomatchError(f"cannot read {what} {path}: {exc.strerror or exc}")


def check_regular(
    path: Path, what: str, max_bytes: int | None = None, *, raw_os_errors: bool = False
) -> os.stat_result:
    """``path``'s stat when it is a regular file (following links) within ``max_bytes``.

    With ``raw_os_errors`` a missing or unreadable path raises its own :class:`OSError`
    (for readers that handle those already); the refusals are always
    :class:`UnreadableFileError`, itself an ``OSError``.

    Raises:
        EomatchError: missing, unreadable, not a regular file, or too large (one line).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if raw_os_errors:
            raise
        raise _os_error(exc, what, path) from exc
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFileError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise UnreadableFileError(
            f"{what} {path} is {_mib(st.st_size)}, more than the limit of {_mib(max_bytes)}"
        )
    return st


def open_regular(
    path: Path, what: str, max_bytes: int | None = None, *, raw_os_errors: bool = False
) -> int:
    """A read-only descriptor of ``path`` after the checks of :func:`check_regular`.

    The open itself never blocks (``O_NONBLOCK``), and the descriptor is checked again, so a
    file replaced by a FIFO or device after the first check is refused too. The caller closes.
    """
    check_regular(path, what, max_bytes, raw_os_errors=raw_os_errors)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if raw_os_errors:
            raise
        raise _os_error(exc, what, path) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFileError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_bytes(
    path: Path, what: str, max_bytes: int, *, raw_os_errors: bool = False
) -> bytes:
    """The bytes of regular file ``path``, refused past ``max_bytes`` (also if it grows).

    Raises:
        EomatchError: see :func:`check_regular`; also a read error (one line).
    """
    fd = open_regular(path, what, max_bytes, raw_os_errors=raw_os_errors)
    try:
        with os.fdopen(fd, "rb", closefd=True) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        if raw_os_errors:
            raise
        raise _os_error(exc, what, path) from exc
    if len(data) > max_bytes:
        raise UnreadableFileError(f"{what} {path} is more than the limit of {_mib(max_bytes)}")
    return data


def read_regular_text(
    path: Path, what: str, max_bytes: int, encoding: str = "utf-8", errors: str = "strict"
) -> str:
    """The text of regular file ``path`` (see :func:`read_regular_bytes`).

    Raises:
        EomatchError: also when the bytes are not valid ``encoding`` (with the byte offset).
    """
    data = read_regular_bytes(path, what, max_bytes)
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as exc:
        raise EomatchError(
            f"{what} {path}: byte {exc.start} is not valid {encoding.upper()} text"
        ) from exc
