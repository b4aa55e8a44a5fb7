"""The run configuration: keys, defaults, legacy forms, regions, layering, EOMatchContext."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from eomatch.config.models import (
    CollectionSpec,
    CrossoverSettings,
    MatchupCatalogueConfig,
    RunConfig,
    SatelliteSpec,
    SensorConfig,
    SensorSpec,
    SiteConfig,
    StacSourceConfig,
)
from eomatch.config.settings import Settings
from eomatch.context import EOMatchContext
from eomatch.core.products import SensorKey
from eomatch.errors import EomatchError
from eomatch.io.config_files import load_config, package_defaults, template_text
from eomatch.wiring import build_registry
from eomatch.workflows.crossovers import find_crossovers

PAIR = (
    "sensors:\n  - {platform: S2A, collection: S2_MSI_L1C}\n"
    "  - {platform: LS9, collection: LANDSAT_C2L1}\n"
)


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, **kw) -> RunConfig:
    return load_config(write(tmp_path, text), None, **kw)


def error(tmp_path: Path, text: str, **kw) -> str:
    path = write(tmp_path, text)
    with pytest.raises(EomatchError) as info:
        load_config(path, None, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    return msg.removeprefix(f"{path}: ")


@pytest.fixture(autouse=True)
def _no_user_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(tmp_path / "no-user-config"))


# --- defaults ------------------------------------------------------------------------------------


def test_defaults():
    cfg = RunConfig()
    assert cfg.sensors == []
    assert cfg.collections == []
    assert cfg.sites == []
    assert cfg.start_time is None
    assert cfg.end_time is None
    assert cfg.region_bboxes() == []
    assert cfg.region_bbox() is None
    assert cfg.crossovers == CrossoverSettings(
        max_distance_km=100.0,
        max_time_diff_s=1800,
        max_event_duration_s=900,
        daylight_only=False,
        max_lat_abs=None,
    )
    assert cfg.min_collocation_area_km2 == 0.0
    assert cfg.stac_sources == {}
    assert cfg.matchup_catalogue.model_dump() == {
        "path": None,
        "id": "matchup-catalogue",
        "description": "Matchup catalogue",
    }
    assert cfg.run_problems()


def test_package_defaults_file_matches_model_and_is_loaded():
    assert RunConfig.model_validate(package_defaults()).model_dump() == RunConfig().model_dump()
    assert set(package_defaults()) == set(RunConfig.model_fields) - {"base_dir"}
    assert load_config(None, None).model_dump() == RunConfig().model_dump()


def test_every_field_has_a_description():
    def walk(model: type[BaseModel]):
        for name, field in model.model_fields.items():
            if name != "base_dir":
                yield model.__name__, name, field

    models = (
        RunConfig,
        SensorConfig,
        CollectionSpec,
        SiteConfig,
        CrossoverSettings,
        StacSourceConfig,
        MatchupCatalogueConfig,
    )
    missing = [
        f"{m}.{n}"
        for model in models
        for m, n, f in walk(model)
        if not f.description and n != "description"
    ]
    assert missing == []


# --- every key -----------------------------------------------------------------------------------

FULL = """
satellites:
  - {short_name: MYSAT, norad_id: 99999, aliases: [my-sat], sensors: [{name: CAM, swath_km: 50}]}
tle_dirs: [tles]
sensors:
  - {platform: sentinel-2a, collection: S2_MSI_L1C}
  - {platform: Landsat-9, collection: LANDSAT_C2L1, source: stac, stac_source: usgs}
  - {platform: my-sat, collection: MY_CAM, source: predicted}
collections:
  - {id: MY_CAM, sensor: CAM, swath_km: 50, scene_s: 10, platforms: [MYSAT], description: mine}
start_time: 2022-05-01T00:00:00Z
end_time: 2022-06-01
bbox: [-10, 35, 30, 60]
crossovers:
  max_distance_km: 50
  max_time_diff_s: 600
  max_event_duration_s: 300
  daylight_only: true
  max_lat_abs: 70
min_collocation_area_km2: 25.5
stac_sources:
  usgs:
    url: https://stac.example.org/v1
    collections: {LANDSAT_C2L1: landsat-c2l1}
    headers_env: {Authorization: EOMATCH_TEST_TOKEN}
    page_size: 50
    max_retries: 5
