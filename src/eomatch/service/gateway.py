"""The gateway: one nginx in front of both STAC APIs and the STAC Browser, on one port.

Routes: ``/api/`` → internal API (only from the networks in ``api_allow``, else a JSON 403),
``/external/`` → external API (rate limited, JSON 429), ``/config.js`` → the browser's runtime
configuration, anything else → the browser's static files with a fallback to ``index.html``
(history-mode deep links), ``/data/`` → the object store's local folder when one is given
(read only, no listing, no symlink out of it). Nothing else on disk is reachable.

The upstreams get a fixed ``Host`` and ``X-Forwarded-*`` (from the configured public URL),
never the client's, and every error nginx itself answers is a short JSON text naming no host,
port or path.

The APIs check API keys themselves, so the nginx configuration holds no secret and can be
committed (``deploy/nginx/eomatch.conf`` is this module's output for the containers). nginx runs
unprivileged: as ``nobody`` when started by root, with its pid file, temp files and logs inside
one run directory.

:func:`render_nginx_conf` is pure; :class:`Gateway` writes, checks, starts, reloads and stops it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from eomatch.errors import GatewayError as GatewayError
from eomatch.errors import InvalidValueError
from eomatch.io.processes import pid_alive

__all__ = [
    "DEFAULT_API_ALLOW",
    "UPSTREAM_FAIL_TIMEOUT_S",
    "UPSTREAM_KEEPALIVE_S",
    "Gateway",
    "GatewayError",
    "GatewayStatus",
    "RateLimit",
    "parse_api_allow",
    "parse_public_url",
    "render_nginx_conf",
]

PathLike = str | os.PathLike[str]

# Only characters that cannot end a directive or open a block: values are pasted into the config.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_./:@%+=,\-\[\]]+")
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

# Self-contained MIME table (no dependency on the distribution's /etc/nginx/mime.types).
_MIME_TYPES = {
    "text/html": "html htm",
    "text/css": "css",
    "text/plain": "txt",
    "application/javascript": "js mjs",
    "application/json": "json map",
    "application/manifest+json": "webmanifest",
    "image/svg+xml": "svg svgz",
    "image/png": "png",
    "image/jpeg": "jpg jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/x-icon": "ico",
    "font/woff": "woff",
    "font/woff2": "woff2",
    "font/ttf": "ttf",
    "application/vnd.ms-fontobject": "eot",
    "application/wasm": "wasm",
}
_GZIP_TYPES = (
    "application/json application/geo+json application/schema+json "
    "application/vnd.oai.openapi+json application/javascript text/css text/plain image/svg+xml"
)


DEFAULT_API_ALLOW = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)
"""Who may reach ``/api/`` by default: loopback and the private (RFC 1918, ULA) ranges."""

UPSTREAM_KEEPALIVE_S = 30
"""How long nginx keeps an idle connection to an API. uvicorn must keep them open longer
(``--timeout-keep-alive``), so that nginx, not the API, always closes an idle connection: a
request sent on a connection the API closed at the same moment fails."""

UPSTREAM_FAIL_TIMEOUT_S = 5
"""With several instances of an API: how long nginx leaves out an instance that failed once
(a refused connection, a reset, a timeout, a 502/503) before it tries it again. Open-source
nginx has no active health checks; this passive check plus the supervisor's restarts are how
a dead instance leaves and rejoins the group."""

Upstreams = str | Sequence[str]
"""One ``host:port`` or several (instances of the same API, balanced round-robin)."""


def _upstream_block(name: str, what: str, servers: Upstreams) -> str:
    """An ``upstream`` block; each server is left out for :data:`UPSTREAM_FAIL_TIMEOUT_S` after
    one failure (passive health check). nginx ignores this for a group of one address, and
    applies it to each address of a name that resolves to several (compose replicas)."""
    listed = [servers] if isinstance(servers, str) else list(servers)
    if not listed:
        raise InvalidValueError(f"{what}: no upstream server")
    options = f" max_fails=1 fail_timeout={UPSTREAM_FAIL_TIMEOUT_S}s"
    lines = "\n".join(f"        server {nginx_value(what, s)}{options};" for s in listed)
    return f"""    upstream {name} {{
{lines}
        keepalive 16;
        keepalive_timeout {UPSTREAM_KEEPALIVE_S}s;
    }}"""


# The bodies of the errors nginx answers itself (the APIs' own errors pass through untouched).
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "malformed request"),
    403: ("Forbidden", "not available from this network"),
    404: ("NotFound", "not found"),
    405: ("MethodNotAllowed", "method not allowed"),
    408: ("RequestTimeout", "request timed out"),
    413: ("PayloadTooLarge", "request body too large"),
    414: ("URITooLong", "request URI too long"),
    429: ("TooManyRequests", "rate limit exceeded"),
    500: ("InternalServerError", "internal error"),
    503: ("ServiceUnavailable", "service unavailable"),
}


@dataclass(frozen=True)
class RateLimit:
    """Per-client-address request rate on ``/external/`` (leaky bucket, excess answered 429)."""

    per_second: int = 50
    """Sustained requests per second."""
    burst: int = 100
    """Requests above the rate that are still served at once (``nodelay``)."""


def nginx_value(name: str, value: object) -> str:
    """``value`` as text if nginx's configuration can hold it unquoted (``serve`` checks its
    host and run directory with it before starting anything).

    Raises:
        InvalidValueError: a character that could change the configuration's meaning.
    """
    text = str(value)
    if not _SAFE_VALUE.fullmatch(text):
        raise InvalidValueError(f"{name}: {text!r} is not usable in an nginx configuration")
    return text


def _listen(host: str, port: int) -> str:
    if not 0 < port < 65536:
        raise InvalidValueError(f"listen port {port} is out of range")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{nginx_value('listen host', host)}:{port}"


def parse_api_allow(networks: str | Sequence[str]) -> tuple[str, ...]:
    """Validate an allow-list (``CIDR[,CIDR…]`` or a sequence) into normalised networks.

    Raises:
        ValueError: Empty, or an entry is not an IPv4/IPv6 address or network.
    """
    items = networks.split(",") if isinstance(networks, str) else list(networks)
    out: list[str] = []
    for raw in items:
        text = raw.strip()
        if not text:
            continue
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InvalidValueError(
                f"{text!r} is not an IP network (CIDR such as 10.0.0.0/8)"
            ) from None
        if str(net) not in out:
            out.append(str(net))
    if not out:
        raise InvalidValueError("the /api/ allow-list is empty (give at least one CIDR)")
    return tuple(out)


def parse_public_url(url: str) -> tuple[str, str, int]:
    """Split ``scheme://host[:port]`` into scheme, host (IPv6 in brackets) and port.

    Raises:
        ValueError: Not an http(s) URL of that form (a path, query, user or bad port).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidValueError(f"public URL {url!r}: {exc}") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or not _SAFE_VALUE.fullmatch(parts.hostname)
    ):
        raise InvalidValueError(f"public URL {url!r} must be http(s)://HOST[:PORT] with no path")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def render_nginx_conf(
    *,
    listen_host: str,
    listen_port: int,
    internal_upstream: Upstreams,
    external_upstream: Upstreams,
    browser_dir: PathLike,
    runtime_config_dir: PathLike,
    run_dir: PathLike,
    log_dir: PathLike | None = None,
    rate_limit: RateLimit | None = None,
    client_max_body_size: str = "50m",
    proxy_timeout_s: int = 120,
    worker_processes: int | None = None,
    public_url: str | None = None,
    api_allow: Sequence[str] = DEFAULT_API_ALLOW,
    data_dir: PathLike | None = None,
) -> str:
    """The gateway's complete ``nginx.conf`` (self-contained: no ``include``, no ``user``).

    Args:
        listen_host: Address to listen on (``127.0.0.1``, ``0.0.0.0``, ``::1``).
        listen_port: Port to listen on.
        internal_upstream: ``host:port`` of the internal API (uvicorn ``--root-path /api``),
            or a sequence of them (instances; a failed one is left out for a while and
            idempotent requests are retried on the next, see :data:`UPSTREAM_FAIL_TIMEOUT_S`).
        external_upstream: The same for the external API (``--root-path /external``).
        browser_dir: The STAC Browser dist directory (the only static files served).
        runtime_config_dir: Directory holding the browser's runtime ``config.js``.
        run_dir: Directory for the pid file and temp files (must exist, writable by nginx's
            user).
        log_dir: Directory for ``access.log``/``error.log``; ``None`` logs to stdout/stderr
            (containers).
        rate_limit: Limit on ``/external/``; default 50 r/s with a burst of 100.
        client_max_body_size: Largest request body (bulk item posts to ``/api/``).
        proxy_timeout_s: Send/read timeout towards the APIs.
        worker_processes: nginx workers; ``None`` means one per CPU.
        public_url: ``scheme://host[:port]`` people use: sent to the APIs as ``Host`` and
            ``X-Forwarded-Host/-Port/-Proto`` whatever the client sent. ``None`` sends the
            upstream's name as ``Host`` and no ``X-Forwarded-Host/-Port``: the APIs must then
            have ``EOMATCH_PUBLIC_URL`` (containers).
        api_allow: Client networks (CIDR) allowed on ``/api/``; others get a JSON 403.
        data_dir: The object store's local folder, served read-only under ``/data/`` (COGs
            and files of jobs); None serves no ``/data/``.

    Returns:
        The configuration text. The same arguments always give the same text.

    Raises:
        ValueError: A value contains characters that would change the configuration's meaning.
    """
    limit = rate_limit or RateLimit()
    run = PurePosixPath(nginx_value("run_dir", run_dir))
    browser = nginx_value("browser_dir", browser_dir)
    runtime = PurePosixPath(nginx_value("runtime_config_dir", runtime_config_dir))
    upstreams = "\n".join(
        (
            _upstream_block("eomatch_internal", "internal_upstream", internal_upstream),
            _upstream_block("eomatch_external", "external_upstream", external_upstream),
        )
    )
    body_size = nginx_value("client_max_body_size", client_max_body_size)
    if limit.per_second < 1 or limit.burst < 0:
        raise InvalidValueError(f"invalid rate limit {limit}")
    allow = "\n".join(f"        {net} 1;" for net in parse_api_allow(api_allow))
    if public_url is None:
        forwarded = (
            "proxy_set_header Host $proxy_host;\n"
            "        proxy_set_header X-Forwarded-Proto $scheme;\n"
            '        proxy_set_header X-Forwarded-Host "";\n'
            '        proxy_set_header X-Forwarded-Port "";'
        )
    else:
        scheme, host, port = parse_public_url(public_url)
        default = port == (443 if scheme == "https" else 80)
        forwarded = (
            f"proxy_set_header Host {host if default else f'{host}:{port}'};\n"
            f"        proxy_set_header X-Forwarded-Proto {scheme};\n"
            f"        proxy_set_header X-Forwarded-Host {host};\n"
            f"        proxy_set_header X-Forwarded-Port {port};"
        )
    # URIs, not named locations: a request line nginx cannot parse (400, 414) has no URI,
    # and a redirect to a named location then fails with a 500 in nginx's own HTML
    error_pages = "\n".join(
        f"        error_page {code} = /_eomatch_error/{code};" for code in _ERRORS if code != 503
    )
    error_pages += "\n        error_page 502 503 504 = /_eomatch_error/503;"
    error_locations = "\n".join(
        f"""        location = /_eomatch_error/{code} {{
            internal;
            default_type application/json;{retry if code == 429 else ""}
            return {code} '{{"code": "{name}", "description": "{text}"}}';
        }}"""
        for code, (name, text) in _ERRORS.items()
        for retry in ["\n            add_header Retry-After 1 always;"]
    )
    if log_dir is None:
        error_log, access_log = "stderr", "/dev/stdout"
    else:
        logs = PurePosixPath(nginx_value("log_dir", log_dir))
        error_log, access_log = str(logs / "error.log"), str(logs / "access.log")
    workers = "auto" if worker_processes is None else str(int(worker_processes))
    data_location = ""
    if data_dir is not None:
        data = str(PurePosixPath(nginx_value("data_dir", data_dir))).rstrip("/") + "/"
        # alias + ^~: the URI is normalised (no ..) before matching; disable_symlinks refuses
        # any link below the folder; no listing; read only; files never run as pages here
        data_location = f"""
        location ^~ /data/ {{
            alias {data};
            autoindex off;
            disable_symlinks on from=$document_root;
            limit_except GET HEAD {{
                deny all;
            }}
            add_header X-Content-Type-Options nosniff always;
            add_header Referrer-Policy same-origin always;
            add_header X-Frame-Options SAMEORIGIN always;
            add_header Content-Security-Policy "default-src 'none'; sandbox" always;
            add_header Access-Control-Allow-Origin * always;
            expires 1h;
        }}"""
    mime = "\n".join(f"        {t} {ext};" for t, ext in _MIME_TYPES.items())
    temp = "\n".join(f"    {name}_temp_path {run / (name + '_temp')};" for name in _TEMP_DIRS)
    return f"""\
# eomatch gateway. Generated by eomatch.service.gateway.render_nginx_conf: do not edit by hand.
# /api/ -> internal STAC API, /external/ -> external STAC API, / -> STAC Browser (static).
# No secrets here: the APIs check API keys themselves.
worker_processes {workers};
pid {run / "nginx.pid"};
error_log {error_log} warn;

events {{
    worker_connections 1024;
}}

http {{
    types {{
{mime}
    }}
    default_type application/octet-stream;
    charset_types application/json application/geo+json application/javascript text/css text/plain;

    server_tokens off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65s;
    access_log {access_log};
{temp}

    gzip on;
    gzip_min_length 1024;
    gzip_proxied any;
    gzip_vary on;
    gzip_types {_GZIP_TYPES};

    limit_req_zone $binary_remote_addr zone=eomatch_external:10m rate={limit.per_second}r/s;
    limit_req_status 429;

    # The internal API (file:// paths, writes with a key) only for these client networks.
    geo $eomatch_api_allowed {{
        default 0;
{allow}
    }}

    # nginx closes idle upstream connections before uvicorn does (--timeout-keep-alive is
    # longer), so it never sends a request on a connection the API is closing.
{upstreams}

    server {{
        listen {_listen(listen_host, listen_port)};
        server_name _;
        root {browser};
        index index.html;
        absolute_redirect off;
        client_max_body_size {body_size};

        add_header X-Content-Type-Options nosniff always;
        add_header Referrer-Policy same-origin always;
        add_header X-Frame-Options SAMEORIGIN always;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        # Fixed values: links never follow a Host or X-Forwarded-* a client sends.
        {forwarded}
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $remote_addr;
        # The APIs prefer a Forwarded header over X-Forwarded-*: never pass a client's on.
        proxy_set_header Forwarded "";
        proxy_connect_timeout 5s;
        # Passive failover between instances: a request that could not be sent, or an
        # idempotent one whose instance failed, goes to the next instance. nginx never passes
        # a POST/PATCH it has already sent on (only /search, a read, says non_idempotent).
        proxy_next_upstream error timeout http_502 http_503;
        proxy_next_upstream_tries 3;
        proxy_next_upstream_timeout 10s;
        proxy_send_timeout {int(proxy_timeout_s)}s;
        proxy_read_timeout {int(proxy_timeout_s)}s;

        # Errors nginx answers itself are short JSON texts (no host, port, path or version).
{error_pages}

        location = /api {{
            if ($eomatch_api_allowed = 0) {{
                return 403;
            }}
            return 301 /api/;
        }}
        # POST /search is a read: retry it on a fresh connection if a kept-alive one fails.
        location = /api/search {{
            if ($eomatch_api_allowed = 0) {{
                return 403;
            }}
            proxy_next_upstream error timeout non_idempotent;
            proxy_pass http://eomatch_internal/search;
        }}
        # A failing health check names the database's host and port: answer ours instead.
        location = /api/_mgmt/health {{
            if ($eomatch_api_allowed = 0) {{
                return 403;
            }}
            proxy_intercept_errors on;
            proxy_pass http://eomatch_internal/_mgmt/health;
        }}
        location ^~ /api/ {{
            if ($eomatch_api_allowed = 0) {{
                return 403;
            }}
            proxy_pass http://eomatch_internal/;
        }}
        location = /external {{
            return 301 /external/;
        }}
        location = /external/search {{
            limit_req zone=eomatch_external burst={limit.burst} nodelay;
            proxy_next_upstream error timeout non_idempotent;
            proxy_pass http://eomatch_external/search;
        }}
        location = /external/_mgmt/health {{
            limit_req zone=eomatch_external burst={limit.burst} nodelay;
            proxy_intercept_errors on;
            proxy_pass http://eomatch_external/_mgmt/health;
        }}
        # OGC CSW and OGC API - Records (pycsw in the external API, read only: the public view)
        location = /csw {{
            limit_req zone=eomatch_external burst={limit.burst} nodelay;
            proxy_pass http://eomatch_external/csw;
        }}
        location = /records {{
            limit_req zone=eomatch_external burst={limit.burst} nodelay;
            proxy_pass http://eomatch_external/records;
        }}
        location ^~ /records/ {{
            limit_req zone=eomatch_external burst={limit.burst} nodelay;
            proxy_pass http://eomatch_external/records/;
        }}
        location ^~ /external/ {{
            limit_req zone=eomatch_external burst={limit.burst} nodelay;
            proxy_pass http://eomatch_external/;
        }}{data_location}

        location = /config.js {{
            alias {runtime / "config.js"};
            expires -1;
        }}
        location = /index.html {{
            expires -1;
        }}
        # No hidden files (.git, .env, ...) even if one lands in the dist directory.
        location ~ /\\. {{
            return 404;
        }}
        location / {{
            try_files $uri /index.html;
        }}

{error_locations}
    }}
}}
"""


