"""The file writing ``eomatch query`` relies on: the helper process's parallel frames and
barriers, parallel day-catalog writes and the one file system sync of a batch."""

from __future__ import annotations

import pytest

from eomatch.errors import EomatchError
from eomatch.io import atomic
from eomatch.io.catalogue_bulk import WriterProcess


def test_parallel_frames_between_barriers_end_with_the_last_write(tmp_path):
    proc = WriterProcess(str(tmp_path))
    try:
        for i in range(300):
            proc.write(f"a/{i % 7}/f{i}.json", b"first %d" % i, parallel=True)
        proc.barrier()
        for i in range(0, 300, 3):  # rewritten after the barrier: the new bytes win
            proc.write(f"a/{i % 7}/f{i}.json", b"second %d" % i, parallel=True)
        for _ in range(5):  # the same path several times in one parallel run: in order
            proc.write("a/same.json", b"x", parallel=True)
        proc.write("a/same.json", b"last", parallel=True)
        proc.write("b/plain.json", b"plain")  # a plain frame after the parallel ones
        proc.sync()
    finally:
        proc.close()
    for i in range(300):
        want = b"second %d" % i if i % 3 == 0 else b"first %d" % i
        assert (tmp_path / f"a/{i % 7}/f{i}.json").read_bytes() == want
    assert (tmp_path / "a/same.json").read_bytes() == b"last"
    assert (tmp_path / "b/plain.json").read_bytes() == b"plain"
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_failed_parallel_write_is_reported(tmp_path):
    (tmp_path / "blocked").write_text("a file where a folder should be")
    proc = WriterProcess(str(tmp_path))
    try:
        proc.write("ok/f.json", b"{}", parallel=True)
        proc.write("blocked/f.json", b"{}", parallel=True)
        with pytest.raises(EomatchError, match="writing the catalogue's files failed: blocked"):
            proc.sync()
    finally:
        proc.close()


def test_write_files_in_parallel_and_sync(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "PARALLEL_FILES", 3)
    writes = [(str(tmp_path / f"f{i}.json"), b"%d" % i) for i in range(50)]
    atomic.write_files(writes, durable=False)
    atomic.sync_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"f{i}.json" for i in range(50))
    assert all((tmp_path / f"f{i}.json").read_bytes() == b"%d" % i for i in range(50))
    with pytest.raises(FileNotFoundError):
        atomic.write_files([(str(tmp_path / "no" / f"{i}"), b"") for i in range(20)], False)
    with pytest.raises(FileNotFoundError):
        atomic.sync_files(tmp_path / "missing")
