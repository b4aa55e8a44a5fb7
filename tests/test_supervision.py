"""``eomatch serve`` heals: the real stack (pgSTAC, both APIs, nginx) with its children killed.

One stack for the module, supervised in a thread with short backoff delays. Every test leaves
it healthy again, so they run in any order.
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

import httpx
import pytest

from eomatch.cli.main import main
from eomatch.io.db_target import DbTarget
from eomatch.io.pg_cluster import LocalCluster
from eomatch.service.stack import Backoff, Identity, Stack, api_identity, read_status
from service_fixtures import _new_db, free_port, pg_cluster  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("supervision")]
needs_nginx = pytest.mark.skipif(
    (shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")) is None,
    reason="nginx binary not installed",
)
BACKOFF = Backoff(initial_s=0.1, factor=2.0, max_s=0.8, stable_s=3.0, report_after=4)


def _can_mount() -> bool:
    """Whether private mount namespaces work here (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "--", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


CAN_MOUNT = _can_mount()


@dataclass
class Served:
    stack: Stack
    base: str
    messages: list[str]
    cluster: LocalCluster


@pytest.fixture(scope="module")
def served(pg_cluster: LocalCluster) -> Iterator[Served]:  # noqa: F811
    if shutil.which("nginx", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is None:
        pytest.skip("nginx binary not installed")
    db = _new_db(pg_cluster)
    run_dir = Path(tempfile.mkdtemp(prefix="eomatch-sup-", dir="/tmp"))
    run_dir.chmod(0o755)
    messages: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPASSFILE", str(pg_cluster.passfile))  # read by serve, never by the APIs
        target = DbTarget("127.0.0.1", pg_cluster.port, db.dbname, None, None)
        stack = Stack(
            target=target,
            run_dir=run_dir,
            port=free_port(),
            build_browser=False,
            backoff=BACKOFF,
            poll_s=0.05,
            report=messages.append,
            # the harder of the two ways to drop root (a checkout only root may enter); the
            # easy one is what the serve tests in test_cli_service and test_browser_stack run
            force_api_mounts=CAN_MOUNT,
        )
        stack.start()
        stop = threading.Event()
        thread = threading.Thread(target=stack.wait, args=(stop,), daemon=True)
        thread.start()
        try:
            yield Served(stack, stack.base_url.rstrip("/"), messages, pg_cluster)
        finally:
            stop.set()
            thread.join(10)
            stack.stop()
            shutil.rmtree(run_dir, ignore_errors=True)


def _code(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _healthy(served: Served, timeout_s: float = 30.0) -> None:
    """Wait until every part answers again and the supervisor reports nothing pending."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = [*(a.sup for a in served.stack.apis), served.stack.gateway_sup]
        settled = all(s.restart_at is None and s.consecutive == 0 for s in children)
        if settled and all(_code(f"{served.base}{p}") == 200 for p in ("/api/", "/external/", "/")):
            return
        time.sleep(0.1)
    raise AssertionError(f"the stack did not recover: {served.messages[-5:]}")


@needs_nginx
@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops privileges")
def test_apis_run_unprivileged_without_the_superuser_password(served: Served) -> None:
    _healthy(served)
    superuser_pw = next(
        line.rsplit(":", 1)[1]
        for line in served.cluster.passfile.read_text().splitlines()
        if line.split(":")[3] == "postgres"
    )
    for api in served.stack.apis:
        pid = api.proc.pid
        status = Path(f"/proc/{pid}/status").read_text()
        uids = {int(u) for u in status.split("Uid:")[1].split("\n")[0].split()}
        gids = [int(g) for g in status.split("Gid:")[1].split("\n")[0].split()]
        groups = status.split("Groups:")[1].split("\n")[0].split()
        assert 0 not in uids, api.mode
        assert 0 not in gids, api.mode
        assert "0" not in groups, groups  # root's supplementary groups dropped too
        uid = uids.pop()
        # as that user: the superuser's credentials are out of reach
        for secret in (served.cluster.passfile, served.cluster.root / "data" / "pg_hba.conf"):
            cat = subprocess.run(
                ["cat", str(secret)],
                user=uid,
                group=gids[0],
                extra_groups=[],
                capture_output=True,
                check=False,
            )
            assert cat.returncode != 0, secret
            assert cat.stdout == b""
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        env = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
        assert "PGPASSWORD" not in env
        assert superuser_pw not in Path(f"/proc/{pid}/environ").read_text(errors="replace")
        own = Path(env["PGPASSFILE"]).read_text().splitlines()
        role = "eomatch_api" if api.mode == "internal" else "eomatch_reader"
        assert [line.split(":")[3] for line in own] == [role]
        assert superuser_pw not in Path(env["PGPASSFILE"]).read_text()
    # and it still serves from the database with its own role
    assert httpx.get(f"{served.base}/external/collections").status_code == 200
    assert httpx.get(f"{served.base}/api/collections").status_code == 200


@pytest.mark.skipif(not CAN_MOUNT, reason="needs root and private mount namespaces")
def test_a_folder_only_root_may_enter_is_served_through_a_bind_mount(tmp_path: Path) -> None:
    """A CI clone in ``mktemp -d`` (0700): the APIs' user reaches it only through the mount."""
    private = tmp_path / "clone"  # pytest's tmp_path: root only
    (private / "clonepkg").mkdir(parents=True)
    (private / "clonepkg" / "__init__.py").write_text("VALUE = 42\n")
    (private / "clonepkg" / "__init__.py").chmod(0o644)
    (private / "clonepkg").chmod(0o755)
    mounts = Path(tempfile.mkdtemp(prefix="eomatch-mnt-", dir="/tmp"))
    mounts.chmod(0o755)
    try:
        base, why = api_identity("eomatch", mounts / "env", force_mounts=True)
        assert base is not None, why
        assert base.mounts
        assert not base.python.startswith("/root/")
        point = mounts / "clone"
        point.mkdir()
        point.chmod(0o755)
        identity = Identity(
            base.user,
            base.uid,
            base.gid,
            base.python,
            base.site_dirs,
            (*base.paths, str(point)),
            (*base.mounts, (str(private), str(point))),
        )
        code = (
            f"import os, site, sys\nfor d in {list(identity.site_dirs)!r}: site.addsitedir(d)\n"
            f"sys.path += {list(identity.paths)!r}\n"
            "import clonepkg, eomatch.service.serving\nprint(os.getuid(), clonepkg.VALUE)"
        )
        cmd, extra = identity.command([identity.python, "-I", "-c", code])
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/", **extra)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [str(base.uid), "42"]
        # without the mount, that user cannot enter the folder
        direct = subprocess.run(
            ["cat", str(private / "clonepkg" / "__init__.py")],
            user=base.uid,
            group=base.gid,
            extra_groups=[],
            capture_output=True,
            check=False,
        )
        assert direct.returncode != 0
        # and the mounts live only in the child's namespace
        assert str(point) not in Path("/proc/self/mountinfo").read_text()
    finally:
        shutil.rmtree(mounts, ignore_errors=True)


@needs_nginx
@pytest.mark.parametrize("mode", ["internal", "external"])
def test_a_killed_api_restarts_while_the_other_keeps_answering(served: Served, mode: str) -> None:
    _healthy(served)
    victim = next(a for a in served.stack.apis if a.mode == mode)
    other = "/external/" if mode == "internal" else "/api/"
    mine = "/api/" if mode == "internal" else "/external/"
    restarts = victim.sup.restarts
    old_pid = victim.proc.pid
    os.kill(old_pid, signal.SIGKILL)
    started = time.monotonic()
    others: list[int] = []
    states: list[str] = []
    back_after: float | None = None
    while time.monotonic() - started < 30:
        others.append(_code(served.base + other))
        states.append(victim.sup.state())
        if victim.proc.pid != old_pid and _code(served.base + mine) == 200:
            back_after = time.monotonic() - started
            break
        time.sleep(0.05)
    assert back_after is not None, served.messages[-5:]
    # a restarted API is "starting" until it answers (seconds: imports, the pool), then "up"
    assert "starting" in states, states
    deadline = time.monotonic() + 10
    while victim.sup.state() != "up" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim.sup.state() == "up"
    assert httpx.get(f"http://127.0.0.1:{victim.port}/_mgmt/ping", timeout=2).is_success
    assert any(f"the {mode} API answers again" in m for m in served.messages)
    assert len(others) > 3
    assert set(others) == {200}  # the other API never stopped answering
    assert victim.sup.restarts == restarts + 1
    assert any(f"the {mode} API stopped (killed by SIGKILL)" in m for m in served.messages)
    assert any(f"restarted the {mode} API" in m for m in served.messages)
    # and the next requests all succeed: no stale kept-alive connection to the dead process
    with httpx.Client() as client:
        answers = [client.post(served.base + mine + "search", json={}) for _ in range(8)]
        answers += [client.get(served.base + mine + "collections") for _ in range(8)]
    codes = [r.status_code for r in answers]
    assert codes == [200] * 16, [(r.status_code, dict(r.headers), r.text[:200]) for r in answers]


@needs_nginx
def test_a_killed_gateway_comes_back(served: Served) -> None:
    _healthy(served)
    gateway = served.stack.gateway
    assert gateway is not None
    master = gateway.status().pid
    assert master is not None
    os.kill(master, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid = gateway.status().pid
        if pid not in (None, master) and _code(served.base + "/external/") == 200:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the gateway did not come back: {served.messages[-5:]}")
    assert any("restarted the gateway" in m for m in served.messages)
    _healthy(served)


@needs_nginx
def test_a_child_that_always_crashes_is_reported_and_backs_off(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    _healthy(served)
    stack = served.stack
    victim = next(a for a in stack.apis if a.mode == "external")
    real_spawn = stack._spawn

    def crashing(mode: str, port: int, prefix: str, log: Path) -> subprocess.Popen[bytes]:
        if mode != "external":
            return real_spawn(mode, port, prefix, log)
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    monkeypatch.setattr(stack, "_spawn", crashing)
    crashes_before = len(victim.sup.delays)
    os.kill(victim.proc.pid, signal.SIGKILL)
    internal: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(victim.sup.delays) < crashes_before + 6:
        internal.append(_code(served.base + "/api/"))
        time.sleep(0.05)
    delays = victim.sup.delays[crashes_before:]
    assert len(delays) >= 6, served.messages[-5:]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 0.8]  # doubling, capped at max_s
    assert set(internal) == {200}  # the rest keeps serving
    assert victim.sup.state() == "crashing"
    report = [m for m in served.messages if "the external API keeps crashing" in m]
    assert report
    assert "exit code 3" in report[-1]
    assert "within 60 s" in report[-1]
    status = read_status(stack.run_dir)
    assert status is not None
    assert status["children"]["external API"]["state"] == "crashing"
    assert any(p.startswith("external API: crashing") for p in status["problems"])
    assert status["checks"]["internal API"] == "up"
    # fixed: the next restart works and, once stable, the state is up again
    monkeypatch.setattr(stack, "_spawn", real_spawn)
    _healthy(served)
    deadline = time.monotonic() + BACKOFF.stable_s + 5
    while victim.sup.state() != "up" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert victim.sup.state() == "up"


def test_serve_refuses_a_bad_allow_list_or_public_url(tmp_path: Path, capsys) -> None:
    for flags in (
        ["--api-allow", "10.0.0.0/8,everyone"],
        ["--api-allow", ""],
        ["--public-url", "http://example.org/some/path"],
        ["--public-url", "ftp://example.org"],
    ):
        assert main(["serve", "--run-dir", str(tmp_path / "run"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("eomatch: error: --")
        assert err.count("\n") == 1
    assert not (tmp_path / "run").exists()
