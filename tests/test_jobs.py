"""The job queue end to end (issue 13 §1, §2, §5): real PostgreSQL, real ``eomatch worker``
processes, the CLI through its entry point and the internal API over HTTP (in process).

* an ``ingest`` job submitted through the CLI and through ``POST /jobs``: the items appear in
  both APIs, the history names the job and its submitter;
* bad input (unknown kind, bad params, a missing folder, an unknown collection) is a 4xx with
  a reason and queues nothing; the external API has no job routes;
* a worker killed with ``-9`` mid-job: another worker re-runs it to completion, the item is
  changed once;
* the database stopped mid-job (a cluster of this test's own): the job is retried and ends;
* a job that keeps failing ends ``failed`` with its stage and reason; cancel; retry;
* a schedule fires and submits a job (every 2 s, a 6-field cron).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eomatch.io.job_queue import JobQueue, JobRecord
from eomatch.io.pgstac_store import PgstacStore
from service_fixtures import *  # noqa: F403
from service_fixtures import ServiceDb, api_pair_in_process, http, make_catalogue

FAST = {
    "EOMATCH_JOBS_DIAGNOSTIC": "1",
    "EOMATCH_JOBS_HEARTBEAT": "0.5",
    "EOMATCH_JOBS_STALLED_AFTER": "3",
    "EOMATCH_JOBS_BACKOFF": "1",
    "EOMATCH_JOBS_MAX_ATTEMPTS": "3",
    "EOMATCH_JOBS_POLL": "0.5",
}


def _env(db: ServiceDb, **extra: str) -> dict[str, str]:
    env = {**os.environ, **db.env(), **FAST, **extra}
    env.pop("PGUSER", None)
    env.pop("PGPASSWORD", None)
    return env


def eomatch(db: ServiceDb, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The real CLI entry point in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "eomatch", *args],
        env=_env(db, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def cli(
    service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """The CLI in this process (``main(argv)``) on the test database: (code, stdout, stderr)."""
    for name, value in service_db.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PGUSER", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*argv: str) -> tuple[int, str, str]:
        from eomatch.cli.main import main

        capsys.readouterr()
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@contextlib.contextmanager
def worker(db: ServiceDb, log: Path, *args: str, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """An ``eomatch worker`` process, stopped (SIGTERM, then kill) at the end."""
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eomatch", "worker", *args],
            env=_env(db, **extra),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def queue(db: ServiceDb) -> JobQueue:
    return JobQueue(db.role("eomatch_ingest"))


def wait_for(
    db: ServiceDb, job_id: int, until: Any, timeout: float = 30, log: Path | None = None
) -> JobRecord:
    deadline = time.monotonic() + timeout
    while True:
        job = queue(db).get(job_id)
        if until(job):
            return job
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise AssertionError(f"job {job_id} still {job.to_json()}\n{tail}")
        time.sleep(0.1)


def ended(job: JobRecord) -> bool:
    return job.status in ("succeeded", "failed", "cancelled")


def item(coll: str, item_id: str, n: int = 1) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": coll,
        "geometry": {"type": "Point", "coordinates": [1.0, 2.0]},
        "bbox": [1.0, 2.0, 1.0, 2.0],
        "properties": {"datetime": "2022-05-06T12:00:00Z", "n": n},
        "assets": {"data": {"href": "https://example.org/a.nc"}},
        "links": [],
    }


def collection(coll: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": coll,
        "description": "test",
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


def job_count(db: ServiceDb) -> int:
    return int(db.query("SELECT count(*) FROM public.procrastinate_jobs")[0][0])  # type: ignore[call-overload]


def changes_of(db: ServiceDb, item_id: str) -> list[tuple[object, ...]]:
    return db.query(
        "SELECT t.actor, t.kind, c.op FROM eomatch.changes c JOIN eomatch.transactions t "
        "ON t.id = c.tx WHERE c.kind = 'item' AND c.id = %s ORDER BY c.seq",
        item_id,
    )


# --- end to end ----------------------------------------------------------------------------------


def test_ingest_jobs_through_cli_and_http(
    service_db: ServiceDb, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = service_db
    cat = make_catalogue(tmp_path / "cat", n_events=2)
    key = PgstacStore(db.role()).create_key("alice")
    auth = {"Authorization": f"Bearer {key}"}
    log = tmp_path / "worker.log"
    inputs = {"EOMATCH_JOBS_INPUT_DIR": str(tmp_path)}  # what API jobs may read
    monkeypatch.setenv("EOMATCH_JOBS_INPUT_DIR", str(tmp_path))  # the in-process API's
    with worker(db, log, **inputs), api_pair_in_process(db) as (internal, external):
        # through the CLI, waiting with progress
        r = eomatch(db, "jobs", "submit", "ingest", "--param", f"catalogue={cat}", "--wait",
                    "--timeout", "60", "--format", "json")  # fmt: skip
        assert r.returncode == 0, r.stderr + log.read_text()[-3000:]
        done = json.loads(r.stdout)
        assert done["status"] == "succeeded", done
        assert done["submitter"].startswith("user:")
        assert done["result"]["info"]["inserted"] > 0
        assert [s["name"] for s in done["stages"]] == ["start", "ingest"]
        items = db.query("SELECT collection, id FROM pgstac.items ORDER BY 1, 2")
        assert items
        actors = {a for (a,) in db.query("SELECT DISTINCT actor FROM eomatch.transactions")}
        assert f"job:{done['id']} ({done['submitter']})" in actors

        # through HTTP: a key is needed to submit; status and listing readable
        body = {"kind": "ingest", "params": {"catalogue": str(cat), "prune": True}}
        assert http.post(f"{internal.url}/jobs", json=body).status_code == 401
        r2 = http.post(f"{internal.url}/jobs", json=body, headers=auth)
        assert r2.status_code == 202, r2.text
        assert r2.json()["status"] == "queued"
        job_id = r2.json()["id"]
        job = wait_for(db, job_id, ended, log=log)
        assert job.status == "succeeded", job.to_json()
        assert job.submitter == "key:alice"
        assert job.result is not None
        assert job.result["info"]["unchanged"] == len(items)  # nothing changed: idempotent
        got = http.get(f"{internal.url}/jobs/{job_id}").json()
        assert got["status"] == "succeeded"
        assert got["links"][0]["href"].endswith(f"/jobs/{job_id}")
        listed = http.get(f"{internal.url}/jobs", params={"submitter": "key:alice"}).json()
        assert [j["id"] for j in listed["jobs"]] == [job_id]
        assert listed["total"] == 1
        failed = http.get(f"{internal.url}/jobs", params={"status": "failed"}).json()
        assert failed["total"] == 0

        # the ingested items are in both APIs
        coll, item_id = items[0]
        for api in (internal, external):
            r3 = http.get(f"{api.url}/collections/{coll}/items/{item_id}")
            assert r3.status_code == 200, r3.text

        # bq-stac's status shape
        st = http.get(f"{internal.url}/status", params={"id": str(job_id)}).json()
        assert st["_id"] == str(job_id)
        assert st["_status"] == "ok"
        assert st["_operation"] == "PROCESS FINISHED"
        assert st["_param"]["catalogue"] == str(cat)
        every = http.get(f"{internal.url}/status/all").json()
        assert {s["_id"] for s in every} == {str(job_id), str(done["id"])}

        # bad input: 4xx with a reason, nothing queued
        before = job_count(db)
        bad: list[tuple[str, Any, int, str]] = [
            ("/jobs", {"kind": "nope", "params": {}}, 400, "unknown job kind"),
            ("/jobs", {"kind": "ingest", "params": {"catalogue": str(cat), "x": 1}}, 400, "x"),
            ("/jobs", {"kind": "ingest", "params": {}}, 400, "catalogue"),
            ("/jobs", {"kind": "ingest", "params": {"catalogue": "/no/such"}}, 400, "folder"),
            ("/jobs", {"kind": "ingest", "params": []}, 400, "object"),
            ("/jobs", {"kind": "sleep", "params": {}}, 400, "unknown job kind"),
            ("/jobs", [1], 400, "object"),
            (
                "/newitem",
                {
                    "collection_id": "nope",
                    "file_source_host": "https://x/a.tif",
                    "date": "2018-01-01",
                    "name": "a",
                },
                404,
                "nope",
            ),
            ("/newitem", {"collection_id": "c"}, 400, "file_source_host"),
            ("/newitem", {"collection_id": "c", "file_source_host": "h", "bogus": 1}, 400, "bogus"),
        ]
        for path, payload, status, word in bad:
            r4 = http.post(f"{internal.url}{path}", json=payload, headers=auth)
            assert r4.status_code == status, (path, payload, r4.text)
            assert word in r4.json()["description"], r4.text
        r5 = http.post(f"{internal.url}/jobs", content=b"{not json", headers=auth)
        assert r5.status_code == 400
        assert job_count(db) == before
        assert http.get(f"{internal.url}/jobs/999999").status_code == 404
        assert http.get(f"{internal.url}/jobs/abc").status_code == 404
        assert http.get(f"{internal.url}/jobs", params={"status": "x"}).status_code == 400
        assert http.get(f"{internal.url}/status").status_code == 400
        kinds = {k["name"]: k for k in http.get(f"{internal.url}/jobs/kinds").json()}
        assert "catalogue" in kinds["ingest"]["params"]["required"]
        assert "sleep" not in kinds
        # ended jobs cannot be cancelled; succeeded ones not retried
        assert http.post(f"{internal.url}/jobs/{job_id}/cancel", headers=auth).status_code == 409
        assert http.post(f"{internal.url}/jobs/{job_id}/retry", headers=auth).status_code == 409
        # the external API has none of it
        for path in ("/jobs", f"/jobs/{job_id}", "/status/all"):
            assert http.get(f"{external.url}{path}").status_code == 404
        assert http.post(f"{external.url}/jobs", json=body, headers=auth).status_code in (404, 405)

    # the CLI's list, status, bad input (in process: the entry point ran above)
    code, out, err = cli("jobs", "list", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["total"] == 2
    code, out, err = cli("jobs", "status", str(job_id))
    assert code == 0
    assert "succeeded" in out
    code, out, err = cli("jobs", "submit", "nope")
    assert code == 2
    assert "unknown job kind" in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = cli("jobs", "submit", "ingest", "--param", "catalogue=/no/such")
    assert code == 2
    assert "not a folder" in err
    code, out, err = cli("jobs", "submit", "ingest", "--param", "oops")
    assert code == 2
    assert "KEY=VALUE" in err
    assert job_count(db) == before


# --- robustness ----------------------------------------------------------------------------------


def _seed(db: ServiceDb, coll: str) -> None:
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT create_collection(%s::jsonb)", (json.dumps(collection(coll)),))


def _submit_sleep(db: ServiceDb, **params: Any) -> int:
    """Queue a diagnostic ``sleep`` job (registered in the workers only: straight to the queue)."""
    return queue(db).submit("sleep", params, "user:test")


@pytest.mark.slow
def test_worker_killed_mid_job_is_rerun_once(service_db: ServiceDb, tmp_path: Path) -> None:
    db = service_db
    _seed(db, "K")
    log = tmp_path / "worker.log"
    job_id = _submit_sleep(db, seconds=2.0, item=item("K", "k1"))
    with worker(db, log, "--concurrency", "2") as first:
        wait_for(db, job_id, lambda j: j.stage == "sleep", log=log)
        with worker(db, log):  # starting while the first one works; it cannot take the job
            first.send_signal(signal.SIGKILL)
            first.wait(5)
            assert queue(db).get(job_id).status == "running"  # the dead worker's: stalled
            assert db.query("SELECT count(*) FROM pgstac.items WHERE id = 'k1'")[0][0] == 0
            job = wait_for(db, job_id, ended, timeout=40, log=log)
    assert job.status == "succeeded", job.to_json()
    assert job.attempts == 2
    assert [s["name"] for s in job.stages].count("start") == 2
    # the effect happened once: one insert of the item, by the job
    assert changes_of(db, "k1") == [(f"job:{job_id} (user:test)", "job", "insert")]


def test_failures_cancel_retry(service_db: ServiceDb, tmp_path: Path, cli: Any) -> None:
    db = service_db
    log = tmp_path / "worker.log"
    with worker(db, log, "--concurrency", "3"):
        permanent = _submit_sleep(db, fail="permanent", fail_attempts=1)
        transient = _submit_sleep(db, fail="transient")
        long = _submit_sleep(db, seconds=60)
        job = wait_for(db, permanent, ended, log=log)
        assert job.status == "failed"
        assert job.attempts == 1  # not retried: not transient
        assert job.error == {"stage": "fail", "reason": "diagnostic permanent failure",
                             "final": True}  # fmt: skip
        # retry through the CLI: the second attempt succeeds
        code, out, err = cli("jobs", "retry", str(permanent))
        assert code == 0, err
        code, out, err = cli("jobs", "wait", str(permanent), "--timeout", "30")
        assert code == 0, err + out
        assert queue(db).get(permanent).error is None

        # transient: retried with backoff (1, 1 s) up to 3 attempts, then failed with the reason
        job = wait_for(db, transient, ended, timeout=30, log=log)
        assert job.status == "failed", job.to_json()
        assert job.attempts == 3
        assert job.error is not None
        assert job.error["stage"] == "fail"
        assert "diagnostic transient failure (attempt 3)" in job.error["reason"]
        code, out, err = cli("jobs", "wait", str(transient), "--timeout", "5")
        assert code == 1
        assert "error at stage fail" in out

        # cancel a running job: it stops at its next check
        wait_for(db, long, lambda j: j.status == "running", log=log)
        code, out, err = cli("jobs", "cancel", str(long), "--format", "json")
        assert code == 0, err
        asked = json.loads(out)
        # the worker may have stopped it already between the request and the read-back
        assert asked["cancel_requested"] is True or asked["status"] == "cancelled", asked
        job = wait_for(db, long, ended, timeout=15, log=log)
        assert job.status == "cancelled"
        assert job.error is not None
        assert job.error["reason"] == "cancelled"
        code, out, err = cli("jobs", "cancel", str(long))
        assert code == 2
        assert "only a queued or running job" in err
    # cancel a queued job (no worker running)
    queued = _submit_sleep(db, seconds=1)
    assert queue(db).cancel(queued).status == "cancelled"
    code, out, err = cli("jobs", "list", "--status", "cancelled", "--format", "json")
    assert {j["id"] for j in json.loads(out)["jobs"]} == {long, queued}


def test_schedule_fires_and_lists(service_db: ServiceDb, tmp_path: Path, cli: Any) -> None:
    db = service_db
    cat = make_catalogue(tmp_path / "cat", n_events=1)
    config = tmp_path / "config.yaml"
    config.write_text(
        "schedules:\n"
        "  - name: nightly-ingest\n"
        "    cron: '* * * * * */2'\n"
        "    kind: ingest\n"
        f"    params: {{catalogue: '{cat}'}}\n"
        "  - name: weekly\n"
        "    cron: '@daily'\n"
        "    kind: ingest\n"
        f"    params: {{catalogue: '{cat}'}}\n"
        "    enabled: false\n"
    )
    code, out, err = cli("--config", str(config), "jobs", "schedules", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [s["name"] for s in rows] == ["nightly-ingest", "weekly"]
    assert rows[0]["next"] is not None
    assert rows[1]["next"] is None
    log = tmp_path / "worker.log"
    with worker(db, log, "--config", str(config)):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs, _ = queue(db).list(submitter="schedule:nightly-ingest", status="succeeded")
            if jobs:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(log.read_text()[-3000:])
    assert jobs[0].schedule == "nightly-ingest"
    assert jobs[0].kind == "ingest"
    assert db.query("SELECT count(*) FROM pgstac.items")[0][0] > 0
    code, out, err = cli("jobs", "list", "--kind", "ingest", "--format", "json")
    assert code == 0, err
    assert {j["submitter"] for j in json.loads(out)["jobs"]} == {"schedule:nightly-ingest"}

    # bad schedules: one line each, the worker does not start
    for text, word in (
        ("schedules: [{name: a, cron: '61 * * * *', kind: ingest}]", "cron"),
        ("schedules: [{name: a, cron: '@daily', kind: nope}]", "unknown job kind"),
        ("schedules: [{name: a, cron: '@daily', kind: ingest, params: {x: 1}}]", "catalogue"),
    ):
        config.write_text(text + "\n")
        code, out, err = cli("--config", str(config), "worker")
        assert code != 0
        assert word in err, err
        assert len(err.strip().splitlines()) == 1, err
    # no database: one line at once
    config.write_text("schedules: []\n")
    code, out, err = cli("--config", str(config), "worker", "--db-port", "1")
    assert code == 2
    assert "cannot connect to the database" in err
    assert len(err.strip().splitlines()) == 1, err


@contextlib.contextmanager
def own_cluster() -> Iterator[tuple[Any, ServiceDb]]:
    """A cluster of the test's own (it is stopped and started), removed at the end."""
    import shutil
    import tempfile

    from eomatch.io.pg_cluster import LocalCluster
    from service_fixtures import free_port

    parent = Path(tempfile.mkdtemp(prefix="eomatch-jobs-pg-", dir="/tmp"))
    parent.chmod(0o711)  # as service_fixtures: the postgres user must reach it
    cluster = LocalCluster(parent / "db")
    cluster.init(port=free_port())
    try:
        yield cluster, ServiceDb(cluster, cluster.dbname)
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.slow
def test_database_restart_mid_job(tmp_path: Path) -> None:
    """A cluster of this test's own, stopped while a job runs and started again: the job (its
    pooled connections wait up to 30 s, else the attempt fails and is retried) ends succeeded
    once the database is back, and the worker keeps serving the queue."""
    with own_cluster() as (cluster, db):
        _seed(db, "R")
        log = tmp_path / "worker.log"
        job_id = _submit_sleep(db, seconds=1.0, item=item("R", "r1"))
        with worker(db, log) as proc:
            wait_for(db, job_id, lambda j: j.stage == "sleep", log=log)
            cluster.stop()
            time.sleep(3)  # the job reaches its upsert meanwhile: it waits or fails and retries
            cluster.start()
            back = db.query("SELECT now()")[0][0]
            job = wait_for(db, job_id, ended, timeout=45, log=log)
            assert proc.poll() is None  # the worker lived through it
            assert job.status == "succeeded", (job.to_json(), log.read_text()[-3000:])
            assert job.finished_at is not None
            assert job.finished_at >= back  # type: ignore[operator]
            # the queue keeps working after the restart
            after = _submit_sleep(db, seconds=0)
            assert wait_for(db, after, ended, timeout=20, log=log).status == "succeeded"
        assert [op for (_, _, op) in changes_of(db, "r1")] == ["insert"]


