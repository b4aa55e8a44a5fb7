"""Harvester configuration (``harvesters:``): where to harvest from, what, and where it goes.

The shape follows the EOEPCA resource-management harvester (``resource``/``query``/``filter``/
``postprocess``), so a harvester written for it reads here with ``target`` added: the
collection the items are registered in (EOEPCA sends them to a ``queue``; eomatch registers
them itself, so the only ``queue`` accepted is ``register``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import cql2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from eomatch.config.env_names import check_header_env_names
from eomatch.core.vocabulary import BBox
from eomatch.errors import ConfigError, EomatchError
from eomatch.timeparse import parse_time

__all__ = [
    "FormatConfig",
    "HarvestQuery",
    "HarvestResource",
    "HarvestTarget",
    "HarvestTime",
    "HarvesterConfig",
    "check_harvesters",
]

SOURCE_TYPES = ("stac-api", "stac-static", "opensearch")
_TYPE_ALIASES = {
    "stac-api": "stac-api",
    "stacapi": "stac-api",
    "stac": "stac-api",
    "stac-static": "stac-static",
    "static": "stac-static",
    "stac-catalog": "stac-static",
    "opensearch": "opensearch",
}
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_ID = r"^[A-Za-z0-9_.-]+$"


class FormatConfig(BaseModel):
    """How to read the source's answers (OpenSearch): media type and property mapping."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["application/atom+xml", "application/json", "application/geo+json"] | None = (
        Field(
            default=None,
            description="OpenSearch response type to ask for (default: GeoJSON if offered, "
            "else Atom).",
        )
    )
    property_mapping: dict[str, str] = Field(
        default_factory=dict,
        description="STAC property name -> where it is in an entry (dotted path for GeoJSON, "
        "element path such as 'eo:cloudCover' or 'link@href' for Atom).",
    )


class HarvestResource(BaseModel):
    """Where to harvest from."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        description="STAC API root, static catalog.json (path or URL) or OpenSearch description.",
    )
    type: Literal["stac-api", "stac-static", "opensearch"] = Field(
        description="stac-api | stac-static | opensearch."
    )
    format_config: FormatConfig = Field(default_factory=lambda: FormatConfig())
    page_size: int = Field(default=100, ge=1, le=10_000, description="Items asked per page.")
    max_retries: int = Field(default=3, ge=0, le=20, description="Retries per request.")
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP header -> environment variable holding its value (sent to the "
        "resource's origin only; never the secret itself).",
    )

    @field_validator("headers_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        return check_header_env_names(value)

    def headers(self, name: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The secret headers, read from the environment now.

        Raises:
            ConfigError: a named variable is not set.
        """
        env = os.environ if environ is None else environ
        out = {}
        for header, var in self.headers_env.items():
            if var not in env:
                raise ConfigError(
                    f"harvesters.{name}.resource.headers_env: environment variable {var} "
                    f"(header {header}) is not set"
                )
            out[header] = env[var]
        return out

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = value.strip().lower().replace("_", "-")
            if key not in _TYPE_ALIASES:
                raise ValueError(f"unknown type {value!r}; give one of {', '.join(SOURCE_TYPES)}")
            return _TYPE_ALIASES[key]
        return value

    @model_validator(mode="after")
    def _url(self) -> HarvestResource:
        if self.type != "stac-static" and not re.match(r"^https?://[^/]", self.url):
            raise ValueError(f"url: a {self.type} source needs an http(s) URL, got {self.url!r}")
        return self


