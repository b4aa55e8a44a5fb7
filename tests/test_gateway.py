"""The gateway with the real nginx binary in front of real (echo) upstreams and a static dir."""

from __future__ import annotations

import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from eomatch.service.browser import write_runtime_config
from eomatch.service.gateway import (
    DEFAULT_API_ALLOW,
    UPSTREAM_KEEPALIVE_S,
    Gateway,
    GatewayError,
    RateLimit,
    parse_api_allow,
    parse_public_url,
    render_nginx_conf,
)
from eomatch.service.serving import KEEPALIVE_S
from eomatch.service.stack import api_command, free_port
from gateway_helpers import (
    DB_DOWN_TEXT,
    alive,
    children_of,
    echo_upstream,
    processes_mentioning,
    world_readable_tmpdir,
)

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx binary not installed")
SECRET = "TOP-SECRET-NOT-FOR-THE-WEB"
INDEX = "<!doctype html><title>stac browser stand-in</title>"
PUBLIC = "http://catalogue.example.org:8000"


@dataclass
class Running:
    url: str
    port: int
    gateway: Gateway
    base: Path


def _static_site(base: Path) -> tuple[Path, Path]:
    """A dist dir (index, a js file, a dotfile) and, next to it, files that must stay private."""
    dist = base / "dist"
    (dist / "js").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "js" / "app.js").write_text("console.log('app');\n")
    (dist / ".env").write_text(SECRET)
    (base / "secret.txt").write_text(SECRET)
    (base / "catalogue").mkdir()
    (base / "catalogue" / "catalog.json").write_text(json.dumps({"secret": SECRET}))
    runtime = base / "runtime"
    write_runtime_config(runtime, "http://example.test/external/")
    for path in [base, *base.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dist, runtime


def _start(
    base: Path,
    internal: str,
    external: str,
    rate_limit: RateLimit | None = None,
    public_url: str | None = PUBLIC,
    api_allow: tuple[str, ...] = DEFAULT_API_ALLOW,
) -> Running:
    dist, runtime = _static_site(base)
    port = free_port()
    gateway = Gateway(base / "run")
    gateway.write_config(
        listen_host="127.0.0.1",
        listen_port=port,
        internal_upstream=internal,
        external_upstream=external,
        browser_dir=dist,
        runtime_config_dir=runtime,
        rate_limit=rate_limit,
        public_url=public_url,
        api_allow=api_allow,
    )
    gateway.start()
    return Running(f"http://127.0.0.1:{port}", port, gateway, base)


@pytest.fixture(scope="module")
def gw() -> Iterator[Running]:
    if NGINX is None:
        pytest.skip("nginx binary not installed")
    with (
        echo_upstream("internal") as internal,
        echo_upstream("external") as external,
        world_readable_tmpdir("eomatch-gw-") as base,
    ):
        running = _start(base, internal.address, external.address)
        try:
            yield running
        finally:
            running.gateway.stop()


def _raw_get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET with the request target sent byte for byte (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


# -- the renderer ------------------------------------------------------------------------------


def test_render_is_deterministic_and_self_contained() -> None:
    kwargs = {
        "listen_host": "0.0.0.0",
        "listen_port": 8080,
        "internal_upstream": "api-internal:8080",
        "external_upstream": "api-external:8080",
        "browser_dir": "/srv/eomatch/browser/dist",
        "runtime_config_dir": "/srv/eomatch/browser/runtime",
        "run_dir": "/tmp",
    }
    text = render_nginx_conf(**kwargs)  # type: ignore[arg-type]
    assert text == render_nginx_conf(**kwargs)  # type: ignore[arg-type]
    assert "include" not in text
    assert "\nuser " not in text
    assert "server_tokens off;" in text
    assert "Bearer" not in text  # keys are checked by the API, never in nginx
    assert "error_log stderr" in text  # no log_dir: container logging
    assert "listen 0.0.0.0:8080;" in text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("internal_upstream", "127.0.0.1:1; include /etc/passwd"),
        ("browser_dir", "/srv/x }\nserver {"),
        ("runtime_config_dir", "/srv/'quoted'"),
        ("listen_host", "127.0.0.1 default_server"),
    ],
)
def test_render_rejects_values_that_would_change_the_config(field: str, value: str) -> None:
    kwargs: dict[str, object] = {
        "listen_host": "127.0.0.1",
        "listen_port": 8090,
        "internal_upstream": "127.0.0.1:8081",
        "external_upstream": "127.0.0.1:8082",
        "browser_dir": "/srv/dist",
        "runtime_config_dir": "/srv/runtime",
        "run_dir": "/tmp",
        field: value,
    }
    with pytest.raises(ValueError, match="nginx configuration"):
        render_nginx_conf(**kwargs)  # type: ignore[arg-type]