matchup_catalogue: {path: out/catalogue, id: my-cat, description: My matchups}
"""


def test_every_key(tmp_path, monkeypatch):
    cfg = load(tmp_path, FULL)
    assert cfg.resolved_tle_dirs() == [tmp_path / "tles"]
    assert cfg.start_time == datetime(2022, 5, 1, tzinfo=UTC)
    assert cfg.end_time == datetime(2022, 6, 1, tzinfo=UTC)
    assert cfg.window() == (cfg.start_time, cfg.end_time)
    assert cfg.region_bbox() == (-10, 35, 30, 60)
    assert cfg.min_collocation_area_km2 == 25.5
    assert cfg.matchup_catalogue.path == tmp_path / "out" / "catalogue"
    assert cfg.matchup_catalogue.id == "my-cat"
    assert cfg.matchup_catalogue.description == "My matchups"
    assert cfg.run_problems() == []
    reg = build_registry(cfg)
    assert cfg.resolved_sensors(reg) == [
        SensorKey("S2_MSI_L1C", "Sentinel-2A"),
        SensorKey("LANDSAT_C2L1", "Landsat-9"),
        SensorKey("MY_CAM", "MYSAT"),
    ]
    resolved = cfg.resolve_sensors(reg)
    assert [r.source for r in resolved] == ["predicted", "stac", "predicted"]
    assert resolved[1].stac_source == "usgs"
    assert resolved[1].stac is cfg.stac_sources["usgs"]
    assert resolved[2].collection.swath_km == 50
    assert resolved[2].collection.scene_s == 10
    src = cfg.stac_sources["usgs"]
    assert (src.page_size, src.max_retries) == (50, 5)
    assert src.provider_collection("LANDSAT_C2L1") == "landsat-c2l1"
    assert src.provider_collection("S2_MSI_L1C") == "S2_MSI_L1C"
    monkeypatch.setenv("EOMATCH_TEST_TOKEN", "Bearer s3cret")
    assert src.headers("usgs") == {"Authorization": "Bearer s3cret"}
    monkeypatch.delenv("EOMATCH_TEST_TOKEN")
    with pytest.raises(
        EomatchError,
        match=r"stac_sources\.usgs: environment variable "
        "EOMATCH_TEST_TOKEN",
    ):
        src.headers("usgs")


def test_crossover_kwargs_fit_find_crossovers(tmp_path):
    cfg = load(tmp_path, FULL)
    kw = cfg.crossover_kwargs()
    assert kw == {
        "max_distance_km": 50.0,
        "max_time_diff_s": 600,
        "max_event_duration_s": 300,
        "daylight_only": True,
        "max_lat_abs": 70.0,
        "bbox": (-10.0, 35.0, 30.0, 60.0),
    }
    inspect.signature(find_crossovers).bind(["S2A", "LS9"], cfg.start_time, cfg.end_time, **kw)


def test_crossover_kwargs_run_find_crossovers(tmp_path):
    cfg = load(
        tmp_path,
        PAIR + "start_time: 2022-05-01\nend_time: 2022-05-02\n"
        "crossovers: {max_distance_km: 100}\nmin_lat: 0\n",
    )
    names = [k.platform for k in cfg.resolved_sensors(build_registry(cfg))]
    events = find_crossovers(names, *cfg.window(), **cfg.crossover_kwargs(), workers=1)
    assert events
    assert all(e.lat_a >= 0 for e in events)


# --- legacy forms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platforms", "collections"),
    [
        ("S2A, Landsat-9", "S2_MSI_L1C, LANDSAT_C2L1"),
        ("[S2A, Landsat-9]", "[S2_MSI_L1C, LANDSAT_C2L1]"),
        ("'S2A,Landsat-9,'", "'S2_MSI_L1C ,LANDSAT_C2L1'"),
    ],
)
def test_legacy_platforms_collections(tmp_path, platforms, collections):
    cfg = load(tmp_path, f"platforms: {platforms}\ncollections: {collections}\n")
    assert [(s.platform, s.collection, s.source) for s in cfg.sensors] == [
        ("S2A", "S2_MSI_L1C", "predicted"),
        ("Landsat-9", "LANDSAT_C2L1", "predicted"),
    ]
    assert cfg.collections == []
    assert cfg.resolved_sensors(build_registry(cfg)) == [
        SensorKey("S2_MSI_L1C", "Sentinel-2A"),
        SensorKey("LANDSAT_C2L1", "Landsat-9"),
    ]


def test_previous_generation_example_file(tmp_path):
    cfg = load(
        tmp_path,
        "platforms: S2A, Landsat-9\ncollections: S2_MSI_L1C, LANDSAT_C2L1\n"
        "start_time: 2022-05-21 08:35:00\nend_time: '2022-05-21 08:59:00'\n"
        "min_lat:\nmax_lat:\nmin_lon:\nmax_lon:\nexclude_night_events: false\n"
        "space_diff_threshold: 100.0\ntime_diff_threshold: 1800\n"
        "matchup_catalogue: {path: ./catalogue, id: matchup-catalogue, "
        "description: Matchup catalogue}\n",
    )
    assert cfg.start_time == datetime(2022, 5, 21, 8, 35, tzinfo=UTC)
    assert cfg.end_time == datetime(2022, 5, 21, 8, 59, tzinfo=UTC)
    assert cfg.region_bbox() is None
    assert cfg.matchup_catalogue.path == tmp_path / "catalogue"
    assert cfg.run_problems() == []


def test_legacy_thresholds_move_into_crossovers(tmp_path):
    cfg = load(
        tmp_path, "space_diff_threshold: 42\ntime_diff_threshold: 60\nexclude_night_events: true\n"
    )
    assert cfg.crossovers.max_distance_km == 42
    assert cfg.crossovers.max_time_diff_s == 60
    assert cfg.crossovers.daylight_only is True
    # agreeing duplicates are fine; the same layer saying two things is not
    cfg = load(tmp_path, "space_diff_threshold: 42\ncrossovers: {max_distance_km: 42}\n")
    assert cfg.crossovers.max_distance_km == 42
    msg = error(tmp_path, "space_diff_threshold: 42\ncrossovers: {max_distance_km: 50}\n")
    assert msg.startswith("space_diff_threshold: conflicts with crossovers.max_distance_km")
    assert error(tmp_path, "time_diff_threshold: -1\n").startswith(
        "crossovers.max_time_diff_s: Input should be greater than or equal to 0"
    )


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("platforms: S2A, LS9\ncollections: S2_MSI_L1C\n", "collections: 1 collection(s) for 2"),
        ("platforms: S2A, LS9\n", "platforms: needs collections:"),
        ("collections: S2_MSI_L1C\n", "collections: a list of collection ids needs platforms"),
        ("platforms: 3\ncollections: S2_MSI_L1C\n", "platforms: give a comma-separated string"),
        ("platforms: ' , '\ncollections: S2_MSI_L1C\n", "platforms: no names given"),
        (PAIR + "platforms: S2A\ncollections: S2_MSI_L1C\n", "platforms: give either sensors"),
        ("custom_satellites: []\n", "custom_satellites: no longer used (use satellites:"),
        ("orbitx_netcdf_pathh: x.nc\n", "orbitx_netcdf_pathh: Extra inputs are not permitted"),
        ("ingest: {db_passwd: x}\n", "ingest.db_passwd: Extra inputs are not permitted"),
    ],
)
def test_legacy_errors(tmp_path, text, start):
    assert error(tmp_path, text).startswith(start)


# The previous generation's example run file (previous-generation.md §5.2), every key of its
# table that means nothing now included: it loads, with one warning per retired key.
PREVIOUS_GENERATION_RUN = """\
platforms: S2A, Landsat-9
collections: S2_MSI_L1C, LANDSAT_C2L1
start_time: 2022-05-21 08:35:00
end_time: 2022-05-21 08:59:00
min_lat:
max_lat:
min_lon:
max_lon:
exclude_antimeridian_events: false
exclude_night_events: false
orbitx_netcdf_files: {}
orbitx_netcdf_path:
propagation_sampling_interval: 30
interpolation_sampling_interval: 1
space_diff_threshold: 100.0
time_diff_threshold: 1800
check_before: false
check_after: false
has_land_ocean_mask: false
custom_satellites_note: x
dump_orbit: false
provider_by_collection: {S2_MSI_L1C: cop_dataspace}
matchup_catalogue: {path: ./catalogue, id: matchup-catalogue, description: Matchup catalogue,
                    auto_remove_corrupted: false}
