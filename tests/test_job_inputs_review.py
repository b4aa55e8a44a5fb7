"""An adversarial review of the confinement of API jobs' inputs (issue 13 §2): the holes found,
each with real requests against the in-process internal API and, where the worker matters,
a real ``eomatch worker``.

* hostile params that crashed the submit: a URL ``urlsplit`` cannot parse (``http://[::1``,
  a 500) and a NUL anywhere in the params (PostgreSQL's jsonb refuses ``\\u0000``: a 503) are
  one-line 400s, nothing queued;
* "not this machine" meant loopback only: the machine's own LAN address (a service bound to
  ``0.0.0.0`` answers there) was fetched; refused now, at submit and by the worker;
* with ``EOMATCH_JOBS_SOURCE_HOSTS``, an ``s3://`` URL was matched by the host ``urlsplit``
  sees in it, not by the bucket the fetch uses (``s3://other@allowed/key``);
* an ``ingest`` job checked its folder but not what is inside: a symlink in it leading out
  (its ``catalog.json``, a collection folder) made the worker ingest a catalogue outside
  ``EOMATCH_JOBS_INPUT_DIR``;
* DNS rebinding: the request was checked with one resolution and connected with another;
* a catalogue walk had no bound on documents (a wide remote tree) and opened a FIFO;
* an HDF5/netCDF-4 file with external storage (or an external link) made GDAL read any file
  the worker can, and the job published it as a COG;
* a download had no size or total-time bound (endless body, gzip bomb, trickle);
* IPv6 forms carrying an internal IPv4 address (IPv4-compatible, NAT64, 6to4) passed.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import socket
import threading
import tracemalloc
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import brotli
import pytest

from eomatch.errors import InputError
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.jobs.inputs import InputPolicy
from job_kind_helpers import job_store, make_geotiff, serve_folder
from service_fixtures import *  # noqa: F403
from service_fixtures import ServiceDb, api_pair_in_process, http, make_catalogue
from test_jobs import ended, job_count, wait_for, worker

VAR = "EOMATCH_JOBS_INPUT_DIR"


def _raster(source: str, **more: Any) -> dict[str, Any]:
    return {"kind": "raster", "params": {"collection": "rasters", "source": source, **more}}


def _auth(db: ServiceDb) -> dict[str, str]:
    return {"Authorization": f"Bearer {PgstacStore(db.role()).create_key('mallory')}"}


def _own_address() -> str | None:
    """A non-loopback address of this machine (the one it would reach the outside from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("198.51.100.1", 9))  # no packet is sent (UDP connect)
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_hostile_params_are_400s_not_5xx(
    service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = service_db
    root = tmp_path / "in"
    root.mkdir()
    make_geotiff(root / "scene.tif", size=64, bands=1)
    job_store(db, 0, "rasters")
    auth = _auth(db)
    monkeypatch.setenv(VAR, str(root))
    process = {"processor": "geotiff", "source": "http://[::1/x.tif"}
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("/jobs", _raster("http://[::1/x.tif", item_id="x"), "not a valid URL"),
        ("/jobs", _raster("file://[::1/x.tif", item_id="x"), "not a valid URL"),
        ("/jobs", {"kind": "process", "params": process}, "not a valid URL"),
        ("/jobs", {"kind": "catalogue", "params": {"source": "https://[::1/c.json"}}, "valid URL"),
        (
            "/newitem",
            {
                "collection_id": "rasters",
                "file_source_host": "http://[::1",
                "filename": "x.tif",
                "date": "2024-05-01",
            },
            "not a valid URL",
        ),
        ("/jobs", _raster("https://example.org/x\x00.tif", item_id="x"), "NUL"),
        (
            "/jobs",
            _raster("https://example.org/x.tif", item_id="x", properties={"a": "\x00"}),
            "params.properties.a: a NUL",
        ),
        (
            "/jobs",
            _raster(
                "https://example.org/x.tif", item_id="x", properties={"k\x00": [1, {"b": "c"}]}
            ),
            "NUL",
        ),
        ("/jobs", _raster("scene.tif", variable="v\x00"), "NUL"),
        (
            "/newitem",
            {
                "collection_id": "rasters",
                "file_source_host": "https://example.org",
                "filename": "x.tif",
                "date": "2024-05-01",
                "properties": {"title": "a\x00b"},
            },
            "NUL",
        ),
    ]
    with api_pair_in_process(db) as (internal, _external):
        before = job_count(db)
        for path, body, why in refused:
            r = http.post(f"{internal.url}{path}", json=body, headers=auth)
            assert r.status_code == 400, (body, r.status_code, r.text)
            reason = r.json()["description"]
            assert why in reason, (body, reason)
            assert "\n" not in reason
        assert job_count(db) == before