@dataclass(frozen=True)
class GatewayStatus:
    """What :meth:`Gateway.status` found."""

    running: bool
    pid: int | None
    config: Path


class Gateway:
    """nginx with a generated configuration, in one run directory.

    Layout of ``run_dir``: ``nginx.conf``, ``nginx.pid``, ``logs/``, ``*_temp/``.
    When the current user is root, nginx runs as ``user`` (default ``nobody``), so the run
    directory is handed to that user and every configured path must be readable by it.
    """

    def __init__(
        self,
        run_dir: PathLike,
        *,
        nginx: str = "nginx",
        user: str | None = "nobody",
    ) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.config_path = self.run_dir / "nginx.conf"
        self.pid_path = self.run_dir / "nginx.pid"
        self.log_dir = self.run_dir / "logs"
        self._nginx = nginx
        self._user = user if os.geteuid() == 0 else None
        self._process: subprocess.Popen[bytes] | None = None
        self.listen: tuple[str, int] | None = None
        """Where the configuration written by this object listens (for the start-up check)."""

    def write_config(
        self,
        *,
        listen_host: str,
        listen_port: int,
        internal_upstream: Upstreams,
        external_upstream: Upstreams,
        browser_dir: PathLike,
        runtime_config_dir: PathLike,
        rate_limit: RateLimit | None = None,
        worker_processes: int | None = 1,
        public_url: str | None = None,
        api_allow: Sequence[str] = DEFAULT_API_ALLOW,
        data_dir: PathLike | None = None,
    ) -> Path:
        """Render the configuration into the run directory (logs and temp files inside it).

        ``data_dir`` (the object store's local folder, served as ``/data/``) is created if
        missing."""
        if data_dir is not None:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
        for d in (self.run_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        browser = Path(browser_dir).absolute()
        if (
            self._user is not None
            and (browser / "index.html").is_file()
            and not self._user_can_read(browser / "index.html")
        ):
            browser = self._copy_in(browser)
        text = render_nginx_conf(
            listen_host=listen_host,
            listen_port=listen_port,
            internal_upstream=internal_upstream,
            external_upstream=external_upstream,
            browser_dir=browser,
            runtime_config_dir=Path(runtime_config_dir).absolute(),
            run_dir=self.run_dir,
            log_dir=self.log_dir,
            rate_limit=rate_limit,
            worker_processes=worker_processes,
            public_url=public_url,
            api_allow=api_allow,
            data_dir=None if data_dir is None else Path(data_dir).resolve(),
        )
        tmp = self.config_path.with_suffix(".conf.tmp")
        tmp.write_text(text)
        tmp.replace(self.config_path)
        self._hand_over()
        self.listen = (listen_host, listen_port)
        return self.config_path

    def _user_can_read(self, path: Path) -> bool:
        """Whether nginx's user reaches ``path`` (a checkout under a root-only folder does not)."""
        try:
            return self._popen(["test", "-r", str(path)]).wait(10) == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _copy_in(self, browser: Path) -> Path:
        """Copy the browser's static files into the run directory, which nginx's user owns."""
        dest = self.run_dir / "browser"
        tmp = self.run_dir / ".browser.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(browser, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        return dest

    def _hand_over(self) -> None:
        """Give the run directory to nginx's user (root only), who must write pid/temp/logs."""
        if self._user is None:
            return
        entry = pwd.getpwnam(self._user)
        for path in [self.run_dir, *self.run_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def _binary(self) -> str:
        found = shutil.which(self._nginx) or shutil.which(self._nginx, path="/usr/sbin:/sbin")
        if found is None:
            raise GatewayError(
                f"{self._nginx} not found: install nginx (Debian: apt-get install nginx)"
            )
        return found

    def _popen(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``cmd`` as nginx's user (dropping root's supplementary groups too)."""
        if self._user is None:
            return subprocess.Popen(cmd, **kwargs)
        entry = pwd.getpwnam(self._user)
        return subprocess.Popen(
            cmd, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], umask=0o022, **kwargs
        )

    def _base_cmd(self) -> list[str]:
        error_log = str(self.log_dir / "error.log")
        return [
            self._binary(),
            "-p",
            str(self.run_dir),
            "-c",
            str(self.config_path),
            "-e",
            error_log,
        ]

    def check(self) -> None:
        """Run ``nginx -t`` as nginx's user (so unreadable paths show up here, not at start).

        Raises:
            GatewayError: The configuration is invalid or a path is not accessible.
        """
        if not self.config_path.exists():
            raise GatewayError(f"no gateway configuration at {self.config_path}")
        proc = self._popen(
            [*self._base_cmd(), "-t", "-q"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = proc.communicate(timeout=30)
        if proc.returncode != 0:
            detail = " ".join(output.decode(errors="replace").split())
            raise GatewayError(f"nginx rejects {self.config_path}: {detail}")

    def start(self, timeout_s: float = 10.0) -> int:
        """Check the configuration, start nginx and wait until it accepts connections.

        Returns:
            The pid of nginx's master process.

        Raises:
            GatewayError: nginx is already running from this run directory, the configuration
                is invalid, or nginx did not come up within ``timeout_s``.
        """
        state = self.status()
        if state.running:
            raise GatewayError(f"the gateway is already running (pid {state.pid})")
        self.check()
        self.pid_path.unlink(missing_ok=True)
        log = (self.log_dir / "nginx.out").open("ab")
        with log:
            self._process = self._popen(
                [*self._base_cmd(), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not nginx
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise GatewayError(f"nginx exited at start: {self._tail_error_log()}")
            pid = self._read_pid()
            if pid is not None and self._accepts_connections():
                return pid
            time.sleep(0.02)
        self.stop()
        raise GatewayError(f"nginx did not come up within {timeout_s:g} s")

    def reload(self) -> None:
        """Re-read the configuration without dropping connections (checked first)."""
        self.check()
        pid = self._require_pid()
        os.kill(pid, signal.SIGHUP)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop (finish open requests), then force; return once the process is gone."""
        pid = self._read_pid()
        if pid is None and self._process is not None and self._process.poll() is None:
            pid = self._process.pid
        if pid is not None:
            for sig, wait_s in (
                (signal.SIGQUIT, timeout_s),
                (signal.SIGTERM, 2.0),
                (signal.SIGKILL, 2.0),
            ):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if self._wait_gone(pid, wait_s):
                    break
            else:
                raise GatewayError(f"nginx (pid {pid}) did not stop")
            self._kill_group(pid)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=timeout_s)
            self._process = None
        self.pid_path.unlink(missing_ok=True)

    def status(self) -> GatewayStatus:
        """Whether nginx runs from this run directory (works from any process)."""
        pid = self._read_pid()
        running = pid is not None and pid_alive(pid)
        return GatewayStatus(running=running, pid=pid if running else None, config=self.config_path)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _kill_group(pgid: int) -> None:
        """End workers a killed master left behind: they keep the port and would block a restart.

        nginx is started in a new session, so its workers share the master's pid as group id.
        """
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # the port is free only once they are gone
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.01)

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _require_pid(self) -> int:
        state = self.status()
        if state.pid is None:
            raise GatewayError("the gateway is not running")
        return state.pid

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == pid:
                self._process.poll()  # reap our own child so it does not linger as a zombie
            if not pid_alive(pid):
                return True
            time.sleep(0.02)
        return not pid_alive(pid)

    def _accepts_connections(self) -> bool:
        if self.listen is None:
            return True
        host, port = self.listen
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            return False

    def _tail_error_log(self) -> str:
        lines: list[str] = []
        for name in ("error.log", "nginx.out"):
            with contextlib.suppress(OSError):
                lines += (self.log_dir / name).read_text(errors="replace").splitlines()[-3:]
        return " | ".join(lines) or "no log output"


