"""Which database a command talks to: flags, then config ``ingest.*``, then ``PG*``, then local.

A host given anywhere means an existing server; otherwise the local cluster in the data
directory is used, with the role passwords it keeps in its own pgpass file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eomatch.config.models import IngestConfig
from eomatch.config.settings import Settings
from eomatch.errors import ConfigError
from eomatch.io.pg_cluster import SUPERUSER, LocalCluster
from eomatch.io.pg_conn import ConnectionInfo, DbSettings


@dataclass(frozen=True)
class DbOverrides:
    """Command-line values (None: not given)."""

    host: str | None = None
    port: int | None = None
    name: str | None = None
    user: str | None = None
    dir: Path | None = None


@dataclass(frozen=True)
class DbTarget:
    """A server and database, and whether it is our local cluster."""

    host: str
    port: int
    dbname: str
    user: str | None
    cluster: LocalCluster | None

    def role(self, default_role: str) -> ConnectionInfo:
        """Connect as the explicit user, else as ``default_role``."""
        user = self.user or default_role
        if self.cluster is not None:
            return self.cluster.connection(user)
        env = DbSettings()
        return ConnectionInfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=user,
            password=env.password if (env.user is None or env.user == user) else None,
            passfile=env.passfile,
        )

    def admin(self) -> ConnectionInfo:
        """The role for set-up and keys: the local superuser, or the given/PGUSER role."""
        if self.cluster is not None:
            return self.cluster.connection(self.user or SUPERUSER)
        if self.user is None:
            raise ConfigError(
                "set the administrating role with --db-user, ingest.db_user or PGUSER"
            )
        return self.role(self.user)

    def describe(self) -> str:
        """For messages."""
        where = f"local cluster in {self.cluster.root}" if self.cluster else "server"
        return f"{self.host}:{self.port}/{self.dbname} ({where})"


def local_cluster(folder: Path | None = None, config: IngestConfig | None = None) -> LocalCluster:
    """The local cluster: ``--dir``, else ``ingest.db_dir``, else ``EOMATCH_DB_DIR``/data dir."""
    chosen = folder or (config.db_dir if config else None) or Settings().local_db_dir
    return LocalCluster(Path(chosen).expanduser())


def resolve_target(
    overrides: DbOverrides, config: IngestConfig | None = None, require_local: bool = False
) -> DbTarget:
    """Apply the precedence rules; for a local cluster it must already be initialised."""
    cfg = config or IngestConfig()
    env = DbSettings()
    host = overrides.host or cfg.db_host or env.host
    user = overrides.user or cfg.db_user or env.user
    if host and not require_local:
        return DbTarget(
            host=host,
            port=overrides.port or cfg.db_port or env.port or 5432,
            dbname=overrides.name or cfg.db_name or env.database or "eomatch",
            user=user,
            cluster=None,
        )
    cluster = local_cluster(overrides.dir, cfg)
    if not cluster.initialised:
        raise ConfigError(
            f"no database: run `eomatch db init` (local cluster in {cluster.root}) "
            "or point at a server with --db-host / ingest.db_host / PGHOST"
        )
    return DbTarget(
        host="127.0.0.1",
        port=cluster.port,
        dbname=cluster.dbname,
        user=overrides.user or cfg.db_user,
        cluster=cluster,
    )
