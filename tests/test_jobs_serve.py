"""``eomatch serve`` runs one job worker, supervised like the APIs (issue 13 §1): a job posted
through the gateway's ``/api/jobs`` runs, and a worker killed with ``-9`` is restarted."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from eomatch.io.db_target import DbTarget
from eomatch.io.pg_cluster import LocalCluster
from eomatch.io.pgstac_store import PgstacStore
from eomatch.service.stack import Backoff, Stack
from service_fixtures import _new_db, free_port, make_catalogue, pg_cluster  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("supervision")]
BACKOFF = Backoff(initial_s=0.1, factor=2.0, max_s=0.8, stable_s=3.0, report_after=4)


def _job(base: str, job_id: int, timeout: float = 40) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, object] = httpx.get(f"{base}/api/jobs/{job_id}", timeout=5).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_serve_runs_a_supervised_worker(pg_cluster: LocalCluster) -> None:  # noqa: F811
    if shutil.which("nginx", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is None:
        pytest.skip("nginx binary not installed")
    db = _new_db(pg_cluster)
    key = PgstacStore(db.role()).create_key("robot")
    auth = {"Authorization": f"Bearer {key}"}
    work = Path(tempfile.mkdtemp(prefix="eomatch-jobs-serve-", dir="/tmp"))
    work.chmod(0o755)  # the worker may run as the unprivileged API user
    cat = make_catalogue(work / "cat", n_events=1)
    for path in [cat, *cat.rglob("*")]:  # the catalogue keeps its index in the folder
        path.chmod(0o777 if path.is_dir() else 0o666)
    run_dir = work / "run"
    run_dir.mkdir()
    messages: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPASSFILE", str(pg_cluster.passfile))
        mp.setenv("EOMATCH_JOBS_POLL", "0.5")  # the worker's environment is serve's
        mp.setenv("EOMATCH_JOBS_INPUT_DIR", str(work))  # what API jobs may read
        stack = Stack(
            target=DbTarget("127.0.0.1", pg_cluster.port, db.dbname, None, None),
            run_dir=run_dir,
            port=free_port(),
            build_browser=False,
            backoff=BACKOFF,
            poll_s=0.05,
            report=messages.append,
            job_worker=True,
        )
        stack.start()
        stop = threading.Event()
        thread = threading.Thread(target=stack.wait, args=(stop,), daemon=True)
        thread.start()
        try:
            base = stack.base_url.rstrip("/")
            worker = next(a for a in stack.apis if a.mode == "worker")
            body = {"kind": "ingest", "params": {"catalogue": str(cat)}}
            r = httpx.post(f"{base}/api/jobs", json=body, headers=auth, timeout=10)
            assert r.status_code == 202, r.text
            job = _job(base, r.json()["id"])
            assert job["status"] == "succeeded", (job, worker.log.read_text()[-2000:])
            assert httpx.get(f"{base}/external/jobs", timeout=5).status_code == 404

            # kill -9: the supervisor restarts it and the queue keeps working
            old = worker.proc.pid
            os.kill(old, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while worker.proc.pid == old or not worker.alive():
                assert time.monotonic() < deadline, messages
                time.sleep(0.1)
            assert any("job worker" in m for m in messages), messages
            body["params"]["prune"] = True  # type: ignore[index]
            r = httpx.post(f"{base}/api/jobs", json=body, headers=auth, timeout=10)
            assert _job(base, r.json()["id"])["status"] == "succeeded"
        finally:
            stop.set()
            thread.join(10)
            stack.stop()
            shutil.rmtree(work, ignore_errors=True)
