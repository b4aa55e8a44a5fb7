"""Bulk writer of a catalogue batch: new events written at once, their index rows buffered.

A batch of thousands of events is bound by per-item work: building 7 item dicts an event,
serialising them and four system calls a file. Measured on 2 cores: writer threads made it
slower (GIL hand-offs stall the caller); worker processes building and writing items gained
nothing on tmpfs and lost on ext4 (parallel file creation in the same folders contends in the
kernel). So the caller builds the items, and the files are created by one helper process
(:mod:`eomatch.io.file_writer`; the first ``PROCESS_AFTER`` events of a batch are written by
the caller itself), in order: per event, the complete event, then its new products and
matchups (see :meth:`BulkWriter.write_event` for why that order). What the index records
(rows, relations, extents, day folders) is buffered and handed over in large batches
(``executemany``), once the files are written and before anything reads the index.

Other item files of a batch (imported items, events gaining matchups) go to the same helper
process through :meth:`BulkWriter.write_file`, in the order given, so the caller's Python work
and the kernel's file creation run on two cores; a read of a queued file waits for it
(:meth:`BulkWriter.queued`, :meth:`BulkWriter.sync`).
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eomatch.core import stac_items as si
from eomatch.core.products import Matchup, MatchupEvent, Product
from eomatch.errors import EomatchError
from eomatch.io import file_writer
from eomatch.io.atomic import json_bytes
from eomatch.io.catalogue_index import ItemRow, index_entry
from eomatch.io.safe_paths import within_root

Extent = tuple[list[float], datetime, datetime]


@dataclass
class BulkRecord:
    """What the writer wrote, for the caller's index, extents and day catalogs."""

    rows: list[ItemRow] = field(default_factory=list)
    event_matchups: list[tuple[str, str]] = field(default_factory=list)
    matchup_products: list[tuple[str, str]] = field(default_factory=list)
    extents: dict[str, Extent] = field(default_factory=dict)
    """Collection → union of the bboxes and time ranges of the items written."""