ingest: {db_host: localhost, db_port: 5432, db_name: eomatch, db_user: eomatch, db_password: x}
read: {defaults: {vars_sel: {meas: [], aux: []}}}
preview: {read: {defaults: {vars_sel: {meas: rgb}}}}
api: {preferred_api: cop_dataspace}
eodag: {cop_dataspace: {priority: 7}}
RadCalNet: {credentials: {}}
fs: {store_prod_dict_in_stac: false}
"""
RETIRED = [
    "exclude_antimeridian_events",
    "orbitx_netcdf_files",
    "propagation_sampling_interval",
    "interpolation_sampling_interval",
    "check_before",
    "check_after",
    "has_land_ocean_mask",
    "dump_orbit",
    "provider_by_collection",
    "matchup_catalogue.auto_remove_corrupted",
    "ingest.db_password",
    "read",
    "preview",
    "api",
    "eodag",
    "RadCalNet",
    "fs",
]  # orbitx_netcdf_path is null there: "not set", nothing to warn about


def test_previous_generation_run_file_loads_with_one_warning_per_retired_key(tmp_path, caplog):
    text = PREVIOUS_GENERATION_RUN.replace("custom_satellites_note: x\n", "")
    path = write(tmp_path, text)
    with caplog.at_level("WARNING"):
        cfg = load_config(path, None)
    lines = [r.getMessage() for r in caplog.records]
    assert all(line.startswith(f"{path}: ") for line in lines)
    warned = [line.removeprefix(f"{path}: ").split(": ", 1)[0] for line in lines]
    assert sorted(warned) == sorted(RETIRED)  # one each, nothing else
    assert all("retired and ignored (" in line for line in lines)
    # what still means something was kept and translated
    assert [(s.platform, s.collection) for s in cfg.sensors] == [
        ("S2A", "S2_MSI_L1C"),
        ("Landsat-9", "LANDSAT_C2L1"),
    ]
    assert cfg.start_time == datetime(2022, 5, 21, 8, 35, tzinfo=UTC)
    assert cfg.stop_time == cfg.end_time == datetime(2022, 5, 21, 8, 59, tzinfo=UTC)
    assert cfg.crossovers.max_distance_km == 100.0
    assert cfg.crossovers.max_time_diff_s == 1800
    assert cfg.matchup_catalogue.path == tmp_path / "catalogue"
    assert cfg.ingest.db_host == "localhost"
    assert cfg.run_problems() == []


def test_a_truly_unknown_key_beside_retired_ones_is_still_an_error(tmp_path, caplog):
    msg = error(tmp_path, PREVIOUS_GENERATION_RUN)
    assert msg.startswith("custom_satellites_note: Extra inputs are not permitted")


def test_retired_keys_also_warn_through_run_config(caplog):
    with caplog.at_level("WARNING"):
        cfg = RunConfig.model_validate({"dump_orbit": True, "ingest": {"db_password": "x"}})
    assert cfg == RunConfig()
    assert sorted(r.getMessage().split(":")[0] for r in caplog.records) == [
        "dump_orbit",
        "ingest.db_password",
    ]


# --- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2022-05-01T08:30:00Z",
        "'2022-05-01T08:30:00Z'",
        "2022-05-01 08:30:00",
        "'2022-05-01 08:30:00'",
        "'2022-05-01T10:30:00+02:00'",
        "'2022-05-01T08:30'",
    ],
)
def test_start_time_forms(tmp_path, text):
    cfg = load(tmp_path, f"start_time: {text}\n")
    assert cfg.start_time == datetime(2022, 5, 1, 8, 30, tzinfo=UTC)


def test_time_errors(tmp_path):
    assert error(tmp_path, "start_time: 'May 1st'\n").startswith(
        "start_time: 'May 1st' is not an ISO 8601 date"
    )
    assert error(tmp_path, "start_time: 2022-05-02\nend_time: 2022-05-01\n").startswith(
        "stop_time: 2022-05-01T00:00:00Z is not after start_time 2022-05-02T00:00:00Z"
    )
    assert error(tmp_path, "start_time: 2022-05-01\nend_time: 2022-05-01\n").startswith(
        "stop_time:"
    )
    assert error(tmp_path, "end_time: [1]\n").startswith("stop_time: Input should be")
    with pytest.raises(EomatchError, match="start_time: required"):
        RunConfig().window()


def test_stop_time_is_the_key_and_end_time_its_alias(tmp_path, user_file):
    """The seed documents name the window's end stop_time (end_time in older files): both load."""
    assert "stop_time" in RunConfig.model_fields
    assert "end_time" not in RunConfig.model_fields
    a = load(tmp_path, "start_time: 2022-05-01\nstop_time: 2022-05-02\n")
    b = load(tmp_path, "start_time: 2022-05-01\nend_time: 2022-05-02\n")
    assert a.stop_time == b.stop_time == b.end_time == datetime(2022, 5, 2, tzinfo=UTC)
    assert a.model_dump() == b.model_dump()
    assert error(tmp_path, "end_time: 2022-05-02\nstop_time: 2022-05-02\n").startswith(
        "end_time: another name of stop_time; give one of them"
    )
    # layers: the user file's end_time is replaced by the run file's stop_time, and back
    user_file.write_text("end_time: 2022-06-01\n")
    run = write(tmp_path, "start_time: 2022-05-01\nstop_time: 2022-05-03\n")
    assert load_config(run, user_file).stop_time == datetime(2022, 5, 3, tzinfo=UTC)
    assert load_config(None, user_file).stop_time == datetime(2022, 6, 1, tzinfo=UTC)
    # overrides (dotted keys, as --stop-time/--end-time give them) and EOMatchContext.get
    for key in ("stop_time", "end_time"):
        ctx = EOMatchContext(run, {key: "2022-05-04"})
        assert ctx.config.stop_time == datetime(2022, 5, 4, tzinfo=UTC)
        assert ctx.get(key) == ctx["stop_time"] == datetime(2022, 5, 4, tzinfo=UTC)


