"""Inputs of jobs submitted over HTTP are confined (issue 13 §2, the brief's "never let an input
choose a path outside its root"): real PostgreSQL, the internal API in process, a real
``eomatch worker`` process and real GeoTIFFs.

* ``POST /jobs`` and bq-stac's ``/newitem`` refuse, with a one-line 400 and nothing queued, a
  local input outside ``EOMATCH_JOBS_INPUT_DIR``: ``..``, an absolute path elsewhere, a
  symlink (file or folder) leading out, ``file://`` elsewhere, a harvester configuration file,
  a processor by ``module:Class``; with no folder configured, any local path (naming the
  variable); with ``EOMATCH_JOBS_SOURCE_HOSTS``, a URL on another host;
* a relative path inside the folder is accepted and the job runs to a COG and an item;
* the worker checks again: a file swapped for a symlink after queuing, an API job queued
  before the ``origin`` column (submitter ``key:``), a catalogue whose links lead out: each
  ends ``failed`` at stage ``inputs`` (or ``read``) with nothing stored and no item; a VRT
  named ``.tif`` (which would read any file it names) fails at stage ``cog``;
* the CLI (the operator) still submits any path; ``eomatch db migrate`` brings an old
  ``eomatch.jobs`` up to date, marking its API jobs ``http``.
"""

from __future__ import annotations

import json
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eomatch.config.settings import JobsSettings, read_settings
from eomatch.errors import ConfigError, UnsafePathError
from eomatch.io.job_queue import JobQueue, install_queue
from eomatch.io.pgstac_store import PgstacStore
from eomatch.io.safe_paths import readable_within
from job_kind_helpers import job_store, make_geotiff, make_static_catalogue, serve_folder
from service_fixtures import *  # noqa: F403
from service_fixtures import ServiceDb, api_pair_in_process, http
from test_jobs import cli, ended, job_count, wait_for, worker

__all__ = ["cli"]

VAR = "EOMATCH_JOBS_INPUT_DIR"
VRT = """<VRTDataset rasterXSize="64" rasterYSize="64">
  <SRS>EPSG:32631</SRS><GeoTransform>500000, 10, 0, 5000000, 0, -10</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1"><SimpleSource>
    <SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>1</SourceBand>
  </SimpleSource></VRTRasterBand>
</VRTDataset>"""


def _items(db: ServiceDb) -> list[tuple[object, ...]]:
    return db.query("SELECT collection, id FROM pgstac.items ORDER BY 1, 2")


