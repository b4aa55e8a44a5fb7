"""The gateway's ``/data/``: the object store's local folder served read-only by the real nginx
(a file is served; listings, ``..`` and symlink escapes, writes are not)."""

from __future__ import annotations

import http.client
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from eomatch.io.object_store import LocalFolderStore, object_hrefs
from eomatch.service.browser import write_runtime_config
from eomatch.service.gateway import Gateway, render_nginx_conf
from eomatch.service.stack import free_port
from gateway_helpers import echo_upstream, world_readable_tmpdir

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
SECRET = "TOP-SECRET-OUTSIDE-THE-DATA-FOLDER"
COG = b"II*\x00" + b"\x01" * 5000
INDEX = "<!doctype html><title>app</title>"


@dataclass
class Served:
    url: str
    port: int
    data: Path
    store: LocalFolderStore


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    if NGINX is None:
        pytest.skip("nginx binary not installed")
    with (
        echo_upstream("internal") as internal,
        echo_upstream("external") as external,
        world_readable_tmpdir("eomatch-data-") as base,
    ):
        dist = base / "dist"
        dist.mkdir()
        (dist / "index.html").write_text(INDEX)
        runtime = base / "runtime"
        write_runtime_config(runtime, "http://example.test/external/")
        (base / "secret.txt").write_text(SECRET)
        (base / "private").mkdir()
        (base / "private" / "key.txt").write_text(SECRET)
        data = base / "objects"
        port = free_port()
        store = LocalFolderStore(data, public_url=f"http://127.0.0.1:{port}/data/", file_mode=0o644)
        store.put_bytes("rasters/scene/data.tif", COG)
        # links planted inside the folder, pointing out of it
        os.symlink(base / "secret.txt", data / "rasters" / "leak.txt")
        os.symlink(base / "private", data / "private-dir")
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        gateway = Gateway(base / "run")
        gateway.write_config(
            listen_host="127.0.0.1",
            listen_port=port,
            internal_upstream=internal.address,
            external_upstream=external.address,
            browser_dir=dist,
            runtime_config_dir=runtime,
            data_dir=data,
        )
        gateway.start()
        try:
            yield Served(f"http://127.0.0.1:{port}", port, data, store)
        finally:
            gateway.stop()


def _raw(port: int, method: str, target: str) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{port}")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def test_a_stored_object_is_served_at_its_public_href(served: Served) -> None:
    _storage, public = object_hrefs(served.store, "rasters/scene/data.tif")
    assert public == f"{served.url}/data/rasters/scene/data.tif"
    resp = httpx.get(public)
    assert resp.status_code == 200
    assert resp.content == COG
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in resp.headers["content-security-policy"]
    ranged = httpx.get(public, headers={"Range": "bytes=0-3"})  # COG readers use ranges
    assert ranged.status_code == 206
    assert ranged.content == b"II*\x00"


@pytest.mark.parametrize(
    "target",
    [
        "/data/",
        "/data/rasters/",
        "/data/rasters/leak.txt",
        "/data/private-dir/key.txt",
        "/data/../secret.txt",
        "/data/..%2fsecret.txt",
        "/data/rasters/../../secret.txt",
        "/data/%2e%2e/secret.txt",
        "/data/../run/nginx.conf",
        "/data/absent.tif",
    ],
)
def test_no_listing_and_no_escape(served: Served, target: str) -> None:
    status, body, _headers = _raw(served.port, "GET", target)
    assert SECRET.encode() not in body
    assert b"worker_processes" not in body
    assert b"Index of" not in body
    assert status in (200, 400, 403, 404), (target, status)
    if status == 200:  # normalised out of /data/: the browser app's history-mode fallback
        assert body == INDEX.encode(), target


def test_the_folder_is_read_only(served: Served) -> None:
    for method in ("PUT", "DELETE", "POST"):
        status, _body, _headers = _raw(served.port, method, "/data/rasters/scene/data.tif")
        assert status in (403, 405), (method, status)
    assert served.store.get_bytes("rasters/scene/data.tif") == COG


def test_without_a_data_dir_there_is_no_data_location() -> None:
    kwargs = {
        "listen_host": "127.0.0.1",
        "listen_port": 8080,
        "internal_upstream": "127.0.0.1:1",
        "external_upstream": "127.0.0.1:2",
        "browser_dir": "/srv/b",
        "runtime_config_dir": "/srv/r",
        "run_dir": "/run/g",
    }
    assert "/data/" not in render_nginx_conf(**kwargs)  # type: ignore[arg-type]
    conf = render_nginx_conf(**kwargs, data_dir="/srv/objects")  # type: ignore[arg-type]
    assert "alias /srv/objects/;" in conf
    assert "disable_symlinks on" in conf
    assert "autoindex off;" in conf
    with pytest.raises(ValueError, match="data_dir"):
        render_nginx_conf(**kwargs, data_dir="/srv/x; root /")  # type: ignore[arg-type]


def test_stored_files_and_folders_are_readable_whatever_the_umask(tmp_path: Path) -> None:
    """The worker runs with umask 077 under ``eomatch serve``; nginx (nobody) must still
    traverse the folders and read the files."""
    store = LocalFolderStore(tmp_path / "objects", file_mode=0o644)
    old = os.umask(0o077)
    try:
        store.put_bytes("c/item/data.tif", COG)
        src = tmp_path / "src.bin"
        src.write_bytes(b"x")
        store.put_file("c/other/file.bin", src)
    finally:
        os.umask(old)
    for folder in ("objects", "objects/c", "objects/c/item", "objects/c/other"):
        assert oct((tmp_path / folder).stat().st_mode & 0o777) == "0o755", folder
    for name in ("c/item/data.tif", "c/other/file.bin"):
        assert oct(store.path(name).stat().st_mode & 0o777) == "0o644", name


def test_the_data_store_of_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``eomatch serve`` starts the worker: the folder and the public URL from the
    environment (EOMATCH_API_MODE=worker is no API mode and must not matter)."""
    from eomatch.errors import ConfigError
    from eomatch.io.data_store import open_data_store

    monkeypatch.setenv("EOMATCH_API_MODE", "worker")
    monkeypatch.setenv("EOMATCH_PUBLIC_URL", "https://cat.example.org")
    monkeypatch.setenv("EOMATCH_STORAGE_DIR", str(tmp_path / "objects"))
    store = open_data_store()
    assert isinstance(store, LocalFolderStore)
    assert store.root == tmp_path / "objects"
    assert object_hrefs(store, "c/i/data.tif")[1] == "https://cat.example.org/data/c/i/data.tif"
    monkeypatch.setenv("EOMATCH_STORAGE_PUBLIC_URL", "https://files.example.org/x")
    assert object_hrefs(open_data_store(), "k")[1] == "https://files.example.org/x/k"
    monkeypatch.setenv("EOMATCH_STORAGE_PUBLIC_URL", "ftp://nope")
    with pytest.raises(ConfigError, match="EOMATCH_STORAGE_PUBLIC_URL"):
        open_data_store()
    monkeypatch.delenv("EOMATCH_STORAGE_PUBLIC_URL")
    monkeypatch.setenv("EOMATCH_PUBLIC_URL", "https://cat.example.org/path")
    with pytest.raises(ConfigError, match="EOMATCH_PUBLIC_URL"):
        open_data_store()
