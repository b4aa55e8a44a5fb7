"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class EomatchError(Exception):
    """Bad input or environment that the user can fix; the message says what and where."""


class UnsafePathError(EomatchError):
    """An identifier from outside cannot become a path, or a path would leave its root."""


class RemoteLimitError(EomatchError):
    """A remote server's answer exceeded a bound (bytes, pages, items, time, redirects)."""


class UnreadableFileError(EomatchError, OSError):
    """A path that is not a regular file, or too large, refused before reading it.

    Also an :class:`OSError`, so readers that already turn unreadable files into their own
    one-line error (or skip them) treat it the same way.
    """
