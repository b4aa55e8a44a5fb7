"""Rasters in, Cloud-Optimised GeoTIFFs and STAC items out (the ``raster`` job kind's I/O).

* :func:`fetch_source` brings a source (a local path, an http(s) URL through
  :class:`~eomatch.io.http.HttpSession`, or ``s3://bucket/key`` through the object store
  client) into a scratch folder;
* :func:`write_cog` translates any raster GDAL reads (GeoTIFF, NetCDF, JPEG2000...) to a COG
  with rio-cogeo: tiled 256x256, DEFLATE, internal overviews, validated afterwards;
* :func:`raster_item` builds the STAC item from the COG with rio-stac (projection and raster
  extensions, footprint from the data's valid extent) and adds the file extension's size and
  multihash checksum;
* :func:`check_self_contained` refuses a file that makes its reader open other files (HDF5 /
  netCDF-4 external storage, virtual datasets, external links), for a job submitted over HTTP.

Needs the ``data`` extra (rasterio, rio-cogeo, rio-stac).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import httpx

from eomatch.errors import (
    InputError,
    NetworkError,
    NotFoundError,
    RemoteLimitError,
    Retryable,
    UnreadableFileError,
)
from eomatch.extras import require_extra
from eomatch.io.http import (
    RETRY_STATUSES,
    Deadline,
    HttpLimits,
    HttpSession,
    call_with_retries,
    decoded_chunks,
    redact,
)
from eomatch.io.object_store import S3Config, S3ObjectStore

__all__ = [
    "FILE_EXTENSION",
    "FetchBounds",
    "check_self_contained",
    "fetch_source",
    "file_checksum",
    "local_source",
    "raster_item",
    "source_name",
    "source_scheme",
    "write_cog",
]

FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
FETCH_LIMITS = HttpLimits(timeout_s=30.0, max_retries=1, backoff_s=0.5)
"""One retry here; the queue retries a failed job again with its own backoff."""
_CHUNK = 1 << 20
RASTER_DRIVERS = ("GTiff", "netCDF", "HDF5", "JP2OpenJPEG")
"""The GDAL drivers a source is read with: the formats raster jobs take, not every format GDAL
knows. A VRT (XML under any file name) would read whatever local file, raw bytes or URL it
names, and the job would publish that as a COG."""


def _split(source: str) -> SplitResult:
    """``urlsplit(source)``; a URL it cannot parse (``http://[::1``) is an InputError, not a
    ValueError (a 500 for an API job)."""
    try:
        return urlsplit(source)
    except ValueError as exc:
        raise InputError(f"{source!r:.200} is not a valid URL ({exc})") from None


def source_name(source: str) -> str:
    """The file name of a path or URL (``/a/b/x.nc`` → ``x.nc``)."""
    path = unquote(_split(source).path) if "://" in source else source
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise InputError(f"{source!r:.200} names no file")
    return name


def source_scheme(source: str) -> str:
    """The scheme of a job's source as :func:`fetch_source` reads it (``""``: a local path)."""
    return _split(source).scheme.lower() if "://" in source else ""


def local_source(source: str) -> str | None:
    """The local path a source names (a path, or a ``file://`` URL decoded), None for a remote
    one. A ``file://`` URL naming another host is an :class:`InputError`."""
    scheme = source_scheme(source)
    if scheme == "":
        return source
    if scheme != "file":
        return None
    parts = _split(source)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise InputError(f"{source!r:.200}: a file:// URL is file:///absolute/path")
    return unquote(parts.path)


@dataclass(frozen=True)
class FetchBounds:
    """What one http(s) download may cost (a job submitted over HTTP: a hostile server could
    send an endless body, a compression bomb or one byte every 29 s)."""

    bytes: int
    """Most bytes written (decompressed)."""
    seconds: float
    """Longest the download may take, retries included."""

    def check(self, written: int, url: str) -> None:
        """Refuse a download that wrote more than :attr:`bytes`."""
        if written > self.bytes:
            raise RemoteLimitError(
                f"{redact(url)}: larger than {self.bytes} bytes, the most a job submitted over "
                "HTTP downloads"
            )


def fetch_source(
    source: str,
    scratch: Path,
    *,
    s3: S3Config | None = None,
    session: HttpSession | None = None,
    bounds: FetchBounds | None = None,
) -> Path:
    """A local file holding ``source``: the path itself, or a download into ``scratch``.

    ``bounds``: the size and time an http(s) download may take (None: unbounded but for the
    session's timeouts).

    ``s3``: the endpoint/region to reach ``s3://`` sources at (the storage settings'; the
    bucket is the URL's). A missing file or object is :class:`NotFoundError`; an answer that
    is not 200 or a server that does not answer is :class:`NetworkError` (retried by the
    queue), one line naming the source.
    """
    scheme = source_scheme(source)
    local = local_source(source)
    if local is not None:
        path = Path(local).expanduser()
        if not path.is_file():
            raise NotFoundError(f"no such file: {path}")
        return path
    dest = scratch / source_name(source)
    if scheme in ("http", "https"):
        _download_http(source, dest, session, bounds)
    elif scheme == "s3":
        parts = _split(source)
        key = unquote(parts.path.lstrip("/"))
        if not parts.netloc or not key:
            raise InputError(f"{source!r:.200} names no bucket and key")
        base = s3 or S3Config(bucket=parts.netloc)
        config = S3Config(
            bucket=parts.netloc,
            endpoint=base.endpoint,
            region=base.region,
            allow_http=base.allow_http,
        )
        S3ObjectStore(config).get_file(key, dest)
    else:
        raise InputError(f"{source!r:.200}: give a path, an http(s):// or an s3:// URL")
    return dest


def _download_http(
    url: str, dest: Path, session: HttpSession | None, bounds: FetchBounds | None
) -> None:
    own = session is None
    http = session or HttpSession(None, limits=FETCH_LIMITS)
    part = dest.with_name(dest.name + ".part")
    deadline = None if bounds is None else Deadline(bounds.seconds, f"download of {redact(url)}")

    def attempt(last: bool) -> None:
        # the file's own bytes: httpx would decode a Content-Encoding (br, gzip) without a cap
        # on what it produces, ahead of the size check below
        identity = {"Accept-Encoding": "identity"}
        with http.open("GET", url, deadline=deadline, headers=identity) as resp:
            if resp.status_code == 404:
                raise NotFoundError(f"{redact(url)}: not found (HTTP 404)")
            if resp.status_code in RETRY_STATUSES and not last:
                raise Retryable(f"HTTP {resp.status_code}", resp.headers.get("Retry-After"))
            if resp.status_code != 200:
                raise NetworkError(
                    f"{redact(url)}: HTTP {resp.status_code} {resp.reason_phrase}".rstrip()
                )
            written = 0
            with part.open("wb", buffering=_CHUNK) as fh:
                # the decoder's cap backs the bounds' check up (steps are at most ~2 MB)
                limit = bounds.bytes + (4 << 20) if bounds is not None else 1 << 62
                # as received (a trickle still meets the checks), decoded in bounded steps
                for chunk in decoded_chunks(resp, limit):
                    written += len(chunk)
                    if bounds is not None:
                        bounds.check(written, url)
                        assert deadline is not None
                        deadline.check()
                    fh.write(chunk)
        os.replace(part, dest)

    try:
        call_with_retries(attempt, http.limits, what=redact(url), deadline=deadline)
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise NetworkError(f"{redact(url)}: cannot download ({_first_line(exc)})") from None
    except Retryable as exc:
        raise NetworkError(f"{redact(url)}: {exc.reason}") from None
    except httpx.InvalidURL as exc:
        raise InputError(f"invalid URL {redact(url)!r}: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        if own:
            http.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """GDAL's and rio-cogeo's warnings (no georeferencing, nodata guesses) are not failures."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _open_name(path: Path, variable: str | None) -> str:
    """What rasterio opens: the file, or one variable of a NetCDF file."""
    if variable is None:
        return str(path)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}", variable):
        raise InputError(f"{variable!r:.100} is not a NetCDF variable name")
    return f'NETCDF:"{path}":{variable}'


def _open_source(name: str, source: Path) -> Any:
    """``name`` opened by one of :data:`RASTER_DRIVERS` (GDAL tries no other format)."""
    import rasterio
    from rasterio.errors import RasterioError

    errors: list[str] = []
    for driver in RASTER_DRIVERS:
        try:
            return rasterio.open(name, driver=driver)
        except RasterioError as exc:
            errors.append(_first_line(exc))
    raise UnreadableFileError(
        f"{source.name} is not a readable raster (GeoTIFF, NetCDF or JPEG2000): {errors[0]}"
    )


def write_cog(source: Path, dest: Path, *, variable: str | None = None) -> None:
    """Translate ``source`` (a format of :data:`RASTER_DRIVERS`) into a valid COG at ``dest``.

    Raises:
        UnreadableFileError: ``source`` is not a raster GDAL can read (corrupt, truncated,
            a NetCDF with several variables and no ``variable``), or the result is not a COG.
    """
    require_extra("data", "raster jobs", ("rasterio", "rio_cogeo"))
    import rasterio
    import rasterio.shutil
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError
    from rio_cogeo.cogeo import cog_translate, cog_validate
    from rio_cogeo.profiles import cog_profiles

    profile = dict(cog_profiles["deflate"])
    profile.update(blockxsize=256, blockysize=256)
    name = _open_name(source, variable)
    try:
        with _quiet(), _open_source(name, source) as src:
            if src.count == 0:
                names = ", ".join(s.rsplit(":", 1)[-1] for s in src.subdatasets[:20])
                raise UnreadableFileError(
                    f"{source.name} holds several variables ({names}): choose one with "
                    "params.variable"
                )
            if not src.gcps[0] and src.gcps[1] is not None:
                # JPEG2000 reports a GCP CRS without GCPs; rio-cogeo would then warp with an
                # empty GCP transform: go through a plain GeoTIFF copy instead
                plain = dest.with_name(dest.stem + ".plain.tif")
                rasterio.shutil.copy(src, str(plain), driver="GTiff")
                name = str(plain)
        with _quiet(), _open_source(name, source) as src:
            cog_translate(
                src,
                str(dest),
                profile,
                overview_resampling="average",
                in_memory=False,
                quiet=True,
                config={"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_TIFF_OVR_BLOCKSIZE": "256"},
            )
        with _quiet():
            valid, errors, _warnings = cog_validate(str(dest), quiet=True)
    except (RasterioError, CPLE_BaseError) as exc:
        raise UnreadableFileError(
            f"{source.name} is not a readable raster: {_first_line(exc)}"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            dest.with_name(dest.stem + ".plain.tif").unlink()
    if not valid:
        raise UnreadableFileError(f"{source.name}: the COG is not valid: {'; '.join(errors)}")


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_H5L_TYPE_EXTERNAL = 64
_H5D_VIRTUAL = 3


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file (netCDF-4 included): its signature at byte 0 or at
    512, 1024, 2048... (where HDF5 may put its superblock)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _hdf5_library() -> Any:
    """The HDF5 C library GDAL reads with (ctypes), None if it cannot be found."""
    import ctypes
    import ctypes.util

    for module in ("rasterio", "netCDF4"):  # either maps the libhdf5 it is linked with
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
            break
    found = None
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            name = line.rsplit(" ", 1)[-1].strip()
            if "/libhdf5" in name and "_hl" not in name.rsplit("/", 1)[-1]:
                found = name
                break
    found = found or ctypes.util.find_library("hdf5")
    if found is None:
        return None
    try:
        lib = ctypes.CDLL(found)
    except OSError:
        return None
    i64 = ctypes.c_int64
    for fn in ("H5Fopen", "H5Gopen2", "H5Dopen2", "H5Dget_create_plist"):
        getattr(lib, fn).restype = i64
    return lib


def hdf5_references(path: Path) -> str | None:
    """What in HDF5 file ``path`` makes a reader open other files, None if nothing does.

    A dataset's raw data may live in an *external file* named by the file (any file: the
    bytes of ``/proc/self/environ`` read as pixels), a *virtual dataset* maps other files'
    datasets, an *external link* opens another file. GDAL's netCDF and HDF5 drivers (and
    netCDF4/xarray in processors) follow all three, so a job's COG would publish what they
    name.

    Raises:
        UnreadableFileError: the HDF5 library cannot be reached or cannot open ``path`` (the
            file cannot be checked: refused).
    """
    import ctypes

    lib = _hdf5_library()
    if lib is None:
        raise UnreadableFileError(
            f"{path.name} is an HDF5 file and the HDF5 library cannot be found to check it"
        )
    i64 = ctypes.c_int64
    lib.H5open()
    lib.H5Eset_auto2(i64(0), None, None)  # no error stack printed on stderr
    fid = lib.H5Fopen(os.fsencode(path), ctypes.c_uint(0), i64(0))
    if fid < 0:
        raise UnreadableFileError(f"{path.name} is not a readable HDF5 file")
    found: list[str] = []
    callback = ctypes.CFUNCTYPE(
        ctypes.c_int, i64, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p
    )

    def visit(group: int, name: bytes, info: Any, data: Any) -> int:
        del data
        shown = name.decode("utf-8", "replace")[:100]
        if info[0] == _H5L_TYPE_EXTERNAL:  # H5L_info2_t (and 1.10's H5L_info_t) start with it
            found.append(f"an external link {shown!r}")
            return 1
        if info[0] != 0:  # a soft link: its target is visited as itself
            return 0
        dset = lib.H5Dopen2(i64(group), name, i64(0))
        if dset < 0:  # a group or a named datatype
            return 0
        try:
            dcpl = lib.H5Dget_create_plist(i64(dset))
            try:
                if lib.H5Pget_external_count(i64(dcpl)) != 0:
                    found.append(f"dataset {shown!r} stored in an external file")
                elif lib.H5Pget_layout(i64(dcpl)) == _H5D_VIRTUAL:
                    found.append(f"a virtual dataset {shown!r}")
            finally:
                lib.H5Pclose(i64(dcpl))
        finally:
            lib.H5Dclose(i64(dset))
        return 1 if found else 0

    try:
        root = lib.H5Gopen2(i64(fid), b"/", i64(0))
        try:
            visit_links = getattr(lib, "H5Lvisit2", None) or lib.H5Lvisit
            status = visit_links(i64(root), 0, 2, callback(visit), None)  # by name, native
        finally:
            lib.H5Gclose(i64(root))
    finally:
        lib.H5Fclose(i64(fid))
    if found:
        return found[0]
    if status < 0:
        raise UnreadableFileError(f"{path.name}: its HDF5 structure cannot be read to check it")
    return None


def check_self_contained(path: Path) -> None:
    """Refuse a file that makes its reader open other files (an HDF5 or netCDF-4 file with
    external storage, virtual datasets or external links: :func:`hdf5_references`); for a
    file someone else chose (a job submitted over HTTP)."""
    if not is_hdf5(path):
        return
    reference = hdf5_references(path)
    if reference is not None:
        raise InputError(
            f"{path.name} reads other files ({reference}): not accepted from an API job"
        )


def file_checksum(path: Path) -> str:
    """The file extension's ``file:checksum``: a SHA2-256 multihash (``1220`` + hex digest)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return "1220" + digest.hexdigest()