# --- region --------------------------------------------------------------------------------------


def test_zero_is_a_real_bound(tmp_path):
    cfg = load(tmp_path, "min_lat: 0\nmax_lat: 10\nmin_lon: 0\nmax_lon: 10\n")
    assert cfg.region_bbox() == (0.0, 0.0, 10.0, 10.0)
    assert cfg.in_region(5, 5)
    assert not cfg.in_region(100, 60)  # W3 of the previous generation
    assert not cfg.in_region(-1, 5)
    assert cfg.crossover_kwargs()["bbox"] == (0.0, 0.0, 10.0, 10.0)


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("max_lat: 0\n", (-180.0, -90.0, 180.0, 0.0)),
        ("min_lat: 0\n", (-180.0, 0.0, 180.0, 90.0)),
        ("min_lon: 0\n", (0.0, -90.0, 180.0, 90.0)),
        ("max_lon: 0\nmin_lat: -10\n", (-180.0, -10.0, 0.0, 90.0)),
    ],
)
def test_partial_bounds_reach_the_globe_edge(tmp_path, text, box):
    assert load(tmp_path, text).region_bbox() == box


@pytest.mark.parametrize(
    "text",
    ["bbox: [170, -20, -170, 0]\n", "min_lon: 170\nmax_lon: -170\nmin_lat: -20\nmax_lat: 0\n"],
)
def test_antimeridian_region(tmp_path, text):
    cfg = load(tmp_path, text)
    assert cfg.region_bbox() == (170, -20, -170, 0)
    assert cfg.in_region(179.5, -10)
    assert cfg.in_region(-175, -10)
    assert cfg.in_region(180, 0)
    assert not cfg.in_region(0, -10)
    assert not cfg.in_region(179.5, 1)


