"""``eomatch serve --instances 2``: two supervised processes per API behind the real nginx.

One instance is killed (SIGKILL) while a client loops GET requests through the gateway: every
request still succeeds (nginx passes a failed idempotent request to the other instance and
leaves the dead one out for ``fail_timeout``), the supervisor restarts it, and nginx sends
requests to it again once it is back.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from eomatch.cli.main import main
from eomatch.io.db_target import DbTarget
from eomatch.io.pg_cluster import LocalCluster
from eomatch.service.gateway import UPSTREAM_FAIL_TIMEOUT_S, render_nginx_conf
from eomatch.service.stack import Backoff, Stack, read_status
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


@pytest.fixture(scope="module")
def stack(pg_cluster: LocalCluster) -> Iterator[Stack]:  # noqa: F811
    if shutil.which("nginx", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is None:
        pytest.skip("nginx binary not installed")
    db = _new_db(pg_cluster)
    run_dir = Path(tempfile.mkdtemp(prefix="eomatch-scale-", dir="/tmp"))
    run_dir.chmod(0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPASSFILE", str(pg_cluster.passfile))
        stack = Stack(
            target=DbTarget("127.0.0.1", pg_cluster.port, db.dbname, None, None),
            run_dir=run_dir,
            port=free_port(),
            build_browser=False,
            instances=2,
            backoff=Backoff(initial_s=0.2, max_s=1.0, stable_s=2.0),
            poll_s=0.05,
            report=lambda msg: None,
        )
        stack.start()
        stop = threading.Event()
        thread = threading.Thread(target=stack.wait, args=(stop,), daemon=True)
        thread.start()
        try:
            yield stack
        finally:
            stop.set()
            thread.join(10)
            stack.stop()
            shutil.rmtree(run_dir, ignore_errors=True)


def test_serve_status_lists_every_instance(stack: Stack) -> None:
    state = read_status(stack.run_dir)
    assert state is not None
    assert state["instances"] == 2
    names = set(state["children"])
    assert {"internal API 1", "internal API 2", "external API 1", "external API 2"} <= names
    assert all(v == "up" for v in state["checks"].values()), state["checks"]
    ports = {a.port for a in stack.apis}
    assert len(ports) == 4
    conf = (stack.run_dir / "gateway" / "nginx.conf").read_text()
    assert all(f"server 127.0.0.1:{p} " in conf for p in ports)


def test_killing_an_instance_under_load_fails_no_request_and_it_rejoins(stack: Stack) -> None:
    base = stack.base_url
    victim = next(a for a in stack.apis if a.sup.name == "internal API 1")
    old_pid = victim.proc.pid
    results: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=20) as client:
            while not stop.is_set():
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
        while time.monotonic() < deadline and not (
            victim.proc.pid != old_pid and victim.sup.restart_at is None
        ):
            time.sleep(0.05)
        assert victim.proc.pid != old_pid, "the supervisor did not restart the killed instance"
        assert victim.sup.restarts >= 1
        # nginx tries the instance again after fail_timeout; once it answers, it gets traffic
        deadline = time.monotonic() + UPSTREAM_FAIL_TIMEOUT_S + 20
        while time.monotonic() < deadline and _established(victim.port) == 0:
            time.sleep(0.1)
        rejoined = _established(victim.port)
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    assert before > 0
    assert len(results) > before + 20, len(results)
    failures = [code for code in results if code != 200]
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    assert rejoined > 0, "nginx never sent a request to the restarted instance"
    assert httpx.get(f"http://127.0.0.1:{victim.port}/_mgmt/ping", timeout=5).is_success


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
