"""Object storage behind one small interface: a local folder, or an S3-compatible bucket.

Backups, downloads and jobs keep files "somewhere" addressed by a key (``a/b/c.dump``, always
``/``-separated and relative). :class:`ObjectStore` is that somewhere; :func:`open_store`
builds one from a folder or an :class:`S3Config`.

* :class:`LocalFolderStore` needs nothing beyond the standard library. A key is a path under
  the root; a file appears only complete (written beside, then renamed).
* :class:`S3ObjectStore` talks to AWS S3, MinIO, Ceph, moto... through ``obstore`` (the
  ``eomatch[storage]`` extra). Large files go up in parts (multipart upload), and an object
  appears only once the upload completed. Credentials come from the environment only
  (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, or whatever else
  ``obstore`` reads: instance profiles, web identity); never from a flag or a file of ours.

Failures are errors of the tree: a missing key is :class:`~eomatch.errors.NotFoundError`, an
unreachable or refusing server :class:`~eomatch.errors.NetworkError`, a bad key
:class:`~eomatch.errors.UnsafePathError`, each one line naming the store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from eomatch.errors import (
    ConfigError,
    NetworkError,
    NotFoundError,
    UnsafePathError,
)
from eomatch.extras import require_extra

if TYPE_CHECKING:
    from obstore.store import S3Store

__all__ = [
    "LocalFolderStore",
    "ObjectInfo",
    "ObjectStore",
    "S3Config",
    "S3ObjectStore",
    "check_key",
    "object_hrefs",
    "open_store",
    "temp_beside",
]

MULTIPART_CHUNK = 8 * 1024 * 1024
"""Part size of multipart uploads (S3's minimum is 5 MiB; 10 000 parts make 80 GiB)."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object."""

    key: str
    """Its key, relative to the store's root or prefix."""
    size: int
    """Bytes."""
    modified: datetime
    """Last modification (UTC)."""


@runtime_checkable
class ObjectStore(Protocol):
    """Where files are kept by key: the operations backups, downloads and jobs need."""

    def describe(self) -> str:
        """Where this store is, for messages (never with credentials)."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Upload ``path`` as ``key``; readers see the old object or the whole new one."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` as ``key`` (small objects: manifests, markers)."""
        ...

    def get_file(self, key: str, path: Path) -> None:
        """Download ``key`` to ``path`` (written beside and renamed; NotFoundError if absent)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The content of ``key`` (small objects; NotFoundError if absent)."""
        ...

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a folder: end it with ``/``), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        ...


def check_key(key: str) -> str:
    """``key`` if it is a safe relative ``/``-separated key, else UnsafePathError.

    No empty, ``.`` or ``..`` segments, no leading ``/``, no backslash or NUL: a key can never
    name a file outside a local store's root, and it means the same on every backend.
    """
    parts = key.split("/")
    if (
        not key
        or "\\" in key
        or "\x00" in key
        or any(p in ("", ".", "..") for p in parts)
        or any(p.strip() != p for p in parts)
    ):
        raise UnsafePathError(f"not a valid object key: {key!r}")
    return key


def _prefix_ok(prefix: str) -> str:
    if prefix:
        check_key(prefix.rstrip("/") or "x")
    return prefix


# -- local folder ------------------------------------------------------------------------------


