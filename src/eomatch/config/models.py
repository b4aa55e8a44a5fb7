"""YAML configuration models: validated at the trust boundary, with documented defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from eomatch.core.satellites import Satellite, Sensor


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


class EomatchConfig(BaseModel):
    """The run configuration (``--config`` file, layered over the user file)."""

    model_config = ConfigDict(extra="forbid")

    satellites: list[SatelliteSpec] = Field(
        default_factory=list, description="Satellites to add to the built-in registry."
    )
    tle_dirs: list[Path] = Field(
        default_factory=list, description="Extra directories of TLE files (*.txt, *.tle, *.3le)."
    )
    base_dir: Path | None = Field(None, exclude=True)
    """Directory of the file this came from (resolves relative paths); not a YAML key."""

    def resolved_tle_dirs(self) -> list[Path]:
        """``tle_dirs`` with relative entries taken from the config file's directory."""
        out = []
        for d in self.tle_dirs:
            d = d.expanduser()
            if self.base_dir is not None and not d.is_absolute():
                d = self.base_dir / d
            out.append(d)
        return out
