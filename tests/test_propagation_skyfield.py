"""eomatch's SGP4 + GMST sub-satellite points and element-set selection against skyfield."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import numpy as np
import pytest
from skyfield.api import wgs84

import reference_bruteforce as rb
from eomatch.core.propagation import propagate
from eomatch.core.satellites import SatelliteRegistry
from eomatch.core.tle import ElementArchive
from eomatch.io.tle_store import TleStore

TOL_KM = 0.05
SAME_SET_TOL_KM = 0.001
"""Same element set, same convention: the two implementations agree to millimetres (observed
~2 mm); neighbouring element sets at the midpoint between their epochs differ by metres to
kilometres, so this tolerance tells which set the engine used."""
SATELLITES = ["S2A", "LS9", "S3B", "N20", "J3", "CS2", "SARAL", "S6", "ISS"]
Y2022 = datetime(2022, 1, 1, tzinfo=UTC).timestamp()
Y2023 = datetime(2023, 1, 1, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def store() -> TleStore:
    return TleStore()


@pytest.fixture(scope="module")
def registry() -> SatelliteRegistry:
    return SatelliteRegistry()


def _archive(store: TleStore, registry: SatelliteRegistry, name: str) -> ElementArchive:
    return store.archive(registry.get(name))


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def _random_times(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.integers(int(Y2022), int(Y2023), size=n)).astype(np.int64)


@pytest.mark.parametrize("name", SATELLITES)
def test_subpoints_agree_with_skyfield(store, registry, name: str) -> None:
    """Same convention (UT1 = UTC): the two implementations agree to far below 50 m.

    With skyfield's true UT1 they would differ by an Earth rotation of |UT1 - UTC| ~ 0.1 s in
    2022, i.e. ~50 m at the equator, so this comparison adopts the engine's convention.
    """
    archive = _archive(store, registry, name)
    times = _random_times(_seed(name), 400)
    track = propagate(archive, times)
    ref = rb.satellite(name, ut1_equals_utc=True)
    lat, lon = ref.subpoints(times, full_nutation=True)
    d = rb.haversine_km(track.lat, track.lon, lat, lon)
    assert np.all(np.isfinite(d))
    assert float(d.max()) <= TOL_KM, f"{name}: worst {d.max() * 1000:.1f} m at {times[d.argmax()]}"
    assert np.all((track.lon >= -180.0) & (track.lon < 180.0))
    assert np.array_equal(track.times, times)


@pytest.mark.parametrize("name", ["S2A", "J3", "ISS"])
def test_pair_distances_are_insensitive_to_ut1(store, registry, name: str) -> None:
    """With skyfield's true UT1 the sub-points differ by an Earth rotation of |UT1 - UTC| (up to
    ~50 m at the equator in 2022), but two satellites are rotated alike, so the distances that
    the crossover definition uses still agree."""
    other = "LS9" if name != "LS9" else "S2A"
    a = _archive(store, registry, name)
    b = _archive(store, registry, other)
    ta = _random_times(7, 300)
    tb = ta + np.random.default_rng(8).integers(-1800, 1801, size=len(ta))
    pa, pb = propagate(a, ta), propagate(b, tb)
    d_engine = rb.haversine_km(pa.lat, pa.lon, pb.lat, pb.lon)
    la, oa = rb.satellite(name).subpoints(ta)
    lb, ob = rb.satellite(other).subpoints(tb)
    d_ref = rb.haversine_km(la, oa, lb, ob)
    assert float(np.abs(d_engine - d_ref).max()) <= TOL_KM
    # The latitude (unaffected by a rotation about the pole) agrees much more closely still.
    assert float(np.abs(pa.lat - la).max()) * 111.2 <= TOL_KM


@pytest.mark.parametrize("name", [*SATELLITES, "J2", "S2B", "LS8", "S3A"])
def test_archive_holds_exactly_the_valid_element_sets(store, registry, name: str) -> None:
    """Same sets as the reference parser (J2's two corrupt entries are skipped by both)."""
    archive = _archive(store, registry, name)
    ref = rb.satellite(name)
    assert len(archive.sets) == len(ref.tles)
    assert np.array_equal(archive.epochs, ref.epochs)
    assert all(
        (es.line1, es.line2) == (t.line1, t.line2)
        for es, t in zip(archive.sets, ref.tles, strict=True)
    )


@pytest.mark.parametrize("name", ["S2A", "N20", "CS2", "S6"])
def test_nearest_epoch_selection(store, registry, name: str) -> None:
    archive = _archive(store, registry, name)
    epochs = archive.epochs
    rng = np.random.default_rng(_seed(name))
    inside = (epochs >= Y2022) & (epochs < Y2023)
    k = np.flatnonzero(inside[:-1])
    k = rng.choice(k, size=200, replace=False)
    mids = (epochs[k] + epochs[k + 1]) / 2.0
    times = np.concatenate(
        [
            _random_times(1, 300),
            np.floor(mids).astype(np.int64) - 1,  # just before a midpoint: the earlier set
            np.ceil(mids).astype(np.int64) + 1,  # just after: the later set
            np.round(epochs[k]).astype(np.int64),
            [int(epochs[0]) - 86400, int(epochs[-1]) + 86400],  # outside the coverage
        ]
    )
    got = archive.nearest(times)
    # Brute force: the smallest |epoch - t| over all epochs.
    gaps = np.abs(epochs[None, :] - times[:, None].astype(np.float64))
    best = gaps.min(axis=1)
    assert np.allclose(gaps[np.arange(len(times)), got], best, rtol=0.0, atol=1e-6)
    # And the same choice as the reference's own (searchsorted-free) rule, except exact ties.
    ref_idx = rb.nearest_epoch_index(epochs, times)
    assert np.array_equal(got, ref_idx)
    n_mid = len(k)
    before = got[300 : 300 + n_mid]
    after = got[300 + n_mid : 300 + 2 * n_mid]
    assert np.array_equal(before, k)
    assert np.array_equal(after, k + 1)


@pytest.mark.parametrize("name", ["S2A", "J3", "CS2"])
def test_propagation_uses_the_nearest_element_set(store, registry, name: str) -> None:
    """Either side of the midpoint between two epochs, the engine's position is the one
    propagated from the nearer set, not from its neighbour."""
    archive = _archive(store, registry, name)
    ref = rb.satellite(name, ut1_equals_utc=True)
    epochs = archive.epochs
    assert np.array_equal(ref.epochs, epochs)  # so indices name the same element sets
    k = np.flatnonzero((epochs[:-1] >= Y2022) & (epochs[:-1] < Y2023))[::40]
    mids = (epochs[k] + epochs[k + 1]) / 2.0
    t_before = np.floor(mids).astype(np.int64) - 1
    t_after = np.ceil(mids).astype(np.int64) + 1
    discriminating = 0
    for times, own, neighbour in ((t_before, k, k + 1), (t_after, k + 1, k)):
        track = propagate(archive, times)
        for i, t in enumerate(times):
            lat_own, lon_own = _skyfield_with_set(ref, int(own[i]), int(t))
            lat_nb, lon_nb = _skyfield_with_set(ref, int(neighbour[i]), int(t))
            d_own = float(rb.haversine_km(track.lat[i], track.lon[i], lat_own, lon_own))
            d_nb = float(rb.haversine_km(track.lat[i], track.lon[i], lat_nb, lon_nb))
            assert d_own <= SAME_SET_TOL_KM, (t, d_own, d_nb)
            discriminating += d_nb > 2 * SAME_SET_TOL_KM
    # The check has teeth: the neighbouring set would (almost always) have failed it.
    assert discriminating >= 0.9 * 2 * len(k)


def _skyfield_with_set(ref: rb.RefSatellite, index: int, t: int) -> tuple[float, float]:
    sat = ref.earth_satellite(index)
    geo = wgs84.subpoint_of(sat.at(rb.skyfield_times(ref.ts, np.array([t]))))
    return float(geo.latitude.degrees[0]), float(geo.longitude.degrees[0])
