"""Provider credentials per host: the configuration, the environment, ``~/.netrc``.

For each host a download reaches (the href's, and every redirect target's), the first of:

1. ``credentials: {HOST or HOST:PORT: ...}`` in the configuration (environment variable names
   only; :mod:`eomatch.config.credentials`);
2. ``EOMATCH_TOKEN_<HOST>`` (a bearer token) or ``EOMATCH_USERNAME_<HOST>`` +
   ``EOMATCH_PASSWORD_<HOST>`` (basic), ``<HOST>`` upper-cased with every other character as
   ``_``;
3. a ``machine HOST`` entry of ``$NETRC`` or ``~/.netrc`` (basic; the ``default`` entry is
   never used: it would send a password to any host).

A host's credentials go to that host only, so a redirect elsewhere (signed storage URLs) never
carries them. Secrets live in :class:`Secret` objects whose ``repr`` hides them; nothing here
logs a secret or writes one anywhere, and error messages name the *source* of a credential
(a variable name, the netrc file), never its value.
"""

from __future__ import annotations

import base64
import logging
import netrc
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from eomatch.config.credentials import (
    BasicCredential,
    BearerCredential,
    CookieCredential,
    CredentialConfig,
    S3Credential,
    TokenEndpointCredential,
)
from eomatch.errors import ConfigError
from eomatch.errors import TokenError as TokenError
from eomatch.io.http import HttpLimits, HttpSession, redact

log = logging.getLogger(__name__)

ENV_PREFIX = "EOMATCH_"
DOCS = "docs/catalogue.md#credentials"
EXPIRY_MARGIN_S = 30.0
"""A token is renewed this long before the expiry its endpoint announced (at most a tenth of
its lifetime)."""


class Secret:
    """A secret string: ``repr``/``str`` never show it; :meth:`reveal` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value (to put in a request header, nowhere else)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def env_suffix(host: str) -> str:
    """``data.example.org`` → ``DATA_EXAMPLE_ORG`` (the host part of the variable names)."""
    return re.sub(r"[^A-Z0-9]", "_", host.upper())


def _basic(user: Secret, password: Secret) -> str:
    raw = f"{user.reveal()}:{password.reveal()}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _host_of(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port


# -- the kinds of credential ----------------------------------------------------------------


@dataclass
class Credential:
    """Credentials for one host; ``source`` says where they came from (for messages)."""

    source: str

    def headers(self) -> dict[str, str]:
        """Headers for a request to the host itself."""
        return {}

    def login_headers(self, host: str) -> dict[str, str]:
        """Headers for ``host`` reached by a redirect from this credential's host."""
        return {}

    def refused(self, sent: Mapping[str, str]) -> bool:
        """The host answered 401 to ``sent``: True when renewed headers are worth a try."""
        return False

    def close(self) -> None:
        """Release what the credential holds (a token session)."""


@dataclass
class Basic(Credential):
    """HTTP basic authentication."""

    username: Secret = field(default_factory=lambda: Secret(""))
    password: Secret = field(default_factory=lambda: Secret(""))

    def headers(self) -> dict[str, str]:
        """``Authorization: Basic …``."""
        return {"Authorization": _basic(self.username, self.password)}


@dataclass
class Bearer(Credential):
    """A fixed bearer token."""

    token: Secret = field(default_factory=lambda: Secret(""))

    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer …``."""
        return {"Authorization": f"Bearer {self.token.reveal()}"}


@dataclass
class CookieLogin(Credential):
    """Basic authentication for a login host the data host redirects to (EarthData URS); the
    cookies the hosts then set live in the session's jar."""

    login_host: str = ""
    username: Secret = field(default_factory=lambda: Secret(""))
    password: Secret = field(default_factory=lambda: Secret(""))

    def login_headers(self, host: str) -> dict[str, str]:
        """Basic authentication, for the login host only."""
        if host != self.login_host:
            return {}
        return {"Authorization": _basic(self.username, self.password)}


