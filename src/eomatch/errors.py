"""The one error tree: every error eomatch raises on purpose is a class of this module.

Each message is one line that says what and where; the CLI prints it as ``eomatch: error: ...``
(no traceback) and the APIs answer it as JSON. The branch, not the message, decides the exit
code and the HTTP status (:data:`EXIT_CODES`, :data:`HTTP_STATUSES`), so a caller catches the
branch it can act on (``except NotFoundError``) instead of parsing texts::

    EomatchError                      anything eomatch reports on purpose (exit 2, HTTP 400)
    ├── ConfigError                   settings, configuration files, environment (exit 2, 500)
    │   └── MissingExtraError         + ImportError: a pip extra is not installed
    ├── InputError                    what the user gave: arguments, files, documents (2, 400)
    │   ├── InvalidValueError         + ValueError: a value outside its domain (core checks)
    │   │   ├── TleError              a malformed two-line element set
    │   │   └── CoverageError         a window too far outside the element sets
    │   ├── UnsafePathError           an identifier that would become a path outside its root
    │   ├── UnreadableFileError       + OSError: not a regular file, or too large
    │   └── UnreadableProductError    a product's data no reader can read (or not there)
    ├── NotFoundError                 + LookupError: no such thing (2, 404)
    │   ├── UnknownSatelliteError     a name no registered satellite answers to
    │   └── UnknownCollectionError    a collection id in no table or configuration
    ├── ConflictError                 exists already, or is busy (2, 409)
    ├── DatabaseError                 PostgreSQL/pgSTAC failed or is unreachable (2, 503)
    │   ├── ClusterError              the local cluster (initdb, pg_ctl) cannot do it
    │   └── DumpFailed                pg_dump/pg_restore/psql of a backup failed
    ├── NetworkError                  a remote server failed us (2, 502)
    │   ├── TransportFailure          no answer after every attempt
    │   ├── Retryable                 an outcome worth another attempt (inside the retry loop)
    │   ├── RemoteLimitError          an answer exceeded a bound (bytes, pages, time...)
    │   ├── DownloadError             one download cannot be completed
    │   └── TokenError                a token endpoint refused a provider login
    └── ServiceError                  running the service: supervision, gateway, browser (2, 503)
        ├── GatewayError              nginx missing, misconfigured, or not starting
        ├── StorageError              the object store cannot keep a file (full, no permission)
        ├── JobCancelled              a job was cancelled while it ran (the worker stops it)
        └── BrowserBuildError         STAC Browser not built and not buildable here

Why the mixins (``ValueError``, ``LookupError``, ``OSError``, ``ImportError``): pydantic
validators and older callers catch the built-in class; the tree class keeps them working.
Modules that defined a class before it moved here re-export it (``from eomatch.errors import
X as X``), so old import paths keep working. The translation of database driver errors into
this tree lives in one place, :mod:`eomatch.io.pg_errors`. This module imports nothing (every
layer may import it).
"""

from __future__ import annotations


class EomatchError(Exception):
    """Bad input or environment that the user can fix; the message says what and where."""


# -- the branches ------------------------------------------------------------------------------


class ConfigError(EomatchError):
    """Settings, a configuration file or the environment is wrong or incomplete."""


class InputError(EomatchError):
    """What the user gave (an argument, a file, a document, an identifier) is not acceptable."""


class InvalidValueError(InputError, ValueError):
    """A value outside its domain; also a :class:`ValueError`, which pydantic validators and
    callers of the pure core expect."""


class NotFoundError(EomatchError, LookupError):
    """The thing asked for does not exist (also a :class:`LookupError`, as ``KeyError`` is)."""


class ConflictError(EomatchError):
    """The request clashes with what exists (a name taken, a service already running)."""


class DatabaseError(EomatchError):
    """A database operation failed; the message is one line for the user."""


class NetworkError(EomatchError):
    """A remote server was unreachable, refused us, answered badly or broke a bound."""


class ServiceError(EomatchError):
    """Running the service failed (supervision, the gateway, STAC Browser)."""


