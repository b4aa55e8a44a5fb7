"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class EomatchError(Exception):
    """Bad input or environment that the user can fix; the message says what and where."""


class UnsafePathError(EomatchError):
    """An identifier from outside cannot become a path, or a path would leave its root."""


class RemoteLimitError(EomatchError):
    """A remote server's answer exceeded a bound (bytes, pages, items, time, redirects)."""
