"""Predicted products: scene footprints laid along an orbit from a collection's swath.

This is the offline product source: it needs only the orbit (TLEs) and the collection table of
:mod:`eomatch.core.collections`, so it also works for future dates (planning).

Scenes are cut on an *absolute* time grid: scene ``k`` of a collection covers Unix seconds
``[k * scene_s, (k + 1) * scene_s)``. The same scene predicted from two different events (or two
runs) therefore has the same start, footprint and id::

    {collection}_{platform without spaces}_{scene start %Y%m%dT%H%M%S}_PRED

Scene lengths of the built-in collections (``CollectionInfo.scene_s``; swath = full width):

==================  ========  =======  ============================================
Collection          Swath km  Scene s  Approximate real product
==================  ========  =======  ============================================
S2_MSI_L1C / L2A    290       40       ~270 km along track (2-3 MGRS tile rows)
LANDSAT_C2L1 / L2   185       25       WRS-2 scene, ~185 x 180 km
S3_EFR / S3_ERR     1270      180      OLCI 3-minute frame
S3_SLSTR_L1RBT      1400      180      SLSTR 3-minute frame
VIIRS_SDR           3040      86       VIIRS 86 s granule
EMIT_L1B_RAD        75        11       EMIT ~75 km scene
==================  ========  =======  ============================================

Nadir-only collections (swath 0, e.g. altimeters) have no imagery footprint; asking for them is
an error rather than a silent empty result.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from eomatch.core.collections import CollectionInfo
from eomatch.core.crossovers import Orbit
from eomatch.core.geometry import swath_polygon
from eomatch.core.products import Product, SensorKey
from eomatch.core.vocabulary import PREDICTED_PROP
from eomatch.errors import InvalidValueError

PREDICTED_SUFFIX = "_PRED"


def scene_index_range(start: datetime, end: datetime, scene_s: int) -> range:
    """Indices ``k`` of the grid scenes that overlap ``[start, end)``."""
    t0, t1 = start.timestamp(), end.timestamp()
    if t1 <= t0:
        return range(0)
    return range(math.floor(t0 / scene_s), math.ceil(t1 / scene_s))


def predicted_product_id(sensor: SensorKey, scene_start: datetime) -> str:
    """Deterministic id of the predicted scene starting at ``scene_start``."""
    platform = sensor.platform.replace(" ", "")
    stamp = scene_start.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{sensor.collection}_{platform}_{stamp}{PREDICTED_SUFFIX}"


def _scene_times(k: int, scene_s: int, step_s: int) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    """Sample instants of scene ``k``: every ``step_s`` from its start, plus its end."""
    t0 = k * scene_s
    t1 = t0 + scene_s
    times = np.arange(t0, t1, step_s, dtype=np.int64)
    return np.append(times, np.int64(t1))


def predict_products(
    orbit: Orbit,
    sensor: SensorKey,
    info: CollectionInfo,
    start: datetime,
    end: datetime,
    step_s: int = 5,
    *,
    constellation: str | None = None,
) -> list[Product]:
    """Predicted acquisitions of ``sensor`` whose scene interval overlaps ``[start, end)``.

    Args:
        orbit: the platform's orbit (``track(times)`` gives sub-satellite points).
        sensor: the (collection, platform) written on the products.
        info: the collection's swath and scene length.
        start: window start (aware datetime).
        end: window end, exclusive.
        step_s: spacing of the track samples that outline each footprint.
        constellation: written to the ``constellation`` property when known.

    Returns:
        Products in time order, footprints split at the antimeridian, ``predicted=True``.
        Scenes where the orbit cannot be propagated (SGP4 failure) are left out.

    Raises:
        ValueError: a nadir-only collection (swath 0), a bad scene length or step.
    """
    if not info.swath_km > 0:
        raise InvalidValueError(
            f"collection {info.id} has no swath (nadir-only instrument {info.sensor}); "
            "predicted imagery footprints need a positive swath width"
        )
    if info.scene_s < 1:
        raise InvalidValueError(
            f"collection {info.id}: scene length must be >= 1 s, got {info.scene_s}"
        )
    if step_s < 1:
        raise InvalidValueError(f"track sampling step must be >= 1 s, got {step_s}")
    ks = scene_index_range(start, end, info.scene_s)
    if len(ks) == 0:
        return []
    per_scene = [_scene_times(k, info.scene_s, step_s) for k in ks]
    track = orbit.track(np.concatenate(per_scene))
    half = info.swath_km / 2.0
    props_base: dict[str, object] = {
        PREDICTED_PROP: True,
        "platform": sensor.platform,
        "instruments": [info.sensor],
    }
    if constellation:
        props_base["constellation"] = constellation
    products: list[Product] = []
    offset = 0
    for k, times in zip(ks, per_scene, strict=True):
        lat = track.lat[offset : offset + len(times)]
        lon = track.lon[offset : offset + len(times)]
        offset += len(times)
        if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
            continue
        scene_start = datetime.fromtimestamp(k * info.scene_s, UTC)
        scene_end = datetime.fromtimestamp((k + 1) * info.scene_s, UTC)
        products.append(
            Product(
                id=predicted_product_id(sensor, scene_start),
                sensor=sensor,
                start=scene_start,
                end=scene_end,
                geometry=swath_polygon(lat, lon, half),
                predicted=True,
                properties=dict(props_base),
            )
        )
    return products
