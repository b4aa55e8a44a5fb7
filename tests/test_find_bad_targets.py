"""``eomatch find`` refuses a target it cannot write to before anything runs or is written
(issue 10 §10): a file as ``--path``, a read-only catalogue, a corrupt item it would merge."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from eomatch.io.catalogue import MatchupCatalogue

CONFIG = (
    "sensors:\n"
    "  - {platform: S2A, collection: S2_MSI_L1C}\n"
    "  - {platform: LS9, collection: LANDSAT_C2L1}\n"
    "start_time: 2022-05-02T00:00:00Z\nend_time: 2022-05-02T12:00:00Z\n"
)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".eomatch-index")
    }


def eomatch(*args: str, cwd: Path, plain_user: bool = False) -> subprocess.CompletedProcess[str]:
    """The CLI in a child; ``plain_user`` drops root's override of file permissions."""
    cmd = [sys.executable, "-m", "eomatch", *args]
    if plain_user and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    env = {**os.environ, "EOMATCH_CONFIG_DIR": str(cwd / "no-user-config")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def one_line(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0], proc.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A catalogue of 2022-05-02 (its index current)."""
    base = tmp_path_factory.mktemp("built")
    cfg = base / "run.yaml"
    cfg.write_text(CONFIG)
    proc = eomatch("find", "--config", str(cfg), "--path", str(base / "cat"), cwd=base)
    assert proc.returncode == 0, proc.stderr
    return base


def _copy(built: Path, tmp_path: Path) -> Path:
    subprocess.run(["cp", "-a", str(built / "cat"), str(tmp_path / "cat")], check=True)
    (tmp_path / "run.yaml").write_text(CONFIG)
    MatchupCatalogue.open(tmp_path / "cat").close()  # index current again after the copy
    return tmp_path / "cat"


def test_path_naming_a_file(tmp_path):
    (tmp_path / "run.yaml").write_text(CONFIG)
    target = tmp_path / "afile"
    target.write_text("mine\n")
    proc = eomatch("find", "--config", "run.yaml", "--path", str(target), cwd=tmp_path)
    one_line(proc, "is a file, not a folder")
    assert target.read_text() == "mine\n"


def test_corrupt_item_fails_before_new_items_are_written(built, tmp_path):
    root = _copy(built, tmp_path)
    event = sorted(
        p for p in root.glob("matchup-events-*/*/*/*/*.json") if p.name != "catalog.json"
    )
    event[0].write_bytes(b"{broken")  # in place: the day folder's mtime, the index, stay current
    before = snapshot(root)
    # one day earlier than the catalogue: new events of 2022-05-01 come before the broken one
    proc = eomatch(
        "find", "--config", "run.yaml", "--path", str(root), "--start-time", "2022-05-01T18:00",
        cwd=tmp_path,
    )  # fmt: skip
    one_line(proc, "invalid catalogue item")
    assert snapshot(root) == before


def test_read_only_catalogue_is_refused_before_the_run(built, tmp_path):
    root = _copy(built, tmp_path)
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    before = snapshot(root)
    try:
        proc = eomatch("find", "--config", "run.yaml", "--path", str(root), cwd=tmp_path,
                       plain_user=True)  # fmt: skip
        one_line(proc, "is not writable")
        listing = eomatch("download", "--path", str(root), cwd=tmp_path, plain_user=True)
        assert listing.returncode in (0, 2), listing.stderr
        assert "Traceback" not in listing.stderr
        assert "internal error" not in listing.stderr
        assert len(listing.stderr.strip().splitlines()) <= 1, listing.stderr
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert snapshot(root) == before


class _Loop(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.path + "x")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_stac_source_redirect_loop_in_the_config(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/stac"
        (tmp_path / "run.yaml").write_text(
            "sensors:\n"
            "  - {platform: S2A, collection: S2_MSI_L1C, source: stac, stac_source: loop}\n"
            "  - {platform: LS9, collection: LANDSAT_C2L1}\n"
            f"stac_sources:\n  loop: {{url: '{url}', max_retries: 0}}\n"
            "start_time: 2022-05-02T00:00:00Z\nend_time: 2022-05-02T12:00:00Z\n"
        )
        root = tmp_path / "cat"
        proc = eomatch("find", "--config", "run.yaml", "--path", str(root), cwd=tmp_path)
        one_line(proc, "redirects")
        assert not root.exists()
    finally:
        server.shutdown()
        server.server_close()


def _item_id(root: Path) -> str:
    items = root.glob("matchup-events-*/*/*/*/*.json")
    return sorted(p for p in items if p.name != "catalog.json")[0].stem


@pytest.mark.parametrize("damage", ["read-only", "catalog.json unreadable", "item unreadable"])
def test_reading_a_read_only_or_unreadable_catalogue(built, tmp_path, damage):
    """Read-only commands on such a catalogue work or end in one line, and change nothing."""
    root = _copy(built, tmp_path)
    item = _item_id(root)
    if damage == "read-only":
        targets = [root, *root.rglob("*")]
        mask = 0o222
    elif damage == "catalog.json unreadable":
        targets, mask = [root / "catalog.json"], 0o777
    else:
        targets = [next(root.glob(f"matchup-events-*/*/*/*/{item}.json"))]
        mask = 0o777
    modes = {p: p.stat().st_mode for p in targets}
    for p in targets:
        p.chmod(p.stat().st_mode & ~mask)
    before = snapshot(root) if damage == "read-only" else None
    try:
        for args in (
            ["assets", "list", "--catalogue", str(root), "--item", item],
            ["download", "--path", str(root), "--collections", "NONE"],
        ):
            proc = eomatch(*args, cwd=tmp_path, plain_user=True)
            assert proc.returncode in (0, 2), proc.stderr
            assert "Traceback" not in proc.stderr
            assert "internal error" not in proc.stderr
            assert len(proc.stderr.strip().splitlines()) <= 1, proc.stderr
            if proc.returncode == 2:
                assert str(root) in proc.stderr or "catalog" in proc.stderr
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    if before is not None:
        assert snapshot(root) == before
