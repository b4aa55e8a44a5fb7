"""YAML configuration models: validated at the trust boundary, with documented defaults."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from eomatch.config.credentials import Credentials, DownloadsConfig
from eomatch.config.env_names import check_header_env_names
from eomatch.config.harvest import HarvesterConfig, check_harvesters
from eomatch.config.schedules import ScheduleConfig, check_schedules
from eomatch.core.collections import CollectionInfo, builtin_collections
from eomatch.core.crossovers import MAX_DISTANCE_KM, MAX_EVENT_DURATION_S, MAX_TIME_DIFF_S
from eomatch.core.products import SensorKey
from eomatch.core.satellites import (
    Satellite,
    SatelliteRegistry,
    Sensor,
    UnknownSatelliteError,
)
from eomatch.core.vocabulary import BBox
from eomatch.errors import EomatchError
from eomatch.timeparse import parse_time

log = logging.getLogger(__name__)


class SensorSpec(BaseModel):
    """An instrument of a user-defined satellite."""

    model_config = ConfigDict(extra="forbid")

    name: str
    swath_km: float = Field(0.0, ge=0.0, description="Full swath width; 0 for nadir-only.")
    kind: Literal["imager", "altimeter"] = "imager"


class SatelliteSpec(BaseModel):
    """A satellite added in configuration; it joins (or overrides) the built-in registry."""

    model_config = ConfigDict(extra="forbid")

    short_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str | None = None
    norad_id: int = Field(gt=0, lt=1_000_000)
    tle_file: Path | None = Field(
        None, description="TLE file of this satellite; relative paths are from the config file."
    )
    constellation: str | None = None
    aliases: list[str] = Field(default_factory=list)
    sensors: list[SensorSpec] = Field(default_factory=list)

    def to_satellite(self, base: Path | None = None) -> Satellite:
        """The registry record; ``base`` resolves a relative ``tle_file``."""
        tle: str | None = None
        if self.tle_file is not None:
            path = self.tle_file.expanduser()
            if base is not None and not path.is_absolute():
                path = base / path
            tle = str(path)
        return Satellite(
            short_name=self.short_name,
            name=self.name or self.short_name,
            norad_id=self.norad_id,
            constellation=self.constellation or self.short_name,
            sensors=tuple(Sensor(s.name, s.swath_km, s.kind) for s in self.sensors),
            aliases=tuple(self.aliases),
            tle_file=tle,
        )


class IngestConfig(BaseModel):
    """Where ``eomatch ingest`` (and ``db``/``keys``/``serve``) find the central database.

    Unset fields fall back to the libpq variables (``PGHOST``...), then to the local cluster in
    ``db_dir``. Passwords never live here: ``PGPASSWORD`` or a pgpass file.
    """

    model_config = ConfigDict(extra="forbid")

    db_host: str | None = Field(default=None, description="Database server (default: PGHOST).")
    db_port: int | None = Field(
        default=None, ge=1, le=65535, description="Database port (default: PGPORT)."
    )
    db_name: str | None = Field(default=None, description="Database name (default: PGDATABASE).")
    db_user: str | None = Field(
        default=None, description="Role to ingest as (default: PGUSER, else eomatch_ingest)."
    )
    db_dir: Path | None = Field(
        default=None,
        description="Local cluster folder (default: EOMATCH_DB_DIR, else the data dir).",
    )
    assets_base_url: str | None = Field(
        default=None, description="Publish relative asset paths under this URL."
    )


class EomatchConfig(BaseModel):
    """The run configuration (``--config`` file, layered over the user file)."""

    model_config = ConfigDict(extra="forbid")

    satellites: list[SatelliteSpec] = Field(
        default_factory=list, description="Satellites to add to the built-in registry."
    )
    tle_dirs: list[Path] = Field(
        default_factory=list, description="Extra directories of TLE files (*.txt, *.tle, *.3le)."
    )
    ingest: IngestConfig = Field(
        default_factory=lambda: IngestConfig(), description="Central database for ingest/serve."
    )
    schedules: list[ScheduleConfig] = Field(
        default_factory=list, description="Jobs the worker submits on a cron schedule."
    )
    base_dir: Path | None = Field(None, exclude=True)
    """Directory of the file this came from (resolves relative paths); not a YAML key."""

    @field_validator("schedules")
    @classmethod
    def _unique_schedules(cls, value: list[ScheduleConfig]) -> list[ScheduleConfig]:
        check_schedules(value)
        return value

    def resolved_tle_dirs(self) -> list[Path]:
        """``tle_dirs`` with relative entries taken from the config file's directory."""
        out = []
        for d in self.tle_dirs:
            d = d.expanduser()
            if self.base_dir is not None and not d.is_absolute():
                d = self.base_dir / d
            out.append(d)
        return out


