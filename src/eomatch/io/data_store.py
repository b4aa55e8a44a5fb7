"""The object store jobs keep their files in, from the ``EOMATCH_STORAGE_*`` settings.

A local folder (``<data_dir>/objects`` by default) that the gateway serves read-only under
``/data/``, or an S3-compatible bucket. Either way :func:`~eomatch.io.object_store.object_hrefs`
gives an object's storage URL (``file://``, ``s3://``) and, when configured, the http(s) URL
people and the external API use.
"""

from __future__ import annotations

import os
from pathlib import Path

from eomatch.config.settings import Settings, StorageSettings, public_origin, read_settings
from eomatch.io.object_store import LocalFolderStore, ObjectStore, S3Config, S3ObjectStore

__all__ = ["DATA_URL_PATH", "data_root", "open_data_store"]

DATA_URL_PATH = "/data/"
"""Where the gateway serves the local folder (``location ^~ /data/``)."""

SERVED_FILE_MODE = 0o644
"""Stored files are world-readable: the gateway's nginx runs as an unprivileged user."""


def data_root(settings: StorageSettings | None = None) -> Path | None:
    """The local folder the gateway serves, or None when objects go to a bucket."""
    settings = settings or read_settings(StorageSettings)
    if settings.s3_bucket:
        return None
    return settings.local_dir(read_settings(Settings).data_dir)


def open_data_store(settings: StorageSettings | None = None) -> ObjectStore:
    """The configured store (a bucket if ``EOMATCH_STORAGE_S3_BUCKET`` is set, else the
    local folder), with its public URL: ``EOMATCH_STORAGE_PUBLIC_URL``, or for the local
    folder ``EOMATCH_PUBLIC_URL`` + ``/data/`` (what ``eomatch serve`` sets)."""
    settings = settings or read_settings(StorageSettings)
    if settings.s3_bucket:
        return S3ObjectStore(
            S3Config(
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                endpoint=settings.s3_endpoint,
                region=settings.s3_region,
                allow_http=settings.s3_allow_http,
                public_url=settings.public_url,
            )
        )
    public = settings.public_url
    if public is None:
        # EOMATCH_PUBLIC_URL alone, not ApiSettings: a worker process is no API process
        origin = os.environ.get("EOMATCH_PUBLIC_URL", "").strip().rstrip("/")
        if origin:
            public_origin(origin)  # a bad value: ConfigError naming the variable
        public = origin + DATA_URL_PATH if origin else None
    root = data_root(settings)
    assert root is not None
    return LocalFolderStore(root, public_url=public, file_mode=SERVED_FILE_MODE)
