"""The object-store interface on both backends: a local folder, and a real S3-compatible server
(moto over HTTP) through obstore."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from eomatch.errors import ConfigError, NetworkError, NotFoundError, UnsafePathError
from eomatch.io.object_store import (
    LocalFolderStore,
    ObjectStore,
    S3Config,
    S3ObjectStore,
    check_key,
    open_store,
)
from s3_server import S3Bucket, s3_bucket, s3_server

__all__ = ["s3_bucket", "s3_server"]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(tmp_path / "store")
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return open_store(bucket.config(prefix="some/prefix"))


def test_round_trip_list_delete(store: ObjectStore, tmp_path: Path) -> None:
    assert isinstance(store, ObjectStore)
    assert store.list() == []
    big = tmp_path / "big.bin"
    payload = os.urandom(9 * 1024 * 1024 + 17)  # more than one multipart chunk
    big.write_bytes(payload)
    store.put_file("b/2026/big.bin", big)
    store.put_bytes("b/2026/manifest.json", b'{"a": 1}')
    store.put_bytes("b/2027/x", b"x")
    store.put_bytes("c", b"c")

    assert [o.key for o in store.list()] == [
        "b/2026/big.bin",
        "b/2026/manifest.json",
        "b/2027/x",
        "c",
    ]
    assert [o.key for o in store.list("b/2026/")] == ["b/2026/big.bin", "b/2026/manifest.json"]
    assert [o.key for o in store.list("b/202")] == [
        "b/2026/big.bin",
        "b/2026/manifest.json",
        "b/2027/x",
    ]
    info = store.list("b/2026/big")[0]
    assert info.size == len(payload)
    assert info.modified.tzinfo is not None

    out = tmp_path / "out" / "big.bin"
    store.get_file("b/2026/big.bin", out)
    assert out.read_bytes() == payload
    assert store.get_bytes("b/2026/manifest.json") == b'{"a": 1}'
    assert store.exists("c")
    store.put_bytes("c", b"new")  # overwrite
    assert store.get_bytes("c") == b"new"

    store.delete("c")
    store.delete("c")  # absent: fine
    assert not store.exists("c")
    with pytest.raises(NotFoundError, match="no object 'c'"):
        store.get_bytes("c")
    with pytest.raises(NotFoundError):
        store.get_file("c", tmp_path / "c")
    assert not (tmp_path / "c").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["big.bin"]  # no temporaries left


def test_s3_keys_live_under_the_prefix(s3_bucket: S3Bucket) -> None:
    store = S3ObjectStore(s3_bucket.config(prefix="eomatch/backups/"))
    store.put_bytes("one/two", b"2")
    assert s3_bucket.keys() == ["eomatch/backups/one/two"]
    assert [o.key for o in store.list()] == ["one/two"]


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a/ b", "x\x00"])
def test_unsafe_keys_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        check_key(key)
    with pytest.raises(UnsafePathError):
        LocalFolderStore(tmp_path).put_bytes(key, b"x")


def test_local_store_hides_unfinished_writes(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    store.put_bytes("a/done", b"1")
    (tmp_path / "a" / ".partial.123.part").write_bytes(b"half")  # a killed writer's leftover
    assert [o.key for o in store.list()] == ["a/done"]
    store.delete("a/done")
    assert (tmp_path / "a").exists()  # not empty: the leftover is still there


def test_unreachable_endpoint_is_one_network_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = S3ObjectStore(
        S3Config(bucket="b", endpoint=f"http://127.0.0.1:{port}", allow_http=True, timeout_s=2)
    )
    with pytest.raises(NetworkError) as info:
        store.list()
    assert "\n" not in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_plain_http_endpoint_needs_consent() -> None:
    with pytest.raises(ConfigError, match="plain http"):
        S3ObjectStore(S3Config(bucket="b", endpoint="http://127.0.0.1:9"))


def test_wrong_credentials_are_refused(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = S3ObjectStore(s3_bucket.config())
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v"
    # moto accepts any credentials, so check the bucket name instead: a missing bucket is an error
    other = S3ObjectStore(S3Config(**{**s3_bucket.config().__dict__, "bucket": "no-such-bucket"}))
    with pytest.raises((NetworkError, NotFoundError)):
        other.put_bytes("k", b"v")