@pytest.mark.slow
def test_everything_restarted_mid_job(tmp_path: Path) -> None:
    """A restart of everything (issue 13 §1), as a power cut does it: the worker killed with -9
    and the database stopped while a job runs, both started again. The job is found stalled,
    run again and ends succeeded, its effect (an item insert) made once; the queue goes on."""
    with own_cluster() as (cluster, db):
        _seed(db, "E")
        log = tmp_path / "worker.log"
        job_id = _submit_sleep(db, seconds=2.0, item=item("E", "e1"))
        with worker(db, log) as first:
            wait_for(db, job_id, lambda j: j.stage == "sleep", log=log)
            first.send_signal(signal.SIGKILL)
            cluster.stop()
            first.wait(5)
        cluster.start()
        assert queue(db).get(job_id).status == "running"  # nobody finished it
        assert db.query("SELECT count(*) FROM pgstac.items WHERE id = 'e1'")[0][0] == 0
        with worker(db, log) as second:
            job = wait_for(db, job_id, ended, timeout=60, log=log)
            assert job.status == "succeeded", (job.to_json(), log.read_text()[-3000:])
            assert job.attempts == 2
            after = _submit_sleep(db, seconds=0)
            assert wait_for(db, after, ended, timeout=20, log=log).status == "succeeded"
            assert second.poll() is None
        assert changes_of(db, "e1") == [(f"job:{job_id} (user:test)", "job", "insert")]
