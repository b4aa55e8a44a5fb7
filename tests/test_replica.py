"""A real streaming replica of a real local cluster, and both APIs reading from it.

One cluster pair for the module (``eomatch db init`` code path, then ``eomatch db replica
init`` through the CLI). The APIs are real uvicorn processes with ``PG*`` at the primary and
``EOMATCH_DB_READ_HOSTS`` at the replica, as ``eomatch serve`` starts them: a write through
the internal API is readable from the external one within a second; with the replica stopped,
reads fall back to the primary.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from eomatch.cli.main import main
from eomatch.io.pg_cluster import LocalCluster, pg_bindir
from eomatch.io.pg_replica import LocalReplica
from eomatch.io.pgstac_store import PgstacStore
from eomatch.service.stack import api_command, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("replica")]


@dataclass
class Pair:
    cluster: LocalCluster
    replica: LocalReplica
    internal: str
    external: str
    auth: dict[str, str]


def _start_api(
    cluster: LocalCluster, read_hosts: str, pooling: str, mode: str, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGHOST="127.0.0.1",
        PGPORT=str(cluster.port),
        PGDATABASE=cluster.dbname,
        PGPASSFILE=str(cluster.passfile),
        EOMATCH_API_MODE=mode,
        EOMATCH_DB_WAIT="20",
        EOMATCH_API_POOL_SIZE="2",
        EOMATCH_DB_READ_HOSTS=read_hosts,
        EOMATCH_DB_READ_POOLING=pooling,
    )
    with log.open("wb") as fh:
        proc = subprocess.Popen(api_command(port), env=env, stdout=fh, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def _wait_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/_mgmt/ping", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"API did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    parent = Path(tempfile.mkdtemp(prefix="eomatch-repl-", dir="/tmp"))
    parent.chmod(0o711)
    cluster = LocalCluster(parent / "db")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cluster.init(port=free_port())
        rport, bport = free_port(), free_port()
        args = ["--dir", str(cluster.root), "--port", str(rport), "--pooler-port", str(bport)]
        assert main(["db", "replica", "init", *args]) == 0
        replica = LocalReplica(cluster)
        assert replica.port == rport
        assert replica.read_endpoint() == ("127.0.0.1", bport, True)
        key = PgstacStore(cluster.connection()).create_key("replica-test")
        apis = {}
        # the internal API reads from the replica directly, the external one through pgbouncer
        # (transaction pooling), as `eomatch serve` would with and without a pooler
        reads = {
            "internal": (f"127.0.0.1:{rport}", "session"),
            "external": (f"127.0.0.1:{bport}", "transaction"),
        }
        for mode in ("internal", "external"):
            log = parent / f"api-{mode}.log"
            proc, url = _start_api(cluster, *reads[mode], mode, log)
            procs.append(proc)
            apis[mode] = (proc, url, log)
        for proc, url, log in apis.values():
            _wait_up(proc, url, log)
        yield Pair(
            cluster,
            replica,
            apis["internal"][1],
            apis["external"][1],
            {"Authorization": f"Bearer {key}"},
        )
    finally:
        t0 = time.monotonic()
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        print(f"APIs stopped in {time.monotonic() - t0:.1f} s")
        with contextlib.suppress(Exception):
            LocalReplica(cluster).pooler.stop()
        # immediate: no shutdown checkpoint for data about to be deleted
        pg_ctl = str(pg_bindir() / "pg_ctl")
        for data in (cluster.pgdata, cluster.root / "replica" / "data"):
            with contextlib.suppress(Exception):
                cluster._run([pg_ctl, "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(parent, ignore_errors=True)


def _sessions(conninfo: str, user: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [user]
        ).fetchone()
    assert row is not None
    return int(row[0])


def _replica_conninfo(pair: Pair) -> str:
    info = pair.cluster.connection()
    return info.conninfo().replace(f"port={pair.cluster.port}", f"port={pair.replica.port}")


COLLECTION = {
    "type": "Collection",
    "stac_version": "1.0.0",
    "id": "replicated",
    "description": "written to the primary, read from the replica",
    "license": "CC-BY-4.0",
    "extent": {
        "spatial": {"bbox": [[-10, 30, 40, 60]]},
        "temporal": {"interval": [["2022-01-01T00:00:00Z", None]]},
    },
    "links": [],
}


def _item(n: int) -> dict[str, object]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"item-{n}",
        "collection": "replicated",
        "geometry": {"type": "Point", "coordinates": [10.0, 45.0]},
        "bbox": [10.0, 45.0, 10.0, 45.0],
        "properties": {"datetime": "2022-05-01T10:00:00Z"},
        "assets": {},
        "links": [],
    }


def test_replica_status_streams(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["db", "replica", "status", "--dir", str(pair.cluster.root), "--format", "json"]) == 0
    )
    st = json.loads(capsys.readouterr().out)
    assert st["running"] is True
    assert st["streaming"] is True
    assert st["in_recovery"] is True
    assert st["port"] == pair.replica.port
    assert st["lag_bytes"] is not None
    assert st["lag_bytes"] >= 0
    # a standby refuses writes
    with (
        psycopg.connect(_replica_conninfo(pair), autocommit=True) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("CREATE TABLE nope (x int)")


def test_reads_go_to_the_replica_and_writes_appear_there_within_a_second(pair: Pair) -> None:
    r = httpx.post(f"{pair.internal}/collections", json=COLLECTION, headers=pair.auth, timeout=30)
    assert r.status_code in (200, 201, 409), r.text  # 409: the fall-back test ran first
    r = httpx.post(
        f"{pair.internal}/collections/replicated/items",
        json=_item(1),
        headers=pair.auth,
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    written = time.monotonic()
    while True:
        got = httpx.get(f"{pair.external}/collections/replicated/items/item-1", timeout=10)
        if got.status_code == 200 or time.monotonic() - written > 5:
            break
        time.sleep(0.01)
    seen_after = time.monotonic() - written
    assert got.status_code == 200, got.text
    assert seen_after < 1.0, seen_after
    # a patch reads the current item from the primary, then writes it there
    r = httpx.patch(
        f"{pair.internal}/collections/replicated/items/item-1",
        json={"properties": {"eo:cloud_cover": 12}},
        headers=pair.auth,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert httpx.get(f"{pair.internal}/collections/replicated/items/item-1").status_code == 200
    # the reads were served by the replica: both APIs' read sessions are there, and the
    # external (read-only) API has none on the primary
    replica = _replica_conninfo(pair)
    primary = pair.cluster.connection().conninfo()
    assert _sessions(replica, "eomatch_reader") >= 1
    assert _sessions(primary, "eomatch_reader") == 0
    assert _sessions(replica, "eomatch_api") >= 1


def _until_ok(url: str, tries: int = 8) -> list[tuple[int, float]]:
    """GET ``url`` until a 200 (at most ``tries`` times): each answer's status and duration."""
    codes: list[tuple[int, float]] = []
    for _ in range(tries):
        t0 = time.monotonic()
        code = httpx.get(url, timeout=30).status_code
        codes.append((code, time.monotonic() - t0))
        if code == 200:
            break
    return codes


