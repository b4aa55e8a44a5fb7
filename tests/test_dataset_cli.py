"""``eomatch dataset`` end to end: a catalogue of real COGs → files that xarray reopens."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from affine import Affine

from dataset_helpers import (
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
    utm_box_in_lonlat,
    write_raster,
)
from eomatch.cli.main import main

REGION = utm_box_in_lonlat(X0 + 102.5, Y0 - 1492.5, X0 + 1502.5, Y0 - 192.5)
S2N, L9N = "S2_MSI_L2A-Sentinel-2A", "LANDSAT_C2L2-Landsat-9"


@pytest.fixture
def catalogue(tmp_path):
    t10, t30 = Affine(10, 0, X0, 0, -10, Y0), Affine(30, 0, X0, 0, -30, Y0)
    s2 = write_raster(tmp_path / "s2.tif", index_band(300, 300), UTM, t10)
    l9 = write_raster(tmp_path / "l9.tif", easting_band(t30, 100, 100), UTM, t30)
    cat, mid = catalogue_with(
        tmp_path / "cat",
        [Spec(S2, {"B04": asset(s2)}), Spec(L9, {"ramp": asset(l9)})],
        REGION,
    )
    cat.close()
    return tmp_path / "cat", mid


def test_one_matchup_to_netcdf(catalogue, tmp_path, capsys):
    root, mid = catalogue
    out = tmp_path / "out" / "mu.nc"
    code = main(["dataset", mid, "--catalogue", str(root), "--output", str(out), "--margin", "50"])
    assert code == 0, capsys.readouterr().err
    assert f"wrote {out}" in capsys.readouterr().out
    with xr.open_datatree(out, decode_coords="all") as tree:
        s2 = tree[S2N].to_dataset()
        np.testing.assert_array_equal(s2["B04"].values, index_band(300, 300)[14:155, 5:156])
        assert s2.rio.crs.to_epsg() == 32632
        assert tree.attrs["matchup_id"] == mid
        assert tree.attrs["margin_m"] == 50.0
        assert tree[L9N].attrs["reader"] == "landsat"


def test_common_grid_to_zarr_and_json_report(catalogue, tmp_path, capsys):
    root, mid = catalogue
    out = tmp_path / "mu.zarr"
    args = ["dataset", mid, "--path", str(root), "-o", str(out), "--grid", "common"]
    assert main([*args, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"written": [{"matchup": mid, "path": str(out)}], "failed": []}
    with xr.open_datatree(out, engine="zarr") as tree:
        assert tree[S2N]["x"].values.tolist() == tree[L9N]["x"].values.tolist()
        assert tree[S2N].attrs["resampling"] == "average"
    assert main(args) == 2  # exists: one line, nothing touched
    assert capsys.readouterr().err.strip().endswith("exists (overwrite it with --overwrite)")
    assert main([*args, "--overwrite"]) == 0


def test_many_matchups_one_file_each(catalogue, tmp_path, capsys):
    root, mid = catalogue
    out = tmp_path / "many"
    code = main(
        ["dataset", "--catalogue", str(root), "--collections", "S2_MSI_L2A", "-o", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [f"{mid}.nc"]
    code = main(
        [
            "dataset",
            "--catalogue",
            str(root),
            "--filter",
            '"matchup:time_diff_abs" > 1e6',
            "-o",
            str(out / "none"),
        ]
    )
    assert code == 0
    assert "0 dataset(s) written" in capsys.readouterr().out


def test_bad_inputs_are_one_line_and_write_nothing(catalogue, tmp_path, capsys):
    root, mid = catalogue
    out = tmp_path / "x.nc"
    cases = [
        (["dataset", "nope", "--catalogue", str(root), "-o", str(out)], "no matchup 'nope'"),
        (["dataset", mid, "--catalogue", str(root), "-o", str(tmp_path / "x.tif")], "must end in"),
        (["dataset", "--catalogue", str(root), "-o", str(out)], "give a MATCHUP_ID"),
        (
            ["dataset", mid, "--catalogue", str(root), "-o", str(out), "--target", "S2"],
            "--grid common",
        ),
        (
            [
                "dataset",
                mid,
                "--catalogue",
                str(root),
                "-o",
                str(out),
                "--grid",
                "common",
                "--target",
                "MODIS",
            ],
            "no sensor of this matchup",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err, err
        assert "\n" not in err
    assert main(["dataset", mid, "--catalogue", str(root), "-o", str(out), "--margin", "-5"]) == 2
    assert not out.exists()
    assert not (tmp_path / "x.tif").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_unreadable_product_fails_its_matchup_only(tmp_path, capsys):
    good = write_raster(
        tmp_path / "good.tif", index_band(300, 300), UTM, Affine(10, 0, X0, 0, -10, Y0)
    )
    cat, mid = catalogue_with(
        tmp_path / "cat",
        [
            Spec(S2, {"B04": asset(good)}),
            Spec(L9, {"data": asset("/nowhere/p.hdf", "application/x-hdf")}),
        ],
        REGION,
    )
    cat.close()
    assert (
        main(["dataset", mid, "--catalogue", str(tmp_path / "cat"), "-o", str(tmp_path / "a.nc")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("eomatch: error: product Landsat-9_")
    assert "no reader" in err
    assert not (tmp_path / "a.nc").exists()
    folder = tmp_path / "many"
    code = main(
        [
            "dataset",
            "--catalogue",
            str(tmp_path / "cat"),
            "--collections",
            "S2_MSI_L2A",
            "-o",
            str(folder),
        ]
    )
    assert code == 1
    assert f"failed: {mid}: product Landsat-9_" in capsys.readouterr().err
    assert list(folder.iterdir()) == []
