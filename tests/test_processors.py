"""Processor plug-ins: the entry points, ``eomatch processors list``, ``eomatch process`` (dry
run and ingest, through the CLI), the built-in netcdf-cf and geotiff processors, the example
processor of docs/jobs-processors.md (run as written there), and a processor that raises."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eomatch.cli.main import main
from eomatch.errors import InputError, NotFoundError
from eomatch.io.object_store import LocalFolderStore
from eomatch.io.processors import installed_processors, load_processor
from eomatch.workflows.jobs import JobContext, get_kind
from eomatch.workflows.jobs.process_kind import ProcessParams, process_file
from job_kind_helpers import job_store, make_geotiff, make_netcdf
from service_fixtures import ServiceDb, pg_cluster, service_db

__all__ = ["pg_cluster", "service_db"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "jobs-processors.md"
CSV = (
    "station,lon,lat,time,value\n"
    "A1,2.35,48.85,2024-05-01T10:00:00Z,17.5\n"
    "B2,-3.7,40.4,2024-05-01T11:00:00Z,21.0\n"
)


@pytest.fixture
def example_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The docs' example processor, written out as the module ``insitu_example``."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Writing a processor", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    pkg = tmp_path / "plugins"
    pkg.mkdir()
    (pkg / "insitu_example.py").write_text(code.group(1), encoding="utf-8")
    monkeypatch.syspath_prepend(str(pkg))
    sys.modules.pop("insitu_example", None)
    return "insitu_example:InSituCsvProcessor"


@pytest.fixture
def db_env(service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in service_db.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PGUSER", "postgres")
    objects = tmp_path / "objects"
    monkeypatch.setenv("EOMATCH_STORAGE_DIR", str(objects))
    monkeypatch.setenv("EOMATCH_STORAGE_PUBLIC_URL", "https://cat.example.org/data/")
    return objects


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_builtins_are_entry_points_and_listed(capsys: pytest.CaptureFixture[str]) -> None:
    found = installed_processors()
    assert {"netcdf-cf", "geotiff"} <= set(found)
    listed = _json(capsys, "processors", "list", "--format", "json")
    names = {p["name"]: p for p in listed}
    assert names["netcdf-cf"]["target"] == "eomatch.io.processors.netcdf_cf:NetcdfCfProcessor"
    # the installed console script finds them too (entry points of the real install)
    script = Path(sys.executable).with_name("eomatch")
    out = subprocess.run(
        [str(script), "processors", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert {"netcdf-cf", "geotiff"} <= {p["name"] for p in json.loads(out.stdout)}
    with pytest.raises(NotFoundError, match=r"installed: .*geotiff"):
        load_processor("nonesuch")
    capsys.readouterr()
    assert main(["process", "nonesuch", "x.nc", "--dry-run"]) == 2
    assert "no processor 'nonesuch'" in capsys.readouterr().err


def test_docs_example_dry_run_then_ingest_through_the_cli(
    example_module: str,
    db_env: Path,
    service_db: ServiceDb,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    csv_file = tmp_path / "stations.csv"
    csv_file.write_text(CSV, encoding="utf-8")
    before = service_db.snapshot()
    dry = _json(capsys, "process", example_module, str(csv_file), "--dry-run")
    assert dry["type"] == "FeatureCollection"
    assert [f["id"] for f in dry["features"]] == ["stations-A1", "stations-B2"]
    assert dry["features"][0]["collection"] == "insitu"
    assert service_db.snapshot() == before  # a dry run touches nothing
    assert not db_env.exists()

    job_store(service_db, 0, "insitu")
    done = _json(capsys, "process", example_module, str(csv_file), "-m", "May", "--format", "json")
    assert [c["id"] for c in done["created"]] == ["stations-A1", "stations-B2"]
    stored = db_env / "insitu" / "stations-A1" / "stations.csv"
    assert stored.read_text(encoding="utf-8") == CSV
    rows = service_db.query(
        "SELECT id, content->'assets'->'data'->>'href', content->'properties'->>'insitu:value' "
        "FROM pgstac.items ORDER BY id"
    )
    href = "https://cat.example.org/data/insitu/stations-A1/stations.csv"
    assert rows == [("stations-A1", href, "17.5"), ("stations-B2", href, "21.0")]
    history = service_db.query(
        "SELECT kind, message, actor LIKE 'user:%' FROM eomatch.transactions WHERE kind='process'"
    )
    assert history == [("process", "May", True)]
    # again: the same items upserted, the same object
    again = _json(capsys, "process", example_module, str(csv_file), "--format", "json")
    assert again["created"] == []
    assert len(again["updated"]) == 2
    assert [p.name for p in db_env.rglob("*") if p.is_file()] == ["stations.csv"]


def test_a_processor_that_raises_fails_with_its_message(
    example_module: str, service_db: ServiceDb, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV + "C3,200.0,10.0,2024-05-01T12:00:00Z,1\n", encoding="utf-8")
    store = job_store(service_db, 31, "insitu")
    objects = LocalFolderStore(tmp_path / "objects")
    kind = get_kind("process")
    ctx = JobContext(job_id=31, store=store, _objects=lambda: objects)
    params = ProcessParams(processor=example_module, source=str(bad))
    with pytest.raises(InputError, match=r"failed on bad\.csv: station C3: 200\.0, 10\.0 is off"):
        kind.run(params, ctx)
    assert ctx.current_stage == "describe"
    assert service_db.query("SELECT count(*) FROM pgstac.items") == [(0,)]
    assert objects.list() == []
    not_mine = tmp_path / "notes.txt"
    not_mine.write_text("hello")
    with pytest.raises(InputError, match=r"does not handle notes\.txt"):
        kind.run(ProcessParams(processor=example_module, source=str(not_mine)), ctx)


def test_netcdf_cf_processor_as_a_job(service_db: ServiceDb, tmp_path: Path) -> None:
    store = job_store(service_db, 32, "comparisons")
    objects = LocalFolderStore(tmp_path / "objects", public_url="https://c.example.org/data/")
    nc = make_netcdf(tmp_path / "sst_vs_insitu.nc", variables=("sst_diff", "n_obs"))
    params = ProcessParams(processor="netcdf-cf", source=str(nc), collection="comparisons")
    with pytest.raises(NotFoundError, match="no collection 'elsewhere'"):
        get_kind("process").precheck(  # type: ignore[misc]
            params.model_copy(update={"collection": "elsewhere"}), store
        )
    result, _items = process_file(params, store, objects)
    assert result.created == [("comparisons", "sst_vs_insitu")]
    item = store.get_item("comparisons", "sst_vs_insitu")
    assert item is not None
    props = item["properties"]
    assert props["start_datetime"] == "2024-05-01T10:00:00Z"
    assert props["end_datetime"] == "2024-05-02T10:00:00Z"
    assert set(props["cube:variables"]) == {"sst_diff", "n_obs"}
    assert props["cube:variables"]["sst_diff"]["unit"] == "K"
    assert item["bbox"] == [2.0, 40.0, 3.5, 41.0]
    assert item["assets"]["data"]["href"] == (
        "https://c.example.org/data/comparisons/sst_vs_insitu/sst_vs_insitu.nc"
    )
    assert objects.exists("comparisons/sst_vs_insitu/sst_vs_insitu.nc")
    # no CF coordinates: the processor refuses with its reason
    import xarray as xr

    xr.Dataset({"v": (("a",), [1.0, 2.0])}).to_netcdf(tmp_path / "bare.nc")
    with pytest.raises(InputError, match="no CF latitude/longitude"):
        process_file(
            ProcessParams(processor="netcdf-cf", source=str(tmp_path / "bare.nc")),
            store,
            objects,
            dry_run=True,
        )


def test_geotiff_processor_dry_run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tif = make_geotiff(tmp_path / "scene 7.tif", size=64, bands=1)
    dry = _json(capsys, "process", "geotiff", str(tif), "--dry-run")
    (feature,) = dry["features"]
    assert feature["id"] == "scene_7"
    assert feature["properties"]["proj:epsg"] == 32631
    assert feature["properties"]["datetime"] == "2024-05-01T10:30:00Z"
    assert feature["assets"]["data"]["href"] == tif.resolve().as_uri()
    assert feature["assets"]["data"]["file:size"] == tif.stat().st_size
    assert "collection" not in feature


def test_missing_data_extra_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tif = make_geotiff(tmp_path / "x.tif", size=32, bands=1)
    monkeypatch.setitem(sys.modules, "rio_stac", None)  # as if the data extra were absent
    capsys.readouterr()
    assert main(["process", "geotiff", str(tif), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "pip install 'eomatch[data]'" in err
    assert "failed on" not in err  # the hint itself, not a processor failure
