"""Files of a matchup catalogue: names, bounded reads, atomic writes, folder listings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eomatch.io.atomic import json_bytes, pretty_json_bytes, write_file_atomic
from eomatch.io.safe_files import read_regular_bytes

LOCK_NAME = ".eomatch.lock"
MAX_FILE_BYTES = 64 << 20
"""Largest JSON file of a catalogue read (an item is kilobytes; a big collection ~1 MB)."""
DATA_DIR = "data"


def read_file(path: Path) -> bytes:
    """A catalogue file's bytes; FIFOs, devices and files over 64 MiB are refused (OSError)."""
    return read_regular_bytes(path, "catalogue file", MAX_FILE_BYTES, raw_os_errors=True)


def scandir(path: Path) -> list[os.DirEntry[str]]:
    """The entries of a folder (none if it is gone)."""
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def subdirs(path: Path) -> list[Path]:
    """The subfolders of a folder, symlinks not followed (none if it is gone)."""
    try:
        return [Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def write_json_file(
    path: str | Path, data: Mapping[str, Any], durable: bool, compact: bool = False
) -> None:
    """Atomic replace: write a temp file beside ``path`` then ``os.replace`` it."""
    write_file_atomic(path, json_bytes(data) if compact else pretty_json_bytes(data), durable)