def test_render_brackets_ipv6_listen_address() -> None:
    text = render_nginx_conf(
        listen_host="::1",
        listen_port=8090,
        internal_upstream="127.0.0.1:8081",
        external_upstream="127.0.0.1:8082",
        browser_dir="/srv/dist",
        runtime_config_dir="/srv/runtime",
        run_dir="/tmp",
    )
    assert "listen [::1]:8090;" in text


# -- routing and headers -----------------------------------------------------------------------


@needs_nginx
def test_api_routes_strip_the_prefix_and_forward_the_public_url(gw: Running) -> None:
    r = httpx.get(f"{gw.url}/api/collections?limit=5&bbox=1,2,3,4")
    assert r.status_code == 200
    echo = r.json()
    assert echo["upstream"] == "internal"
    assert echo["path"] == "/collections?limit=5&bbox=1,2,3,4"
    h = echo["headers"]
    assert h["host"] == "catalogue.example.org:8000"
    assert h["x-forwarded-host"] == "catalogue.example.org"
    assert h["x-forwarded-port"] == "8000"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-for"] == "127.0.0.1"

    ext = httpx.get(f"{gw.url}/external/search?collections=a").json()
    assert ext["upstream"] == "external"
    assert ext["path"] == "/search?collections=a"
    post = httpx.post(f"{gw.url}/api/search?x=1", json={"limit": 1}).json()
    assert (post["upstream"], post["method"], post["path"]) == ("internal", "POST", "/search?x=1")

    root = httpx.get(f"{gw.url}/external/").json()
    assert (root["upstream"], root["path"]) == ("external", "/")


@needs_nginx
@pytest.mark.parametrize("prefix", ["/api/", "/external/", "/api/search", "/external/search"])
def test_client_host_and_forwarding_headers_never_reach_the_apis(gw: Running, prefix: str) -> None:
    """Links are built from the configured public URL, never from what a client sends."""
    spoof = {
        "Host": "evil.example:666",
        "Forwarded": "host=evil.example;proto=https",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Port": "666",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "6.6.6.6",
    }
    status, body = _raw_get(gw.port, prefix, spoof)
    assert status == 200
    h = json.loads(body)["headers"]
    assert h["forwarded"] is None
    assert h["host"] == "catalogue.example.org:8000"
    assert (h["x-forwarded-host"], h["x-forwarded-port"]) == ("catalogue.example.org", "8000")
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert "evil" not in body
    assert "666" not in body


@needs_nginx
def test_https_public_url_and_none() -> None:
    """An https URL on its default port; without one (containers) no client host either."""
    spoof = {"Host": "evil.example:666", "X-Forwarded-Host": "evil.example"}
    with echo_upstream("api") as api, world_readable_tmpdir("eomatch-gw-") as base:
        running = _start(base, api.address, api.address, public_url="https://cat.example.org")
        try:
            h = json.loads(_raw_get(running.port, "/external/", spoof)[1])["headers"]
            assert (h["host"], h["x-forwarded-host"]) == ("cat.example.org", "cat.example.org")
            assert (h["x-forwarded-proto"], h["x-forwarded-port"]) == ("https", "443")
        finally:
            running.gateway.stop()
    with echo_upstream("api") as api, world_readable_tmpdir("eomatch-gw-") as base:
        running = _start(base, api.address, api.address, public_url=None)
        try:
            h = json.loads(_raw_get(running.port, "/external/", spoof)[1])["headers"]
            assert h["host"] == "eomatch_external"  # the upstream's name, not the client's
            assert (h["x-forwarded-host"], h["x-forwarded-port"]) == (None, None)
        finally:
            running.gateway.stop()


@needs_nginx
def test_writes_and_bodies_reach_the_internal_api(gw: Running) -> None:
    """nginx checks no keys (the API does) and takes bulk item bodies (> 1 MB default)."""
    body = b"x" * (3 * 1024 * 1024)
    r = httpx.post(
        f"{gw.url}/api/collections/c/bulk_items",
        content=body,
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
    )
    echo = r.json()
    assert (echo["method"], echo["path"], echo["body_bytes"]) == (
        "POST",
        "/collections/c/bulk_items",
        len(body),
    )
    assert echo["headers"]["authorization"] == "Bearer k"


