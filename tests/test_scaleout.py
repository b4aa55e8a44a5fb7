"""``eomatch serve --instances 2`` (the real CLI, in a subprocess): two supervised processes per
API behind the real nginx.

One instance is killed (SIGKILL) while clients loop GET requests through the gateway: every
request still succeeds (nginx passes a failed idempotent request to the other instance and
leaves the dead one out for ``fail_timeout``), the supervisor restarts it, and nginx sends
requests to it again once it is back. The one thing nginx cannot pass on is an answer the
victim had begun to send (its status line already went to the client): such a request is cut
off, at most one per client, and the client's retry succeeds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from eomatch.cli.main import main
from eomatch.io.pg_cluster import LocalCluster
from eomatch.service.gateway import UPSTREAM_FAIL_TIMEOUT_S, render_nginx_conf
from eomatch.service.stack import read_status
from service_fixtures import _new_db, free_port, pg_cluster  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("scaleout")]
ROOT = Path(__file__).resolve().parents[1]


def _established(port: int) -> int:
    """Established TCP connections whose local end is ``port`` (from /proc/net/tcp{,6})."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def test_config_lists_every_instance_with_passive_checks(tmp_path: Path) -> None:
    text = render_nginx_conf(
        listen_host="127.0.0.1",
        listen_port=8090,
        internal_upstream=["127.0.0.1:9001", "127.0.0.1:9002"],
        external_upstream="127.0.0.1:9003",
        browser_dir=tmp_path,
        runtime_config_dir=tmp_path,
        run_dir=tmp_path,
    )
    opts = f"max_fails=1 fail_timeout={UPSTREAM_FAIL_TIMEOUT_S}s"
    for port in (9001, 9002, 9003):
        assert f"server 127.0.0.1:{port} {opts};" in text
    assert "proxy_next_upstream error timeout http_502 http_503;" in text
    # writes are never passed on once sent: only the read POST /search says non_idempotent
    assert text.count("proxy_next_upstream error timeout non_idempotent;") == 2
    assert "location = /api/search" in text
    assert "location = /external/search" in text


@dataclass
class Served:
    """``eomatch serve --instances 2`` running in a subprocess."""

    proc: subprocess.Popen[bytes]
    run_dir: Path
    base: str

    def children(self) -> dict[str, Any]:
        state = read_status(self.run_dir)
        assert state is not None, "serve is not running"
        children: dict[str, Any] = state["children"]
        return children


@pytest.fixture(scope="module")
def served(pg_cluster: LocalCluster) -> Iterator[Served]:  # noqa: F811
    if shutil.which("nginx", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is None:
        pytest.skip("nginx binary not installed")
    db = _new_db(pg_cluster)
    run_dir = Path(tempfile.mkdtemp(prefix="eomatch-scale-", dir="/tmp"))
    run_dir.chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSFILE"] = str(pg_cluster.passfile)  # read by serve, never by the APIs
    cmd = [
        sys.executable, "-m", "eomatch.cli.main_entry", "serve", "--instances", "2",
        "--port", str(port), "--run-dir", str(run_dir), "--no-browser-build",
        "--db-host", "127.0.0.1", "--db-port", str(pg_cluster.port), "--db-name", db.dbname,
    ]  # fmt: skip
    log = run_dir.parent / f"{run_dir.name}.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while read_status(run_dir) is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield Served(proc, run_dir, f"http://127.0.0.1:{port}/")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def test_serve_status_lists_every_instance(served: Served) -> None:
    state = read_status(served.run_dir)
    assert state is not None
    assert state["instances"] == 2
    names = set(state["children"])
    assert {"internal API 1", "internal API 2", "external API 1", "external API 2"} <= names
    assert all(v == "up" for v in state["checks"].values()), state["checks"]
    ports = {c["port"] for name, c in state["children"].items() if "API" in name}
    assert len(ports) == 4
    conf = (served.run_dir / "gateway" / "nginx.conf").read_text()
    assert all(f"server 127.0.0.1:{p} " in conf for p in ports)


def test_killing_an_instance_under_load_fails_no_request_and_it_rejoins(served: Served) -> None:
    base = served.base
    victim = served.children()["internal API 1"]
    old_pid, port = victim["pid"], victim["port"]
    results: list[int] = []
    cut: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=20) as client:
            while not stop.is_set():
                try:
                    results.append(client.get(base + "api/collections").status_code)
                except httpx.TransportError as exc:
                    # an answer the victim had begun when it died is cut off: nginx cannot pass
                    # it on (part went out), the client retries it once, as eomatch's own does
                    cut.append(f"{type(exc).__name__}: {exc}")
                    try:
                        results.append(client.get(base + "api/collections").status_code)
                    except httpx.HTTPError:
                        results.append(0)

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        before = len(results)
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        now = victim
        while time.monotonic() < deadline:
            now = served.children()["internal API 1"]
            if now["pid"] != old_pid and now["state"] == "up":
                break
            time.sleep(0.1)
        assert now["pid"] != old_pid, "the supervisor did not restart the killed instance"
        assert now["restarts"] >= 1
        assert now["last_exit"] == "killed by SIGKILL"
        # nginx tries the instance again after fail_timeout; once it answers, it gets traffic
        deadline = time.monotonic() + UPSTREAM_FAIL_TIMEOUT_S + 20
        while time.monotonic() < deadline and _established(port) == 0:
            time.sleep(0.1)
        rejoined = _established(port)
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    assert before > 0
    assert len(results) > before + 20, len(results)
    failures = [code for code in results if code != 200]
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:5]} {cut}"
    # only the requests in flight on the victim when it died (one per client at most)
    assert len(cut) <= len(workers), cut
    assert rejoined > 0, "nginx never sent a request to the restarted instance"
    assert httpx.get(f"http://127.0.0.1:{port}/_mgmt/ping", timeout=5).is_success


def test_serve_instances_rejects_zero() -> None:
    assert main(["serve", "--instances", "0"]) == 2


def test_compose_runs_several_instances_of_each_api() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    for name in ("api-internal", "api-external"):
        service = compose["services"][name]
        assert service["deploy"]["replicas"] == "${EOMATCH_API_REPLICAS:-2}"
        # replicas need no fixed name and no published port
        assert "container_name" not in service
        assert "ports" not in service
    env = (ROOT / "deploy" / ".env.example").read_text()
    assert "\nEOMATCH_API_REPLICAS=2\n" in env
    conf = (ROOT / "deploy" / "nginx" / "eomatch.conf").read_text()
    assert "server api-internal:8080 max_fails=1 fail_timeout=5s;" in conf