def test_sites(tmp_path):
    cfg = load(
        tmp_path,
        "sites:\n  - {name: La Crau, bbox: [4.7, 43.4, 5.0, 43.7]}\n"
        "  - {name: Fiji, bbox: [175, -20, -178, -15]}\n",
    )
    assert [s.name for s in cfg.sites] == ["La Crau", "Fiji"]
    assert cfg.region_bbox() is None  # several sites: search globally, keep with in_region
    assert len(cfg.region_bboxes()) == 2
    assert cfg.in_region(4.8, 43.5)
    assert cfg.in_region(-179, -17)
    assert not cfg.in_region(0, 0)
    one = load(tmp_path, "sites: [{name: a, bbox: [0, 0, 1, 1]}]\n")
    assert one.region_bbox() == (0, 0, 1, 1)
    assert error(
        tmp_path, "sites: [{name: a, bbox: [0, 0, 1, 1]}, {name: a, bbox: [2, 2, 3, 3]}]"
    ).startswith("sites.1.name: duplicate site name 'a'")
    assert error(tmp_path, "sites: [{bbox: [0, 0, 1, 1]}]").startswith(
        "sites.0.name: Field required"
    )


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("bbox: [0, 0, 1, 1]\nmin_lat: 0\n", "min_lat: cannot be combined with bbox"),
        ("bbox: [0, 0, 1, 1]\nsites: [{name: a, bbox: [0, 0, 1, 1]}]\n", "sites: cannot be"),
        ("max_lon: 0\nsites: [{name: a, bbox: [0, 0, 1, 1]}]\n", "sites: cannot be combined"),
    ],
)
def test_region_forms_are_exclusive(tmp_path, text, start):
    assert error(tmp_path, text).startswith(start)


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("bbox: [0, 0, 1]\n", "bbox.3: Field required"),
        ("bbox: [0, 0, 1, 1, 1]\n", "bbox: Tuple should have at most 4 items"),
        ("bbox: [0, 10, 1, 5]\n", "bbox: Value error, south must be below north"),
        ("bbox: [0, 0, 200, 1]\n", "bbox: Value error, west and east must be within"),
        ("bbox: [0, -95, 1, 1]\n", "bbox: Value error, south and north must be within"),
        ("bbox: [5, 0, 5, 1]\n", "bbox: Value error, west equals east"),
        ("bbox: [a, 0, 1, 1]\n", "bbox.0: Input should be a valid number"),
        ("min_lat: 91\n", "min_lat: Input should be less than or equal to 90"),
        ("max_lon: -181\n", "max_lon: Input should be greater than or equal to -180"),
        ("min_lat: 10\nmax_lat: 10\n", "max_lat: 10.0 is not above min_lat 10.0"),
        ("min_lon: 10\nmax_lon: 10\n", "max_lon: equals min_lon"),
        ("sites: [{name: a, bbox: [0, 1, 1, 0]}]\n", "sites.0.bbox: Value error, south must"),
    ],
)
def test_bad_region(tmp_path, text, start):
    assert error(tmp_path, text).startswith(start.replace("Value error, ", ""))


# --- other bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("crossovers: {max_distance_km: 0}", "crossovers.max_distance_km: Input should be greater"),
        (
            "crossovers: {max_distance_km: .inf}",
            "crossovers.max_distance_km: Input should be a fin",
        ),
        ("crossovers: {max_time_diff_s: 1.5}", "crossovers.max_time_diff_s: Input should be a val"),
        ("crossovers: {max_event_duration_s: 0}", "crossovers.max_event_duration_s: Input should"),
        ("crossovers: {max_lat_abs: 91}", "crossovers.max_lat_abs: Input should be less than"),
        ("crossovers: {daylight_only: maybe}", "crossovers.daylight_only: Input should be a val"),
        ("crossovers: {max_dist: 5}", "crossovers.max_dist: Extra inputs are not permitted"),
        ("crossovers: 5", "crossovers: Input should be a valid dictionary"),
        ("min_collocation_area_km2: -1", "min_collocation_area_km2: Input should be greater"),
        ("sensors: [{platform: S2A}]", "sensors.0.collection: Field required"),
        ("sensors: [{platform: S2A, collection: S2_MSI_L1C, source: ftp}]", "sensors.0.source:"),
        ("sensors: [{platform: S2A, collection: NOPE}]", "sensors.0.collection: unknown collec"),
        (
            "sensors: [{platform: S2A, collection: S2_MSI_L1C, stac_source: x}]",
            "sensors.0.stac_source: only used with source: stac",
        ),
        (
            "sensors: [{platform: S2A, collection: S2_MSI_L1C, source: stac}]",
            "sensors.0.stac_source: name one of stac_sources (none defined)",
        ),
        (
            "sensors: [{platform: S2A, collection: S2_MSI_L1C, source: stac, stac_source: x}]\n"
            "stac_sources: {a: {url: 'http://a'}, b: {url: 'http://b'}}",
            "sensors.0.stac_source: 'x' is not in stac_sources (a, b)",
        ),
        (
            "sensors: [{platform: S2A, collection: S2_MSI_L1C, source: stac}]\n"
            "stac_sources: {a: {url: 'http://a'}, b: {url: 'http://b'}}",
            "sensors.0.stac_source: name one of stac_sources (a, b)",
        ),
        ("collections: [{id: X, sensor: C, swath_km: 0, scene_s: 1}]", "collections.0.swath_km"),
        ("collections: [{id: 'a b', sensor: C, swath_km: 1, scene_s: 1}]", "collections.0.id:"),
        (
            "collections: [{id: X, sensor: C, swath_km: 1, scene_s: 1},"
            " {id: X, sensor: C, swath_km: 1, scene_s: 1}]",
            "collections.1.id: duplicate collection 'X'",
        ),
        ("stac_sources: {a: {url: 'ftp://x'}}", "stac_sources.a.url: String should match"),
        ("stac_sources: {a: {url: 'http://x', page_size: 0}}", "stac_sources.a.page_size:"),
        ("stac_sources: {a: {url: 'http://x', max_retries: -1}}", "stac_sources.a.max_retries:"),
        (
            "stac_sources: {a: {url: 'http://x', headers_env: {Authorization: 'Bearer abc'}}}",
            "stac_sources.a.headers_env: Value error, Authorization: give the name of an env",
        ),
        (
            "stac_sources: {a: {url: 'http://x', collections: {NOPE: n}}}",
            "stac_sources.a.collections.NOPE: unknown collection 'NOPE'",
        ),
        ("stac_sources: {a: {url: 'http://x', token: abc}}", "stac_sources.a.token: Extra inputs"),
        ("matchup_catalogue: {id: 'a/b'}", "matchup_catalogue.id: String should match pattern"),
        ("matchup_catalogue: {paht: x}", "matchup_catalogue.paht: Extra inputs are not permitted"),
        ("matchup_catalogue: {id: ''}", "matchup_catalogue.id: String should have at least 1"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, start):
    assert error(tmp_path, text).startswith(start.replace("Value error, ", ""))