@needs_nginx
def test_prefix_without_slash_redirects_relatively(gw: Running) -> None:
    for prefix in ("/api", "/external"):
        r = httpx.get(f"{gw.url}{prefix}")
        assert r.status_code == 301
        assert r.headers["location"] == f"{prefix}/"


@needs_nginx
def test_json_is_gzipped_and_server_version_hidden(gw: Running) -> None:
    r = httpx.get(f"{gw.url}/external/search?pad=1", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert len(r.json()["pad"]) == 5000
    assert r.headers["server"] == "nginx"
    assert r.num_bytes_downloaded < 10_000  # ~50 kB of JSON on the wire, compressed


# -- the browser's static files ----------------------------------------------------------------


@needs_nginx
def test_browser_files_and_history_mode_fallback(gw: Running) -> None:
    r = httpx.get(f"{gw.url}/")
    assert (r.status_code, r.text) == (200, INDEX)
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-content-type-options"] == "nosniff"
    # Deep links of STAC Browser's history mode load the app.
    for deep in ("/collections/matchups/items/mu-1", "/search", "/apis", "/external.html"):
        r = httpx.get(f"{gw.url}{deep}")
        assert (r.status_code, r.text) == (200, INDEX), deep
    js = httpx.get(f"{gw.url}/js/app.js")
    assert js.headers["content-type"].startswith("application/javascript")
    cfg = httpx.get(f"{gw.url}/config.js")
    assert cfg.status_code == 200
    assert '"catalogUrl": "http://example.test/external/"' in cfg.text
    assert cfg.headers["cache-control"] == "no-cache"


@needs_nginx
@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/js/../../secret.txt",
        "/js/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/.env",
        "/js/..%2f.env",
        "/catalogue/catalog.json",
        "/../catalogue/catalog.json",
        "/config.js/../secret.txt",
        "/config.js../secret.txt",
        "/run/nginx.conf",
        "/../run/nginx.conf",
        "//etc/passwd",
        "/../../../../etc/passwd",
    ],
)
def test_no_file_outside_the_dist_is_readable(gw: Running, target: str) -> None:
    status, body = _raw_get(gw.port, target)
    assert SECRET not in body
    assert "root:" not in body
    assert "worker_processes" not in body
    assert status in (200, 400, 404), (target, status)
    if status == 200:
        assert body == INDEX  # only ever the app itself


# -- limits, failures, lifecycle ---------------------------------------------------------------


@needs_nginx
def test_rate_limit_answers_json_429_on_external_only() -> None:
    with (
        echo_upstream("internal") as internal,
        world_readable_tmpdir("eomatch-gw-") as base,
    ):
        dead = f"127.0.0.1:{free_port()}"  # nothing listens: the API is "down"
        running = _start(base, internal.address, dead, rate_limit=RateLimit(per_second=1, burst=1))
        try:
            with httpx.Client() as client:
                codes = [client.get(f"{running.url}/external/").status_code for _ in range(8)]
                assert 429 in codes
                limited = client.get(f"{running.url}/external/")
                assert limited.status_code == 429
                assert limited.headers["content-type"] == "application/json"
                assert limited.json() == {
                    "code": "TooManyRequests",
                    "description": "rate limit exceeded",
                }
                assert limited.headers["retry-after"] == "1"
                # The internal API has no such limit.
                assert {client.get(f"{running.url}/api/").status_code for _ in range(8)} == {200}
            # Once the bucket drained: an unreachable API is a JSON 503, not an HTML 502.
            time.sleep(2.1)
            down = httpx.get(f"{running.url}/external/collections")
            assert down.status_code == 503
            assert down.json() == {
                "code": "ServiceUnavailable",
                "description": "service unavailable",
            }
        finally:
            running.gateway.stop()


