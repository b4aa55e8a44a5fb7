"""``eomatch db init|start|stop|status|migrate`` and ``eomatch keys create|list|revoke``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from eomatch.cli.common import PORT, load_run_config
from eomatch.errors import EomatchError
from eomatch.io.db_target import DbOverrides, DbTarget, local_cluster, resolve_target
from eomatch.io.pg_cluster import DEFAULT_PORT, LocalCluster
from eomatch.io.pg_replica import LocalReplica

if TYPE_CHECKING:  # imported where used: pypgstac and psycopg are in the service extra
    from eomatch.io.pgstac_store import PgstacStore


def db_options(p: argparse.ArgumentParser, local: bool = True) -> None:
    """Where the database is (passwords: PGPASSWORD or a pgpass file, never a flag)."""
    g = p.add_argument_group("database (default: ingest.* in config, then PG*, then local)")
    g.add_argument("--db-host", default=None, metavar="HOST")
    g.add_argument("--db-port", type=PORT, default=None, metavar="PORT")
    g.add_argument("--db-name", default=None, metavar="NAME")
    g.add_argument("--db-user", default=None, metavar="ROLE")
    if local:
        g.add_argument("--dir", type=Path, default=None, metavar="DIR", help="local cluster folder")


def target_from(args: argparse.Namespace, require_local: bool = False) -> DbTarget:
    """The database these arguments and the configuration point at."""
    config = load_run_config(args)
    return resolve_target(
        DbOverrides(
            host=getattr(args, "db_host", None),
            port=getattr(args, "db_port", None),
            name=getattr(args, "db_name", None),
            user=getattr(args, "db_user", None),
            dir=getattr(args, "dir", None),
        ),
        config.ingest,
        require_local=require_local,
    )


def _cluster(args: argparse.Namespace) -> LocalCluster:
    return local_cluster(args.dir, load_run_config(args).ingest)


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``db`` and ``keys`` (raises MissingExtraError without the service extra)."""
    from eomatch.io.pgstac_store import PGSTAC_VERSION

    db = sub.add_parser(
        "db",
        parents=[parent],
        help="the central database: a local cluster, or pgSTAC migrations on a server",
        description=(
            "Manage eomatch's PostgreSQL + PostGIS + pgSTAC database. init/start/stop/status "
            "act on a local cluster in a folder (default: EOMATCH_DB_DIR or the data dir); "
            f"migrate installs or upgrades pgSTAC {PGSTAC_VERSION} and eomatch's schema and "
            "roles on the local cluster or on a server given by --db-host/PG* variables "
            "(role passwords from EOMATCH_INGEST_PASSWORD, EOMATCH_API_PASSWORD, "
            "EOMATCH_READER_PASSWORD when set)."
        ),
    )
    dsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    init = dsub.add_parser("init", parents=[parent], help="create and start a local cluster")
    init.add_argument("--dir", type=Path, default=None, metavar="DIR")
    init.add_argument("--port", type=PORT, default=DEFAULT_PORT, help="TCP port on 127.0.0.1")
    init.set_defaults(handler=run_init)
    for name, handler, text in (
        ("start", run_start, "start the local cluster"),
        ("stop", run_stop, "stop the local cluster"),
        ("status", run_status, "show the local cluster and its schema version"),
    ):
        q = dsub.add_parser(name, parents=[parent], help=text)
        q.add_argument("--dir", type=Path, default=None, metavar="DIR")
        q.set_defaults(handler=handler)
    rep = dsub.add_parser(
        "replica",
        parents=[parent],
        help="a streaming read replica of the local cluster",
        description=(
            "A hot standby of the local cluster (pg_basebackup -R, PostgreSQL streaming "
            "replication) in <dir>/replica on its own port; `db start|stop` start and stop it "
            "with the primary, and `eomatch serve` sends the APIs' reads to it. On servers, "
            "see docs/deployment.md."
        ),
    )
    rsub = rep.add_subparsers(dest="replica_command", required=True, metavar="ACTION")
    rinit = rsub.add_parser("init", parents=[parent], help="make and start the replica")
    rinit.add_argument("--dir", type=Path, default=None, metavar="DIR")
    rinit.add_argument("--port", type=PORT, default=None, help="its port (default: primary + 1)")
    rinit.add_argument(
        "--pooler-port",
        type=PORT,
        default=None,
        metavar="PORT",
        help="also put pgbouncer (transaction pooling, reads only) in front of it on PORT",
    )
    rinit.set_defaults(handler=run_replica_init)
    rstat = rsub.add_parser("status", parents=[parent], help="whether it streams, and its lag")
    rstat.add_argument("--dir", type=Path, default=None, metavar="DIR")
    rstat.add_argument("--format", choices=("text", "json"), default="text")
    rstat.set_defaults(handler=run_replica_status)
    mig = dsub.add_parser(
        "migrate", parents=[parent], help=f"install/upgrade pgSTAC {PGSTAC_VERSION} + our schema"
    )
    db_options(mig)
    mig.set_defaults(handler=run_migrate)

    keys = sub.add_parser(
        "keys",
        parents=[parent],
        help="API keys for writes to the internal API",
        description=(
            "Keys are stored hashed; the secret is printed once at creation. A new or revoked "
            "key takes effect at once, without restarting the API."
        ),
    )
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = ksub.add_parser("create", parents=[parent], help="create a key and print it once")
    create.add_argument("name")
    db_options(create)
    create.set_defaults(handler=run_key_create)
    lst = ksub.add_parser("list", parents=[parent], help="list keys (never the secrets)")
    db_options(lst)
    lst.set_defaults(handler=run_key_list)
    rev = ksub.add_parser("revoke", parents=[parent], help="revoke a key at once")
    rev.add_argument("name")
    db_options(rev)
    rev.set_defaults(handler=run_key_revoke)


