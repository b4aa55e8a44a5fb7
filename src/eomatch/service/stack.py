"""``eomatch serve``: the whole stack on one machine — database, both APIs, gateway, browser.

Start order is database → APIs (waited for) → browser runtime config → gateway; stop order is
the reverse, and the database is stopped only if this stack started it. What runs is recorded
in ``<run_dir>/serve.json`` so that ``eomatch serve --status`` (another process) can report it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from eomatch.errors import EomatchError
from eomatch.io.atomic import atomic_write_text
from eomatch.io.db_target import DbTarget
from eomatch.io.processes import pid_alive
from eomatch.service.browser import browser_dist, write_runtime_config
from eomatch.service.gateway import Gateway

STATE = "serve.json"
PLACEHOLDER = """<!doctype html><meta charset="utf-8"><title>eomatch</title>
<h1>eomatch</h1><p>STAC Browser was not built (run scripts/build-browser.sh).
The APIs: <a href="/external/">external</a>, <a href="/api/">internal</a>.</p>
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def api_command(port: int, root_path: str = "", workers: int = 1) -> list[str]:
    """uvicorn serving :func:`eomatch.service.app.create_app` on 127.0.0.1 (mode from env)."""
    cmd = [sys.executable, "-m", "uvicorn", "eomatch.service.app:create_app", "--factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    cmd += ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
    if root_path:
        cmd += ["--root-path", root_path]
    return cmd


@dataclass
class ApiChild:
    """One uvicorn process."""

    mode: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        """Still running."""
        return self.proc.poll() is None


@dataclass
class Stack:
    """The running pieces and how to reach them."""

    target: DbTarget
    run_dir: Path
    host: str = "127.0.0.1"
    port: int = 8090
    public_url: str | None = None
    internal_port: int = 0
    external_port: int = 0
    build_browser: bool = True
    workers: int = 1
    """uvicorn worker processes per API (stac-fastapi's per-item work is CPU-bound)."""
    apis: list[ApiChild] = field(default_factory=list)
    gateway: Gateway | None = None
    started_db: bool = False

    @property
    def base_url(self) -> str:
        """Public URL of the gateway, with a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/"

    def urls(self) -> dict[str, str]:
        """What people and programs use."""
        return {
            "browser": self.base_url,
            "external API": self.base_url + "external/",
            "internal API": self.base_url + "api/",
        }

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Bring everything up; on any failure, take down what was started."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        cluster = self.target.cluster
        if cluster is not None:
            self.started_db = cluster.start()
        logs = self.run_dir / "logs"
        logs.mkdir(exist_ok=True)
        for mode, role, prefix, port in (
            ("internal", "eomatch_api", "/api", self.internal_port),
            ("external", "eomatch_reader", "/external", self.external_port),
        ):
            self.apis.append(self._spawn(mode, role, prefix, port or free_port(), logs))
        for api in self.apis:
            self._wait(api)
        www = self.run_dir / "www"
        try:
            dist = browser_dist(build=self.build_browser)
        except EomatchError as exc:
            print(
                f"eomatch serve: STAC Browser unavailable ({exc}); serving a placeholder",
                file=sys.stderr,
            )
            dist = self.run_dir / "placeholder"
            dist.mkdir(exist_ok=True)
            (dist / "index.html").write_text(PLACEHOLDER, encoding="utf-8")
            dist.chmod(0o755)
            (dist / "index.html").chmod(0o644)
        write_runtime_config(www, self.base_url + "external/")
        www.chmod(0o755)
        gateway = Gateway(self.run_dir / "gateway")
        gateway.write_config(
            listen_host=self.host,
            listen_port=self.port,
            internal_upstream=f"127.0.0.1:{self.apis[0].port}",
            external_upstream=f"127.0.0.1:{self.apis[1].port}",
            browser_dir=dist,
            runtime_config_dir=www,
        )
        self.gateway = gateway
        gateway.start()
        self._write_state()

    def _spawn(self, mode: str, role: str, prefix: str, port: int, logs: Path) -> ApiChild:
        info = self.target.role(role)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            {
                "EOMATCH_API_MODE": mode,
                "PGHOST": info.host,
                "PGPORT": str(info.port),
                "PGDATABASE": info.dbname,
                "PGUSER": info.user,
            }
        )
        if info.passfile is not None:
            env["PGPASSFILE"] = str(info.passfile)
        elif info.password is not None:
            env["PGPASSWORD"] = info.password
        log = logs / f"api-{mode}.log"
        cmd = api_command(port, prefix, self.workers)
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        return ApiChild(mode, port, proc, log)

    @staticmethod
    def _wait(api: ApiChild, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not api.alive():
                tail = api.log.read_text(errors="replace").strip().splitlines()[-1:]
                raise EomatchError(
                    f"the {api.mode} API exited: {tail[0] if tail else 'see ' + str(api.log)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{api.port}/_mgmt/ping", timeout=1).is_success:
                    return
            time.sleep(0.2)
        raise EomatchError(f"the {api.mode} API did not answer within {timeout_s:.0f} s")

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "urls": self.urls(),
            "apis": {a.mode: {"pid": a.proc.pid, "port": a.port} for a in self.apis},
            "gateway": {"port": self.port, "run_dir": str(self.gateway.run_dir)}
            if self.gateway
            else None,
            "database": self.target.describe(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_text(self.run_dir / STATE, json.dumps(state, indent=2) + "\n")

    # -- run and stop ----------------------------------------------------------------------

    def wait(self) -> str:
        """Block until Ctrl-C/SIGTERM (returns "stopped") or a child dies (returns why)."""
        stop_reason: list[str] = []

        def on_term(signum: int, frame: Any) -> None:
            stop_reason.append("stopped")

        previous = signal.signal(signal.SIGTERM, on_term)
        try:
            while not stop_reason:
                for api in self.apis:
                    if not api.alive():
                        return f"the {api.mode} API exited (log: {api.log})"
                if self.gateway is not None and not self.gateway.status().running:
                    return "the gateway exited"
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        return "stopped"

    def stop(self) -> None:
        """Reverse order; safe to call twice."""
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                self.gateway.stop()
            self.gateway = None
        for api in reversed(self.apis):
            if api.alive():
                api.proc.send_signal(signal.SIGINT)
        for api in self.apis:
            try:
                api.proc.wait(10)
            except subprocess.TimeoutExpired:
                api.proc.kill()
                api.proc.wait(5)
        self.apis = []
        if self.started_db and self.target.cluster is not None:
            with contextlib.suppress(Exception):
                self.target.cluster.stop()
            self.started_db = False
        (self.run_dir / STATE).unlink(missing_ok=True)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """What a running ``eomatch serve`` recorded, with liveness checked now (None: not running)."""
    try:
        state = json.loads((run_dir / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not pid_alive(int(state.get("pid", 0))):
        return None
    checks: dict[str, str] = {}
    urls: Mapping[str, str] = state.get("urls", {})
    for name, url in urls.items():
        try:
            r = httpx.get(url + ("_mgmt/health" if "API" in name else ""), timeout=3)
            checks[name] = "up" if r.is_success else f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            checks[name] = f"down ({type(exc).__name__})"
    state["checks"] = checks
    return state