def file_datetime(path: Path) -> datetime | None:
    """The raster's ``TIFFTAG_DATETIME`` (``YYYY:MM:DD HH:MM:SS``, taken as UTC), if any."""
    require_extra("data", "raster jobs", ("rasterio",))
    import rasterio

    with _quiet(), rasterio.open(path) as src:
        text = src.tags().get("TIFFTAG_DATETIME", "")
    try:
        return datetime.strptime(text.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def raster_item(
    cog: Path,
    *,
    item_id: str,
    collection: str | None,
    asset: str,
    href: str,
    when: datetime,
    properties: Mapping[str, Any] | None = None,
    alternate: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The STAC item of ``cog``: rio-stac's (proj, raster; geometry and bbox in WGS84 from
    the data's footprint) plus ``file:size`` and ``file:checksum`` on the asset.

    ``alternate``: other URLs of the same file by name (alternate-assets: the ``s3://`` or
    ``file://`` behind a public http(s) ``href``).
    """
    require_extra("data", "raster jobs", ("rasterio", "rio_stac"))
    from rasterio.errors import RasterioError
    from rio_stac import create_stac_item

    try:
        with _quiet():
            item = create_stac_item(
                str(cog),
                input_datetime=when,
                collection=collection,
                properties=dict(properties or {}),
                id=item_id,
                asset_name=asset,
                asset_roles=["data"],
                asset_media_type=COG_MEDIA_TYPE,
                asset_href=href,
                with_proj=True,
                with_raster=True,
                geom_densify_pts=21,
                geom_precision=7,
            )
    except RasterioError as exc:
        raise UnreadableFileError(f"{cog.name}: {_first_line(exc)}") from None
    doc: dict[str, Any] = item.to_dict(include_self_link=False, transform_hrefs=False)
    doc["links"] = []  # rio-stac's collection link is relative to nothing; pgSTAC adds its own
    extensions = list(doc.get("stac_extensions", []))
    extensions.append(FILE_EXTENSION)
    the_asset = doc["assets"][asset]
    the_asset["file:size"] = cog.stat().st_size
    the_asset["file:checksum"] = file_checksum(cog)
    if alternate:
        extensions.append("https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json")
        the_asset["alternate"] = {name: {"href": url} for name, url in alternate.items()}
    doc["stac_extensions"] = sorted(set(extensions))
    return doc
