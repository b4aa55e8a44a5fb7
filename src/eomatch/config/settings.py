"""Environment settings (``EOMATCH_*``): one class per concern, every variable documented in
``docs/service.md`` (the database keeps libpq's ``PG*`` names: ``io.pg_conn.DbSettings``).

Read them with :func:`read_settings`: a bad value is one :class:`~eomatch.errors.ConfigError`
line naming the variable (``EOMATCH_API_POOL_SIZE='ten': ...``), not a pydantic traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from eomatch.errors import ConfigError

__all__ = [
    "DEFAULT_GP_URL",
    "ApiSettings",
    "BackupSettings",
    "BrowserSettings",
    "JobsSettings",
    "Settings",
    "StorageSettings",
    "public_origin",
    "read_settings",
    "settings_error",
]

DEFAULT_GP_URL = "https://celestrak.org/NORAD/elements/gp.php"


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


def _default_data_dir() -> Path:
    # As root, ~ is unreachable for the postgres user who must own the cluster's files.
    if os.geteuid() == 0 and not os.environ.get("XDG_DATA_HOME"):
        return Path("/var/lib/eomatch")
    return _xdg("XDG_DATA_HOME", ".local/share") / "eomatch"


class Settings(BaseSettings):
    """Process-wide settings read from the environment."""

    model_config = SettingsConfigDict(env_prefix="EOMATCH_", extra="ignore")

    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "eomatch")
    """Where ``eomatch tle update`` stores fetched element sets (``<cache_dir>/tle``)."""
    config_dir: Path = Field(default_factory=lambda: _xdg("XDG_CONFIG_HOME", ".config") / "eomatch")
    """Where the user configuration ``config.yaml`` lives."""
    tle_dirs: list[Path] = Field(default_factory=list)
    """Extra directories of TLE files (JSON list in the environment)."""
    data_dir: Path = Field(default_factory=lambda: _default_data_dir())
    """Where eomatch keeps its local database cluster (``<data_dir>/db``)."""
    db_dir: Path | None = None
    """The local cluster folder (overrides ``<data_dir>/db``)."""
    gp_url: str = DEFAULT_GP_URL
    """CelesTrak-style GP endpoint used by ``eomatch tle update``."""

    @property
    def tle_cache_dir(self) -> Path:
        """Directory of fetched element sets."""
        return self.cache_dir / "tle"

    @property
    def local_db_dir(self) -> Path:
        """Folder of the local database cluster."""
        return self.db_dir or self.data_dir / "db"

    @property
    def user_config_file(self) -> Path:
        """The user's layered configuration file."""
        return self.config_dir / "config.yaml"


class ApiSettings(BaseSettings):
    """One STAC API process (``uvicorn eomatch.service.serving:create_app``); ``eomatch serve``
    sets them for the processes it starts."""

    model_config = SettingsConfigDict(env_prefix="EOMATCH_", extra="ignore")

    api_mode: Literal["internal", "external"] = "internal"
    """Which API: ``internal`` (read/write, keys) or ``external`` (read only, public view)."""
    api_pool_size: int = Field(default=10, ge=1, le=1000)
    """Most database connections the API's pool opens (each of reads and writes)."""
    api_db_user: str | None = None
    """The role the API connects as (default ``PGUSER``, else eomatch_api / eomatch_reader)."""
    public_url: str = ""
    """``http(s)://host[:port]`` every link and redirect uses (empty: the request's own)."""
    db_wait: float = Field(default=30.0, ge=0, le=86400)
    """Seconds the API waits for the database at start-up before giving up."""
    db_read_hosts: str = ""
    """``HOST:PORT[,HOST:PORT...]`` where reads go (streaming replicas, or a pooler in front of
    them), tried in order preferring a standby, with the primary (``PG*``) as the last resort;
    writes always go to the primary. Empty: reads go to the primary too."""

    db_read_pooling: Literal["session", "transaction"] = "session"
    """``transaction``: the read hosts are a pooler in transaction mode (pgbouncer
    ``pool_mode = transaction``), so the read pool caches no prepared statements."""
    api_cache_mb: float = Field(default=64.0, ge=0, le=65536)
    """Memory for read answers kept per database snapshot (``0``: none kept); see
    :mod:`eomatch.service.response_cache`."""
    api_cache_ttl: float = Field(default=30.0, gt=0, le=86400)
    """Seconds a kept answer may be served (bounds the lag behind a read replica)."""

    @field_validator("db_read_hosts")
    @classmethod
    def _read_hosts(cls, value: str) -> str:
        for entry in filter(None, (v.strip() for v in value.split(","))):
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{entry!r} is not HOST:PORT")
        return value.strip()

    @property
    def read_hosts(self) -> list[tuple[str, int]]:
        """:attr:`db_read_hosts` as ``(host, port)`` pairs."""
        pairs = (v.strip().rpartition(":") for v in self.db_read_hosts.split(",") if v.strip())
        return [(host.strip("[]"), int(port)) for host, _, port in pairs]

    @field_validator("public_url")
    @classmethod
    def _origin(cls, value: str) -> str:
        value = value.strip()
        if value:
            public_origin(value)
        return value

    @property
    def origin(self) -> tuple[str, str] | None:
        """``(scheme, host[:port])`` of :attr:`public_url`, or None."""
        return public_origin(self.public_url) if self.public_url else None