def main(argv: list[str] | None = None) -> int:
    """``python -m eomatch.service.gateway``: print a gateway configuration (for deploy/).

    ``deploy/nginx/eomatch.conf`` (containers) and the native install's
    ``/etc/eomatch/nginx.conf`` are this command's output, so they cannot drift from the code.
    """
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m eomatch.service.gateway",
        description="Print the eomatch gateway's nginx.conf.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT to listen on")
    p.add_argument(
        "--internal", default="127.0.0.1:8081", help="internal API HOST:PORT[,HOST:PORT...]"
    )
    p.add_argument(
        "--external", default="127.0.0.1:8082", help="external API HOST:PORT[,HOST:PORT...]"
    )
    p.add_argument("--browser-dir", default="/srv/eomatch/browser/dist")
    p.add_argument("--runtime-config-dir", default="/srv/eomatch/browser/runtime")
    p.add_argument("--run-dir", default="/run/eomatch-gateway", help="pid and temp files")
    p.add_argument("--log-dir", default=None, help="log files (default: stdout/stderr)")
    p.add_argument("--rate", type=int, default=RateLimit().per_second, help="/external/ r/s")
    p.add_argument("--burst", type=int, default=RateLimit().burst)
    p.add_argument(
        "--public-url",
        default=None,
        help="scheme://host[:port] people use, sent to the APIs as Host/X-Forwarded-* "
        "(default: none; the APIs then need EOMATCH_PUBLIC_URL)",
    )
    p.add_argument(
        "--api-allow",
        default=",".join(DEFAULT_API_ALLOW),
        help="client networks (CIDR[,CIDR...]) allowed on /api/; others get 403",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="the object store's local folder, served read-only under /data/ (default: none)",
    )
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    print(
        render_nginx_conf(
            listen_host=host.strip("[]"),
            listen_port=int(port),
            internal_upstream=args.internal.split(","),
            external_upstream=args.external.split(","),
            browser_dir=args.browser_dir,
            runtime_config_dir=args.runtime_config_dir,
            run_dir=args.run_dir,
            log_dir=args.log_dir,
            rate_limit=RateLimit(args.rate, args.burst),
            public_url=args.public_url,
            api_allow=parse_api_allow(args.api_allow),
            data_dir=args.data_dir,
        ),
        end="",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