class WriterProcess:
    """The helper process of :mod:`eomatch.io.file_writer`, fed through a pipe."""

    def __init__(self, root: str, keep_fds: Sequence[int] = ()) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", file_writer.__file__, root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=tuple(keep_fds),
            bufsize=1 << 20,
        )
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError, AttributeError):  # Linux: fewer wake-ups
            fcntl.fcntl(self.proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        self.pending = False
        """Files queued since the last :meth:`sync`."""

    def write(self, rel: str, data: bytes, parallel: bool = False) -> None:
        """Queue one file (complete or not at all), after every file queued before it, or with
        the ``parallel`` ones queued since the last plain file or :meth:`barrier`."""
        path = rel.encode()
        flag = file_writer.PARALLEL if parallel else 0
        self._send(file_writer.FRAME.pack(len(path) | flag, len(data)) + path + data)

    def barrier(self) -> None:
        """The files queued so far are written before any queued after this."""
        if self.pending:
            self._send(file_writer.BARRIER)

    def _send(self, frame: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(frame)
        except (BrokenPipeError, ValueError):
            self._failed()
        self.pending = True

    def sync(self) -> None:
        """Return once every queued file is written."""
        if not self.pending:
            return
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write(file_writer.FRAME.pack(0, 0))
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            self._failed()
        answer = self.proc.stdout.readline()
        if answer != b"ok\n":
            self._failed(answer)
        self.pending = False

    def _failed(self, answer: bytes = b"") -> None:
        assert self.proc.stdout is not None
        answer = answer or self.proc.stdout.readline()
        self.proc.wait()
        reason = answer.decode(errors="replace").strip().removeprefix("error ")
        raise EomatchError(
            f"{self.root}: writing the catalogue's files failed: "
            f"{reason or f'writer process exited with {self.proc.returncode}'}"
        )

    def close(self) -> None:
        """Let it finish what it has, and wait for it."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class BulkWriter:
    """Writes new events' item files now; buffers what the index needs until :meth:`flush`."""

    PROCESS_AFTER = 200
    """Events written in the caller before the helper process is started (it costs ~30 ms;
    a :meth:`write_file` starts it earlier). Files handed to the helper may wait in the
    caller's pipe buffer until the next :meth:`sync`: a kill loses them (a batch is complete
    only at its end; running it again completes it)."""

    def __init__(
        self,
        root: str,
        record: Callable[[BulkRecord], None],
        before_write: Callable[[], None],
        buffer_rows: int = 50_000,
        keep_fds: Sequence[int] = (),
    ) -> None:
        self.root = root
        self._record = record
        self._before_write = before_write
        self._buffer_rows = buffer_rows
        self._keep_fds = keep_fds
        self._events = 0
        self._proc: WriterProcess | None = None
        self._out = BulkRecord()
        self._ids: set[str] = set()
        self._files: set[str] = set()
        """Paths queued by :meth:`write_file` since the helper last confirmed its writes."""
        self._made: set[str] = set()
        self._checked: set[str] = set()
        """Folders checked by ``within_root`` (once each: a planted symlink must not lead
        writes out of the root; the helper process, standard library only, cannot check)."""

    @property
    def busy(self) -> bool:
        """Index rows still buffered (:meth:`flush` records them once their files are written).

        Files queued by :meth:`write_file` do not count: their caller indexes them, and reads
        of them wait (:meth:`queued`), so index reads need not stall the helper's pipeline.
        """
        return bool(self._out.rows)

    def pending(self, item_id: str) -> bool:
        """Whether ``item_id`` was written by this writer and is not recorded yet."""
        return item_id in self._ids

    def queued(self, rel: str) -> bool:
        """Whether the item file ``rel`` was queued by :meth:`write_file` and may not be
        written yet (see :meth:`sync`)."""
        return rel in self._files

    def write_file(self, rel: str, item: Mapping[str, Any], parallel: bool = False) -> None:
        """Queue an item file (its folder checked by the caller) to the helper process.

        Written complete or not at all, after everything queued before it; ``parallel``:
        possibly alongside the other parallel files since the last :meth:`barrier`. The
        caller indexes it. Starts the helper process if needed: an import writes thousands.
        """
        if self._proc is None:
            self._proc = WriterProcess(self.root, self._keep_fds)
        self._proc.write(rel, json_bytes(item), parallel)
        self._files.add(rel)

    def barrier(self) -> None:
        """The files queued so far are written before any queued after this."""
        if self._proc is not None:
            self._proc.barrier()

    def sync(self) -> None:
        """Return once every file queued so far is written."""
        if self._proc is not None:
            self._proc.sync()
        self._files.clear()

    def flush(self) -> None:
        """Wait until the helper process has written every file; then hand the buffered rows,
        relations and extents to ``record``."""
        self.sync()
        if self._out.rows:
            out, self._out = self._out, BulkRecord()
            self._ids.clear()
            self._record(out)

    def close(self) -> None:
        """Stop the helper process once it has written what it was given."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            proc.close()

    def _put(self, item: dict[str, Any], rel: str, times: tuple[datetime, datetime]) -> None:
        if self._proc is not None:
            self._proc.write(rel, json_bytes(item))
        else:
            file_writer.write_under(self.root, rel, json_bytes(item), self._made)
        out = self._out
        entry = index_entry(item, rel, times)
        out.rows.append(entry.row)
        out.event_matchups += entry.event_matchups
        out.matchup_products += entry.matchup_products
        self._ids.add(item["id"])
        coll = item["collection"]
        old = out.extents.get(coll)
        if old is None:
            out.extents[coll] = ([float(v) for v in item["bbox"]], times[0], times[1])
        else:
            out.extents[coll] = (
                si.bbox_union(old[0], item["bbox"]),
                min(old[1], times[0]),
                max(old[2], times[1]),
            )

    def write_event(self, event: MatchupEvent, plan: Sequence[Product | Matchup]) -> None:
        """Write a new event, then its new products and matchups (``plan``, in write order)."""
        self._before_write()
        self._events += 1
        if self._proc is None and self._events > self.PROCESS_AFTER:
            self._proc = WriterProcess(self.root, self._keep_fds)
        # The event first, complete: a kill before its matchups leaves it linking to some that
        # are not there yet, which the next open drops (rewriting the event) and a re-run adds
        # back as an event gaining matchups. The other way round, a matchup would be left
        # linking to a missing event, which nothing would restore. One file an event, never
        # replaced: on ext4 every replaced file is also a deleted inode, which slows creation.
        writes = [(si.event_to_item(event), si.event_path(event), (event.start, event.end))]
        for x in plan:
            if isinstance(x, Matchup):
                writes.append((si.matchup_to_item(x, event), si.matchup_path(x), (x.start, x.end)))
            else:
                writes.append((si.product_to_item(x), si.product_path(x), (x.start, x.end)))
        for _, rel, _ in writes:  # every folder checked before the first file is written
            folder = rel.rpartition("/")[0]
            if folder not in self._checked:
                within_root(self.root, folder)
                self._checked.add(folder)
        for item, rel, times in writes:
            self._put(item, rel, times)
        if len(self._out.rows) >= self._buffer_rows:
            self.flush()
