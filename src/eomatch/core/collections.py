"""Product collections: which sensor a collection holds and how its scenes are cut.

A *collection* is a provider's product type (``S2_MSI_L1C``, ``LANDSAT_C2L1``, ...). Matchups are
between (collection, platform) *sensors*. The table below is what the predicted-product source
uses to lay scene footprints along a track; the STAC source uses the real footprints.
"""

from __future__ import annotations

from dataclasses import dataclass

from eomatch.errors import UnknownCollectionError as UnknownCollectionError


@dataclass(frozen=True)
class CollectionInfo:
    """What eomatch needs to know about one product collection."""

    id: str
    sensor: str
    """Instrument name as in the satellite registry (``MSI``, ``OLI``, ``OLCI``...)."""
    swath_km: float
    """Full across-track width of one scene."""
    scene_s: int
    """Along-track length of one scene in seconds of flight (predicted products)."""
    platforms: tuple[str, ...]
    """Registry short names that produce it."""
    description: str = ""


BUILTIN_COLLECTIONS: tuple[CollectionInfo, ...] = (
    CollectionInfo("S2_MSI_L1C", "MSI", 290.0, 40, ("S2A", "S2B"),
                   "Sentinel-2 MSI Level-1C top-of-atmosphere reflectance"),
    CollectionInfo("S2_MSI_L2A", "MSI", 290.0, 40, ("S2A", "S2B"),
                   "Sentinel-2 MSI Level-2A surface reflectance"),
    CollectionInfo("LANDSAT_C2L1", "OLI", 185.0, 25, ("LS8", "LS9"),
                   "Landsat Collection 2 Level-1 (WRS-2 scenes, ~185 x 180 km)"),
    CollectionInfo("LANDSAT_C2L2", "OLI", 185.0, 25, ("LS8", "LS9"),
                   "Landsat Collection 2 Level-2 surface reflectance"),
    CollectionInfo("S3_EFR", "OLCI", 1270.0, 180, ("S3A", "S3B"),
                   "Sentinel-3 OLCI Level-1 full resolution (3-minute frames)"),
    CollectionInfo("S3_ERR", "OLCI", 1270.0, 180, ("S3A", "S3B"),
                   "Sentinel-3 OLCI Level-1 reduced resolution"),
    CollectionInfo("S3_SLSTR_L1RBT", "SLSTR", 1400.0, 180, ("S3A", "S3B"),
                   "Sentinel-3 SLSTR Level-1 radiances and brightness temperatures"),
    CollectionInfo("VIIRS_SDR", "VIIRS", 3040.0, 86, ("N20",),
                   "JPSS VIIRS sensor data records (86 s granules)"),
    CollectionInfo("EMIT_L1B_RAD", "EMIT", 75.0, 11, ("ISS",),
                   "EMIT Level-1B radiance (~75 km scenes)"),
)  # fmt: skip


def builtin_collections() -> dict[str, CollectionInfo]:
    """Collection id → info for the built-in table."""
    return {c.id: c for c in BUILTIN_COLLECTIONS}