@needs_nginx
@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands nginx to another user")
def test_dist_in_a_folder_nginx_cannot_reach_is_copied_in(tmp_path: Path) -> None:
    """Regression: a checkout under a root-only folder (mktemp -d) gave 403 on every page."""
    private = tmp_path / "checkout"  # pytest's tmp_path: root only, like a fresh CI clone
    dist, _ = _static_site(private)
    private.chmod(0o700)
    with (
        echo_upstream("internal") as internal,
        echo_upstream("external") as external,
        world_readable_tmpdir("eomatch-gw-") as base,
    ):
        runtime = base / "runtime"
        write_runtime_config(runtime, "http://example.test/external/")
        runtime.chmod(0o755)
        gateway = Gateway(base / "run")
        port = free_port()
        gateway.write_config(
            listen_host="127.0.0.1",
            listen_port=port,
            internal_upstream=internal.address,
            external_upstream=external.address,
            browser_dir=dist,
            runtime_config_dir=runtime,
        )
        gateway.start()
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/")
            assert r.status_code == 200
            assert r.text == INDEX
            assert (base / "run" / "browser" / "index.html").read_text() == INDEX
        finally:
            gateway.stop()


@needs_nginx
def test_lifecycle_unprivileged_reload_and_clean_stop() -> None:
    with (
        echo_upstream("internal") as internal,
        echo_upstream("external") as external,
        world_readable_tmpdir("eomatch-gw-") as base,
    ):
        running = _start(base, internal.address, external.address)
        gateway = running.gateway
        try:
            state = gateway.status()
            assert state.running
            assert state.pid is not None
            assert processes_mentioning(str(gateway.config_path)) == [state.pid]
            workers = children_of(state.pid)
            assert workers
            pids = [state.pid, *workers]
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody").pw_uid
                for pid in pids:
                    uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:4]
                    assert {int(u) for u in uids} == {nobody}, pid
            with pytest.raises(GatewayError, match="already running"):
                gateway.start()

            # Reload picks up a new runtime config directory without a restart.
            other = base / "runtime2"
            write_runtime_config(other, "http://other.test/external/")
            other.chmod(0o755)
            gateway.write_config(
                listen_host="127.0.0.1",
                listen_port=running.port,
                internal_upstream=internal.address,
                external_upstream=external.address,
                browser_dir=base / "dist",
                runtime_config_dir=other,
            )
            gateway.reload()
            # old workers finish gracefully and may answer a little longer: wait until
            # several answers in a row come from the new configuration
            deadline, streak = time.monotonic() + 10, 0
            while streak < 5 and time.monotonic() < deadline:
                fresh = "other.test" in httpx.get(f"{running.url}/config.js").text
                streak = streak + 1 if fresh else 0
                time.sleep(0.05)
            assert streak >= 5
            assert gateway.status().pid == state.pid
        finally:
            gateway.stop()
        assert not gateway.status().running
        assert processes_mentioning(str(gateway.config_path)) == []
        assert not any(alive(pid) for pid in pids)
        with socket.socket() as s:  # the port is free again (nobody listens on it)
            # SO_REUSEADDR as every server sets it: the closed keep-alive connections may
            # leave TIME_WAIT entries on the port, which are not a listener (flaky otherwise)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", running.port))
            s.listen()
        gateway.stop()  # stopping a stopped gateway is fine


@needs_nginx
def test_invalid_config_is_reported_before_start() -> None:
    with world_readable_tmpdir("eomatch-gw-") as base:
        gateway = Gateway(base / "run")
        gateway.write_config(
            listen_host="127.0.0.1",
            listen_port=free_port(),
            internal_upstream="127.0.0.1:1",
            external_upstream="127.0.0.1:2",
            browser_dir=base / "dist",
            runtime_config_dir=base / "runtime",
        )
        gateway.config_path.write_text(gateway.config_path.read_text() + "\nbogus_directive on;\n")
        with pytest.raises(GatewayError, match="bogus_directive"):
            gateway.start()
        assert not gateway.status().running


def test_missing_nginx_binary_is_a_clear_error(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path / "run", nginx="nginx-that-does-not-exist")
    gateway.config_path.parent.mkdir(parents=True)
    gateway.config_path.write_text("events {}\n")
    with pytest.raises(GatewayError, match="install nginx"):
        gateway.check()


# -- the internal API's allow-list -------------------------------------------------------------


def test_allow_list_parsing() -> None:
    assert parse_api_allow("10.0.0.0/8, 192.168.1.7 ,::1") == (
        "10.0.0.0/8",
        "192.168.1.7/32",
        "::1/128",
    )
    assert parse_api_allow(DEFAULT_API_ALLOW) == DEFAULT_API_ALLOW
    assert "127.0.0.0/8" in DEFAULT_API_ALLOW
    assert "fc00::/7" in DEFAULT_API_ALLOW
    for bad in ("", " , ", "10.0.0.0/33", "all", "10.0.0.0/8; allow all", "example.org"):
        with pytest.raises(ValueError, match=r"IP network|empty"):
            parse_api_allow(bad)