def test_error_counts_further_problems(tmp_path):
    msg = error(tmp_path, "min_collocation_area_km2: -1\ncrossovers: {max_distance_km: 0}\n")
    assert msg.endswith("(and 1 more problem(s))")


def test_stac_source_defaults_to_the_only_one(tmp_path):
    cfg = load(
        tmp_path,
        "sensors: [{platform: S2B, collection: S2_MSI_L2A, source: stac}]\n"
        "stac_sources: {es: {url: 'https://earth-search.example/v1'}}\n",
    )
    (r,) = cfg.resolve_sensors(build_registry(cfg))
    assert r.stac_source == "es"
    assert r.stac == cfg.stac_sources["es"]
    assert r.stac.page_size == 100
    assert r.stac.max_retries == 3
    assert r.stac.headers() == {}


# --- resolution against the registry ------------------------------------------------------------


def test_resolution_errors(tmp_path):
    cfg = load(tmp_path, "sensors: [{platform: S2X, collection: S2_MSI_L1C}]\n")
    with pytest.raises(EomatchError) as info:
        cfg.resolved_sensors(build_registry(cfg))
    msg = str(info.value)
    assert msg.startswith("sensors.0.platform: unknown satellite 'S2X'; known: ")
    assert "S2A (Sentinel-2A)" in msg
    assert "LS9 (Landsat-9)" in msg
    assert "ISS," in msg
    cfg = load(tmp_path, "sensors: [{platform: S2A, collection: LANDSAT_C2L1}]\n")
    with pytest.raises(
        EomatchError,
        match=r"sensors.0: Sentinel-2A \(S2A\) does not produce "
        "LANDSAT_C2L1 \\(produced by LS8, LS9",
    ):
        cfg.resolved_sensors(build_registry(cfg))
    cfg = load(tmp_path, "platforms: S2A, Sentinel-2A\ncollections: S2_MSI_L1C, S2_MSI_L1C\n")
    with pytest.raises(EomatchError, match=r"sensors\.1: S2_MSI_L1C-Sentinel-2A is listed twice"):
        cfg.resolved_sensors(build_registry(cfg))


def test_collection_platform_rule_follows_config(tmp_path):
    # a user collection (overriding a built-in id) may add platforms; empty platforms: any
    cfg = load(
        tmp_path,
        "sensors: [{platform: S2A, collection: LANDSAT_C2L1}, {platform: ISS, collection: ANY}]\n"
        "collections:\n"
        "  - {id: LANDSAT_C2L1, sensor: OLI, swath_km: 185, scene_s: 25, platforms: [LS9, S2A]}\n"
        "  - {id: ANY, sensor: X, swath_km: 10, scene_s: 5}\n",
    )
    assert cfg.resolved_sensors(build_registry(cfg)) == [
        SensorKey("LANDSAT_C2L1", "Sentinel-2A"),
        SensorKey("ANY", "ISS"),
    ]


def test_model_validate_without_files():
    cfg = RunConfig.model_validate(
        {"platforms": "S2A,LS9", "collections": "S2_MSI_L1C,LANDSAT_C2L1", "min_lat": 0}
    )
    assert len(cfg.sensors) == 2
    assert cfg.region_bbox() == (-180.0, 0.0, 180.0, 90.0)
    partial = RunConfig.model_validate(
        {"sensors": [{"platform": "S2A", "collection": "LATER"}]}, context={"partial": True}
    )
    assert partial.sensors[0].collection == "LATER"


# --- layering ------------------------------------------------------------------------------------


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "home"
    cfg_dir.mkdir()
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(cfg_dir))
    return cfg_dir / "config.yaml"


