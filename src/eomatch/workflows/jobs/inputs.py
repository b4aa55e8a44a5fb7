"""What a job submitted over HTTP may read: its inputs confined, checked twice.

A holder of an internal-API key must not make the worker publish ``/etc/passwd`` as a COG,
ingest someone else's folder or fetch ``http://127.0.0.1:<internal port>/``. So every job has
an :class:`Origin`: ``local`` (the CLI, schedules: the operator, any path) or ``http``
(``POST /api/jobs``, ``/api/newitem``). For an ``http`` job each kind's ``confine`` hook puts
every location in its params through :class:`InputPolicy`:

* a local path or ``file://`` URL must resolve (symlinks followed) inside
  ``EOMATCH_JOBS_INPUT_DIR``; relative paths start there; ``..`` is refused; with no folder
  set, local inputs are refused, naming the variable;
* an ``http(s)://`` or ``s3://`` source must come from ``EOMATCH_JOBS_SOURCE_HOSTS`` when it
  is set; otherwise an ``http(s)://`` one only from public addresses: not this machine
  (``127.0.0.1``, the internal API's port, and its own LAN addresses, where a service bound to
  ``0.0.0.0`` answers too), not a link-local one (``169.254.169.254``, a cloud's metadata), not
  a private network (``10/8``, ``192.168/16``, ``fc00::/7``: the database, the other
  containers of a compose project) nor a reserved range; and no ``s3://`` one (the worker's
  credentials may read buckets the key holder may not). Every request the job sends,
  redirects included, goes through the same check (:func:`fetch_session`);
* what only the operator may choose (a harvester configuration file, a processor by
  ``module:Class``) is refused.

:func:`~eomatch.workflows.jobs.worker.submit_job` runs it before anything is queued (a 4xx);
the worker runs it again before the job starts (a symlink swapped since, a job queued before
the setting changed), failing the job with the reason before it reads or stores anything.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from eomatch.errors import ConfigError, InputError, UnsafePathError
from eomatch.io.cog import FetchBounds, local_source, source_scheme
from eomatch.io.http import HttpLimits, HttpSession
from eomatch.io.safe_files import check_regular
from eomatch.io.safe_paths import readable_within

__all__ = [
    "INPUT_DIR_VAR",
    "SOURCE_HOSTS_VAR",
    "InputPolicy",
    "Origin",
    "fetch_session",
    "is_untrusted",
]

INPUT_DIR_VAR = "EOMATCH_JOBS_INPUT_DIR"
SOURCE_HOSTS_VAR = "EOMATCH_JOBS_SOURCE_HOSTS"
REMOTE_SCHEMES = ("http", "https", "s3")
API_FETCH_BOUNDS = FetchBounds(bytes=8 << 30, seconds=3600.0)
"""What one http(s) download of an API job may cost: 8 GiB (decompressed), an hour."""
MAX_DOCUMENTS = 100_000
"""Most documents (catalogues, collections, items) an API job's catalogue walk reads."""
MAX_DOCUMENT_BYTES = 64 << 20
"""Largest local document of such a walk (an item is kilobytes)."""


class Origin(StrEnum):
    """Where a job was submitted from: decides whether its inputs are confined."""

    LOCAL = "local"
    """The CLI, a schedule, a script with database access: the operator; any path."""
    HTTP = "http"
    """The internal API (an API key holder): inputs confined by :class:`InputPolicy`."""


def is_untrusted(origin: str | None, submitter: str | None) -> bool:
    """Whether a queued job's inputs must be confined: it came over HTTP (or, for a row that
    predates the ``origin`` column or was written by an older eomatch, its submitter is an
    API key)."""
    return origin == Origin.HTTP or (submitter or "").startswith("key:")