def test_public_url_parsing() -> None:
    assert parse_public_url("http://127.0.0.1:8090") == ("http", "127.0.0.1", 8090)
    assert parse_public_url("https://cat.example.org") == ("https", "cat.example.org", 443)
    assert parse_public_url("http://[::1]:8090") == ("http", "[::1]", 8090)
    for bad in (
        "ftp://x",
        "http://",
        "http://x/api",
        "http://x?a=1",
        "http://u:p@x",
        "http://x:99999",
        "http://x;y",
        "cat.example.org",
    ):
        with pytest.raises(ValueError, match="public URL"):
            parse_public_url(bad)


@needs_nginx
def test_internal_api_is_refused_outside_the_allow_list() -> None:
    """From loopback with an allow-list of 10/8 only: /api/ is a JSON 403, /external/ works."""
    with (
        echo_upstream("internal") as internal,
        echo_upstream("external") as external,
        world_readable_tmpdir("eomatch-gw-") as base,
    ):
        running = _start(base, internal.address, external.address, api_allow=("10.0.0.0/8",))
        try:
            for method, target in (
                ("GET", "/api/"),
                ("GET", "/api"),
                ("GET", "/api/collections?limit=1"),
                ("POST", "/api/search"),
                ("POST", "/api/collections/c/items"),
                ("DELETE", "/api/collections/c"),
                ("GET", "/api/../api/conformance"),
                ("GET", "//api/"),
                ("GET", "/%61pi/"),
            ):
                r = httpx.request(
                    method, running.url + target, json={} if method != "GET" else None
                )
                assert r.status_code == 403, (method, target)
                assert r.headers["content-type"] == "application/json"
                assert r.json() == {
                    "code": "Forbidden",
                    "description": "not available from this network",
                }
                assert "internal" not in r.text
            assert httpx.get(running.url + "/external/").json()["upstream"] == "external"
            assert httpx.get(running.url + "/").text == INDEX
        finally:
            running.gateway.stop()


@needs_nginx
def test_default_allow_list_lets_loopback_in(gw: Running) -> None:
    assert httpx.get(f"{gw.url}/api/").json()["upstream"] == "internal"
    assert httpx.post(f"{gw.url}/api/search", json={}).json()["upstream"] == "internal"


# -- what nginx says itself --------------------------------------------------------------------


