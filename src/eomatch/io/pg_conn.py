"""Where the database is and who we are on it: libpq ``PG*`` names, no password on a command line.

A connection is described by :class:`ConnectionInfo`; the password comes from ``PGPASSWORD`` or a
pgpass file (``PGPASSFILE``, ``~/.pgpass``, or the local cluster's own), as libpq would find it.
Conninfo strings are built by psycopg, so odd characters in a password cannot break them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DbSettings(BaseSettings):
    """The libpq environment (``PGHOST``, ``PGPORT``, ``PGDATABASE``, ``PGUSER``, …)."""

    model_config = SettingsConfigDict(env_prefix="PG", extra="ignore", case_sensitive=False)

    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    passfile: Path | None = None


@dataclass(frozen=True)
class ConnectionInfo:
    """One role on one database."""

    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "eomatch"
    user: str = "postgres"
    password: str | None = None
    passfile: Path | None = None

    def __repr__(self) -> str:
        return f"ConnectionInfo({self.user}@{self.host}:{self.port}/{self.dbname})"

    def with_db(self, dbname: str) -> ConnectionInfo:
        """Another database on the same server, same role."""
        return replace(self, dbname=dbname)

    def resolved_password(self) -> str | None:
        """The password libpq would use: explicit, else from the pgpass file."""
        if self.password is not None:
            return self.password
        for candidate in self._passfiles():
            found = pgpass_lookup(candidate, self.host, self.port, self.dbname, self.user)
            if found is not None:
                return found
        return None

    def _passfiles(self) -> list[Path]:
        files = [self.passfile] if self.passfile else []
        env = os.environ.get("PGPASSFILE")
        if env:
            files.append(Path(env))
        files.append(Path.home() / ".pgpass")
        return files

    def conninfo(self, application_name: str = "eomatch") -> str:
        """A libpq conninfo string (password included only if known)."""
        kwargs: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "application_name": application_name,
            "connect_timeout": 10,
        }
        password = self.resolved_password()
        if password is not None:
            kwargs["password"] = password
        from psycopg.conninfo import make_conninfo  # here: psycopg is in the service extra

        return make_conninfo("", **kwargs)

    def env(self) -> dict[str, str]:
        """Environment for a child process that reads the libpq variables."""
        out = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.dbname,
            "PGUSER": self.user,
        }
        password = self.resolved_password()
        if password is not None:
            out["PGPASSWORD"] = password
        return out

    def describe(self) -> str:
        """Human-readable target, never with the password."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


def _unescape_fields(line: str) -> list[str]:
    fields: list[str] = []
    cur: list[str] = []
    it = iter(line)
    for ch in it:
        if ch == "\\":
            cur.append(next(it, ""))
        elif ch == ":":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur))
    return fields


def pgpass_lookup(path: Path, host: str, port: int, dbname: str, user: str) -> str | None:
    """First matching password in a pgpass file (libpq's format, ``*`` wildcards)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    wanted = [host, str(port), dbname, user]
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        fields = _unescape_fields(raw)
        if len(fields) != 5:
            continue
        if all(f == "*" or f == w for f, w in zip(fields[:4], wanted, strict=True)):
            return fields[4]
    return None


def pgpass_line(host: str, port: int, dbname: str, user: str, password: str) -> str:
    """One escaped pgpass line."""

    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    return ":".join(esc(v) for v in (host, str(port), dbname, user, password))