@dataclass
class TokenEndpoint(Credential):
    """OAuth2 tokens from a token endpoint (password or refresh-token grant), renewed shortly
    before the announced expiry, or when the data host answers 401 to the current one.

    Thread-safe: download workers share it; one renewal serves them all.
    """

    token_url: str = ""
    client_id: str = ""
    client_secret: Secret | None = None
    username: Secret | None = None
    password: Secret | None = None
    offline_token: Secret | None = None
    scope: str | None = None
    session: HttpSession | None = None
    grants: int = field(default=0, init=False)
    """Tokens obtained so far (tests, logs)."""
    _access: Secret | None = field(default=None, init=False, repr=False)
    _expires: float = field(default=0.0, init=False, repr=False)
    _refresh: Secret | None = field(default=None, init=False, repr=False)
    _refresh_expires: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer`` with a current token (obtained or renewed if needed)."""
        with self._lock:
            if self._access is None or time.monotonic() >= self._expires:
                self._renew()
            assert self._access is not None
            return {"Authorization": f"Bearer {self._access.reveal()}"}

    def refused(self, sent: Mapping[str, str]) -> bool:
        """Drop the refused token (unless another worker renewed it already): try once more."""
        with self._lock:
            current = f"Bearer {self._access.reveal()}" if self._access is not None else None
            if sent.get("Authorization") == current:
                self._access = None
        return True

    def _renew(self) -> None:
        now = time.monotonic()
        live = self._refresh is not None and now < self._refresh_expires
        refresh = self._refresh if live else self.offline_token
        if refresh is not None:
            try:
                self._grant({"grant_type": "refresh_token", "refresh_token": refresh.reveal()})
                return
            except TokenError:
                if self.username is None:
                    raise
                self._refresh = None
                log.info("%s: refresh grant refused; logging in again", redact(self.token_url))
        if self.username is None or self.password is None:
            raise TokenError(f"{self.source}: no token to refresh and no password grant")
        self._grant(
            {
                "grant_type": "password",
                "username": self.username.reveal(),
                "password": self.password.reveal(),
            }
        )

    def _grant(self, form: dict[str, str]) -> None:
        form = {**form, "client_id": self.client_id}
        if self.client_secret is not None:
            form["client_secret"] = self.client_secret.reveal()
        if self.scope:
            form["scope"] = self.scope
        assert self.session is not None
        grant = form["grant_type"]
        host = _host_of(self.token_url)[0]
        answer = self.session.request(
            "POST", self.token_url, data=form, headers={"Accept": "application/json"}
        )
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status >= 400 or not isinstance(body, dict):
            detail = ""
            if isinstance(body, dict) and isinstance(body.get("error"), str):
                detail = f": {_flat(body['error'], 60)}"  # the server's words, on one line
                if isinstance(body.get("error_description"), str):
                    detail += f" ({_flat(body['error_description'], 100)})"
            raise TokenError(
                f"the token endpoint {host} refused the {grant} grant for the credentials from "
                f"{self.source} (HTTP {answer.status}{detail})"
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError(f"the token endpoint {host} answered without an access_token")
        now = time.monotonic()
        lifetime = _seconds(body.get("expires_in"), 300.0)
        self._access = Secret(token)
        self._expires = now + lifetime - min(EXPIRY_MARGIN_S, lifetime / 10)
        refresh = body.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            self._refresh = Secret(refresh)
            r_life = _seconds(body.get("refresh_expires_in"), 1800.0) or 1e9
            self._refresh_expires = now + r_life - min(EXPIRY_MARGIN_S, r_life / 10)
        self.grants += 1
        log.info("%s: new access token (%s grant, %.0f s)", host, grant, lifetime)

    def close(self) -> None:
        """Close the token session."""
        if self.session is not None:
            self.session.close()


def _flat(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


def _seconds(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return default
    return float(value)


@dataclass(frozen=True)
class S3Access:
    """How to reach one S3 bucket (secrets wrapped)."""

    bucket: str
    region: str | None = None
    endpoint: str | None = None
    requester_pays: bool = False
    anonymous: bool = False
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    source: str = "the AWS_* environment variables"


# -- the store ------------------------------------------------------------------------------


class CredentialStore:
    """Every host's credentials, resolved once per host on first use (thread-safe).

    Args:
        config: the ``credentials:`` section (host or ``s3://bucket`` → entry).
        environ: the environment (default ``os.environ``).
        netrc_file: the netrc file; default ``$NETRC``, else ``~/.netrc`` (absent: none).
        limits: bounds of the token endpoints' sessions.
        transport: an httpx transport for the token endpoints (tests).
    """

    def __init__(
        self,
        config: Mapping[str, CredentialConfig] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        netrc_file: str | os.PathLike[str] | None = None,
        limits: HttpLimits | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = {k.lower(): v for k, v in (config or {}).items()}
        self.environ = dict(os.environ if environ is None else environ)
        if netrc_file is None:
            given = self.environ.get("NETRC")
            self.netrc_file = Path(given) if given else Path.home() / ".netrc"
            self._netrc_default = not given
        else:
            self.netrc_file = Path(netrc_file)
            self._netrc_default = False
        self.limits = limits or HttpLimits()
        self.transport = transport
        self._lock = threading.Lock()
        self._hosts: dict[tuple[str, int | None], Credential | None] = {}
        self._netrc: dict[str, tuple[str, str]] | None = None

    # -- resolution ---------------------------------------------------------------------

    def _env(self, name: str, where: str) -> Secret:
        value = self.environ.get(name)
        if not value:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return Secret(value)

    def _from_config(self, key: str, cfg: CredentialConfig) -> Credential:
        where = f"credentials.{key}"
        if isinstance(cfg, BasicCredential):
            return Basic(
                f"{cfg.username_env}/{cfg.password_env} ({where})",
                self._env(cfg.username_env, where),
                self._env(cfg.password_env, where),
            )
        if isinstance(cfg, BearerCredential):
            return Bearer(f"{cfg.token_env} ({where})", self._env(cfg.token_env, where))
        if isinstance(cfg, CookieCredential):
            return CookieLogin(
                f"{cfg.username_env}/{cfg.password_env} ({where})",
                cfg.login_host,
                self._env(cfg.username_env, where),
                self._env(cfg.password_env, where),
            )
        if isinstance(cfg, TokenEndpointCredential):
            names = [n for n in (cfg.username_env, cfg.password_env, cfg.refresh_token_env) if n]
            return TokenEndpoint(
                f"{'/'.join(names)} ({where})",
                token_url=cfg.token_url,
                client_id=cfg.client_id,
                client_secret=(
                    self._env(cfg.client_secret_env, where) if cfg.client_secret_env else None
                ),
                username=self._env(cfg.username_env, where) if cfg.username_env else None,
                password=self._env(cfg.password_env, where) if cfg.password_env else None,
                offline_token=(
                    self._env(cfg.refresh_token_env, where) if cfg.refresh_token_env else None
                ),
                scope=cfg.scope,
                session=HttpSession(
                    None, limits=self.limits, transport=self.transport, max_connections=2
                ),
            )
        raise ConfigError(f"{where}: an s3 entry is for s3:// hrefs, not for a host")

    def _from_environment(self, host: str) -> Credential | None:
        suffix = env_suffix(host)
        token = f"{ENV_PREFIX}TOKEN_{suffix}"
        if self.environ.get(token):
            return Bearer(token, Secret(self.environ[token]))
        user, password = f"{ENV_PREFIX}USERNAME_{suffix}", f"{ENV_PREFIX}PASSWORD_{suffix}"
        if self.environ.get(user) and self.environ.get(password):
            return Basic(
                f"{user}/{password}", Secret(self.environ[user]), Secret(self.environ[password])
            )
        return None

    def _netrc_entries(self) -> dict[str, tuple[str, str]]:
        if self._netrc is None:
            entries: dict[str, tuple[str, str]] = {}
            if self.netrc_file.is_file():
                try:
                    # the default file gets netrc's check: no password in a file others can read
                    parsed = netrc.netrc(None if self._netrc_default else str(self.netrc_file))
                except netrc.NetrcParseError as exc:
                    # its message may quote a token of the file: a password; only say where
                    msg = exc.msg if "token" not in exc.msg else "syntax error"
                    raise ConfigError(
                        f"{self.netrc_file}: unreadable netrc file ({msg}, line {exc.lineno})"
                    ) from None
                except OSError as exc:
                    raise ConfigError(
                        f"{self.netrc_file}: unreadable netrc file ({exc.strerror})"
                    ) from None
                for machine, (login, _account, password) in parsed.hosts.items():
                    if login and password:
                        entries[machine.lower()] = (login, password)
            self._netrc = entries
        return self._netrc

    def _resolve(self, host: str, port: int | None) -> Credential | None:
        for key in ([f"{host}:{port}"] if port is not None else []) + [host]:
            if key in self.config:
                return self._from_config(key, self.config[key])
        found = self._from_environment(host)
        if found is not None:
            return found
        entry = self._netrc_entries().get(host)
        if entry is not None:
            return Basic(f"{self.netrc_file} (machine {host})", Secret(entry[0]), Secret(entry[1]))
        return None

    def for_host(self, host: str, port: int | None = None) -> Credential | None:
        """The credentials of ``host`` (``port`` picks a ``host:port`` entry), or None.

        Raises:
            ConfigError: a configured variable is not set, or the netrc file is unreadable.
        """
        key = (host.lower(), port)
        with self._lock:
            if key not in self._hosts:
                self._hosts[key] = self._resolve(*key)
            return self._hosts[key]

    def for_url(self, url: str) -> Credential | None:
        """The credentials of a URL's host."""
        return self.for_host(*_host_of(url))

    # -- HostCredentials (eomatch.io.http) ------------------------------------------------

    def headers_for(self, url: str, start: str) -> dict[str, str]:
        """The hop's own host's headers; on a redirect also a login host's (EarthData).

        None on a redirect from https to plain http: a secret never travels unencrypted
        because a server said so.
        """
        host, _ = _host_of(url)
        out: dict[str, str] = {}
        if urlsplit(start).scheme == "https" and urlsplit(url).scheme != "https":
            log.info("no credentials sent to %s: redirected from https to http", redact(url))
            return out
        if url != start:
            origin_cred = self.for_url(start)
            if origin_cred is not None:
                out.update(origin_cred.login_headers(host))
        if not out:
            cred = self.for_url(url)
            if cred is not None:
                out.update(cred.headers())
        return out

    def refused(self, url: str, sent: Mapping[str, str]) -> bool:
        """Ask the host's credential whether a renewal is worth one more try."""
        cred = self.for_url(url)
        return cred is not None and cred.refused(sent)

    def explain(self, url: str, status: int, start: str | None = None) -> str:
        """One line for an HTTP 401/403 from ``url``: whose credentials, and how to give them."""
        host, port = _host_of(url)
        reason = {401: "Unauthorized", 403: "Forbidden"}.get(status, "")
        head = f"HTTP {status} {reason} from {host}".replace("  ", " ")
        try:
            cred = self.for_host(host, port)
            login = self.for_url(start) if start and start != url else None
        except ConfigError as exc:
            return f"{head}: {exc}"
        if isinstance(login, CookieLogin) and login.login_host == host:
            cred = login
        if cred is not None:
            what = "were refused" if status == 401 else "do not give access to this file"
            return f"{head}: the credentials from {cred.source} {what}"
        suffix = env_suffix(host)
        return (
            f"{head}: no credentials for {host}; give them in ~/.netrc (machine {host} login "
            f"USER password PASS; or the file $NETRC names), as {ENV_PREFIX}TOKEN_{suffix} or "
            f"{ENV_PREFIX}USERNAME_{suffix} + {ENV_PREFIX}PASSWORD_{suffix}, or under "
            f"credentials: {host} in the configuration (see {DOCS})"
        )

    # -- S3 ---------------------------------------------------------------------------------

    def s3(self, bucket: str) -> S3Access:
        """How to reach ``bucket``: its ``credentials: s3://bucket`` entry, else the defaults
        (the object-store client reads the usual ``AWS_*`` variables itself)."""
        key = f"s3://{bucket.lower()}"
        cfg = self.config.get(key)
        if cfg is None:
            return S3Access(bucket)
        if not isinstance(cfg, S3Credential):
            raise ConfigError(f"credentials.{key}: give type: s3 for an S3 bucket")
        where = f"credentials.{key}"
        names = [n for n in (cfg.access_key_id_env, cfg.secret_access_key_env) if n]
        return S3Access(
            bucket,
            region=cfg.region,
            endpoint=cfg.endpoint,
            requester_pays=cfg.requester_pays,
            anonymous=cfg.anonymous,
            access_key_id=self._env(cfg.access_key_id_env, where)
            if cfg.access_key_id_env
            else None,
            secret_access_key=self._env(cfg.secret_access_key_env, where)
            if cfg.secret_access_key_env
            else None,
            session_token=self._env(cfg.session_token_env, where)
            if cfg.session_token_env
            else None,
            source=f"{'/'.join(names)} ({where})" if names else where,
        )

    def close(self) -> None:
        """Close the token endpoints' sessions."""
        with self._lock:
            for cred in self._hosts.values():
                if cred is not None:
                    cred.close()

    def __enter__(self) -> CredentialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "Basic",
    "Bearer",
    "CookieLogin",
    "Credential",
    "CredentialStore",
    "S3Access",
    "Secret",
    "TokenEndpoint",
    "TokenError",
    "env_suffix",
]