def test_replica_stopped_reads_fall_back_or_fail_fast(pair: Pair) -> None:
    """Direct to a replica that is gone: reads fall back to the primary. Through pgbouncer
    whose replica is gone: 503 at once (the first after pgbouncer's ``query_wait_timeout``),
    until the replica is back; with the pooler stopped too (``db replica`` stops both):
    back to the primary."""
    path = "/collections/replicated/items/item-3"
    primary = pair.cluster.connection().conninfo()
    # this test's own item (it may run alone, or before the test that writes it)
    r = httpx.post(f"{pair.internal}/collections", json=COLLECTION, headers=pair.auth, timeout=30)
    assert r.status_code in (200, 201, 409), r.text
    r = httpx.post(
        f"{pair.internal}/collections/replicated/items",
        json=_item(3),
        headers=pair.auth,
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    deadline = time.monotonic() + 10
    while httpx.get(pair.external + path, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the item never reached the replica"
        time.sleep(0.05)
    for api in (pair.internal, pair.external):
        assert httpx.get(api + path, timeout=10).status_code == 200
    assert pair.replica.stop(keep_pooler=True)  # the replica dies, its pooler stays up
    try:
        direct = _until_ok(pair.internal + path)
        pooled = _until_ok(pair.external + path, tries=3)
        print("replica down: direct", direct, "through pgbouncer", pooled)
        # connections open to the replica fail (503, never a hang), new ones go to the primary
        assert direct[-1][0] == 200, direct
        assert all(c in (200, 503) for c, _ in direct), direct
        assert all(dt < 1 for _, dt in direct), direct
        assert len(direct) <= 4, direct
        assert [c for c, _ in pooled] == [503, 503, 503], pooled
        assert pooled[0][1] < 7, pooled
        assert all(dt < 1 for _, dt in pooled[1:]), pooled
        # writes were never on the replica: they still work
        r = httpx.post(
            f"{pair.internal}/collections/replicated/items",
            json=_item(2),
            headers=pair.auth,
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text
    finally:
        pair.replica.start()
    # pgbouncer reconnects by itself once the replica is back (server_login_retry 1 s)
    deadline = time.monotonic() + 15
    while httpx.get(pair.external + path, timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "reads through pgbouncer did not recover"
        time.sleep(0.2)
    assert main(["db", "replica", "status", "--dir", str(pair.cluster.root)]) in (0, 1)
    # replica and pooler stopped together: the pooled API's reads fall back to the primary
    before = _sessions(primary, "eomatch_reader")
    assert pair.replica.stop()
    try:
        pooled = _until_ok(pair.external + path)
        print("replica and pooler down: through pgbouncer", pooled)
        assert pooled[-1][0] == 200, pooled
        assert all(dt < 1 for _, dt in pooled), pooled
        assert _sessions(primary, "eomatch_reader") > before
    finally:
        pair.replica.start()


def test_replica_init_without_a_primary_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "none"
    assert main(["db", "replica", "status", "--dir", str(root)]) == 4
    capsys.readouterr()
    assert main(["db", "replica", "init", "--dir", str(root)]) != 0
    err = capsys.readouterr().err.strip()
    assert "no local cluster" in err
    assert len(err.splitlines()) == 1
    assert not (root / "replica").exists()


def test_read_hosts_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from eomatch.config.settings import ApiSettings, read_settings
    from eomatch.errors import ConfigError

    monkeypatch.setenv("EOMATCH_DB_READ_HOSTS", "replica-1:5432, [::1]:6432")
    assert read_settings(ApiSettings).read_hosts == [("replica-1", 5432), ("::1", 6432)]
    for bad in ("replica-1", "replica:0", ":5432", "replica:x"):
        monkeypatch.setenv("EOMATCH_DB_READ_HOSTS", bad)
        with pytest.raises(ConfigError, match="EOMATCH_DB_READ_HOSTS"):
            read_settings(ApiSettings)
    monkeypatch.setenv("EOMATCH_DB_READ_HOSTS", "")
    monkeypatch.setenv("EOMATCH_DB_READ_POOLING", "statement")
    with pytest.raises(ConfigError, match="EOMATCH_DB_READ_POOLING"):
        read_settings(ApiSettings)