@dataclass(frozen=True)
class InputPolicy:
    """The folder and hosts an HTTP job's inputs must come from (``EOMATCH_JOBS_*``)."""

    root: Path | None = None
    hosts: tuple[str, ...] | None = None
    """Allowed hosts (``*.x.org`` matches subdomains); None: any host."""
    fetch_bounds: FetchBounds = API_FETCH_BOUNDS
    """What one http(s) download of the job may cost (:data:`API_FETCH_BOUNDS`)."""

    @classmethod
    def from_settings(cls) -> InputPolicy:
        """The policy of the environment (a bad value: one ConfigError line naming it)."""
        from eomatch.config.settings import JobsSettings, read_settings

        settings = read_settings(JobsSettings)
        return cls(settings.input_dir, settings.hosts)

    def location(self, value: str, what: str) -> str:
        """``value`` (a path, ``file://``, ``http(s)://`` or ``s3://`` URL) as the job may use
        it: a local one becomes the absolute resolved path, a remote one stays as it is.

        Raises:
            UnsafePathError: a local path outside the folder (or none configured).
            InputError: a remote host not allowed, or a scheme jobs do not read.
        """
        local = local_source(value)
        if local is not None:
            return str(self.local_path(local, what))
        scheme = source_scheme(value)
        if scheme not in REMOTE_SCHEMES:
            raise InputError(f"{what} {value!r:.200}: give a path, an http(s):// or s3:// URL")
        self.check_host(value, what)
        return value

    def local_path(self, value: str, what: str) -> Path:
        """A local path (not a URL) resolved inside :attr:`root`."""
        if self.root is None:
            raise UnsafePathError(
                f"{what}: local paths are not accepted over HTTP on this server (its operator "
                f"can set {INPUT_DIR_VAR} to the folder API jobs may read)"
            )
        if not self.root.is_dir():
            raise ConfigError(f"{INPUT_DIR_VAR}={str(self.root)!r:.200} is not a folder")
        return readable_within(
            self.root,
            os.fspath(value),
            what=what,
            root_name=f"the folder API jobs may read ({INPUT_DIR_VAR})",
        )

    def check_host(self, url: str, what: str) -> None:
        """Refuse ``url`` unless its host (an ``s3://`` URL's bucket) is allowed: listed in
        :attr:`hosts`, or with no list, an http(s) host on public addresses only (no s3)."""
        try:
            parts = urlsplit(url)
            # an s3:// URL's bucket is its whole netloc (what fetch_source uses), not the
            # hostname urlsplit finds in it (s3://other@allowed/key: "allowed")
            host = (parts.netloc if parts.scheme.lower() == "s3" else parts.hostname or "").lower()
        except ValueError:
            host = ""
        if self.hosts is None:
            scheme = source_scheme(url)
            if scheme == "s3":
                raise InputError(
                    f"{what}: s3:// sources of API jobs need their bucket listed in "
                    f"{SOURCE_HOSTS_VAR}"
                )
            if scheme in ("http", "https") and _not_public(host):
                raise InputError(f"{what}: {_NOT_PUBLIC.format(host=host)}")
            return
        if not host or not any(_host_matches(host, allowed) for allowed in self.hosts):
            raise InputError(
                f"{what}: host {host or url!r:.100} is not one API jobs may fetch from "
                f"({SOURCE_HOSTS_VAR})"
            )

    def check_href(self, href: str) -> None:
        """For a catalogue being walked: every document read must pass :meth:`location`; a
        local one must be a regular file of at most :data:`MAX_DOCUMENT_BYTES` (a FIFO would
        block the worker for ever)."""
        where = self.location(href, "a link of the catalogue")
        if local_source(href) is not None:
            check_regular(Path(where), "a document of the catalogue", MAX_DOCUMENT_BYTES)

    def href_checker(self, max_documents: int = MAX_DOCUMENTS) -> Callable[[str], None]:
        """:meth:`check_href` that also refuses the walk past ``max_documents`` reads: a
        hostile server can serve children for ever (a tree 100 wide is 10^10 documents at
        depth 5), each read kept in memory until the insert."""
        count = 0

        def check(href: str) -> None:
            nonlocal count
            count += 1
            if count > max_documents:
                raise InputError(
                    f"the catalogue has more than {max_documents} documents: an API job reads "
                    "at most that many (a job from the CLI has no limit)"
                )
            self.check_href(href)

        return check