# ---------------------------------------------------------------------------------------------
# The run file (issue #3 §1): sensors, window, region, thresholds, product sources, catalogue.
# ---------------------------------------------------------------------------------------------

REGION_KEYS = ("bbox", "min_lat", "max_lat", "min_lon", "max_lon", "sites")
"""Top-level keys that together describe the region; a layer setting one replaces them all."""

LEGACY_CROSSOVER_KEYS = {
    "space_diff_threshold": "max_distance_km",
    "time_diff_threshold": "max_time_diff_s",
    "exclude_night_events": "daylight_only",
}
"""Previous-generation top-level keys → ``crossovers.<key>``."""

RETIRED_KEYS = {
    "propagation_sampling_interval": "the crossover search step is chosen automatically",
    "interpolation_sampling_interval": "the crossover search step is chosen automatically",
    "orbitx_netcdf_files": "crossovers are computed from TLEs",
    "orbitx_netcdf_path": "crossovers are computed from TLEs",
    "check_before": "the orbit window is always widened by crossovers.max_time_diff_s",
    "check_after": "the orbit window is always widened by crossovers.max_time_diff_s",
    "has_land_ocean_mask": "it only annotated events",
    "dump_orbit": "orbit arrays are never kept",
    "exclude_antimeridian_events": "antimeridian regions are handled; restrict with bbox or sites",
    "provider_by_collection": "products come from sensors[].source / stac_source, not eodag",
    "read": "BuildMUDT reading options; products are read outside eomatch",
    "preview": "preview options; eomatch draws maps with --plot",
    "api": "scrappi's provider choice; products come from sensors[].source / stac_source",
    "eodag": "scrappi/eodag provider settings; use stac_sources",
    "RadCalNet": "scrappi's RadCalNet settings",
    "fs": "scrappi's file-system settings; downloads go to {catalogue}/data or "
    "downloads.products_root",
}
"""Previous-generation top-level keys that mean nothing now: ignored with one warning each.

A run file of the previous generation still loads (issue #11 §8); a key that is neither
current, legacy (rewritten) nor retired stays an error.
"""

RETIRED_NESTED_KEYS = {
    "matchup_catalogue": {
        "auto_remove_corrupted": "unreadable items are skipped with --skip-invalid, never deleted"
    },
    "ingest": {"db_password": "passwords never live in files: use PGPASSWORD or a pgpass file"},
}
"""Retired keys inside a section (``section.key``): ignored with one warning each."""

REPLACED_KEYS = {
    "custom_satellites": "use satellites: [{short_name, norad_id, tle_file}]",
}
"""Previous-generation keys whose meaning lives on in another form: rejected with a hint (ignoring
them would silently change the run)."""

WINDOW_KEY_ALIASES = {"end_time": "stop_time"}
"""Other names of window keys -> the key (the seed documents use both for the window's end)."""

_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"


def _check_bbox(value: BBox) -> BBox:
    w, s, e, n = value
    if not (-180 <= w <= 180 and -180 <= e <= 180):
        raise ValueError(f"west and east must be within -180..180, got {list(value)}")
    if not (-90 <= s <= 90 and -90 <= n <= 90):
        raise ValueError(f"south and north must be within -90..90, got {list(value)}")
    if not s < n:
        raise ValueError(f"south must be below north, got {list(value)}")
    if w == e:
        raise ValueError(f"west equals east (zero width), got {list(value)}")
    return value


BBoxField = Annotated[BBox, AfterValidator(_check_bbox)]