def test_this_machine_under_its_own_address_is_refused(
    service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service listening on every address (``0.0.0.0``: the internal API in a container,
    say) answers at the machine's LAN address too: refused at submit, and by the worker
    (a job queued before, or a redirect there)."""
    own = _own_address()
    if own is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    db = service_db
    www = tmp_path / "www"
    www.mkdir()
    make_geotiff(www / "inside.tif", size=64, bands=1)
    job_store(db, 0, "rasters")
    auth = _auth(db)
    monkeypatch.delenv("EOMATCH_JOBS_SOURCE_HOSTS", raising=False)
    objects = tmp_path / "objects"
    log = tmp_path / "worker.log"
    with serve_folder(www, host="0.0.0.0") as base, api_pair_in_process(db) as (internal, _):
        port = urlsplit(base).port
        for url in (f"http://{own}:{port}/inside.tif", f"http://[::ffff:{own}]:{port}/in.tif"):
            r = http.post(f"{internal.url}/jobs", json=_raster(url), headers=auth)
            assert r.status_code == 400, (url, r.text)
            assert "this machine or link-local" in r.json()["description"], r.text
        # queued as an API job by other means (an older eomatch): the worker refuses it
        from eomatch.io.job_queue import JobQueue

        job_id = JobQueue(db.role("eomatch_ingest")).submit(
            "raster",
            {"collection": "rasters", "source": f"http://{own}:{port}/inside.tif"},
            "key:mallory",
            origin="http",
        )
        with worker(db, log, EOMATCH_STORAGE_DIR=str(objects)):
            job = wait_for(db, job_id, ended, timeout=60, log=log)
    assert job.status == "failed", job.to_json()
    assert job.error is not None
    assert "this machine or link-local" in job.error["reason"], job.error
    assert not db.query("SELECT id FROM pgstac.items")
    assert not objects.exists() or not any(p.is_file() for p in objects.rglob("*"))


def test_an_s3_source_is_matched_by_its_bucket() -> None:
    policy = InputPolicy(None, ("allowed-bucket",))
    assert policy.location("s3://allowed-bucket/k.tif", "src") == "s3://allowed-bucket/k.tif"
    for url in ("s3://other@allowed-bucket/k.tif", "s3://other:1@allowed-bucket/k.tif",
                "s3://allowed-bucket:443/k.tif"):  # fmt: skip
        with pytest.raises(InputError, match="EOMATCH_JOBS_SOURCE_HOSTS"):
            policy.location(url, "src")


def test_an_ingest_folder_with_links_leading_out_is_not_ingested(
    service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is inside, its contents are links to a catalogue outside: the worker fails
    the job (stage ``inputs``) and ingests nothing; a folder with only inside links runs."""
    db = service_db
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    make_catalogue(out / "cat", n_events=1, start=datetime(2023, 7, 1, tzinfo=UTC))
    make_catalogue(root / "ok", n_events=1)
    mirror = root / "mirror"
    mirror.mkdir()
    for entry in (out / "cat").iterdir():  # every entry a link out, catalog.json included
        (mirror / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    auth = _auth(db)
    monkeypatch.setenv(VAR, str(root))
    log = tmp_path / "worker.log"
    with api_pair_in_process(db) as (internal, _external):
        ids = {}
        for name in ("mirror", "ok"):
            body = {"kind": "ingest", "params": {"catalogue": name}}
            r = http.post(f"{internal.url}/jobs", json=body, headers=auth)
            assert r.status_code in (202, 400), r.text
            ids[name] = r.json().get("id")
    assert ids["ok"] is not None
    with worker(db, log, **{VAR: str(root)}):
        jobs = {n: wait_for(db, i, ended, timeout=90, log=log) for n, i in ids.items() if i}
    assert jobs["ok"].status == "succeeded", jobs["ok"].to_json()
    if "mirror" in jobs:  # refused at the worker (or better, at submit: no job)
        job = jobs["mirror"]
        assert job.status == "failed", job.to_json()
        assert job.error is not None
        assert job.error["stage"] == "inputs", job.error
        assert "outside the folder API jobs may read" in job.error["reason"], job.error
        assert str(out) not in job.error["reason"]  # where the link leads is not shown
    assert db.query("SELECT count(*) FROM pgstac.items")[0] != (0,)  # the inside one
    assert db.query("SELECT count(*) FROM pgstac.items WHERE datetime >= '2023-01-01'") == [(0,)]


def test_a_name_rebound_to_loopback_after_the_check_is_not_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolves to a public address when the request is checked and
    to ``127.0.0.1`` when the socket connects. The worker's fetch (the guarded session, as a
    raster job uses it) connects only to an address it checked: the server on loopback sees
    no request. (The resolver is faked: a hostile DNS server, not the code under test.)"""
    from eomatch.errors import EomatchError
    from eomatch.io.cog import FETCH_LIMITS, fetch_source
    from eomatch.workflows.jobs.inputs import fetch_session

    www = tmp_path / "www"
    www.mkdir()
    (www / "x.tif").write_bytes(b"secret")
    seen: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            seen.append(self.path)

    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example":
            answers.append("8.8.8.8" if not answers else "127.0.0.1")
            return real(answers[-1], *args, **kwargs)
        return real(host, *args, **kwargs)

    with serve_folder(www, Handler) as base:
        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        url = f"http://rebind.example:{urlsplit(base).port}/x.tif"
        InputPolicy(None, None).location(url, "params.source")  # the submit-time check passes
        answers.clear()
        with (
            pytest.raises(EomatchError, match="this machine or link-local"),
            fetch_session(InputPolicy(None, None), FETCH_LIMITS) as session,
        ):
            fetch_source(url, tmp_path, session=session)
    assert len(answers) >= 2  # checked, then resolved again to connect
    assert seen == []
    assert not (tmp_path / "x.tif").exists()


class _Endless(SimpleHTTPRequestHandler):
    """A wide catalogue: ``/c/D-N.json`` has ten children at depth D+1 down to depth 4 (11,111
    documents; no deep recursion, so nothing but a count stops the walk)."""

    def do_GET(self) -> None:
        depth, n = (int(x) for x in self.path.rsplit("/", 1)[-1].split(".")[0].split("-"))
        kids = range(10 * n, 10 * n + 10) if depth < 4 else range(0)
        links = [{"rel": "child", "href": f"./{depth + 1}-{k}.json"} for k in kids]
        body = json.dumps(
            {
                "type": "Catalog",
                "stac_version": "1.0.0",
                "id": f"c{n}",
                "description": "d",
                "links": links,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_catalogue_walk_of_an_api_job_is_bounded(tmp_path: Path) -> None:
    """A hostile server can serve children for ever (the worker kept every document in
    memory): the walk of an API job stops after a number of documents; a local document
    that is a FIFO (which would block the worker for ever) is refused before it is opened."""
    from eomatch.io.http import HttpLimits
    from eomatch.io.static_catalogue import read_static_catalogue
    from eomatch.workflows.jobs.inputs import fetch_session

    policy = InputPolicy(tmp_path, ("127.0.0.1",))
    with serve_folder(tmp_path, _Endless) as base:
        url = f"{base}/c/0-0.json"
        with (
            pytest.raises(InputError, match="more than 40 documents"),
            fetch_session(policy, HttpLimits(timeout_s=10.0, max_retries=0)) as session,
        ):
            read_static_catalogue(
                url, collection="c", session=session, check_href=policy.href_checker(40)
            )

    cat = tmp_path / "cat"
    cat.mkdir()
    os.mkfifo(cat / "child.json")
    (cat / "catalog.json").write_text(
        json.dumps(
            {
                "type": "Catalog",
                "stac_version": "1.0.0",
                "id": "f",
                "description": "d",
                "links": [{"rel": "child", "href": "./child.json"}],
            }
        )
    )
    with pytest.raises(InputError, match="FIFO"):
        read_static_catalogue(
            str(cat / "catalog.json"), collection="c", check_href=policy.href_checker()
        )


def _hdf5_naming(path: Path, target: Path, *, link: bool = False, n: int = 64) -> Path:
    """An HDF5 file (what netCDF-4 is) with one 2-D byte dataset ``data`` whose raw data is
    the first n*n bytes of ``target`` (external storage), or (``link``) an external link
    ``data`` to ``target``'s ``/data``. Written with the HDF5 C library GDAL uses."""
    import ctypes

    from eomatch.io.cog import _hdf5_library

    lib = _hdf5_library()
    assert lib is not None
    i64 = ctypes.c_int64
    for fn in ("H5Fcreate", "H5Screate_simple", "H5Pcreate", "H5Dcreate2"):
        getattr(lib, fn).restype = i64
    lib.H5open()
    fid = lib.H5Fcreate(os.fsencode(path), ctypes.c_uint(2), i64(0), i64(0))  # truncate
    assert fid >= 0
    if link:
        assert lib.H5Lcreate_external(os.fsencode(target), b"/data", i64(fid), b"data",
                                      i64(0), i64(0)) >= 0  # fmt: skip
    else:
        space = lib.H5Screate_simple(2, (ctypes.c_uint64 * 2)(n, n), None)
        dcpl = lib.H5Pcreate(i64.in_dll(lib, "H5P_CLS_DATASET_CREATE_ID_g"))
        assert lib.H5Pset_external(i64(dcpl), os.fsencode(target), ctypes.c_long(0),
                                   ctypes.c_uint64(n * n)) >= 0  # fmt: skip
        u8 = i64.in_dll(lib, "H5T_STD_U8LE_g")
        dset = lib.H5Dcreate2(i64(fid), b"data", u8, i64(space), i64(0), i64(dcpl), i64(0))
        assert dset >= 0
        lib.H5Dclose(i64(dset))
        lib.H5Pclose(i64(dcpl))
        lib.H5Sclose(i64(space))
    lib.H5Fclose(i64(fid))
    return path


def test_an_hdf5_file_naming_other_files_is_not_published(
    service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A netCDF-4/HDF5 file may keep a dataset's bytes in any file it names (external
    storage): GDAL reads them as pixels, and the job published e.g. the worker's
    ``/proc/self/environ`` or a key file as a COG. From a remote server (any host by default)
    or the input folder: the worker refuses it at stage fetch, nothing stored; a plain
    netCDF-4 file still runs."""
    from job_kind_helpers import make_netcdf, serve_folder

    db = service_db
    root, www, out = tmp_path / "in", tmp_path / "www", tmp_path / "out"
    for d in (root, www, out):
        d.mkdir()
    secret = out / "secret.key"
    secret.write_bytes(b"AWS_SECRET_ACCESS_KEY=hunter2;" * 200)
    _hdf5_naming(www / "remote.nc", secret)
    _hdf5_naming(root / "local.nc", secret)
    _hdf5_naming(out / "other.h5", secret)  # a file outside with a dataset, linked to
    _hdf5_naming(root / "linked.nc", out / "other.h5", link=True)
    make_netcdf(root / "plain.nc")
    job_store(db, 0, "rasters")
    auth = _auth(db)
    objects = tmp_path / "objects"
    log = tmp_path / "worker.log"
    env = {VAR: str(root), "EOMATCH_JOBS_SOURCE_HOSTS": "127.0.0.1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    when = "2024-05-01T00:00:00Z"
    with serve_folder(www) as base, api_pair_in_process(db) as (internal, _external):
        ids = {}
        for name, body in [
            ("remote", _raster(f"{base}/remote.nc", variable="data", datetime=when)),
            ("local", _raster("local.nc", datetime=when)),
            ("linked", _raster("linked.nc", variable="data", datetime=when)),
            ("plain", _raster("plain.nc", variable="sst_diff", datetime=when)),
        ]:
            r = http.post(f"{internal.url}/jobs", json=body, headers=auth)
            assert r.status_code == 202, r.text
            ids[name] = r.json()["id"]
        with worker(db, log, EOMATCH_STORAGE_DIR=str(objects), **env):
            jobs = {n: wait_for(db, i, ended, timeout=90, log=log) for n, i in ids.items()}
    assert jobs["plain"].status == "succeeded", jobs["plain"].to_json()
    for name, what in [("remote", "external file"), ("local", "external file"),
                       ("linked", "external link")]:  # fmt: skip
        job = jobs[name]
        assert job.status == "failed", job.to_json()
        assert job.error is not None
        assert job.error["stage"] == "fetch", job.error
        assert "reads other files" in job.error["reason"], job.error
        assert what in job.error["reason"], job.error
    assert db.query("SELECT id FROM pgstac.items ORDER BY id") == [("plain",)]
    stored = [p for p in objects.rglob("*") if p.is_file()]
    assert [p.relative_to(objects).as_posix() for p in stored] == ["rasters/plain/data.tif"]
    assert not any(b"hunter2" in p.read_bytes() for p in stored)


@functools.cache
def _bomb(coding: str) -> bytes:
    """A few kB of br that is 256 MB decoded, or 100 KB of gzip that is 100 MB (made once, when
    the test asks, outside the memory it measures; not at import for every test run)."""
    if coding == "br":
        return bytes(brotli.compress(bytes(256 << 20), quality=1))
    return gzip.compress(bytes(100 << 20), compresslevel=9)


class _Hostile(SimpleHTTPRequestHandler):
    """``/endless.tif``: zeros for ever (no length); ``/bomb.tif``: 100 KB of gzip that is
    100 MB decoded; ``/brbomb.tif``: the same in br (its decoder in httpx has no cap on one
    chunk's output); ``/trickle.tif``: one byte every 0.2 s for ever."""

    def do_GET(self) -> None:
        import time

        self.send_response(200)
        if self.path in ("/bomb.tif", "/brbomb.tif"):
            br = self.path == "/brbomb.tif"  # asked for identity, sent br all the same
            body = _bomb("br" if br else "gzip")
            self.send_header("Content-Encoding", "br" if br else "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
        with contextlib.suppress(OSError):
            while True:
                if self.path == "/trickle.tif":
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
                else:
                    self.wfile.write(bytes(1 << 16))

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_api_jobs_download_is_bounded(tmp_path: Path) -> None:
    """A hostile source server (any host may be one by default) sending an endless body, a
    compression bomb or a trickle: the download of an API job (its policy's bounds, small
    here) stops with a one-line reason and leaves no partial file; the job's real bounds
    are 8 GiB and an hour."""
    from eomatch.errors import RemoteLimitError
    from eomatch.io.cog import FETCH_LIMITS, FetchBounds, fetch_source
    from eomatch.workflows.jobs.inputs import API_FETCH_BOUNDS, fetch_session

    assert InputPolicy().fetch_bounds == API_FETCH_BOUNDS
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    policy = InputPolicy(None, ("127.0.0.1",), fetch_bounds=FetchBounds(4 << 20, 3.0))
    _bomb("br"), _bomb("gzip")  # before the traced downloads below
    try:
        for name, why in [("endless", "larger than 4194304 bytes"),
                          ("bomb", "larger than 4194304 bytes"),
                          ("brbomb", "larger than 4194304 bytes"),
                          ("trickle", "took longer than the 3 s allowed")]:  # fmt: skip
            scratch = tmp_path / name
            scratch.mkdir()
            tracemalloc.start()
            try:
                with (
                    pytest.raises(RemoteLimitError, match=why),
                    fetch_session(policy, FETCH_LIMITS) as session,
                ):
                    fetch_source(
                        f"{base}/{name}.tif", scratch, session=session, bounds=policy.fetch_bounds
                    )
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert list(scratch.iterdir()) == []
            assert peak < 64 << 20, f"{name}: peak {peak} bytes: decoded whole"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_ipv6_forms_of_internal_ipv4_addresses_are_refused() -> None:
    """IPv6 addresses that carry an IPv4 one: IPv4-compatible, NAT64 (a NAT64 network routes
    them to the IPv4 address), 6to4; and the plain forms that already were."""
    policy = InputPolicy(None, None)
    for host in ("::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::",
                 "2002:a9fe:a9fe::1", "::ffff:127.0.0.1", "::1", "::"):  # fmt: skip
        with pytest.raises(InputError, match="this machine or link-local"):
            policy.location(f"http://[{host}]:8080/x.tif", "params.source")
    for host in ("2606:4700:4700::1111", "64:ff9b::808:808"):  # public (1.1.1.1's, 8.8.8.8)
        assert policy.location(f"http://[{host}]/x.tif", "s").startswith("http://[")


def test_an_ingest_folder_whose_side_index_leads_out_is_not_ingested(
    service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever can write the input folder can write a catalogue's side index too (SQLite,
    trusted while its day folders' mtimes match): an item path ``../../out/...`` in it made
    the ingest read an item file outside the folder. The worker refuses such an index."""
    import sqlite3

    from eomatch.io.catalogue_index import INDEX_NAME

    db = service_db
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    make_catalogue(root / "cat", n_events=1)
    make_catalogue(out / "cat", n_events=1, start=datetime(2023, 7, 1, tzinfo=UTC))
    with contextlib.closing(sqlite3.connect(root / "cat" / INDEX_NAME)) as index:
        inside = dict(index.execute("SELECT id, path FROM items").fetchall())
    with contextlib.closing(sqlite3.connect(out / "cat" / INDEX_NAME)) as index:
        outside = dict(index.execute("SELECT id, path FROM items").fetchall())

    # the outside items in place of the inside ones (same collection folder), ids and all
    def by_collection(rows: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        for item_id, rel in sorted(rows.items(), key=lambda r: r[1]):
            out.setdefault(rel.split("/", 1)[0], []).append((item_id, rel))
        return out

    theirs = by_collection(outside)
    with contextlib.closing(sqlite3.connect(root / "cat" / INDEX_NAME)) as index:
        for coll, rows in by_collection(inside).items():
            for (item_id, _rel), (other_id, other) in zip(rows, theirs[coll], strict=True):
                index.execute(
                    "UPDATE items SET id = ?, path = ? WHERE id = ?",
                    (other_id, f"../../out/cat/{other}", item_id),
                )
        index.commit()
    auth = _auth(db)
    monkeypatch.setenv(VAR, str(root))
    log = tmp_path / "worker.log"
    with api_pair_in_process(db) as (internal, _external):
        body = {"kind": "ingest", "params": {"catalogue": "cat"}}
        r = http.post(f"{internal.url}/jobs", json=body, headers=auth)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
    with worker(db, log, **{VAR: str(root)}):
        job = wait_for(db, job_id, ended, timeout=90, log=log)
    assert db.query("SELECT count(*) FROM pgstac.items WHERE datetime >= '2023-01-01'") == [(0,)]
    assert job.status == "failed", job.to_json()
    assert job.error is not None
    assert job.error["stage"] == "inputs", job.error
    assert "outside the folder API jobs may read" in job.error["reason"], job.error