def run_init(args: argparse.Namespace) -> int:
    """Create (idempotent) and start the local cluster."""
    from eomatch.io.pgstac_store import PgstacStore

    cluster = _cluster(args)
    created = cluster.init(port=args.port)
    store = PgstacStore(cluster.connection())
    if not created:
        cluster.start()
        # an existing cluster made by an older eomatch gets what this one needs (history,
        # queue, records views...): the set-up is idempotent, as `eomatch db migrate` runs it
        store.install()
    version = store.schema_version()
    verb = "created" if created else "already initialised, brought up to date"
    Console().print(
        f"local database {verb} in {cluster.root}: 127.0.0.1:{cluster.port}/{cluster.dbname}, "
        f"pgSTAC {version}"
    )
    return 0


def run_start(args: argparse.Namespace) -> int:
    """Start the local cluster."""
    cluster = _cluster(args)
    if not cluster.initialised:
        raise EomatchError(f"no local cluster in {cluster.root}: run `eomatch db init`")
    started = cluster.start()
    Console().print(
        f"{'started' if started else 'already running'}: 127.0.0.1:{cluster.port} ({cluster.root})"
    )
    replica = LocalReplica(cluster)
    if replica.initialised:
        up = replica.start()
        Console().print(
            f"replica {'started' if up else 'already running'}: 127.0.0.1:{replica.port}"
        )
    return 0