class _PinnedBackend(httpcore.SyncBackend):
    """Connects only to an address checked here, the name resolved once: a name that resolves
    to a public address when the request is checked and to ``127.0.0.1`` when the socket
    connects (DNS rebinding) gets nowhere."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _addresses(host)
        if not addresses:
            raise httpcore.ConnectError(f"{host}: the name does not resolve")
        if any(_not_public_ip(ip) for ip in addresses):
            raise InputError(f"a request of the job: {_NOT_PUBLIC.format(host=host)}")
        failed: httpcore.ConnectError | None = None
        for ip in addresses:
            try:
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failed = exc
        assert failed is not None
        raise failed


class _GuardedTransport(httpx.BaseTransport):
    """Every request (each redirect hop too) checked by the policy before it is sent; with no
    host list, connected only to the addresses checked (:class:`_PinnedBackend`)."""

    def __init__(self, policy: InputPolicy) -> None:
        self.policy = policy
        self.inner = httpx.HTTPTransport()
        if policy.hosts is None:  # httpx has no public way to give its pool a backend
            self.inner._pool._network_backend = _PinnedBackend()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.policy.check_host(str(request.url), "a request of the job")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@contextlib.contextmanager
def fetch_session(policy: InputPolicy | None, limits: HttpLimits) -> Iterator[HttpSession | None]:
    """An HTTP session whose every request passes ``policy`` (None: no policy, no session:
    the fetching code opens its own)."""
    if policy is None:
        yield None
        return
    with HttpSession(None, limits=limits, transport=_GuardedTransport(policy)) as session:
        yield session


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``host`` resolves to (none: it does not)."""
    if not host:
        return []
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        return []
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    return out


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NOT_PUBLIC = (
    "host {host!r:.100} is not a public address (this machine or link-local, a private network "
    f"or a reserved range): API jobs may not fetch from it (unless {SOURCE_HOSTS_VAR} lists it)"
)


def _not_public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Not globally routable (loopback, link-local, private, shared, reserved, unspecified) or
    this machine's, also as the IPv4 address an IPv6 one carries (``::ffff:127.0.0.1``,
    IPv4-compatible ``::127.0.0.1``, NAT64 ``64:ff9b::7f00:1``, 6to4 ``2002:7f00:1::``)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (ip in _NAT64 or 1 < int(ip) < 1 << 32):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _not_public_ip(embedded)
    return not ip.is_global or ip.is_multicast or _is_mine(ip)


def _not_public(host: str) -> bool:
    """Whether ``host`` is, or resolves to, an address that is not public or is one of this
    machine's. A name that does not resolve is not (nothing can be reached there; the worker
    connects only to addresses it checked)."""
    return any(_not_public_ip(ip) for ip in _addresses(host))


def _bindable(address: str, family: socket.AddressFamily) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


@functools.cache
def _bind_tells(family: socket.AddressFamily) -> bool:
    """Whether binding shows an address is ours: not when any address binds
    (``net.ipv4.ip_nonlocal_bind``), tried with a documentation address no host has."""
    return not _bindable("203.0.113.254" if family == socket.AF_INET else "2001:db8::fe", family)


def _is_mine(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``ip`` is an address of this machine other than loopback (its LAN address: a
    service listening on 0.0.0.0 answers there too). Only a local address can be bound."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return _bind_tells(family) and _bindable(str(ip), family)


def _host_matches(host: str, allowed: str) -> bool:
    if allowed.startswith("*."):
        return host.endswith(allowed[1:])
    return host == allowed
