"""The satellite registry: one place that knows every name a platform goes by."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from eomatch.errors import UnknownSatelliteError as UnknownSatelliteError


@dataclass(frozen=True)
class Sensor:
    """An instrument on a satellite."""

    name: str
    """Instrument name, e.g. ``MSI``."""
    swath_km: float
    """Nominal full swath width; 0 for nadir-only instruments such as altimeters."""
    kind: str = "imager"
    """``imager`` or ``altimeter`` (nadir only)."""


@dataclass(frozen=True)
class Satellite:
    """A platform: its short name, provider aliases, orbit source and sensors."""

    short_name: str
    """Canonical short name used in output and ordering, e.g. ``S2A``."""
    name: str
    """Human name, e.g. ``Sentinel-2A``."""
    norad_id: int
    constellation: str
    sensors: tuple[Sensor, ...] = ()
    aliases: tuple[str, ...] = ()
    """Further names data providers use (matched case-insensitively)."""
    tle_file: str | None = None
    """TLE file name in the archive (``TLEset_S2A.txt``) or a path for user satellites."""

    def names(self) -> Iterator[str]:
        """Every name this satellite answers to."""
        yield self.short_name
        yield self.name
        yield from self.aliases


def _imager(name: str, swath: float) -> Sensor:
    return Sensor(name=name, swath_km=swath, kind="imager")


def _altimeter(name: str) -> Sensor:
    return Sensor(name=name, swath_km=0.0, kind="altimeter")


BUILTIN_SATELLITES: tuple[Satellite, ...] = (
    Satellite(
        "S2A",
        "Sentinel-2A",
        40697,
        "Sentinel-2",
        (_imager("MSI", 290.0),),
        ("Sentinel2A", "S2_A", "sentinel-2a"),
        "TLEset_S2A.txt",
    ),
    Satellite(
        "S2B",
        "Sentinel-2B",
        42063,
        "Sentinel-2",
        (_imager("MSI", 290.0),),
        ("Sentinel2B", "S2_B"),
        "TLEset_S2B.txt",
    ),
    Satellite(
        "LS8",
        "Landsat-8",
        39084,
        "Landsat",
        (_imager("OLI", 185.0), _imager("TIRS", 185.0)),
        ("Landsat8", "LANDSAT_8", "L8", "LC08"),
        "TLEset_LS8.txt",
    ),
    Satellite(
        "LS9",
        "Landsat-9",
        49260,
        "Landsat",
        (_imager("OLI-2", 185.0), _imager("TIRS-2", 185.0)),
        ("Landsat9", "LANDSAT_9", "L9", "LC09"),
        "TLEset_LS9.txt",
    ),
    Satellite(
        "S3A",
        "Sentinel-3A",
        41335,
        "Sentinel-3",
        (_imager("OLCI", 1270.0), _imager("SLSTR", 1400.0), _altimeter("SRAL")),
        ("Sentinel3A", "S3_A"),
        "TLEset_S3A.txt",
    ),
    Satellite(
        "S3B",
        "Sentinel-3B",
        43437,
        "Sentinel-3",
        (_imager("OLCI", 1270.0), _imager("SLSTR", 1400.0), _altimeter("SRAL")),
        ("Sentinel3B", "S3_B"),
        "TLEset_S3B.txt",
    ),
    Satellite(
        "J2",
        "Jason-2",
        33105,
        "Jason",
        (_altimeter("Poseidon-3"),),
        ("OSTM", "OSTM/Jason-2", "Jason2"),
        "TLEset_J2.txt",
    ),
    Satellite(
        "J3",
        "Jason-3",
        41240,
        "Jason",
        (_altimeter("Poseidon-3B"),),
        ("Jason3",),
        "TLEset_J3.txt",
    ),
    Satellite(
        "CS2",
        "CryoSat-2",
        36508,
        "CryoSat",
        (_altimeter("SIRAL"),),
        ("Cryosat2", "CryoSat"),
        "TLEset_CS2.txt",
    ),
    Satellite(
        "SARAL",
        "SARAL",
        39086,
        "SARAL",
        (_altimeter("AltiKa"),),
        ("SA", "SARAL-AltiKa", "Saral-AltiKa"),
        "TLEset_SA.txt",
    ),
    Satellite(
        "S6",
        "Sentinel-6A",
        46984,
        "Sentinel-6",
        (_altimeter("Poseidon-4"),),
        ("Sentinel-6", "Sentinel-6 Michael Freilich", "S6A", "S6MF"),
        "TLEset_S6.txt",
    ),
    Satellite(
        "N20",
        "NOAA-20",
        43013,
        "JPSS",
        (_imager("VIIRS", 3040.0),),
        ("JPSS-1", "NOAA20", "J1"),
        "TLEset_N20.txt",
    ),
    Satellite(
        "ISS",
        "ISS",
        25544,
        "ISS",
        (_imager("EMIT", 75.0), _imager("DESIS", 30.0)),
        ("EMIT", "ZARYA", "International Space Station"),
        "TLEset_EMIT.txt",
    ),
)


@dataclass
class SatelliteRegistry:
    """Looks satellites up by any of their names, case-insensitively."""

    satellites: list[Satellite] = field(default_factory=lambda: list(BUILTIN_SATELLITES))

    def __post_init__(self) -> None:
        self._index: dict[str, Satellite] = {}
        for sat in self.satellites:
            self._register_names(sat)

    def _register_names(self, sat: Satellite) -> None:
        for alias in sat.names():
            self._index[alias.casefold()] = sat

    def add(self, sat: Satellite) -> None:
        """Add (or replace, by short name) a satellite; its names then win over older ones."""
        self.satellites = [s for s in self.satellites if s.short_name != sat.short_name]
        self.satellites.append(sat)
        self._index = {}
        for s in self.satellites:
            self._register_names(s)

    def get(self, name: str) -> Satellite:
        """Return the satellite called ``name`` (any alias, any case)."""
        sat = self._index.get(name.strip().casefold())
        if sat is None:
            known = ", ".join(sorted(s.short_name for s in self.satellites))
            raise UnknownSatelliteError(f"unknown satellite {name!r}; known: {known}")
        return sat

    def resolve(self, names: Iterable[str]) -> list[Satellite]:
        """Resolve several names, dropping duplicates but keeping the first-seen order."""
        out: list[Satellite] = []
        for n in names:
            sat = self.get(n)
            if sat not in out:
                out.append(sat)
        return out

    def __iter__(self) -> Iterator[Satellite]:
        return iter(self.satellites)

    def __len__(self) -> int:
        return len(self.satellites)
