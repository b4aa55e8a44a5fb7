"""Matchup datasets (issue 15 §1): the pixels of the collocation region, exactly.

Every product is a real file the tests write (COGs in UTM and in lon/lat, JP2 band files in a
SAFE folder and zip, NetCDF), with values that say where they are (``row * 10000 + col``) or a
linear ramp in x, so the expected window and the expected resampled values are known.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import shapely
import xarray as xr
from affine import Affine
from pyproj import Transformer

from dataset_helpers import (
    COG,
    L9,
    S2,
    UTM,
    X0,
    Y0,
    Spec,
    asset,
    catalogue_with,
    easting_band,
    index_band,
    serve,
    utm_box_in_lonlat,
    write_raster,
)
from eomatch.core.collocation import (
    DatasetOptions,
    Grid,
    Resampling,
    coarsest,
    region_in_crs,
    resampling_for,
)
from eomatch.core.products import SensorKey
from eomatch.errors import InputError, UnreadableProductError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.matchup_dataset import write_tree

S2N = "S2_MSI_L2A-Sentinel-2A"
L9N = "LANDSAT_C2L2-Landsat-9"
GEO = SensorKey("GEO_TEST", "Landsat-8")
# A UTM rectangle whose edges fall a quarter pixel inside the 10 m lattice: window and mask known.
BOX = (X0 + 102.5, Y0 - 1492.5, X0 + 1502.5, Y0 - 192.5)
REGION = utm_box_in_lonlat(*BOX)
T10 = Affine(10, 0, X0, 0, -10, Y0)
T30 = Affine(30, 0, X0, 0, -30, Y0)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("products")
    lon0, lat0 = 8.99, 45.16  # a lon/lat raster (0.001°) around the same place
    return {
        "s2_index": write_raster(d / "s2_index.tif", index_band(300, 300), UTM, T10),
        "s2_ramp": write_raster(d / "s2_ramp.tif", easting_band(T10, 300, 300), UTM, T10),
        "l9_ramp": write_raster(d / "l9_ramp.tif", easting_band(T30, 100, 100), UTM, T30),
        "geo_index": write_raster(
            d / "geo_index.tif",
            index_band(60, 60),
            "EPSG:4326",
            Affine(0.001, 0, lon0, 0, -0.001, lat0),
        ),
        "geo_ramp": write_raster(  # easting of each lon/lat pixel's centre, for the ramp test
            d / "geo_ramp.tif",
            _geo_easting(Affine(0.001, 0, lon0, 0, -0.001, lat0), 60, 60),
            "EPSG:4326",
            Affine(0.001, 0, lon0, 0, -0.001, lat0),
        ),
    }


def _geo_easting(t: Affine, h: int, w: int) -> np.ndarray:
    lon = t.c + (np.arange(w) + 0.5) * t.a
    lat = t.f + (np.arange(h) + 0.5) * t.e
    lons, lats = np.meshgrid(lon, lat)
    x, _ = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(lons, lats)
    return np.asarray(x, dtype=np.float64)


def _cat(tmp_path: Path, specs, region=REGION) -> tuple[MatchupCatalogue, str]:
    return catalogue_with(tmp_path / "cat", specs, region)


# --- core: grid maths -----------------------------------------------------------------------


def test_window_of_a_box_is_floor_and_ceil_of_pixel_positions():
    grid = Grid(UTM, tuple(T10)[:6], 300, 300)
    win = grid.window(BOX)
    assert (win.row_off, win.col_off, win.height, win.width) == (19, 10, 131, 141)
    assert grid.window((X0 - 500, Y0 + 10, X0 - 10, Y0 + 500)) is None  # outside
    clipped = grid.window((X0 - 500, Y0 - 25, X0 + 25, Y0 + 500))
    assert (clipped.row_off, clipped.col_off, clipped.height, clipped.width) == (0, 0, 3, 3)
    with pytest.raises(InputError, match="axis-aligned"):
        Grid(UTM, (10, 1, 0, 0, -10, 0), 5, 5)


def test_region_margin_grows_the_region_on_the_ground():
    plain = region_in_crs(REGION, UTM).bounds
    assert plain == pytest.approx(BOX, abs=1e-3)
    grown = region_in_crs(REGION, UTM, margin_m=250.0).bounds
    deltas = np.subtract(grown, plain) * [-1, -1, 1, 1]
    assert deltas == pytest.approx([250.0] * 4, abs=1.0)
    with pytest.raises(InputError, match="margin"):
        DatasetOptions(margin_m=-1)
    with pytest.raises(InputError, match="grid='common'"):
        DatasetOptions(target="S2_MSI_L2A")


def test_coarser_grid_and_resampling_method():
    g10 = Grid(UTM, tuple(T10)[:6], 10, 10)
    g30 = Grid(UTM, tuple(T30)[:6], 10, 10)
    geo = Grid("EPSG:4326", (0.001, 0, 9, 0, -0.001, 45), 10, 10)  # ~79 m x 111 m at 45°N
    assert coarsest({"a": g10, "b": g30}, 45.0) == "b"
    assert coarsest({"a": g10, "b": g30, "c": geo}, 45.0) == "c"
    assert resampling_for(g10, g30, 45.0, Resampling.AUTO) is Resampling.AVERAGE
    assert resampling_for(g30, g10, 45.0, Resampling.AUTO) is Resampling.BILINEAR
    assert resampling_for(g10, g10, 45.0, Resampling.AUTO) is Resampling.NEAREST
    assert resampling_for(g10, g30, 45.0, Resampling.CUBIC) is Resampling.CUBIC


# --- native grids: exactly the region's pixels -------------------------------------------------


def test_native_utm_and_geographic_windows_hold_the_expected_pixels(tmp_path, files):
    cat, mid = _cat(
        tmp_path,
        [
            Spec(S2, {"B04": asset(files["s2_index"]), "ramp": asset(files["s2_ramp"])}),
            Spec(GEO, {"data": asset(files["geo_index"])}),
        ],
    )
    with cat:
        tree = cat.get_matchup(mid).return_matchup_dataset()
    s2 = tree[S2N].to_dataset()
    # rows 19..149, cols 10..150 of the 10 m raster
    np.testing.assert_array_equal(s2["B04"].values, index_band(300, 300)[19:150, 10:151])
    assert s2["B04"].dtype == np.int32  # values as stored
    np.testing.assert_array_equal(s2["x"].values, X0 + (np.arange(10, 151) + 0.5) * 10)
    np.testing.assert_array_equal(s2["y"].values, Y0 - (np.arange(19, 150) + 0.5) * 10)
    mask = s2["in_collocation_region"].values
    assert mask[:130, :140].all()
    assert not mask[130, :].any()
    assert not mask[:, 140].any()
    assert s2.rio.crs.to_epsg() == 32632
    # lon/lat raster: the window of the region's lon/lat bounds, computed here independently
    minx, miny, maxx, maxy = REGION.bounds
    c0, c1 = int(np.floor((minx - 8.99) / 0.001)), int(np.ceil((maxx - 8.99) / 0.001))
    r0, r1 = int(np.floor((45.16 - maxy) / 0.001)), int(np.ceil((45.16 - miny) / 0.001))
    geo = tree["GEO_TEST-Landsat-8"].to_dataset()
    np.testing.assert_array_equal(geo["data"].values, index_band(60, 60)[r0:r1, c0:c1])
    assert geo.rio.crs.to_epsg() == 4326
    assert geo["x"].attrs["standard_name"] == "longitude"
    assert s2["x"].attrs["standard_name"] == "projection_x_coordinate"


def test_attributes_carry_matchup_event_and_product(tmp_path, files):
    cat, mid = _cat(
        tmp_path,
        [Spec(S2, {"B04": asset(files["s2_index"])}), Spec(L9, {"ramp": asset(files["l9_ramp"])})],
    )
    with cat:
        mu = cat.get_events()[0].matchups[0]
    tree = mu.return_matchup_dataset(margin_m=100)  # works after the catalogue is closed
    attrs = tree.attrs
    assert attrs["Conventions"] == "CF-1.10"
    assert attrs["matchup_id"] == mid
    assert attrs["event_id"] == mu.event_id
    assert attrs["event:distance_km"] == 12.5
    assert attrs["matchup:time_diff_abs"] == 120.0
    assert attrs["margin_m"] == 100.0
    assert shapely.from_wkt(attrs["collocation_region_wkt"]).equals_exact(REGION, 1e-6)
    node = tree[S2N].to_dataset()
    assert node.attrs["product_id"] == mu.products[1].id
    assert node.attrs["eo:cloud_cover"] == 3.5
    assert node.attrs["start_datetime"] == "2022-05-21T10:30:00+00:00"
    assert node["time"].values == np.datetime64("2022-05-21T10:30:00")
    # 100 m margin: 10 more pixels on each side, all flagged outside the region
    assert node.sizes == {"y": 131 + 20, "x": 141 + 20}
    assert int(node["in_collocation_region"].sum()) == 130 * 140


# --- common grid: values known after resampling --------------------------------------------------


def test_common_grid_averages_a_ramp_onto_the_coarser_grid(tmp_path, files):
    cat, mid = _cat(
        tmp_path,
        [Spec(S2, {"ramp": asset(files["s2_ramp"])}), Spec(L9, {"ramp": asset(files["l9_ramp"])})],
    )
    with cat:
        mu = cat.get_matchup(mid)
    tree = mu.return_matchup_dataset(grid="common")
    s2, l9 = tree[S2N].to_dataset(), tree[L9N].to_dataset()
    np.testing.assert_array_equal(s2["x"].values, l9["x"].values)  # pixel by pixel
    np.testing.assert_array_equal(s2["y"].values, l9["y"].values)
    assert s2.rio.crs == l9.rio.crs
    assert s2.sizes == l9.sizes
    assert s2.attrs["resampling"] == "average"
    assert l9.attrs["resampling"] == "none"
    inner = (slice(1, -1), slice(1, -1))  # edge pixels are only partly covered by the 10 m data
    np.testing.assert_allclose(s2["ramp"].values[inner], l9["ramp"].values[inner], atol=1e-6)
    np.testing.assert_allclose(
        s2["ramp"].values[inner], np.broadcast_to(s2["x"].values, s2["ramp"].shape)[inner]
    )
    up = mu.return_matchup_dataset(grid="common", target="Sentinel-2A")
    s2u, l9u = up[S2N].to_dataset(), up[L9N].to_dataset()
    assert l9u.attrs["resampling"] == "bilinear"
    assert s2u.sizes == {"y": 131, "x": 141}
    inner = (slice(3, -3), slice(3, -3))  # a linear ramp survives bilinear interpolation
    np.testing.assert_allclose(l9u["ramp"].values[inner], s2u["ramp"].values[inner], atol=1e-6)


def test_common_grid_reprojects_utm_onto_lon_lat(tmp_path, files):
    cat, mid = _cat(
        tmp_path,
        [
            Spec(S2, {"ramp": asset(files["s2_ramp"])}),
            Spec(GEO, {"easting": asset(files["geo_ramp"])}),
        ],
    )
    with cat:
        tree = cat.get_matchup(mid).return_matchup_dataset(grid="common", margin_m=200)
    s2, geo = tree[S2N].to_dataset(), tree["GEO_TEST-Landsat-8"].to_dataset()
    assert s2.rio.crs.to_epsg() == 4326  # the lon/lat grid (~79 m x 111 m) is the coarser
    assert s2.attrs["resampling"] == "average"
    inside = geo["in_collocation_region"].values == 1
    assert inside.sum() > 100
    # the average of a ramp in easting over each lon/lat pixel is the easting of its centre
    diff = np.abs(s2["ramp"].values - geo["easting"].values)[inside]
    assert diff.max() < 1.0, diff.max()


# --- readers --------------------------------------------------------------------------------------


def test_remote_cog_is_read_by_range_requests(tmp_path):
    big = tmp_path / "srv" / "big.tif"
    big.parent.mkdir()
    t = Affine(10, 0, X0, 0, -10, Y0)
    write_raster(big, index_band(2048, 2048).astype(np.uint16), UTM, t, blocksize=256)
    size = big.stat().st_size
    with serve(big.parent) as srv:
        href = f"{srv.url}/big.tif"
        cat, mid = _cat(
            tmp_path,
            [Spec(S2, {"B04": asset(href)}), Spec(L9, {"B04": asset(big)})],
        )
        with cat:
            tree = cat.get_matchup(mid).return_matchup_dataset()
    remote, local = tree[S2N].to_dataset(), tree[L9N].to_dataset()
    np.testing.assert_array_equal(remote["B04"].values, local["B04"].values)
    np.testing.assert_array_equal(
        remote["B04"].values, index_band(2048, 2048).astype(np.uint16)[19:150, 10:151]
    )
    assert remote.attrs["source"] == f'["{href}"]'
    assert any(r and r.startswith("bytes=") for r in srv.requests)
    assert srv.sent < size / 10, (srv.sent, size)  # a few tiles, not the 8 MB file


def test_unreadable_products_fail_on_one_line(tmp_path, files):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not a tiff at all")
    cases = [
        ({"data": asset("/x/product.zip", "application/zip")}, "no reader for its assets"),
        ({"B04": asset(broken)}, "cannot read it"),
        ({"B04": asset(tmp_path / "missing.tif")}, "cannot read it"),
    ]
    for i, (assets, message) in enumerate(cases):
        cat, mid = catalogue_with(
            tmp_path / f"c{i}", [Spec(S2, assets), Spec(L9, {"r": asset(files["l9_ramp"])})], REGION
        )
        with cat, pytest.raises(UnreadableProductError, match=message) as info:
            cat.get_matchup(mid).return_matchup_dataset()
        assert "\n" not in str(info.value)
        assert "Sentinel-2A_" in str(info.value)
    cat, mid = catalogue_with(
        tmp_path / "pred",
        [Spec(S2, {}, predicted=True), Spec(L9, {"r": asset(files["l9_ramp"])})],
        REGION,
    )
    with cat, pytest.raises(UnreadableProductError, match="predicted from the orbit"):
        cat.get_matchup(mid).return_matchup_dataset()
    far = write_raster(tmp_path / "far.tif", index_band(10, 10), UTM, Affine(10, 0, 0, 0, -10, 0))
    cat, mid = catalogue_with(
        tmp_path / "far",
        [Spec(S2, {"B04": asset(far)}), Spec(L9, {"r": asset(files["l9_ramp"])})],
        REGION,
    )
    with cat, pytest.raises(UnreadableProductError, match="no pixel of the raster meets"):
        cat.get_matchup(mid).return_matchup_dataset()


def test_a_new_matchup_says_it_needs_a_catalogue(tmp_path, files):
    cat, mid = _cat(tmp_path, [Spec(S2, {}), Spec(L9, {})])
    with cat:
        mu = cat.get_matchup(mid)
    bare = type(mu)(mu.id, mu.products, mu.geometry, mu.area_km2, mu.time_diff_abs_s, mu.event_id)
    with pytest.raises(InputError, match="not read from a catalogue"):
        bare.return_matchup_dataset()


def test_landsat_stac_band_assets_get_cf_scaling(tmp_path, files):
    data = np.full((100, 100), 20000, dtype=np.uint16)
    data[20, :] = 0  # a nodata row inside the window
    red = write_raster(tmp_path / "LC09_SR_B4.TIF", data, UTM, T30, nodata=0)
    rb = [{"nodata": 0, "scale": 2.75e-05, "offset": -0.2, "data_type": "uint16"}]
    eo = [{"name": "B4", "common_name": "red", "center_wavelength": 0.65}]
    assets = {
        "red": asset(red, COG, **{"raster:bands": rb, "eo:bands": eo}),
        "thumbnail": {"href": str(tmp_path / "t.png"), "type": "image/png", "roles": ["thumbnail"]},
        "MTL.json": {"href": str(tmp_path / "m.json"), "type": "application/json"},
    }
    s2 = {"red": asset(files["s2_index"]), "other": asset(tmp_path / "missing.tif")}
    cat, mid = _cat(tmp_path, [Spec(L9, assets), Spec(S2, s2)])
    with cat:
        mu = cat.get_matchup(mid)
    tree = mu.return_matchup_dataset(assets=["red"])  # the missing S2 asset is not asked for
    assert sorted(tree.children) == [L9N, S2N]
    red_var = tree[L9N].to_dataset()["red"]
    assert red_var.attrs["standard_name"] == "surface_bidirectional_reflectance"
    assert red_var.attrs["scale_factor"] == 2.75e-05
    assert red_var.attrs["add_offset"] == -0.2
    assert red_var.attrs["band_common_name"] == "red"
    assert red_var.attrs["units"] == "1"
    assert tree[L9N].attrs["reader"] == "landsat"
    # a CF reader decodes the stored numbers into reflectance and masks nodata, on both grids
    for grid in ("native", "common"):
        out = write_tree(
            mu.return_matchup_dataset(grid=grid, assets=["red"]), tmp_path / f"{grid}.nc"
        )
        with xr.open_datatree(out) as back:
            refl = back[L9N].to_dataset()["red"].values
        assert np.nanmax(refl) == pytest.approx(20000 * 2.75e-05 - 0.2)
        assert np.isnan(refl).sum() == refl.shape[1]  # the nodata row (window rows 6..50)


def test_sentinel2_safe_folder_and_zip_keep_each_resolution(tmp_path, files):
    l9 = files["l9_ramp"]
    safe = tmp_path / "S2A_MSIL2A_20220521T103031_N0400_R108_T32TMR_20220521T150000.SAFE"
    img = safe / "GRANULE" / "L2A_T32TMR_A000001_20220521T103031" / "IMG_DATA"
    (img / "R10m").mkdir(parents=True)
    (img / "R20m").mkdir()
    b04 = index_band(200, 200).astype(np.uint16)
    b05 = index_band(100, 100).astype(np.uint16) + 7
    t20 = Affine(20, 0, X0, 0, -20, Y0)
    write_raster(
        img / "R10m" / "T32TMR_20220521T103031_B04_10m.jp2", b04, UTM, T10, driver="JP2OpenJPEG"
    )
    write_raster(
        img / "R20m" / "T32TMR_20220521T103031_B04_20m.jp2", b05, UTM, t20, driver="JP2OpenJPEG"
    )
    write_raster(
        img / "R20m" / "T32TMR_20220521T103031_B05_20m.jp2", b05, UTM, t20, driver="JP2OpenJPEG"
    )
    zipped = tmp_path / "zip" / (safe.name.removesuffix(".SAFE") + ".zip")
    zipped.parent.mkdir()
    with zipfile.ZipFile(zipped, "w") as z:
        for f in safe.rglob("*.jp2"):
            z.write(f, str(f.relative_to(tmp_path)))
    for i, href in enumerate([safe, zipped]):
        if i == 1:
            shutil.rmtree(safe)  # the zip is read on its own, never extracted
        cat, mid = catalogue_with(
            tmp_path / f"c{i}",
            [Spec(S2, {"data": asset(href, "application/zip")}), Spec(L9, {"r": asset(l9)})],
            REGION,
        )
        with cat:
            tree = cat.get_matchup(mid).return_matchup_dataset()
        assert sorted(tree[S2N].children) == ["10m", "20m"]
        n10, n20 = tree[f"{S2N}/10m"].to_dataset(), tree[f"{S2N}/20m"].to_dataset()
        assert list(n10.data_vars) == ["B04", "in_collocation_region"]  # not the 20 m B04 copy
        np.testing.assert_array_equal(n10["B04"].values, b04[19:150, 10:151])
        np.testing.assert_array_equal(n20["B05"].values, b05[9:75, 5:76])
        assert n10.attrs["source"] == f'["{href}#T32TMR_20220521T103031_B04_10m.jp2"]'
        assert tree[S2N].attrs["reader"] == "sentinel-2"
    assert sorted(p.name for p in zipped.parent.iterdir()) == [zipped.name]


def test_sentinel2_bands_of_several_resolutions_are_child_nodes(tmp_path, files):
    b20 = write_raster(
        tmp_path / "B05.tif", index_band(150, 150), UTM, Affine(20, 0, X0, 0, -20, Y0)
    )
    b60 = write_raster(tmp_path / "B01.tif", index_band(50, 50), UTM, Affine(60, 0, X0, 0, -60, Y0))
    cat, mid = _cat(
        tmp_path,
        [
            Spec(S2, {"B04": asset(files["s2_index"]), "B05": asset(b20), "B01": asset(b60)}),
            Spec(L9, {"r": asset(files["l9_ramp"])}),
        ],
    )
    with cat:
        mu = cat.get_matchup(mid)
    native = mu.return_matchup_dataset()
    assert sorted(native[S2N].children) == ["10m", "20m", "60m"]
    assert native[f"{S2N}/10m"].to_dataset()["B04"].shape == (131, 141)
    assert native[S2N].attrs["product_id"] == mu.products[1].id
    # common: Sentinel-2 counts as 10 m (its finest grid), so Landsat's 30 m is the coarser
    common = mu.return_matchup_dataset(grid="common")
    node, l9 = common[S2N].to_dataset(), common[L9N].to_dataset()
    assert {"B04", "B05", "B01", "in_collocation_region"} <= set(node.data_vars)
    np.testing.assert_array_equal(node["x"].values, l9["x"].values)
    assert np.diff(node["x"].values)[0] == 30.0
    assert node.attrs["resampling"] == "mixed"  # average from 10 and 20 m, bilinear from 60 m
    assert node.attrs["native_pixel_size_m"] == [10.0, 20.0, 60.0]


def test_netcdf_regular_and_curvilinear(tmp_path, files):
    lon = 8.99 + (np.arange(60) + 0.5) * 0.001
    lat = 45.10 + (np.arange(70) + 0.5) * 0.001  # ascending, as NetCDF grids often are
    sst = index_band(70, 60).astype(np.float32)
    ds = xr.Dataset(
        {"sst": (("lat", "lon"), sst, {"units": "K", "standard_name": "sea_surface_temperature"})},
        coords={
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    regular = tmp_path / "regular.nc"
    ds.to_netcdf(regular)
    lons, lats = np.meshgrid(lon, lat)
    swath = xr.Dataset(
        {"rad": (("rows", "columns"), sst)},
        coords={"longitude": (("rows", "columns"), lons), "latitude": (("rows", "columns"), lats)},
    )
    curvi = tmp_path / "swath.nc"
    swath.to_netcdf(curvi)
    cat, mid = _cat(
        tmp_path,
        [
            Spec(S2, {"data": asset(regular, "application/netcdf")}),
            Spec(L9, {"data": asset(curvi, "application/x-netcdf")}),
        ],
    )
    with cat:
        mu = cat.get_matchup(mid)
    tree = mu.return_matchup_dataset()
    minx, miny, maxx, maxy = REGION.bounds
    c0, c1 = int(np.floor((minx - 8.99) / 0.001)), int(np.ceil((maxx - 8.99) / 0.001))
    r0, r1 = int(np.floor((miny - 45.10) / 0.001)), int(np.ceil((maxy - 45.10) / 0.001))
    got = tree[S2N].to_dataset()
    np.testing.assert_array_equal(got["sst"].values, sst[r0:r1, c0:c1])
    assert got["sst"].attrs["standard_name"] == "sea_surface_temperature"
    assert tree[S2N].attrs["reader"] == "netcdf"
    sw = tree[L9N].to_dataset()
    inside_centres = (lons >= minx) & (lons <= maxx) & (lats >= miny) & (lats <= maxy)
    assert sw["rad"].size >= inside_centres.sum() > 0
    assert set(np.unique(sw["rad"].values[sw["in_collocation_region"].values == 1])) <= set(
        np.unique(sst[inside_centres])
    )
    with pytest.raises(InputError, match="curvilinear"):
        mu.return_matchup_dataset(grid="common")


# --- files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_written_file_reopens_with_values_and_cf_metadata(tmp_path, files, suffix):
    cat, mid = _cat(
        tmp_path,
        [Spec(S2, {"B04": asset(files["s2_index"])}), Spec(L9, {"ramp": asset(files["l9_ramp"])})],
    )
    with cat:
        tree = cat.get_matchup(mid).return_matchup_dataset()
    out = write_tree(tree, tmp_path / f"mu{suffix}")
    with pytest.raises(InputError, match="exists"):
        write_tree(tree, out)
    engine = "zarr" if suffix == ".zarr" else "netcdf4"
    back = xr.open_datatree(out, engine=engine, decode_coords="all")
    try:
        node = back[S2N].to_dataset()
        np.testing.assert_array_equal(node["B04"].values, index_band(300, 300)[19:150, 10:151])
        assert node.rio.crs.to_epsg() == 32632
        assert node["B04"].encoding.get("grid_mapping", node["B04"].attrs.get("grid_mapping")) == (
            "spatial_ref"
        )
        assert node["time"].values == np.datetime64("2022-05-21T10:30:00")
        assert back.attrs["Conventions"] == "CF-1.10"
        assert back.attrs["matchup_id"] == mid
        assert sorted(back.children) == [L9N, S2N]
    finally:
        back.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mu")] == []  # no leftovers


def test_a_region_too_large_to_read_at_once_is_refused(tmp_path, files, monkeypatch):
    import eomatch.core.collocation as collocation

    monkeypatch.setattr(collocation, "MAX_WINDOW_PIXELS", 131 * 141 - 1)
    cat, mid = _cat(
        tmp_path,
        [Spec(S2, {"B04": asset(files["s2_index"])}), Spec(L9, {"r": asset(files["l9_ramp"])})],
    )
    with cat:
        mu = cat.get_matchup(mid)
    with pytest.raises(UnreadableProductError, match=r"asset B04 .* needs 18,471 pixels"):
        mu.return_matchup_dataset()
    monkeypatch.setattr(collocation, "MAX_WINDOW_PIXELS", 131 * 141)
    assert mu.return_matchup_dataset()[S2N].to_dataset()["B04"].size == 131 * 141