class LocalFolderStore:
    """Objects as files under a root folder (created on first write).

    ``public_url``: where the folder is served over http(s) (the gateway's ``/data/``), for
    :func:`object_hrefs`. ``file_mode``: permissions of stored files (``0o644`` for a folder
    the gateway's unprivileged nginx reads; default: a temporary file's private ``0o600``).
    """

    def __init__(
        self, root: Path, *, public_url: str | None = None, file_mode: int | None = None
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        self.public_url = public_url
        self.file_mode = file_mode

    def __repr__(self) -> str:
        return f"LocalFolderStore({self.root})"

    def describe(self) -> str:
        """The folder."""
        return str(self.root)

    def path(self, key: str) -> Path:
        """The file that holds ``key`` (for tools that want a path, e.g. pg_restore)."""
        return self.root.joinpath(*check_key(key).split("/"))

    def _folder(self, folder: Path) -> None:
        """Create ``folder`` (and parents); with :attr:`file_mode`, new folders are traversable
        by whom may read the files (``0o644`` → ``0o755``) whatever the umask."""
        if self.file_mode is None:
            folder.mkdir(parents=True, exist_ok=True)
            return
        mode = self.file_mode | ((self.file_mode & 0o444) >> 2)
        missing = [p for p in [folder, *folder.parents] if not p.exists()]
        for p in reversed(missing):
            with contextlib.suppress(FileExistsError):
                p.mkdir()
                p.chmod(mode)

    def put_file(self, key: str, path: Path) -> None:
        """Copy ``path`` in (to a hidden temporary name, renamed when complete)."""
        target = self.path(key)
        self._folder(target.parent)
        with temp_beside(target) as tmp:
            try:
                shutil.copyfile(path, tmp)
            except FileNotFoundError:
                raise NotFoundError(f"no such file to store: {path}") from None
            _fsync(tmp)
            if self.file_mode is not None:
                tmp.chmod(self.file_mode)
            os.replace(tmp, target)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` (temporary name, then renamed)."""
        target = self.path(key)
        self._folder(target.parent)
        with temp_beside(target) as tmp:
            tmp.write_bytes(data)
            _fsync(tmp)
            if self.file_mode is not None:
                tmp.chmod(self.file_mode)
            os.replace(tmp, target)

    def get_file(self, key: str, path: Path) -> None:
        """Copy ``key`` out to ``path``."""
        source = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp_beside(path) as tmp:
            try:
                shutil.copyfile(source, tmp)
            except (FileNotFoundError, IsADirectoryError):
                raise NotFoundError(f"no object {key!r} in {self.describe()}") from None
            os.replace(tmp, path)

    def get_bytes(self, key: str) -> bytes:
        """Read ``key``."""
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(f"no object {key!r} in {self.describe()}") from None

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Regular files under the root whose key starts with ``prefix`` (hidden temporaries
        of unfinished writes excluded)."""
        _prefix_ok(prefix)
        if not self.root.is_dir():
            return []
        start = self.root
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if folder:
            start = self.root.joinpath(*folder.split("/"))
            if not start.is_dir():
                return []
        out: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in filenames:
                if name.startswith(".") and name.endswith(".part"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    st = full.stat()
                except FileNotFoundError:  # removed while we walked
                    continue
                out.append(ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        """Remove the file, and folders left empty up to the root."""
        target = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        parent = target.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self.path(key).is_file()


@contextlib.contextmanager
def temp_beside(target: Path) -> Iterator[Path]:
    """A hidden temporary file next to ``target`` (``.<name>.<random>.part``, which listings
    skip), removed after the block unless it was renamed into place."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- S3-compatible bucket ----------------------------------------------------------------------


@dataclass(frozen=True)
class S3Config:
    """An S3-compatible bucket; credentials are not here: they come from the environment."""

    bucket: str
    """The bucket name."""
    prefix: str = ""
    """A key prefix inside the bucket (``eomatch/backups``); keys are relative to it."""
    endpoint: str | None = None
    """``http(s)://host[:port]`` of a non-AWS server (MinIO, Ceph, moto); None: AWS."""
    region: str | None = None
    """The region (None: ``AWS_REGION``/``AWS_DEFAULT_REGION``, else ``us-east-1``)."""
    allow_http: bool = False
    """Allow a plain-http endpoint (local servers); https otherwise."""
    requester_pays: bool = False
    """Send ``x-amz-request-payer`` (buckets whose reader pays for transfer)."""
    anonymous: bool = False
    """Unsigned requests (public buckets; no credentials looked up)."""
    timeout_s: float = 30.0
    """Connect timeout, and the total time spent retrying one request."""
    public_url: str | None = None
    """The bucket's public http(s) endpoint for the prefix (``https://bucket.host/prefix/``),
    for :func:`object_hrefs`; None: objects are not public."""

    def describe(self) -> str:
        """``s3://bucket/prefix`` (at endpoint)."""
        where = f"s3://{self.bucket}/{self.prefix.strip('/')}".rstrip("/")
        return f"{where} at {self.endpoint}" if self.endpoint else where


class S3ObjectStore:
    """Objects in an S3-compatible bucket, through ``obstore``."""

    def __init__(self, config: S3Config, credentials: Mapping[str, str] | None = None) -> None:
        """``credentials``: obstore's ``access_key_id``/``secret_access_key``/``token`` when
        given by the caller (downloads: variables named in the configuration); otherwise
        the environment's."""
        require_extra("storage", "S3 object storage")
        from obstore.store import S3Store

        if not config.bucket:
            raise ConfigError("an S3 store needs a bucket name")
        if config.endpoint and config.endpoint.startswith("http://") and not config.allow_http:
            raise ConfigError(
                f"S3 endpoint {config.endpoint} is plain http: allow it explicitly "
                "(EOMATCH_BACKUP_S3_ALLOW_HTTP=1) or use https"
            )
        self.config = config
        timeout = timedelta(seconds=config.timeout_s)
        kwargs: dict[str, Any] = {}
        if config.endpoint:
            kwargs["endpoint"] = config.endpoint
        if config.region:
            kwargs["region"] = config.region
        elif not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            kwargs["region"] = "us-east-1"
        if config.requester_pays:
            kwargs["request_payer"] = True
        if config.anonymous:
            kwargs["skip_signature"] = True
        kwargs.update(credentials or {})
        try:
            self._store: S3Store = S3Store(
                config.bucket,
                prefix=config.prefix.strip("/") or None,
                client_options={
                    "allow_http": config.allow_http,
                    "connect_timeout": timeout,
                    "timeout": timedelta(seconds=max(300.0, config.timeout_s)),
                },
                retry_config={
                    "max_retries": 3,
                    "retry_timeout": timeout,
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=5),
                        "base": 2,
                    },
                },
                **kwargs,
            )
        except Exception as exc:  # obstore raises its own config errors (bad region, keys...)
            raise ConfigError(f"S3 store {config.describe()}: {_first_line(exc)}") from None

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.config.describe()})"

    def describe(self) -> str:
        """``s3://bucket/prefix at endpoint``."""
        return self.config.describe()

    @contextlib.contextmanager
    def _errors(self, what: str, key: str = "") -> Iterator[None]:
        from obstore.exceptions import NotFoundError as ObsNotFound

        try:
            yield
        except (ObsNotFound, FileNotFoundError):  # obstore raises either for a 404
            raise NotFoundError(f"no object {key!r} in {self.describe()}") from None
        except (NotFoundError, UnsafePathError, ConfigError):
            raise
        except OSError as exc:  # local file side (disk full, permissions)
            raise NetworkError(f"{what} {key!r} ({self.describe()}): {exc}") from None
        except Exception as exc:  # obstore: connection refused, timeouts, 403, 5xx...
            raise NetworkError(f"{what} {key!r} ({self.describe()}): {_first_line(exc)}") from None

    def put_file(self, key: str, path: Path) -> None:
        """Upload (multipart above :data:`MULTIPART_CHUNK`; visible only once complete)."""
        import obstore

        check_key(key)
        if not path.is_file():
            raise NotFoundError(f"no such file to store: {path}")
        with self._errors("uploading", key), path.open("rb") as fh:
            obstore.put(self._store, key, fh, chunk_size=MULTIPART_CHUNK, max_concurrency=4)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload a small object."""
        import obstore

        check_key(key)
        with self._errors("uploading", key):
            obstore.put(self._store, key, data)

    def get_file(self, key: str, path: Path) -> None:
        """Download in a stream to a temporary file beside ``path``, renamed when complete."""
        import obstore

        check_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp_beside(path) as tmp, self._errors("downloading", key):
            result = obstore.get(self._store, key)
            with tmp.open("wb") as fh:
                for chunk in result.stream(min_chunk_size=MULTIPART_CHUNK):
                    fh.write(chunk)
            os.replace(tmp, path)

    def stream(self, key: str, offset: int = 0) -> tuple[int, Iterator[bytes]]:
        """The object's size and its bytes from ``offset`` on, as they arrive (a ranged GET
        when ``offset`` > 0: downloads resume a partial file). Nothing when ``offset`` is at
        or past the end."""
        import obstore

        check_key(key)
        with self._errors("downloading", key):
            size = int(obstore.head(self._store, key)["size"])

        def chunks() -> Iterator[bytes]:
            if offset >= size:
                return
            with self._errors("downloading", key):
                options: Any = {"range": {"offset": offset}} if offset else {}
                result = obstore.get(self._store, key, options=options)
                for chunk in result.stream(min_chunk_size=1 << 20):
                    yield bytes(chunk)

        return size, chunks()

    def get_bytes(self, key: str) -> bytes:
        """Download a small object."""
        import obstore

        check_key(key)
        with self._errors("downloading", key):
            return bytes(obstore.get(self._store, key).bytes())

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Objects under ``prefix`` (keys relative to the store's prefix)."""
        import obstore

        _prefix_ok(prefix)
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""  # obstore lists whole segments
        out: list[ObjectInfo] = []
        with self._errors("listing", prefix):
            for batch in obstore.list(self._store, folder or None):
                for meta in batch:
                    key = str(meta["path"])
                    if key.startswith(prefix):
                        modified = meta["last_modified"]
                        out.append(ObjectInfo(key, int(meta["size"]), modified.astimezone(UTC)))
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        """Delete (S3 answers success for an absent key too)."""
        import obstore

        check_key(key)
        with self._errors("deleting", key), contextlib.suppress(FileNotFoundError):
            obstore.delete(self._store, key)

    def exists(self, key: str) -> bool:
        """A HEAD request."""
        import obstore

        check_key(key)
        try:
            with self._errors("checking", key):
                obstore.head(self._store, key)
        except NotFoundError:
            return False
        return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def object_hrefs(store: ObjectStore, key: str) -> tuple[str, str | None]:
    """Where ``key`` is: its storage URL (``file://`` or ``s3://bucket/prefix/key``) and its
    public http(s) URL when the store has one (None otherwise)."""
    from urllib.parse import quote

    check_key(key)
    public = getattr(store, "public_url", None)
    if isinstance(store, S3ObjectStore):
        public = store.config.public_url
        prefix = store.config.prefix.strip("/")
        storage = f"s3://{store.config.bucket}/{prefix + '/' if prefix else ''}{key}"
    elif isinstance(store, LocalFolderStore):
        storage = store.path(key).as_uri()
    else:
        raise ConfigError(f"no URL for objects of {store.describe()}")
    web = f"{public.rstrip('/')}/{quote(key)}" if public else None
    return storage, web


def open_store(where: Path | S3Config) -> ObjectStore:
    """A store for a local folder or an S3 bucket."""
    if isinstance(where, S3Config):
        return S3ObjectStore(where)
    return LocalFolderStore(where)