class BrowserSettings(BaseSettings):
    """The STAC Browser the gateway serves."""

    model_config = SettingsConfigDict(env_prefix="EOMATCH_", extra="ignore")

    browser_dist: Path | None = None
    """A prebuilt browser dist (holding ``index.html``) instead of building one."""
    catalog_url: str | None = None
    """Default ``--catalog-url`` of ``python -m eomatch.service.browser install``."""

    @field_validator("browser_dist", "catalog_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class BackupSettings(BaseSettings):
    """Where ``eomatch backup`` keeps backups and for how long (``EOMATCH_BACKUP_*``).

    A local folder by default; with a bucket set, an S3-compatible bucket instead (credentials
    from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` only)."""

    model_config = SettingsConfigDict(env_prefix="EOMATCH_BACKUP_", extra="ignore")

    dir: Path | None = None
    """The local backup folder (default ``<data_dir>/backups``)."""
    keep_days: int = Field(default=30, ge=1, le=36500)
    """``eomatch backup prune`` removes backups older than this (never the newest good one)."""
    max_age_hours: float = Field(default=36.0, gt=0, le=876000)
    """``eomatch serve`` warns when the newest good backup is older than this."""
    staging_dir: Path | None = None
    """Scratch space for dumps on their way to or from a bucket (default: the system temp)."""
    s3_bucket: str | None = None
    """Keep backups in this S3-compatible bucket instead of the local folder."""
    s3_prefix: str = "eomatch/backups"
    """Key prefix inside the bucket."""
    s3_endpoint: str | None = None
    """``http(s)://host[:port]`` of a non-AWS server (MinIO, Ceph...); unset: AWS."""
    s3_region: str | None = None
    """The bucket's region (unset: ``AWS_REGION``, else us-east-1)."""
    s3_allow_http: bool = False
    """Allow a plain-http endpoint (a server on the same host or network)."""
    s3_requester_pays: bool = False
    """The bucket is requester-pays."""

    @field_validator("dir", "staging_dir", "s3_bucket", "s3_endpoint", "s3_region", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def local_dir(self, data_dir: Path) -> Path:
        """The local folder: :attr:`dir`, else ``<data_dir>/backups``."""
        return (self.dir or data_dir / "backups").expanduser()


class StorageSettings(BaseSettings):
    """Where jobs keep the files they make (COGs), and how people reach them
    (``EOMATCH_STORAGE_*``; docs/jobs.md "Object storage").

    A local folder by default, served read-only by the gateway under ``/data/``; with a bucket
    set, an S3-compatible bucket instead (credentials from ``AWS_*`` variables only)."""

    model_config = SettingsConfigDict(env_prefix="EOMATCH_STORAGE_", extra="ignore")

    dir: Path | None = None
    """The local folder (default ``<data_dir>/objects``); the gateway serves it as ``/data/``."""
    public_url: str | None = None
    """The http(s) URL objects are reached under (``https://host/data/``; a bucket's public
    endpoint). Unset: ``EOMATCH_PUBLIC_URL`` + ``/data/`` for the local folder, none for S3."""
    s3_bucket: str | None = None
    """Keep objects in this S3-compatible bucket instead of the local folder."""
    s3_prefix: str = "eomatch/data"
    """Key prefix inside the bucket."""
    s3_endpoint: str | None = None
    """``http(s)://host[:port]`` of a non-AWS server (MinIO, Ceph...); unset: AWS."""
    s3_region: str | None = None
    """The bucket's region (unset: ``AWS_REGION``, else us-east-1)."""
    s3_allow_http: bool = False
    """Allow a plain-http endpoint (a server on the same host or network)."""

    @field_validator("dir", "public_url", "s3_bucket", "s3_endpoint", "s3_region", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
                raise ValueError("must be an http(s) URL with no query (https://host/data/)")
            value = value.rstrip("/") + "/"
        return value

    def local_dir(self, data_dir: Path) -> Path:
        """The local folder: :attr:`dir`, else ``<data_dir>/objects``."""
        return (self.dir or data_dir / "objects").expanduser()


class JobsSettings(BaseSettings):
    """What jobs submitted over the internal API may read (``EOMATCH_JOBS_*``; docs/jobs.md
    "Inputs of API jobs"). The CLI, schedules and the operator are not bound by them.

    A key holder must not make the worker publish ``/etc/...`` or fetch from the internal
    network: local inputs of API jobs must resolve inside :attr:`input_dir` (none: refused),
    and remote ones from :attr:`source_hosts` (unset: not from this machine)."""

    model_config = SettingsConfigDict(env_prefix="EOMATCH_JOBS_", extra="ignore")

    input_dir: Path | None = None
    """The folder API jobs may read local files and folders from (relative paths start there)."""
    source_hosts: str | None = None
    """Comma-separated hosts API jobs may fetch http(s) sources from (``*.example.org`` for
    subdomains; for ``s3://`` sources, bucket names). Unset: any host but this machine and
    link-local addresses."""

    @field_validator("input_dir", "source_hosts", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("input_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("source_hosts")
    @classmethod
    def _hosts(cls, value: str | None) -> str | None:
        if value is not None:
            for host in value.split(","):
                name = host.strip().lower().removeprefix("*.")
                if not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9])?", name):
                    raise ValueError(f"{host.strip()!r:.80} is not a host name (a,b,*.c)")
        return value

    @property
    def hosts(self) -> tuple[str, ...] | None:
        """:attr:`source_hosts` as lower-case names (None: any host)."""
        if self.source_hosts is None:
            return None
        return tuple(h.strip().lower() for h in self.source_hosts.split(",") if h.strip())


def public_origin(value: str) -> tuple[str, str]:
    """``(scheme, host[:port])`` of an ``EOMATCH_PUBLIC_URL`` value, or ConfigError why not."""
    hint = "EOMATCH_PUBLIC_URL must be http(s)://host[:port] with no path, query or user"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{hint}, not {value!r}") from None
    host = parts.hostname or ""
    if (
        parts.scheme not in ("http", "https")
        or not host
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or any(c.isspace() or c in "/\\?#" for c in parts.netloc)
        or port == 0
    ):
        raise ConfigError(f"{hint}, not {value!r}")
    return parts.scheme, parts.netloc.lower()


_S = TypeVar("_S", bound=BaseSettings)


def settings_error(exc: ValidationError, prefix: str = "EOMATCH_") -> ConfigError:
    """One line naming the first bad variable and why, from a settings ValidationError."""
    first = exc.errors()[0]
    name = prefix + "_".join(str(p) for p in first.get("loc", ())[:1]).upper()
    ctx = first.get("ctx") or {}
    inner = ctx.get("error")
    why = str(inner) if isinstance(inner, Exception) else str(first.get("msg", "invalid value"))
    value = first.get("input")
    shown = f"={value!r:.80}" if isinstance(value, str | int | float) else ""
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ConfigError(f"{name}{shown}: {why}{more}")


def read_settings(cls: type[_S], **values: Any) -> _S:
    """``cls(**values)`` (the rest from the environment); a bad value is a one-line ConfigError."""
    prefix = str(cls.model_config.get("env_prefix", "") or "")
    try:
        return cls(**values)
    except ValidationError as exc:
        raise settings_error(exc, prefix) from None
    except SettingsError as exc:
        # a list or dict variable that is not JSON: raised while reading, before validation
        found = re.search(r'field "(\w+)"', str(exc))
        name = prefix + (found.group(1).upper() if found else "*")
        raise ConfigError(f'{name}: not valid JSON (give a JSON list, e.g. ["/a", "/b"])') from None