def _raster(source: str, **more: Any) -> dict[str, Any]:
    return {"kind": "raster", "params": {"collection": "rasters", "source": source, **more}}


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """``in/`` (the input folder: a GeoTIFF, symlinks leading out) and ``out/`` (a GeoTIFF
    and a catalogue no API job may read)."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    secret = make_geotiff(out / "secret.tif", size=64, bands=1, seed=9)
    make_geotiff(root / "scene.tif", size=64, bands=1)
    (root / "link.tif").symlink_to(secret)
    (root / "linkdir").symlink_to(out, target_is_directory=True)
    return {"root": root, "out": out, "secret": secret}


# --- the path check itself ------------------------------------------------------------------


def test_readable_within(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("x")
    (tmp_path / "elsewhere").write_text("x")
    (root / "out").symlink_to(tmp_path / "elsewhere")
    (root / "in").symlink_to(root / "sub" / "f")
    assert readable_within(root, "sub/f") == (root / "sub" / "f").resolve()
    assert readable_within(root, str(root / "sub" / "f")) == (root / "sub" / "f").resolve()
    assert readable_within(root, "in") == (root / "sub" / "f").resolve()  # a link that stays
    for bad, why in [
        ("sub/../sub/f", "'..'"),  # even when it would stay inside
        ("../elsewhere", "'..'"),
        (str(tmp_path / "elsewhere"), "outside"),
        ("out", "outside"),
        ("sub/\x00f", "not a usable path"),
        ("", "not a usable path"),
    ]:
        with pytest.raises(UnsafePathError, match=why) as err:
            readable_within(root, bad, what="params.source")
        assert str(tmp_path / "elsewhere") not in str(err.value).replace(bad, "")  # no target


def test_jobs_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "relative/folder")
    with pytest.raises(ConfigError, match=f"^{VAR}="):
        read_settings(JobsSettings)
    monkeypatch.setenv(VAR, "")
    monkeypatch.setenv("EOMATCH_JOBS_SOURCE_HOSTS", "ok.example.org, http://bad/")
    with pytest.raises(ConfigError, match=r"^EOMATCH_JOBS_SOURCE_HOSTS="):
        read_settings(JobsSettings)
    monkeypatch.setenv("EOMATCH_JOBS_SOURCE_HOSTS", " Data.Example.org,*.example.net ")
    got = read_settings(JobsSettings)
    assert got.input_dir is None
    assert got.hosts == ("data.example.org", "*.example.net")


# --- refused before anything is queued ----------------------------------------------------


def test_hostile_inputs_are_refused_before_queuing(
    service_db: ServiceDb, layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = service_db
    root, out, secret = layout["root"], layout["out"], layout["secret"]
    make_static_catalogue(out / "cat")
    job_store(db, 0, "rasters")
    auth = {"Authorization": f"Bearer {PgstacStore(db.role()).create_key('mallory')}"}
    monkeypatch.setenv(VAR, str(root))
    with api_pair_in_process(db) as (internal, _external):
        before = job_count(db)
        refused: list[tuple[str, dict[str, Any], str]] = [
            ("/jobs", _raster("../out/secret.tif"), "'..'"),
            ("/jobs", _raster("sub/../../out/secret.tif"), "'..'"),
            ("/jobs", _raster(str(secret)), "outside the folder API jobs may read"),
            ("/jobs", _raster("/etc/passwd", item_id="p"), "outside"),
            ("/jobs", _raster("link.tif"), "outside"),  # a symlink inside pointing out
            ("/jobs", _raster("linkdir/secret.tif"), "outside"),  # a folder link
            ("/jobs", _raster(secret.as_uri()), "outside"),  # file:// elsewhere
            ("/jobs", _raster(f"file://otherhost{secret}"), "file:///absolute/path"),
            ("/jobs", _raster("scene\x00.tif", item_id="n"), "a NUL character is not allowed"),
            ("/jobs", _raster("ftp://h/x.tif"), "http(s)://"),
            ("/jobs", {"kind": "ingest", "params": {"catalogue": str(out)}}, "outside"),
            ("/jobs", {"kind": "ingest", "params": {"catalogue": "linkdir"}}, "outside"),
            (
                "/jobs",
                {"kind": "catalogue", "params": {"source": str(out / "cat" / "catalog.json")}},
                "outside",
            ),
            (
                "/jobs",
                {"kind": "harvest", "params": {"harvester": "h", "config": str(root / "h.yaml")}},
                "params.config is not accepted over HTTP",
            ),
            (
                "/jobs",
                {
                    "kind": "process",
                    "params": {"processor": "os:getcwd", "source": "scene.tif"},
                },
                "not module:Class",
            ),
            (
                "/jobs",
                {"kind": "process", "params": {"processor": "geotiff", "source": str(secret)}},
                "outside",
            ),
            (
                "/newitem",
                {
                    "collection_id": "rasters",
                    "file_source_host": str(root),
                    "filename": "../out/secret.tif",
                    "date": "2024-05-01",
                },
                "'..'",
            ),
            (
                "/newitem",
                {
                    "collection_id": "rasters",
                    "file_source_host": out.as_uri(),
                    "filename": "secret.tif",
                    "date": "2024-05-01",
                },
                "outside",
            ),
        ]
        for path, body, why in refused:
            r = http.post(f"{internal.url}{path}", json=body, headers=auth)
            assert r.status_code == 400, (body, r.text)
            reason = r.json()["description"]
            assert why in reason, (body, reason)
            assert "\n" not in reason
        assert job_count(db) == before

        # inside the folder: accepted, a relative path stored resolved
        ok = http.post(f"{internal.url}/jobs", json=_raster("scene.tif"), headers=auth)
        assert ok.status_code == 202, ok.text
        queued = JobQueue(db.role()).get(ok.json()["id"])
        assert queued.params["source"] == str((root / "scene.tif").resolve())
        assert (queued.origin, queued.submitter) == ("http", "key:mallory")
        assert http.get(f"{internal.url}/jobs/{queued.id}").json()["origin"] == "http"

        # no folder configured: local paths refused, naming the variable; URLs still taken
        monkeypatch.delenv(VAR)
        r = http.post(f"{internal.url}/jobs", json=_raster("scene.tif"), headers=auth)
        assert r.status_code == 400, r.text
        assert VAR in r.json()["description"]
        r = http.post(
            f"{internal.url}/newitem",
            json={
                "collection_id": "rasters",
                "file_source_host": str(root),
                "filename": "scene.tif",
                "date": "2024-05-01",
            },
            headers=auth,
        )
        assert r.status_code == 400, r.text
        assert VAR in r.json()["description"]
        url_job = _raster("https://data.example.org/a.tif", item_id="a")
        assert http.post(f"{internal.url}/jobs", json=url_job, headers=auth).status_code == 202

        # by default, public addresses only: not this machine, link-local (cloud metadata),
        # private networks (the database, a compose project's containers) or reserved ranges
        for url in ("http://127.0.0.1:8090/api/x.tif", "http://localhost/x.tif",
                    "http://[::1]/x.tif", "http://0.0.0.0/x.tif",
                    "http://169.254.169.254/latest/x.tif", "http://10.1.2.3/x.tif",
                    "http://192.168.1.10:5432/x.tif", "http://172.16.0.1/x.tif",
                    "http://100.64.0.1/x.tif", "http://[fc00::1]/x.tif",
                    "http://[::ffff:10.0.0.1]/x.tif", "http://224.0.0.1/x.tif"):  # fmt: skip
            r = http.post(f"{internal.url}/jobs", json=_raster(url, item_id="x"), headers=auth)
            assert r.status_code == 400, (url, r.text)
            assert "not a public address" in r.json()["description"], r.text
        # and no s3:// source: the worker's credentials may read buckets the key holder may not
        r = http.post(
            f"{internal.url}/jobs", json=_raster("s3://any-bucket/x.tif", item_id="x"), headers=auth
        )
        assert r.status_code == 400, r.text
        assert "bucket listed in EOMATCH_JOBS_SOURCE_HOSTS" in r.json()["description"]
        # an allow-list of source hosts: nothing else is reached
        monkeypatch.setenv("EOMATCH_JOBS_SOURCE_HOSTS", "data.example.org,*.example.net")
        for url in ("http://127.0.0.1:5432/x.tif", "https://example.net.evil.org/x.tif",
                    "s3://other-bucket/x.tif", "http://169.254.169.254/latest/x.tif"):  # fmt: skip
            r = http.post(f"{internal.url}/jobs", json=_raster(url, item_id="x"), headers=auth)
            assert r.status_code == 400, (url, r.text)
            assert "EOMATCH_JOBS_SOURCE_HOSTS" in r.json()["description"]
        for url in ("https://data.example.org/b.tif", "https://a.b.example.net/c.tif"):
            r = http.post(f"{internal.url}/jobs", json=_raster(url, item_id="y"), headers=auth)
            assert r.status_code == 202, (url, r.text)
    assert _items(db) == []


# --- accepted, run, and checked again by the worker ---------------------------------------


def test_worker_runs_confined_jobs_and_checks_again(
    service_db: ServiceDb,
    layout: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Any,
) -> None:
    db = service_db
    root, out, secret = layout["root"], layout["out"], layout["secret"]
    make_geotiff(root / "later.tif", size=64, bands=1, seed=2)
    make_geotiff(out / "operator.tif", size=64, bands=1, seed=3)
    # a catalogue inside the folder whose child collection lies outside it
    make_static_catalogue(out / "elsewhere")
    (root / "cat").mkdir()
    (root / "cat" / "catalog.json").write_text(
        json.dumps(
            {
                "type": "Catalog",
                "stac_version": "1.0.0",
                "id": "leaky",
                "description": "links out of its folder",
                "links": [
                    {"rel": "child", "href": "../../out/elsewhere/static-coll/collection.json"}
                ],
            }
        )
    )
    # a VRT under a .tif name: GDAL would read the file it names (any readable file, even
    # as raw bytes) and the job would publish it
    (root / "trick.tif").write_text(VRT.format(source=secret))
    job_store(db, 0, "rasters")
    auth = {"Authorization": f"Bearer {PgstacStore(db.role()).create_key('mallory')}"}
    objects = tmp_path / "objects"
    monkeypatch.setenv(VAR, str(root))
    with api_pair_in_process(db) as (internal, _external):
        ids = {}
        for name, body in [
            ("scene", _raster("scene.tif")),
            ("later", _raster("later.tif")),
            ("trick", _raster("trick.tif", datetime="2024-05-01T00:00:00Z")),
            ("leaky", {"kind": "catalogue", "params": {"source": "cat"}}),
        ]:
            r = http.post(f"{internal.url}/jobs", json=body, headers=auth)
            assert r.status_code == 202, r.text
            ids[name] = r.json()["id"]
    # after queuing: later.tif becomes a link out of the folder
    (root / "later.tif").unlink()
    (root / "later.tif").symlink_to(secret)
    queue = JobQueue(db.role("eomatch_ingest"))
    # an API job as an older eomatch queued it (no origin: its submitter says key:)
    ids["old"] = queue.submit(
        "raster", {"collection": "rasters", "source": str(secret)}, "key:mallory"
    )
    # the explicit flag alone (whatever the submitter is called)
    ids["flagged"] = queue.submit(
        "raster", {"collection": "rasters", "source": str(secret), "item_id": "flagged"},
        "someone", origin="http",
    )  # fmt: skip
    # the operator through the CLI: any path
    code, out_text, err = cli(
        "jobs", "submit", "raster", "--param", "collection=rasters",
        "--param", f"source={out / 'operator.tif'}", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    ids["operator"] = json.loads(out_text)["id"]

    log = tmp_path / "worker.log"
    env = {VAR: str(root), "EOMATCH_STORAGE_DIR": str(objects)}
    with worker(db, log, **env):
        jobs = {name: wait_for(db, i, ended, timeout=90, log=log) for name, i in ids.items()}
    assert jobs["scene"].status == "succeeded", jobs["scene"].to_json()
    assert jobs["operator"].status == "succeeded", jobs["operator"].to_json()
    assert jobs["operator"].origin == "local"
    for name in ("later", "old", "flagged"):
        job = jobs[name]
        assert job.status == "failed", job.to_json()
        assert job.error is not None
        assert job.error["stage"] == "inputs", job.error
        assert "outside the folder API jobs may read" in job.error["reason"], job.error
        assert [s["name"] for s in job.stages][-1] == "inputs"  # nothing fetched
    trick = jobs["trick"]
    assert trick.status == "failed", trick.to_json()
    assert trick.error is not None
    assert trick.error["stage"] == "cog", trick.error
    assert "not a readable raster (GeoTIFF, NetCDF or JPEG2000)" in trick.error["reason"]
    leaky = jobs["leaky"]
    assert leaky.status == "failed", leaky.to_json()
    assert leaky.error is not None
    assert leaky.error["stage"] == "read", leaky.error
    assert "a link of the catalogue" in leaky.error["reason"], leaky.error
    assert _items(db) == [("rasters", "operator"), ("rasters", "scene")]
    stored = sorted(p.relative_to(objects).as_posix() for p in objects.rglob("*") if p.is_file())
    assert stored == ["rasters/operator/data.tif", "rasters/scene/data.tif"]
    assert not db.query("SELECT id FROM pgstac.collections WHERE id = 'static-coll'")


class _Redirecting(SimpleHTTPRequestHandler):
    """Files of a folder; ``/hop.tif`` redirects to ``remote.tif`` on ``localhost``."""

    def do_GET(self) -> None:
        if self.path == "/hop.tif":
            self.send_response(302)
            port = self.server.server_address[1]
            self.send_header("Location", f"http://localhost:{port}/remote.tif")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_remote_sources_and_their_redirects_pass_the_host_list(
    service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Allowed: 127.0.0.1 only. A direct download runs; a redirect to another host (the same
    server under another name) is refused as the worker follows it."""
    db = service_db
    www = tmp_path / "www"
    www.mkdir()
    make_geotiff(www / "remote.tif", size=64, bands=1)
    job_store(db, 0, "rasters")
    auth = {"Authorization": f"Bearer {PgstacStore(db.role()).create_key('mallory')}"}
    objects = tmp_path / "objects"
    allowed = {"EOMATCH_JOBS_SOURCE_HOSTS": "127.0.0.1"}
    monkeypatch.setenv("EOMATCH_JOBS_SOURCE_HOSTS", "127.0.0.1")
    log = tmp_path / "worker.log"
    with (
        serve_folder(www, _Redirecting) as base,
        api_pair_in_process(db) as (internal, _external),
        worker(db, log, EOMATCH_STORAGE_DIR=str(objects), **allowed),
    ):
        ids = {}
        for name in ("remote", "hop"):
            r = http.post(f"{internal.url}/jobs", json=_raster(f"{base}/{name}.tif"), headers=auth)
            assert r.status_code == 202, r.text
            ids[name] = r.json()["id"]
        jobs = {name: wait_for(db, i, ended, timeout=60, log=log) for name, i in ids.items()}
    assert jobs["remote"].status == "succeeded", jobs["remote"].to_json()
    hop = jobs["hop"]
    assert hop.status == "failed", hop.to_json()
    assert hop.error is not None
    assert hop.error["stage"] == "fetch", hop.error
    assert "host 'localhost' is not one API jobs may fetch from" in hop.error["reason"]
    assert _items(db) == [("rasters", "remote")]
    stored = sorted(p.relative_to(objects).as_posix() for p in objects.rglob("*") if p.is_file())
    assert stored == ["rasters/remote/data.tif"]


# --- an old jobs table ----------------------------------------------------------------------


def test_migrate_adds_the_origin_of_old_jobs(service_db: ServiceDb) -> None:
    db = service_db
    queue = JobQueue(db.role())
    api_job = queue.submit("ingest", {"catalogue": "/x"}, "key:old")
    cli_job = queue.submit("ingest", {"catalogue": "/x"}, "user:op")
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        conn.execute("ALTER TABLE eomatch.jobs DROP COLUMN origin")
    PgstacStore(db.role()).install()  # what `eomatch db migrate` and `db init` run
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        install_queue(conn, ("eomatch_ingest", "eomatch_api"))  # idempotent
    assert queue.get(api_job).origin == "http"
    assert queue.get(cli_job).origin == "local"
    assert queue.get(queue.submit("ingest", {"catalogue": "/y"}, None)).origin == "local"
