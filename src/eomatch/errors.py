"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class EomatchError(Exception):
    """Bad input or environment that the user can fix; the message says what and where."""