def run_stop(args: argparse.Namespace) -> int:
    """Stop the local cluster."""
    cluster = _cluster(args)
    replica = LocalReplica(cluster)
    if replica.stop():
        Console().print(f"replica stopped: 127.0.0.1:{replica.port}")
    stopped = cluster.stop()
    Console().print(f"{'stopped' if stopped else 'not running'}: {cluster.root}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Exit 0 when running, 3 when stopped, 4 when absent (like ``pg_ctl status``)."""
    from eomatch.io.pgstac_store import PgstacStore

    cluster = _cluster(args)
    st = cluster.status()
    if not st.initialised:
        Console().print(f"no local cluster in {cluster.root}")
        return 4
    if not st.running:
        Console().print(f"stopped: {cluster.root} (port {st.port})")
        return 3
    version = PgstacStore(cluster.connection()).schema_version()
    items = PgstacStore(cluster.connection()).item_count()
    Console().print(
        f"running: 127.0.0.1:{st.port}/{cluster.dbname} pid {st.pid}, pgSTAC {version}, "
        f"{items} item(s) ({cluster.root})"
    )
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    """Install or upgrade the schema on the target."""
    from eomatch.io.pgstac_store import PgstacStore

    target = target_from(args)
    if target.cluster is not None:
        target.cluster.start()
    store = PgstacStore(target.admin())
    before = store.schema_version()
    passwords = {
        role: os.environ[var] for role, var in ROLE_PASSWORD_ENV.items() if os.environ.get(var)
    }
    after = store.install(role_passwords=passwords)
    Console().print(
        f"{target.describe()}: pgSTAC {before or 'none'} -> {after}; eomatch schema and roles ok"
    )
    return 0


def run_replica_init(args: argparse.Namespace) -> int:
    """Make the replica (idempotent) and start it."""
    cluster = _cluster(args)
    replica = LocalReplica(cluster)
    created = replica.init(port=args.port, pooler_port=args.pooler_port)
    if not created:
        replica.start()
    verb = "created" if created else "already initialised"
    Console().print(
        f"read replica {verb} in {replica.root}: 127.0.0.1:{replica.port}, streaming from "
        f"127.0.0.1:{cluster.port}"
    )
    host, port, pooled = replica.read_endpoint()
    if pooled:
        Console().print(f"  pgbouncer (transaction pooling) for reads on {host}:{port}")
    return 0


def run_replica_status(args: argparse.Namespace) -> int:
    """Exit 0 when it streams, 1 when it runs but does not stream, 3 stopped, 4 absent."""
    replica = LocalReplica(_cluster(args))
    st = replica.status()
    code = 4 if not st.initialised else 3 if not st.running else 0 if st.streaming else 1
    if args.format == "json":
        print(json.dumps({**dataclasses.asdict(st), "exit": code}))
        return code
    console = Console()
    if not st.initialised:
        console.print(f"no replica in {replica.root}")
    elif not st.running:
        console.print(f"stopped: {replica.root} (port {st.port})")
    else:
        lag = "?" if st.lag_bytes is None else f"{st.lag_bytes} bytes"
        secs = "" if st.replay_lag_s is None else f", replay lag {st.replay_lag_s:.3f} s"
        console.print(
            f"{'streaming' if st.streaming else 'NOT streaming'}: 127.0.0.1:{st.port} pid "
            f"{st.pid}, standby={st.in_recovery}, replayed up to {st.replay_lsn}, "
            f"behind the primary by {lag}{secs}"
        )
        if st.pooler_port is not None:
            state = "running" if st.pooler_running else "NOT running"
            console.print(f"pgbouncer for reads: 127.0.0.1:{st.pooler_port} ({state})")
    return code


ROLE_PASSWORD_ENV = {
    "eomatch_ingest": "EOMATCH_INGEST_PASSWORD",
    "eomatch_api": "EOMATCH_API_PASSWORD",
    "eomatch_reader": "EOMATCH_READER_PASSWORD",
}
"""Passwords ``db migrate`` sets on a server's login roles (the local cluster makes its own)."""


def _admin_store(args: argparse.Namespace) -> PgstacStore:
    from eomatch.io.pgstac_store import PgstacStore

    target = target_from(args)
    return PgstacStore(target.admin())


def run_key_create(args: argparse.Namespace) -> int:
    """Print the new key once (stdout, alone, for scripts)."""
    token = _admin_store(args).create_key(args.name)
    print(token)
    Console(stderr=True).print(
        f"API key {args.name!r} created; it is shown only now. Use: Authorization: Bearer <key>"
    )
    return 0


def run_key_list(args: argparse.Namespace) -> int:
    """Table of keys."""
    keys = _admin_store(args).list_keys()
    table = Table("name", "prefix", "created", "last used", "status")
    for k in keys:
        table.add_row(
            k.name,
            k.prefix + "…",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
            f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active",
        )
    Console().print(table if keys else "no API keys")
    return 0


def run_key_revoke(args: argparse.Namespace) -> int:
    """Revoke at once."""
    changed = _admin_store(args).revoke_key(args.name)
    Console().print(f"API key {args.name!r} {'revoked' if changed else 'was already revoked'}")
    return 0
