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


class MissingExtraError(EomatchError, ImportError):
    """A feature whose optional dependencies (a pip extra) are not installed.

    Also an :class:`ImportError`, raised where the import would have failed, so Python users
    see the install line instead of a bare ``ModuleNotFoundError``.
    """

    def __init__(self, extra: str, module: str, feature: str) -> None:
        self.extra, self.module, self.feature = extra, module, feature
        super().__init__(
            f"{feature} needs the {extra} extra: pip install 'eomatch[{extra}]' "
            f"({module} is not installed)"
        )

    def for_feature(self, feature: str) -> MissingExtraError:
        """The same error, naming what the user asked for (e.g. ``eomatch serve``)."""
        return MissingExtraError(self.extra, self.module, feature)