class HarvestTime(BaseModel):
    """The time window harvested (items whose time lies in it)."""

    model_config = ConfigDict(extra="forbid")

    begin: datetime | None = Field(default=None, description="Start (ISO 8601, UTC if naive).")
    end: datetime | None = Field(default=None, description="End (ISO 8601); none: open.")
    property: Literal["datetime", "sensed", "updated"] = Field(
        default="datetime",
        description="The item time the window and the high-water mark follow: datetime "
        "(sensed: the same) or updated (picks up reprocessed items).",
    )

    @field_validator("begin", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if value is None or isinstance(value, datetime):
            return value
        try:
            return parse_time(value, "time")
        except EomatchError as exc:
            raise ValueError(str(exc).removeprefix("time: ")) from None

    @model_validator(mode="after")
    def _order(self) -> HarvestTime:
        if self.begin and self.end and not self.end > self.begin:
            raise ValueError("end: is not after begin")
        return self


class HarvestQuery(BaseModel):
    """What to ask the source for."""

    model_config = ConfigDict(extra="forbid")

    time: HarvestTime = Field(default_factory=lambda: HarvestTime())
    since_last: bool = Field(
        default=True,
        description="Ask only for items newer than the last run's high-water mark.",
    )
    collection: str | None = Field(
        default=None,
        description="Source collection (STAC API, static catalogue; OpenSearch "
        "collections are in the description URL).",
    )
    bbox: BBox | None = Field(default=None, description="[W, S, E, N] or 'W,S,E,N'.")

    @field_validator("bbox", mode="before")
    @classmethod
    def _bbox(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = value.split(",")
            try:
                value = [float(v) for v in parts]
            except ValueError:
                raise ValueError(f"not W,S,E,N numbers: {value!r}") from None
        if isinstance(value, list | tuple) and len(value) == 4:
            w, s, e, n = (float(v) for v in value)
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s < n <= 90):
                raise ValueError(f"not a [W, S, E, N] box in degrees: {list(value)}")
        return value


class HarvestTarget(BaseModel):
    """Where the harvested items are registered."""

    model_config = ConfigDict(extra="forbid")

    collection: str = Field(
        min_length=1, max_length=200, pattern=_ID, description="Collection id (created if missing)."
    )


def _postprocessor_path(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) - {"type"} or "type" not in value:
            raise ValueError("give a dotted class path, or {type: dotted.class.Path}")
        value = value["type"]
    if not isinstance(value, str) or not _DOTTED.match(value):
        raise ValueError(f"not a dotted class path (package.module.Class): {value!r}")
    return value


class HarvesterConfig(BaseModel):
    """One harvester (an entry of ``harvesters:``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=_ID, description="Harvester name.")
    resource: HarvestResource
    query: HarvestQuery = Field(default_factory=lambda: HarvestQuery())
    filter: dict[str, Any] | str | None = Field(
        default=None, description="CQL2-JSON or CQL2 text; items not matching are dropped."
    )
    postprocess: list[str] = Field(
        default_factory=list,
        description="Classes with postprocess(item) -> item | None, applied in order.",
    )
    target: HarvestTarget
    queue: Literal["register"] | None = Field(
        default=None, description="EOEPCA's output queue: only 'register' (the default) exists."
    )

    @model_validator(mode="after")
    def _time_property(self) -> HarvesterConfig:
        if self.query.time.property == "updated" and self.resource.type == "opensearch":
            raise ValueError(
                "query.time.property: updated needs a STAC source (OpenSearch has no standard "
                "'updated' parameter); use datetime"
            )
        return self

    @field_validator("filter", mode="before")
    @classmethod
    def _filter(cls, value: Any) -> Any:
        if value in ({}, "", None):
            return None
        try:
            cql2.Expr(value).validate()
        except Exception as exc:  # cql2 raises bare Exception with a multi-line caret report
            text = " ".join(str(exc).split())
            raise ValueError(f"not a valid CQL2 expression: {text[:200]}") from None
        return value

    @field_validator("postprocess", mode="before")
    @classmethod
    def _postprocess(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError("give a list of dotted class paths")
        return [_postprocessor_path(v) for v in value]


def check_harvesters(harvesters: list[HarvesterConfig]) -> None:
    """Names must be unique (they key the high-water marks).

    Raises:
        ValueError: ``harvesters.<i>.name: duplicate ...``.
    """
    seen: set[str] = set()
    for i, h in enumerate(harvesters):
        if h.name in seen:
            raise ValueError(f"harvesters.{i}.name: duplicate harvester name {h.name!r}")
        seen.add(h.name)