def _raw(port: int, data: bytes) -> tuple[int, dict[str, str], str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body.decode(errors="replace")


@needs_nginx
def test_errors_from_nginx_are_json_and_name_no_host_port_or_path() -> None:
    with (
        echo_upstream("internal") as internal,
        world_readable_tmpdir("eomatch-gw-") as base,
    ):
        dead = free_port()
        running = _start(base, internal.address, f"127.0.0.1:{dead}")
        port = running.port
        host = f"Host: 127.0.0.1:{port}\r\nConnection: close\r\n"
        try:
            cases = [
                (404, f"GET /.env HTTP/1.1\r\n{host}\r\n".encode()),
                (404, f"GET /_eomatch_error/403 HTTP/1.1\r\n{host}\r\n".encode()),
                (405, f"POST /index.html HTTP/1.1\r\n{host}Content-Length: 0\r\n\r\n".encode()),
                (503, f"GET /external/collections HTTP/1.1\r\n{host}\r\n".encode()),
                (400, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"),
                (400, f"GET /../secret.txt HTTP/1.1\r\n{host}\r\n".encode()),
                (414, f"GET /{'a' * 20000} HTTP/1.1\r\n{host}\r\n".encode()),
            ]
            for code, request in cases:
                status, headers, body = _raw(port, request)
                assert status == code, (code, body)
                assert headers["content-type"] == "application/json", code
                doc = json.loads(body)
                assert set(doc) == {"code", "description"}
                for leak in (str(port), str(dead), "127.0.0.1", "nginx", str(base), "/external"):
                    assert leak not in body, (code, leak)
                assert headers["server"] == "nginx"  # no version (server_tokens off)
        finally:
            running.gateway.stop()


@needs_nginx
@pytest.mark.parametrize("prefix", ["/api", "/external"])
def test_a_failing_health_check_does_not_show_the_database_address(
    gw: Running, prefix: str
) -> None:
    up = httpx.get(f"{gw.url}{prefix}/_mgmt/health")
    assert up.status_code == 200
    assert up.json()["path"] == "/_mgmt/health"
    down = httpx.get(f"{gw.url}{prefix}/_mgmt/health?down=1")
    assert down.status_code == 503
    assert down.json() == {"code": "ServiceUnavailable", "description": "service unavailable"}
    assert "55432" not in down.text
    # other API errors pass through as the API wrote them
    other = httpx.get(f"{gw.url}{prefix}/collections?down=1")
    assert other.status_code == 503
    assert DB_DOWN_TEXT in other.text


# -- upstream connections ----------------------------------------------------------------------


def test_nginx_closes_idle_upstream_connections_before_uvicorn() -> None:
    """Else nginx may send a request on a connection uvicorn is just closing (a 502/503)."""
    text = render_nginx_conf(
        listen_host="127.0.0.1",
        listen_port=8090,
        internal_upstream="127.0.0.1:8081",
        external_upstream="127.0.0.1:8082",
        browser_dir="/srv/dist",
        runtime_config_dir="/srv/runtime",
        run_dir="/tmp",
    )
    assert text.count(f"keepalive_timeout {UPSTREAM_KEEPALIVE_S}s;") == 2
    cmd = api_command(8081)
    assert int(cmd[cmd.index("--timeout-keep-alive") + 1]) == KEEPALIVE_S > UPSTREAM_KEEPALIVE_S


@needs_nginx
@pytest.mark.parametrize("concurrent", [False, True], ids=["sequential", "concurrent"])
def test_requests_after_an_api_error_all_succeed(concurrent: bool) -> None:
    """Regression: after one 500 on /api/, 6 of the next 8 requests got 503.

    Starlette re-raised the error after its 500 and uvicorn closed that kept-alive
    connection; nginx then sent the next request on it.
    """
    from concurrent.futures import ThreadPoolExecutor

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    cmd = api_command(port, app="gateway_helpers:flaky_app")
    with world_readable_tmpdir("eomatch-gw-") as base:
        log = (base / "api.log").open("wb")
        api = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/up", timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline
                    assert api.poll() is None
                    time.sleep(0.1)
            running = _start(base, f"127.0.0.1:{port}", f"127.0.0.1:{port}")
            codes: list[int] = []
            try:
                with httpx.Client(timeout=10) as client, ThreadPoolExecutor(4) as pool:
                    kinds = [
                        ("POST", f"{running.url}/api/collections/c/items"),
                        ("POST", f"{running.url}/api/search"),
                        ("PUT", f"{running.url}/api/collections/c/items/i"),
                        ("GET", f"{running.url}/api/collections"),
                    ]
                    for round_ in range(8):
                        assert client.post(f"{running.url}/api/boom", json={}).status_code == 500
                        # nginx reuses the most recently freed connection first, so the
                        # first request after the 500 meets it (slow: still in flight when
                        # the API drops it); nginx itself retries only idempotent ones (GET,
                        # PUT) on a fresh connection: POSTs failed
                        first = round_ % len(kinds)
                        calls = (kinds[first:] + kinds[:first]) * 2
                        calls[0] = (calls[0][0], calls[0][1] + "?slow=1")

                        def call(method: str, url: str) -> int:
                            body = None if method == "GET" else {}
                            return client.request(method, url, json=body).status_code

                        if concurrent:
                            codes += list(pool.map(call, *zip(*calls, strict=True)))
                        else:
                            codes += [call(m, u) for m, u in calls]
            finally:
                running.gateway.stop()
        finally:
            api.terminate()
            api.wait(10)
            log.close()
    assert codes == [200] * 64


@needs_nginx
def test_gateway_restarts_after_its_master_is_killed() -> None:
    """A killed master leaves workers holding the port: stop() ends them so start() works."""
    with (
        echo_upstream("internal") as internal,
        echo_upstream("external") as external,
        world_readable_tmpdir("eomatch-gw-") as base,
    ):
        running = _start(base, internal.address, external.address)
        gateway = running.gateway
        try:
            master = gateway.status().pid
            assert master is not None
            workers = children_of(master)
            os.kill(master, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while gateway.status().running and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not gateway.status().running
            assert any(alive(w) for w in workers)  # orphans still hold the port
            gateway.stop()
            assert not any(alive(w) for w in workers)
            new = gateway.start()
            assert new != master
            assert httpx.get(f"{running.url}/external/").json()["upstream"] == "external"
        finally:
            gateway.stop()