EXIT_CODES: dict[type[EomatchError], int] = {
    ConfigError: 2,
    InputError: 2,
    NotFoundError: 2,
    ConflictError: 2,
    DatabaseError: 2,
    NetworkError: 2,
    ServiceError: 2,
    EomatchError: 2,
}
"""CLI exit code per branch. Every reported problem exits 2, as README and docs promise
("one line on stderr, exit code 2"); 1 is left to internal errors (a bug: a traceback with
``-v``), 130 to Ctrl-C. Giving failures of the environment (database, network, service) their
own code is a change of these rows (and of the docs and tests that state 2)."""

HTTP_STATUSES: dict[type[EomatchError], int] = {
    ConfigError: 500,
    InputError: 400,
    NotFoundError: 404,
    ConflictError: 409,
    DatabaseError: 503,
    NetworkError: 502,
    ServiceError: 503,
    EomatchError: 400,
}
"""API status per branch: the client's fault is 4xx, ours or a dependency's is 5xx."""


def _branch_value(exc: BaseException, table: dict[type[EomatchError], int], default: int) -> int:
    for cls in type(exc).__mro__:  # the nearest branch wins (MissingExtraError: ConfigError)
        if cls in table:
            return table[cls]
    return default


def exit_code(exc: BaseException) -> int:
    """The CLI exit code for ``exc`` (1 for anything outside the tree: an internal error)."""
    return _branch_value(exc, EXIT_CODES, 1)


def http_status(exc: BaseException) -> int:
    """The HTTP status for ``exc`` (500 for anything outside the tree)."""
    return _branch_value(exc, HTTP_STATUSES, 500)


# -- leaves ------------------------------------------------------------------------------------


class TleError(InvalidValueError):
    """A malformed element set; the message names the source and line."""


class CoverageError(InvalidValueError):
    """A time window reaches too far outside the available element sets."""


class UnknownSatelliteError(NotFoundError):
    """Raised for a name that no registered satellite answers to."""


class UnknownCollectionError(NotFoundError):
    """A collection id that is not in the table and was not described in configuration."""


class ClusterError(DatabaseError):
    """The local cluster cannot do what was asked; the message says why."""


class DumpFailed(DatabaseError):
    """``pg_dump``, ``pg_restore`` or ``psql`` exited with an error (the message is its last
    line)."""


class TransportFailure(NetworkError):
    """No answer after every attempt (refused, reset, timed out)."""

    def __init__(self, url: str, reason: str, attempts: int, *, timed_out: bool = False) -> None:
        self.url = url
        self.attempts = attempts
        self.timed_out = timed_out
        self.reason = reason
        super().__init__(
            f"{url}: {'timed out' if timed_out else 'failed'} after {attempts} "
            f"attempt(s) ({reason})"
        )


class Retryable(NetworkError):
    """An outcome worth another attempt (a status in ``eomatch.io.http.RETRY_STATUSES``, a
    resume to restart), raised inside the retry loop; the last one is raised to its caller.

    Attributes:
        reason: one line (``HTTP 503 Service Unavailable``).
        retry_after: the answer's ``Retry-After`` header, if any.
    """

    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DownloadError(NetworkError):
    """One job cannot be completed; the message is the one-line reason."""


class TokenError(NetworkError):
    """A token endpoint refused to issue a token for a provider login, or answered nonsense."""


class GatewayError(ServiceError):
    """nginx is missing, rejects its configuration, or does not start or stop in time."""


class StorageError(ServiceError):
    """The object store refused to keep a file for good (disk or bucket full, no permission):
    not worth retrying until someone makes room."""


class JobCancelled(ServiceError):
    """Raised by ``JobContext.check_cancelled`` when the job was cancelled meanwhile."""


class BrowserBuildError(ServiceError):
    """The STAC Browser is not built and cannot be built here (no npm, build failure)."""


class UnsafePathError(InputError):
    """An identifier from outside cannot become a path, or a path would leave its root."""


class RemoteLimitError(NetworkError):
    """A remote server's answer exceeded a bound (bytes, pages, items, time, redirects)."""


class UnreadableFileError(InputError, OSError):
    """A path that is not a regular file, or too large, refused before reading it.

    Also an :class:`OSError`, so readers that already turn unreadable files into their own
    one-line error (or skip them) treat it the same way.
    """


class UnreadableProductError(InputError):
    """A product whose data cannot be read for a matchup dataset: no reader for its assets,
    a file that is missing or broken, or pixels that miss the collocation region."""


class MissingExtraError(ConfigError, ImportError):
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