def test_layer_order(tmp_path, user_file):
    assert Settings().user_config_file == user_file
    user_file.write_text(
        "crossovers: {max_distance_km: 10, max_time_diff_s: 10, max_lat_abs: 80}\n"
        "min_collocation_area_km2: 5\nbbox: [0, 0, 10, 10]\n"
        "matchup_catalogue: {path: user-cat, description: from user}\n"
        "stac_sources: {es: {url: 'https://es.example'}}\n"
        "collections: [{id: MINE, sensor: CAM, swath_km: 10, scene_s: 5}]\n"
    )
    run = write(
        tmp_path,
        "crossovers: {max_time_diff_s: 20}\nmin_lat: 0\nmax_lat: 5\n"
        "matchup_catalogue: {id: run-cat, description: null}\nstart_time: null\n"
        "sensors: [{platform: S2A, collection: MINE, source: stac}]\n",
    )
    cfg = load_config(
        run,
        user_file,
        {"crossovers.max_lat_abs": 60, "start_time": "2022-05-01", "matchup_catalogue.path": None},
    )
    assert cfg.crossovers.max_distance_km == 10  # user
    assert cfg.crossovers.max_time_diff_s == 20  # --config
    assert cfg.crossovers.max_lat_abs == 60  # override
    assert cfg.crossovers.max_event_duration_s == 900  # package default
    assert cfg.min_collocation_area_km2 == 5
    assert cfg.region_bbox() == (-180.0, 0.0, 180.0, 5.0)  # the run's region replaced the user's
    assert cfg.matchup_catalogue.path == user_file.parent / "user-cat"  # relative to its file
    assert cfg.matchup_catalogue.id == "run-cat"
    assert cfg.matchup_catalogue.description == "from user"  # null leaves the lower layer alone
    assert cfg.start_time == datetime(2022, 5, 1, tzinfo=UTC)
    # sensors in the run file may use collections and STAC sources of the user file
    assert cfg.resolve_sensors(build_registry(cfg))[0].stac_source == "es"
    # the bare user file and the package defaults
    assert load_config(None, user_file).crossovers.max_time_diff_s == 10
    assert load_config(None, user_file, defaults=False).crossovers.max_time_diff_s == 10


def test_overrides_with_dotted_keys(tmp_path):
    run = write(tmp_path, PAIR + "matchup_catalogue: {path: a}\n")
    cfg = load_config(
        run, None, {"matchup_catalogue.path": tmp_path / "b", "crossovers": {"daylight_only": True}}
    )
    assert cfg.matchup_catalogue.path == tmp_path / "b"
    assert cfg.crossovers.daylight_only is True
    # legacy keys and region forms work as overrides too
    cfg = load_config(run, None, {"space_diff_threshold": 7, "bbox": [1, 1, 2, 2]})
    assert cfg.crossovers.max_distance_km == 7
    assert cfg.region_bbox() == (1, 1, 2, 2)
    for overrides, start in [
        ({"crossovers.max_dist": 1}, "command line: crossovers.max_dist: Extra inputs"),
        ({"crossovers.max_distance_km": "far"}, "command line: crossovers.max_distance_km: "),
        ({"start_time": "2030-01-01", "end_time": "2029-01-01"}, "command line: stop_time: "),
        ({"crossovers..x": 1}, "command line: 'crossovers..x' is not a dotted key"),
        ({"bbox": 1, "bbox.x": 2}, "command line: bbox.x: bbox is not a mapping"),
    ]:
        with pytest.raises(EomatchError) as info:
            load_config(run, None, overrides)
        assert str(info.value).startswith(start), info.value


