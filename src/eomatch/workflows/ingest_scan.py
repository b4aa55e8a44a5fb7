"""The reading half of ``eomatch ingest``: item files → service form, hash, change decision.

Kept apart (and free of database code) so that a big ingest can run it in a second process:
reading, rewriting and hashing 100 000 items is Python work that would otherwise share one
interpreter lock with the loading process. The reader also does pypgstac's per-item formatting
(``Loader.format_item``), so items travel back as table rows of plain strings, cheap to pass.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from eomatch.core.publish import HrefRewriter, content_hash
from eomatch.core.validation import href_problem, stac_document_problem
from eomatch.errors import EomatchError
from eomatch.io.pgstac_store import ItemFormatter

StateRow = tuple[str, int | None, int | None]
"""(content hash, file mtime ns, file size) of an item at the last ingest."""
StateWrite = tuple[str, str, str, int | None, int | None]
"""(collection, id, content hash, mtime ns, size) to record."""


@dataclass(frozen=True)
class ScanContext:
    """Everything a scan needs, picklable (sent once to a worker process)."""

    root: str
    by_path: dict[str, tuple[str, str]]
    assets_base_url: str | None
    state: dict[tuple[str, str], StateRow]
    trust_stat: bool
    skip_invalid: bool
    conninfo: str
    """Where the formatter reads collections' base items (the ingest role)."""


@dataclass
class ScanResult:
    """One chunk's outcome."""

    items: list[dict[str, Any]] = field(default_factory=list)
    """pgSTAC rows (strings only: cheap to pickle)."""
    states: list[StateWrite] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    scanned: int = 0
    skipped: list[str] = field(default_factory=list)


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def item_problem(doc: dict[str, Any], item_id: str) -> str | None:
    """Why pgSTAC would reject or mis-store this item (None: fine)."""
    if doc.get("type") != "Feature":
        return "type is not Feature"
    if doc.get("id") != item_id:
        return f"id {doc.get('id')!r} does not match the file name"
    geometry = doc.get("geometry")
    if not isinstance(geometry, dict):
        return "geometry missing"
    # the API's rules, on the file as it is (the rewriter drops what it cannot rewrite) ...
    problem = stac_document_problem(doc, "Feature")
    if problem:
        return problem
    props = doc.get("properties")
    if not isinstance(props, dict):
        return "properties missing"
    if props.get("datetime") is None:
        if not (_is_time(props.get("start_datetime")) and _is_time(props.get("end_datetime"))):
            return "datetime is null and start_datetime/end_datetime are not both set"
    elif not _is_time(props["datetime"]):
        return f"datetime {props['datetime']!r} is not an RFC 3339 time"
    return None


def scan_chunk(
    chunk: list[tuple[str, str, str]], ctx: ScanContext, formatter: ItemFormatter
) -> ScanResult:
    """Stat every file; read, check, rewrite and hash those that may have changed, and format
    the changed ones into pgSTAC rows."""
    rewriter = HrefRewriter(Path(ctx.root), ctx.by_path.get, ctx.assets_base_url)
    base = ctx.root + os.sep
    out = ScanResult()

    def skip_or_raise(message: str) -> None:
        if not ctx.skip_invalid:
            raise EomatchError(message)
        out.skipped.append(message)

    for coll, item_id, rel in chunk:
        out.scanned += 1
        path = base + rel  # plain str paths: pathlib costs more than the syscalls
        known = ctx.state.get((coll, item_id))
        try:
            st = os.stat(path)
            if (
                ctx.trust_stat
                and known is not None
                and known[1] == st.st_mtime_ns
                and known[2] == st.st_size
            ):
                out.unchanged += 1
                continue
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            skip_or_raise(f"{path}: {exc.strerror or exc}")
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            skip_or_raise(f"{path}: unreadable item: {exc}")
            continue
        problem = item_problem(doc, item_id) if isinstance(doc, dict) else "not a JSON object"
        if problem:
            skip_or_raise(f"{path}: not a valid STAC item: {problem}")
            continue
        doc["collection"] = coll
        api_doc = rewriter.item(doc, rel)
        problem = href_problem(api_doc)  # ... and on the hrefs as they are stored
        if problem:
            skip_or_raise(f"{path}: not a valid STAC item: {problem}")
            continue
        digest = content_hash(api_doc)
        out.states.append((coll, item_id, digest, st.st_mtime_ns, st.st_size))
        if known is not None and known[0] == digest:
            out.unchanged += 1
            continue
        try:
            row = formatter.format(api_doc)
        except ValueError as exc:
            skip_or_raise(f"{path}: not a valid STAC item: {exc}")
            out.states.pop()
            continue
        out.items.append(row)
        if known is None:
            out.inserted += 1
        else:
            out.updated += 1
    return out


# -- the worker process ----------------------------------------------------------------------
# A plain child interpreter (``python -m eomatch.workflows.ingest_scan``) fed pickles over its
# stdin: unlike multiprocessing's spawn, it never re-imports the caller's main module, so
# ``ingest_catalogue`` stays safe to call from a script without an ``if __name__`` guard.


class ScanWorker:
    """One child process scanning chunks in order; at most one chunk in flight."""

    def __init__(self, context: ScanContext) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eomatch.workflows.ingest_scan"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdin is not None
        pickle.dump(context, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()

    def submit(self, chunk: list[tuple[str, str, str]]) -> _Pending:
        """Send a chunk; its result is read when asked for (answers come back in order)."""
        assert self.proc.stdin is not None
        pickle.dump(chunk, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()
        return _Pending(self)

    def _receive(self) -> ScanResult:
        assert self.proc.stdout is not None
        try:
            kind, value = pickle.load(self.proc.stdout)
        except EOFError:
            raise EomatchError(
                f"the ingest reader process died (exit code {self.proc.wait()})"
            ) from None
        if kind == "error":
            raise EomatchError(str(value))
        assert isinstance(value, ScanResult)
        return value

    def close(self) -> None:
        """End the child (closing its stdin ends its loop)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class _Pending:
    def __init__(self, worker: ScanWorker) -> None:
        self.worker = worker
        self.value: ScanResult | None = None

    def result(self) -> ScanResult:
        if self.value is None:
            self.value = self.worker._receive()
        return self.value


def _serve() -> None:
    """Child side: a context, then chunks until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    context = pickle.load(stdin)
    formatter: ItemFormatter | None = None
    try:
        while True:
            try:
                chunk = pickle.load(stdin)
            except EOFError:
                return
            try:
                formatter = formatter or ItemFormatter(context.conninfo)
                answer: tuple[str, object] = ("ok", scan_chunk(chunk, context, formatter))
            except EomatchError as exc:
                answer = ("error", str(exc))
            pickle.dump(answer, stdout, protocol=pickle.HIGHEST_PROTOCOL)
            stdout.flush()
    finally:
        if formatter is not None:
            formatter.close()


if __name__ == "__main__":
    # run the importable copy of this module, so results pickle under its real name
    from eomatch.workflows import ingest_scan

    ingest_scan._serve()
