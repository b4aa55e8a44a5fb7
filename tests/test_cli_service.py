"""``eomatch db``, ``eomatch keys`` and ``eomatch serve`` end to end, as a user runs them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from eomatch.cli.main import main
from eomatch.io.pg_cluster import LocalCluster
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.ingest import ingest_catalogue
from service_fixtures import ServiceDb, free_port, make_catalogue


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder the postgres and nobody users can reach (pytest's tmp is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="eomatch-cli-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_db_lifecycle_and_keys(shared_tmp: Path, capsys) -> None:
    folder = shared_tmp / "db"
    port = str(free_port())
    assert main(["db", "status", "--dir", str(folder)]) == 4
    assert main(["db", "init", "--dir", str(folder), "--port", port]) == 0
    try:
        assert "created" in capsys.readouterr().out
        # a cluster made by an older eomatch (no history trigger, no records views) is brought
        # up to date by `db init` (the main job runs it on an existing data directory)
        old = LocalCluster(folder).connection().conninfo()
        with psycopg.connect(old, autocommit=True) as conn:
            conn.execute("DROP TRIGGER eomatch_history ON pgstac.items")
            conn.execute("DROP SCHEMA eomatch_records CASCADE")
        assert main(["db", "init", "--dir", str(folder), "--port", port]) == 0
        assert "already initialised" in capsys.readouterr().out
        with psycopg.connect(old, autocommit=True) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'eomatch_history' "
                "AND tgrelid = 'pgstac.items'::regclass"
            ).fetchone() == (1,)
            assert conn.execute("SELECT to_regclass('eomatch_records.records')").fetchone() != (
                None,
            )
        assert main(["db", "status", "--dir", str(folder)]) == 0
        assert "pgSTAC 0.10.0" in capsys.readouterr().out
        assert main(["db", "migrate", "--dir", str(folder)]) == 0
        assert "0.10.0 -> 0.10.0" in capsys.readouterr().out.replace("\n", " ")
        assert main(["keys", "create", "ci", "--dir", str(folder)]) == 0
        token = capsys.readouterr().out.strip()
        assert token.startswith("eomk_")
        assert len(token) > 40
        assert main(["keys", "create", "ci", "--dir", str(folder)]) == 2
        assert "already exists" in capsys.readouterr().err
        assert main(["keys", "list", "--dir", str(folder)]) == 0
        listed = capsys.readouterr().out
        assert "ci" in listed
        assert token not in listed
        assert "active" in listed
        assert main(["keys", "revoke", "ci", "--dir", str(folder)]) == 0
        assert main(["keys", "list", "--dir", str(folder)]) == 0
        assert "revoked" in capsys.readouterr().out
        assert main(["keys", "create", "bad name!", "--dir", str(folder)]) == 2
        assert main(["db", "stop", "--dir", str(folder)]) == 0
        assert main(["db", "status", "--dir", str(folder)]) == 3
        assert main(["db", "start", "--dir", str(folder)]) == 0
        assert main(["db", "status", "--dir", str(folder)]) == 0
    finally:
        main(["db", "stop", "--dir", str(folder)])
    assert main(["db", "init", "--dir", str(folder), "--port", "70000"]) == 2
    assert "argument --port: must be a TCP port (1..65535), not 70000" in capsys.readouterr().err
    assert main(["ingest", "--dir", str(folder), "--catalogue", str(shared_tmp)]) == 2
    err = capsys.readouterr().err
    assert "no matchup catalogue" in err or "stopped" in err


def test_serve_runs_the_stack_and_stops_on_ctrl_c(
    shared_tmp: Path, service_db: ServiceDb, tmp_path: Path
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=2)
    ingest_catalogue(root, PgstacStore(service_db.role("eomatch_ingest")))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSFILE"] = str(service_db.cluster.passfile)
    cmd = [
        sys.executable, "-m", "eomatch.cli.main_entry", "serve",
        "--port", str(port), "--run-dir", str(shared_tmp / "run"),
        "--db-host", "127.0.0.1", "--db-port", str(service_db.cluster.port),
        "--db-name", service_db.dbname, "--no-browser-build",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(base + "/external/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        ext = httpx.get(base + "/external/collections").json()
        assert len(ext["collections"]) >= 3
        assert ext["links"][0]["href"].startswith(base + "/external/")
        assert httpx.get(base + "/api/").json()["id"] == "eomatch-internal"
        assert httpx.post(base + "/api/collections", json={}).status_code == 401
        assert httpx.get(base + "/").status_code == 200
        assert "external/" in httpx.get(base + "/config.js").text
        status = subprocess.run(
            [sys.executable, "-m", "eomatch.cli.main_entry", "serve", "--status",
             "--run-dir", str(shared_tmp / "run")],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        assert '"external API": "up"' in status.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        # serve gives nginx and then its children one grace period each (5 + 10 s) before
        # killing; a loaded CI machine can need most of it
        out, _ = proc.communicate(timeout=45)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "external API" in text
    assert "eomatch serve: stopped" in text
    with pytest.raises(httpx.HTTPError):
        httpx.get(base + "/external/", timeout=2)
    assert not (shared_tmp / "run" / "serve.json").exists()


def test_serve_rejects_bad_numbers_before_starting_anything(tmp_path: Path, capsys) -> None:
    for flags in (["--workers", "0"], ["--port", "0"], ["--internal-port", "70000"]):
        assert main(["serve", "--run-dir", str(tmp_path / "run"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("eomatch serve: error: argument --")
        assert err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_serve_takes_ctrl_c_back_when_started_with_it_ignored() -> None:
    """A shell script's background job inherits SIGINT ignored; serve's Ctrl-C handler used to
    arrive only once the stack waited, so a Ctrl-C during start-up was lost and serve never
    stopped (the clean-clone CI hung in the stop test above). Regression test in a child
    started exactly that way."""
    code = (
        "import signal\n"
        "from eomatch.cli.serve import interruptible\n"
        "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
        "interruptible()\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "try:\n"
        "    signal.raise_signal(signal.SIGINT)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "interrupted"
