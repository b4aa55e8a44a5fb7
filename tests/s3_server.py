"""A local S3-compatible server for tests (moto's threaded server), and buckets on it.

Use the fixtures in a test module with ``from s3_server import *``::

    def test_x(s3_bucket: S3Bucket) -> None:
        store = S3ObjectStore(s3_bucket.config(prefix="backups"))

The server is real HTTP on 127.0.0.1 (one per pytest worker); :func:`s3_bucket` makes a fresh,
empty bucket per test and puts fake credentials in the environment (``AWS_*``), which is where
eomatch reads them from. :func:`s3_env` gives the ``EOMATCH_BACKUP_S3_*`` variables for a CLI
run against that bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from eomatch.io.object_store import S3Config

__all__ = ["S3Bucket", "S3Server", "s3_bucket", "s3_server"]

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


@dataclass
class S3Server:
    """A running moto server."""

    endpoint: str

    def client(self) -> Any:
        """A boto3 client (moto ships boto3), for set-up and for looking behind eomatch's back."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )


@dataclass
class S3Bucket:
    """One empty bucket on :class:`S3Server`."""

    server: S3Server
    name: str

    def config(self, prefix: str = "", **kwargs: Any) -> S3Config:
        return S3Config(
            bucket=self.name,
            prefix=prefix,
            endpoint=self.server.endpoint,
            region=REGION,
            allow_http=True,
            **kwargs,
        )

    def env(self, prefix: str = "") -> dict[str, str]:
        """Variables for a CLI run (``eomatch backup`` to this bucket)."""
        return {
            "EOMATCH_BACKUP_S3_BUCKET": self.name,
            "EOMATCH_BACKUP_S3_ENDPOINT": self.server.endpoint,
            "EOMATCH_BACKUP_S3_PREFIX": prefix,
            "EOMATCH_BACKUP_S3_ALLOW_HTTP": "1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def keys(self) -> list[str]:
        """Every key in the bucket, as the server lists it (not through eomatch)."""
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 on a free port of 127.0.0.1 for this worker."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A fresh bucket; fake credentials in the environment for this test."""
    name = "eomatch-test-" + uuid.uuid4().hex[:12]
    s3_server.client().create_bucket(Bucket=name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    return S3Bucket(s3_server, name)