def test_lists_replace_and_error_names_the_layer(tmp_path, user_file):
    user_file.write_text("sites: [{name: u, bbox: [0, 0, 1, 1]}]\nstart_time: 2022-05-02\n")
    run = write(tmp_path, "sites: [{name: r, bbox: [2, 2, 3, 3]}]\n")
    assert [s.name for s in load_config(run, user_file).sites] == ["r"]
    # a problem only visible after merging names the layer that set the key
    run.write_text("end_time: 2022-05-01\n")
    with pytest.raises(EomatchError) as info:
        load_config(run, user_file)
    assert str(info.value).startswith(f"{run}: stop_time: ")
    # a bad user file is named even when the run file is fine
    user_file.write_text("crossovers: {max_distance_km: -5}\n")
    with pytest.raises(EomatchError) as info:
        load_config(run, user_file)
    assert str(info.value).startswith(f"{user_file}: crossovers.max_distance_km: ")
    # a collection defined nowhere is reported against the file with the sensors
    user_file.write_text("")
    run.write_text("sensors: [{platform: S2A, collection: MINE}]\n")
    with pytest.raises(EomatchError) as info:
        load_config(run, user_file)
    assert str(info.value).startswith(f"{run}: sensors.0.collection: unknown collection 'MINE'")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(EomatchError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", None)
    for text, message in [("sensors: [", ":1: invalid YAML: "), ("- a\n", ": the top level")]:
        path = write(tmp_path, text)
        with pytest.raises(EomatchError) as info:
            load_config(path, None)
        assert str(info.value).startswith(f"{path}{message}")
    assert load(tmp_path, "").model_dump() == RunConfig().model_dump()


# --- template ------------------------------------------------------------------------------------


def test_template_validates_to_the_defaults(tmp_path):
    text = template_text()
    cfg = load(tmp_path, text)
    assert cfg.model_dump() == RunConfig().model_dump()
    assert RunConfig.model_validate(yaml.safe_load(text)) == RunConfig()


def _field_names(model: type[BaseModel]) -> set[str]:
    return {n for n in model.model_fields if n != "base_dir"}


def test_template_shows_every_key():
    text = template_text()
    active = yaml.safe_load(text)
    assert set(active) == _field_names(RunConfig)
    assert set(active["crossovers"]) == _field_names(CrossoverSettings)
    assert set(active["matchup_catalogue"]) == _field_names(MatchupCatalogueConfig)
    for model in (
        SensorConfig,
        CollectionSpec,
        SiteConfig,
        StacSourceConfig,
        SatelliteSpec,
        SensorSpec,
    ):
        for name in _field_names(model):
            assert f"{name}:" in text, f"{model.__name__}.{name} missing from the template"
    for legacy in (
        "platforms:",
        "space_diff_threshold",
        "time_diff_threshold",
        "exclude_night_events",
    ):
        assert legacy in text


def test_template_examples_validate(tmp_path):
    # uncommenting each example block gives a valid file
    lines = template_text().splitlines()
    out = []
    for line in lines:
        if line.startswith("#  ") or line.startswith("#    "):
            out.append(line[1:])
        elif line.rstrip().endswith(": []") or line.rstrip().endswith(": {}"):
            out.append(line.split(":")[0] + ":")
        else:
            out.append(line)
    text = "\n".join(out).replace("sites:\n", "sites:\n", 1)
    data = yaml.safe_load(text)
    data.pop("tle_dirs")
    # the template's example STAC source is not used by the example sensors
    cfg = RunConfig.model_validate(data)
    assert [s.platform for s in cfg.sensors] == ["S2A", "Landsat-9"]
    assert cfg.collections[0].id == "MY_CAM_L1"
    assert cfg.satellites[0].short_name == "MYSAT"
    assert cfg.sites[0].name == "La Crau"
    assert cfg.stac_sources["earth-search"].collections["S2_MSI_L1C"] == "sentinel-2-l1c"
    assert cfg.resolved_sensors(build_registry(cfg)) == [
        SensorKey("S2_MSI_L1C", "Sentinel-2A"),
        SensorKey("LANDSAT_C2L1", "Landsat-9"),
    ]


# --- EOMatchContext ------------------------------------------------------------------------------


def test_context(tmp_path, user_file):
    user_file.write_text("crossovers: {max_distance_km: 10}\n")
    run = write(tmp_path, FULL)
    ctx = EOMatchContext(str(run), {"crossovers.max_time_diff_s": 5})
    assert ctx.files == [user_file, run]
    assert isinstance(ctx.config, RunConfig)
    assert ctx.get("crossovers.max_distance_km") == 50
    assert ctx.get("crossovers.max_time_diff_s") == 5
    assert ctx["matchup_catalogue.id"] == "my-cat"
    assert ctx.get("sensors.1.platform") == "Landsat-9"
    assert ctx.get("stac_sources.usgs.page_size") == 50
    assert ctx.get("bbox") == (-10, 35, 30, 60)
    assert ctx.get("max_lat") is None  # a known key that is not set
    for bad in ("nope", "crossovers.nope", "sensors.9", "base_dir", "stac_sources.x"):
        with pytest.raises(KeyError):
            ctx.get(bad)
    assert ctx.sensors()[2] == SensorKey("MY_CAM", "MYSAT")
    assert "run.yaml" in repr(ctx)
    # Path, no path, no user file
    assert EOMatchContext(run, user_config=False).get("crossovers.max_distance_km") == 50
    assert EOMatchContext().get("crossovers.max_distance_km") == 10
    assert EOMatchContext(user_config=False).config == RunConfig()
    with pytest.raises(EomatchError, match="config file not found"):
        EOMatchContext(tmp_path / "missing.yaml")


def test_previous_generation_user_file_name_is_read_with_a_warning(tmp_path, monkeypatch, caplog):
    home = tmp_path / "old-home"
    home.mkdir()
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(home))
    legacy = home / "user_config.yaml"
    legacy.write_text("crossovers: {max_distance_km: 12}\n")
    with caplog.at_level("WARNING"):
        ctx = EOMatchContext()
    assert ctx.files == [legacy]
    assert ctx.config.crossovers.max_distance_km == 12
    assert [r.getMessage() for r in caplog.records] == [
        f"{legacy}: read under the previous generation's name; rename it to config.yaml"
    ]
    # both present: config.yaml wins, the old file is ignored with a warning
    both = tmp_path / "both-home"
    both.mkdir()
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(both))
    (both / "user_config.yaml").write_text("crossovers: {max_distance_km: 12}\n")
    (both / "config.yaml").write_text("crossovers: {max_distance_km: 13}\n")
    caplog.clear()
    with caplog.at_level("WARNING"):
        ctx = EOMatchContext()
    assert ctx.files == [both / "config.yaml"]
    assert ctx.config.crossovers.max_distance_km == 13
    assert len(caplog.records) == 1
    assert "user_config.yaml: ignored" in caplog.records[0].getMessage()
    # a retired key in the old file is reported like any other
    caplog.clear()
    legacy.write_text("dump_orbit: true\n")
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(home))
    with caplog.at_level("WARNING"):
        EOMatchContext()
    assert [r.getMessage() for r in caplog.records] == [
        f"{legacy}: dump_orbit: retired and ignored (orbit arrays are never kept)"
    ]