def bbox_contains(box: BBox, lon: float, lat: float) -> bool:
    """Whether ``(lon, lat)`` lies in ``box`` (edges included; west > east wraps at 180°)."""
    w, s, e, n = box
    if not s <= lat <= n:
        return False
    return w <= lon <= e if w <= e else (lon >= w or lon <= e)


def _names(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise ValueError(f"{key}: give a comma-separated string or a list of names")
    names = [v.strip() for v in items if v.strip()]
    if not names:
        raise ValueError(f"{key}: no names given")
    return names


def _log_retired(message: str) -> None:
    log.warning("%s", message)


def normalize_legacy(
    data: dict[str, Any], warn: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Rewrite one layer's older keys into the current form (the layer alone, before merging).

    ``platforms:``/``collections:`` strings become ``sensors``; ``space_diff_threshold``,
    ``time_diff_threshold`` and ``exclude_night_events`` move into ``crossovers``; ``end_time``
    becomes ``stop_time``. Retired keys (:data:`RETIRED_KEYS`, :data:`RETIRED_NESTED_KEYS`) are
    dropped, each reported once through ``warn`` (default: a logged warning).

    Raises:
        ValueError: ``"<key>: <problem>"`` for a replaced key or an inconsistent legacy form.
    """
    report = warn or _log_retired
    out = dict(data)
    for key, hint in REPLACED_KEYS.items():
        if key in out:
            raise ValueError(f"{key}: no longer used ({hint}); remove it")
    for key, reason in RETIRED_KEYS.items():
        if key in out:
            del out[key]
            report(f"{key}: retired and ignored ({reason})")
    for section, keys in RETIRED_NESTED_KEYS.items():
        sub = out.get(section)
        if not isinstance(sub, dict):
            continue
        sub = dict(sub)
        for key, reason in keys.items():
            if key in sub:
                del sub[key]
                report(f"{section}.{key}: retired and ignored ({reason})")
        out[section] = sub
    for alias, name in WINDOW_KEY_ALIASES.items():
        if alias not in out:
            continue
        value = out.pop(alias)
        if out.get(name) is not None and value is not None:
            raise ValueError(f"{alias}: another name of {name}; give one of them")
        if out.get(name) is None:
            out[name] = value
    legacy_collections = "collections" in out and (
        isinstance(out["collections"], str)
        or (
            isinstance(out["collections"], list)
            and bool(out["collections"])
            and all(isinstance(c, str) for c in out["collections"])
        )
    )
    if "platforms" in out or legacy_collections:
        if "sensors" in out and out["sensors"] is not None:
            raise ValueError("platforms: give either sensors or platforms/collections, not both")
        if "platforms" not in out:
            raise ValueError("collections: a list of collection ids needs platforms (paired)")
        if not legacy_collections:
            raise ValueError(
                "platforms: needs collections: as comma-separated ids paired with the platforms"
            )
        platforms = _names(out.pop("platforms"), "platforms")
        collections = _names(out.pop("collections"), "collections")
        if len(platforms) != len(collections):
            raise ValueError(
                f"collections: {len(collections)} collection(s) for {len(platforms)} "
                "platform(s); they are paired by position"
            )
        out["sensors"] = [
            {"platform": p, "collection": c} for p, c in zip(platforms, collections, strict=True)
        ]
    moved = {new: out.pop(old) for old, new in LEGACY_CROSSOVER_KEYS.items() if old in out}
    if moved:
        cross = out.get("crossovers")
        if cross is None:
            cross = {}
        if not isinstance(cross, dict):
            return out  # let the model report crossovers' type
        cross = dict(cross)
        for old, new in LEGACY_CROSSOVER_KEYS.items():
            if new not in moved:
                continue
            value = moved[new]
            if new in cross and cross[new] != value:
                raise ValueError(
                    f"{old}: conflicts with crossovers.{new} ({value!r} vs {cross[new]!r})"
                )
            cross[new] = value
        out["crossovers"] = cross
    return out


class SensorConfig(BaseModel):
    """One side of the matchups: a platform's product collection and where products come from."""

    model_config = ConfigDict(extra="forbid")

    platform: str = Field(
        min_length=1, description="Any registry name of the platform (S2A, Sentinel-2A, LS9...)."
    )
    collection: str = Field(
        min_length=1, description="Product collection id (built-in table or `collections:`)."
    )
    source: Literal["predicted", "stac"] = Field(
        default="predicted", description="predicted (offline, from the orbit) or stac (a STAC API)."
    )
    stac_source: str | None = Field(
        default=None, description="Name in stac_sources (default: the only one defined)."
    )


class CollectionSpec(BaseModel):
    """A product collection described in configuration (joins or overrides the built-in table)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, pattern=_ID_PATTERN, description="Collection id.")
    sensor: str = Field(min_length=1, description="Instrument name as in the registry.")
    swath_km: float = Field(gt=0, description="Full across-track width of one scene.")
    scene_s: int = Field(gt=0, description="Along-track scene length in seconds of flight.")
    platforms: list[str] = Field(
        default_factory=list, description="Platforms producing it (any alias); empty: any."
    )
    description: str = ""

    def to_info(self) -> CollectionInfo:
        """The collection-table record."""
        return CollectionInfo(
            self.id,
            self.sensor,
            self.swath_km,
            self.scene_s,
            tuple(self.platforms),
            self.description,
        )


class SiteConfig(BaseModel):
    """A named region of interest."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Site name.")
    bbox: BBoxField = Field(description="[W, S, E, N] degrees; W > E crosses 180°.")


class CrossoverSettings(BaseModel):
    """Thresholds and filters of the crossover search (see ``find_crossovers``)."""

    model_config = ConfigDict(extra="forbid")

    max_distance_km: float = Field(
        default=100.0,
        gt=0,
        le=MAX_DISTANCE_KM,
        allow_inf_nan=False,
        description="D: largest sub-satellite point distance (at most 5000 km).",
    )
    max_time_diff_s: int = Field(
        default=1800,
        ge=0,
        le=MAX_TIME_DIFF_S,
        description="T: largest time difference between the satellites (at most 3 days).",
    )
    max_event_duration_s: int = Field(
        default=900,
        ge=1,
        le=MAX_EVENT_DURATION_S,
        description="Longer runs (tandem phases) are split into events this long (at most 1 day).",
    )
    daylight_only: bool = Field(
        default=False,
        description="Keep events with the Sun above the horizon at the closest approach.",
    )
    max_lat_abs: float | None = Field(
        default=None,
        ge=0,
        le=90,
        description="Drop events poleward of this latitude (null: keep all).",
    )


class StacSourceConfig(BaseModel):
    """A STAC API to search for real products."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://", description="STAC API root URL.")
    collections: dict[str, str] = Field(
        default_factory=dict,
        description="Our collection id → the provider's (default: the same id).",
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP header → environment variable holding its value (never the secret).",
    )
    page_size: int = Field(default=100, ge=1, le=10_000, description="Items per page.")
    max_retries: int = Field(
        default=3, ge=0, le=20, description="Retries (with backoff) per request."
    )

    @field_validator("headers_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        return check_header_env_names(value)

    def provider_collection(self, collection: str) -> str:
        """The provider's id for our ``collection``."""
        return self.collections.get(collection, collection)

    def headers(self, name: str = "", environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The request headers, read from the environment now.

        Raises:
            EomatchError: a named variable is not set.
        """
        env = os.environ if environ is None else environ
        out = {}
        for header, var in self.headers_env.items():
            if var not in env:
                where = f"stac_sources.{name}" if name else "stac source"
                raise EomatchError(
                    f"{where}: environment variable {var} (header {header}) is not set"
                )
            out[header] = env[var]
        return out


class MatchupCatalogueConfig(BaseModel):
    """Where and under which identity the matchup catalogue is written."""

    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(
        default=None, description="Catalogue root directory (relative: from the config file)."
    )
    id: str = Field(
        default="matchup-catalogue",
        min_length=1,
        pattern=_ID_PATTERN,
        description="Root catalog id.",
    )
    description: str = Field(default="Matchup catalogue", description="Root catalog description.")

    @field_validator("path")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class QueryConfig(BaseModel):
    """Where ``eomatch query`` pulls matchups from, and how."""

    model_config = ConfigDict(extra="forbid")

    api_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="STAC API root of the matchup service (--api-url overrides).",
    )
    page_size: int = Field(
        default=1000, ge=1, le=10_000, description="Matchups per search page (--limit)."
    )
    timeout_s: float = Field(
        default=60.0, gt=0, allow_inf_nan=False, description="Seconds to wait per request."
    )
    max_retries: int = Field(
        default=3, ge=0, le=20, description="Retries (with backoff) per request."
    )


@dataclass(frozen=True)
class ResolvedSensor:
    """A sensor of the run with its names resolved against the registry and collection table."""

    key: SensorKey
    satellite: Satellite
    collection: CollectionInfo
    source: str
    """``predicted`` or ``stac``."""
    stac_source: str | None = None
    """Name of the STAC source (``stac`` sensors only)."""
    stac: StacSourceConfig | None = None


def _parse_time(value: Any, key: str) -> Any:
    if value is None or not isinstance(value, datetime | date | str):
        return value
    try:
        return parse_time(value, key)
    except EomatchError as exc:
        raise ValueError(str(exc).removeprefix(f"{key}: ")) from None


class RunConfig(EomatchConfig):
    """A run file: what to match, when, where, how, and where the catalogue goes.

    Cross-references (sensor collections, STAC source names) are checked unless validated with
    ``context={"partial": True}`` (one layer of several).
    """

    sensors: list[SensorConfig] = Field(
        default_factory=list, description="Sensors to match (platform + collection each)."
    )
    collections: list[CollectionSpec] = Field(
        default_factory=list, description="Extra product collections (built-ins always known)."
    )
    start_time: datetime | None = Field(
        default=None, description="Window start, ISO 8601 (UTC if naive)."
    )
    stop_time: datetime | None = Field(
        default=None, description="Window end (exclusive), after start (alias: end_time)."
    )
    bbox: BBoxField | None = Field(
        default=None, description="Region [W, S, E, N]; W > E crosses 180°."
    )
    min_lat: float | None = Field(
        default=None, ge=-90, le=90, description="Region south edge (-90)."
    )
    max_lat: float | None = Field(
        default=None, ge=-90, le=90, description="Region north edge (90)."
    )
    min_lon: float | None = Field(
        default=None, ge=-180, le=180, description="Region west edge (-180)."
    )
    max_lon: float | None = Field(
        default=None, ge=-180, le=180, description="Region east edge (180)."
    )
    sites: list[SiteConfig] = Field(
        default_factory=list, description="Named sites; events in any site are kept."
    )
    crossovers: CrossoverSettings = Field(
        default_factory=lambda: CrossoverSettings(), description="Crossover thresholds and filters."
    )
    min_collocation_area_km2: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, description="Smallest footprint intersection area."
    )
    stac_sources: dict[str, StacSourceConfig] = Field(
        default_factory=dict, description="STAC APIs by name."
    )
    matchup_catalogue: MatchupCatalogueConfig = Field(
        default_factory=lambda: MatchupCatalogueConfig(), description="Catalogue path and identity."
    )
    query: QueryConfig = Field(
        default_factory=lambda: QueryConfig(), description="Matchup service to pull from."
    )
    credentials: Credentials = Field(
        default_factory=dict,
        description="Provider logins by host or s3://bucket (environment variable names only).",
    )
    downloads: DownloadsConfig = Field(
        default_factory=lambda: DownloadsConfig(), description="Where downloads go."
    )
    harvesters: list[HarvesterConfig] = Field(
        default_factory=list, description="Catalogues harvested on demand or on a schedule."
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return normalize_legacy(data) if isinstance(data, dict) else data

    @field_validator("start_time", mode="before")
    @classmethod
    def _start(cls, value: Any) -> Any:
        return _parse_time(value, "start_time")

    @field_validator("stop_time", mode="before")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        return _parse_time(value, "stop_time")

    @property
    def end_time(self) -> datetime | None:
        """The end of the window under its other name (``stop_time``; issue #11 §6)."""
        return self.stop_time

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> RunConfig:
        if self.start_time and self.stop_time and not self.stop_time > self.start_time:
            raise ValueError(
                f"stop_time: {self.stop_time:%Y-%m-%dT%H:%M:%SZ} is not after start_time "
                f"{self.start_time:%Y-%m-%dT%H:%M:%SZ}"
            )
        bounds = [
            k for k in ("min_lat", "max_lat", "min_lon", "max_lon") if getattr(self, k) is not None
        ]
        forms = [
            name
            for name, given in (
                ("bbox", self.bbox is not None),
                (bounds[0] if bounds else "", bool(bounds)),
                ("sites", bool(self.sites)),
            )
            if given
        ]
        if len(forms) > 1:
            raise ValueError(
                f"{forms[1]}: cannot be combined with {forms[0]}; give one region form: bbox, "
                "min_lat/max_lat/min_lon/max_lon, or sites"
            )
        if (
            self.min_lat is not None
            and self.max_lat is not None
            and not self.min_lat < self.max_lat
        ):
            raise ValueError(f"max_lat: {self.max_lat} is not above min_lat {self.min_lat}")
        if self.min_lon is not None and self.max_lon is not None and self.min_lon == self.max_lon:
            raise ValueError(f"max_lon: equals min_lon {self.min_lon} (zero width)")
        names = [s.name for s in self.sites]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"sites.{i}.name: duplicate site name {name!r}")
        check_harvesters(self.harvesters)
        ids = [c.id for c in self.collections]
        for i, cid in enumerate(ids):
            if cid in ids[:i]:
                raise ValueError(f"collections.{i}.id: duplicate collection {cid!r}")
        if info.context and info.context.get("partial"):
            return self
        table = self.collection_table()
        for i, s in enumerate(self.sensors):
            if s.collection not in table:
                raise ValueError(
                    f"sensors.{i}.collection: unknown collection {s.collection!r}; known: "
                    f"{', '.join(sorted(table))} (describe others under collections:)"
                )
            if s.source == "predicted" and s.stac_source is not None:
                raise ValueError(f"sensors.{i}.stac_source: only used with source: stac")
            if s.source == "stac":
                self._stac_name(i, s)
        for name, src in self.stac_sources.items():
            for cid in src.collections:
                if cid not in table:
                    raise ValueError(
                        f"stac_sources.{name}.collections.{cid}: unknown collection {cid!r}"
                    )
        return self

    def _bounds_given(self) -> bool:
        return any(v is not None for v in (self.min_lat, self.max_lat, self.min_lon, self.max_lon))

    def _stac_name(self, i: int, s: SensorConfig) -> str:
        if s.stac_source is None:
            if len(self.stac_sources) != 1:
                raise ValueError(
                    f"sensors.{i}.stac_source: name one of stac_sources "
                    f"({', '.join(sorted(self.stac_sources)) or 'none defined'})"
                )
            return next(iter(self.stac_sources))
        if s.stac_source not in self.stac_sources:
            raise ValueError(
                f"sensors.{i}.stac_source: {s.stac_source!r} is not in stac_sources "
                f"({', '.join(sorted(self.stac_sources)) or 'none defined'})"
            )
        return s.stac_source

    def collection_table(self) -> dict[str, CollectionInfo]:
        """Built-in collections plus (overridden by) those described under ``collections:``."""
        table = builtin_collections()
        table.update({c.id: c.to_info() for c in self.collections})
        return table

    def resolve_sensors(self, registry: SatelliteRegistry) -> list[ResolvedSensor]:
        """Sensors with platforms resolved to registry records (config satellites included).

        Raises:
            EomatchError: an unknown platform, a collection the platform does not produce, or
                the same sensor twice.
        """
        table = self.collection_table()
        out: list[ResolvedSensor] = []
        for i, s in enumerate(self.sensors):
            try:
                sat = registry.get(s.platform)
            except UnknownSatelliteError:
                known = ", ".join(
                    sorted(
                        x.short_name if x.name == x.short_name else f"{x.short_name} ({x.name})"
                        for x in registry
                    )
                )
                raise EomatchError(
                    f"sensors.{i}.platform: unknown satellite {s.platform!r}; known: {known} "
                    "(any alias works; see `eomatch satellites`)"
                ) from None
            info = table.get(s.collection)
            if info is None:
                raise EomatchError(f"sensors.{i}.collection: unknown collection {s.collection!r}")
            producers = set()
            for p in info.platforms:
                try:
                    producers.add(registry.get(p).short_name)
                except UnknownSatelliteError:
                    continue
            if info.platforms and sat.short_name not in producers:
                raise EomatchError(
                    f"sensors.{i}: {sat.name} ({sat.short_name}) does not produce {info.id} "
                    f"(produced by {', '.join(info.platforms)}; describe it under collections: "
                    "to add platforms)"
                )
            key = SensorKey(info.id, sat.name)
            if any(r.key == key for r in out):
                raise EomatchError(f"sensors.{i}: {key.label()} is listed twice")
            stac_name: str | None = None
            if s.source == "stac":
                try:
                    stac_name = self._stac_name(i, s)
                except ValueError as exc:
                    raise EomatchError(str(exc)) from None
            out.append(
                ResolvedSensor(
                    key=key,
                    satellite=sat,
                    collection=info,
                    source=s.source,
                    stac_source=stac_name,
                    stac=self.stac_sources[stac_name] if stac_name else None,
                )
            )
        return out

    def resolved_sensors(self, registry: SatelliteRegistry) -> list[SensorKey]:
        """``SensorKey(collection, Satellite.name)`` per sensor, in configuration order."""
        return [r.key for r in self.resolve_sensors(registry)]

    def region_bboxes(self) -> list[BBox]:
        """The region as boxes: one per site, the bbox, or the bounds; empty means the globe.

        Partial bounds reach to the globe's edge; 0 is a real bound, never "unset".
        """
        if self.bbox is not None:
            return [self.bbox]
        if self.sites:
            return [s.bbox for s in self.sites]
        if self._bounds_given():
            return [
                (
                    -180.0 if self.min_lon is None else self.min_lon,
                    -90.0 if self.min_lat is None else self.min_lat,
                    180.0 if self.max_lon is None else self.max_lon,
                    90.0 if self.max_lat is None else self.max_lat,
                )
            ]
        return []

    def region_bbox(self) -> BBox | None:
        """The single box events must lie in, or None (the globe, or several sites).

        With several sites the search is global and events are kept by ``in_region``.
        """
        boxes = self.region_bboxes()
        return boxes[0] if len(boxes) == 1 else None

    def in_region(self, lon: float, lat: float) -> bool:
        """Whether a point lies in the region (any site; edges included; W > E wraps)."""
        boxes = self.region_bboxes()
        return not boxes or any(bbox_contains(b, lon, lat) for b in boxes)

    def crossover_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``find_crossovers`` (thresholds, filters and region box)."""
        c = self.crossovers
        return {
            "max_distance_km": c.max_distance_km,
            "max_time_diff_s": c.max_time_diff_s,
            "max_event_duration_s": c.max_event_duration_s,
            "daylight_only": c.daylight_only,
            "max_lat_abs": c.max_lat_abs,
            "bbox": self.region_bbox(),
        }

    def window(self) -> tuple[datetime, datetime]:
        """``(start_time, stop_time)``.

        Raises:
            EomatchError: either is not set.
        """
        if self.start_time is None or self.stop_time is None:
            missing = "start_time" if self.start_time is None else "stop_time"
            raise EomatchError(f"{missing}: required for a run (ISO 8601, e.g. 2022-05-01)")
        return self.start_time, self.stop_time

    def run_problems(self, *, path_given: bool = False) -> list[str]:
        """What a matchup run (``eomatch find``) still needs; empty when ready.

        Args:
            path_given: the catalogue path comes from the caller (``find_and_catalogue(path=)``,
                ``--path``), so ``matchup_catalogue.path`` need not be set.
        """
        out = []
        if len(self.sensors) < 2:
            out.append("sensors: give at least two")
        if self.start_time is None:
            out.append("start_time: not set")
        if self.stop_time is None:
            out.append("stop_time: not set")
        if self.matchup_catalogue.path is None and not path_given:
            out.append("matchup_catalogue.path: not set")
        return out
