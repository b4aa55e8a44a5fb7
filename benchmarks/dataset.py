"""Speed of ``Matchup.return_matchup_dataset`` (figures, no asserts; issue 15 §1).

Two Sentinel-2-sized COGs (10 980 x 10 980 pixels, UTM 32N, 10 m, uint16, DEFLATE, tiled 512,
with overviews; a smooth field plus noise, so they compress like real bands) are written once
into ``--workdir`` (kept for re-runs), catalogued as one matchup whose collocation region is a
10 km x 10 km square in their middle, and read:

* ``native``: each product's own window (1 000 x 1 000 pixels each), target < 2 s;
* ``common``: the same, with the second product resampled onto the first one's grid;
* ``remote``: the first product served by a local HTTP server (Range requests, as a COG on
  object storage), with the bytes it sent;
* ``whole files``: the reference, both files read completely with rasterio in the same run.

Files are in the page cache after writing (warm reads, as on a second look at a matchup).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from affine import Affine  # noqa: E402

from dataset_helpers import (  # noqa: E402
    L9,
    S2,
    UTM,
    X0,
    Y0,
    Spec,
    asset,
    catalogue_with,
    serve,
    utm_box_in_lonlat,
    write_raster,
)

SIZE = 10_980
T10 = Affine(10, 0, X0, 0, -10, Y0)


def make_band(path: Path, seed: int) -> Path:
    """A 10 980² uint16 COG (written once)."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE:8, 0:SIZE:8].astype(np.float32)  # a smooth field, upsampled
    field = 3000 + 1000 * np.sin(x / 300 + seed) * np.cos(y / 450)
    band = np.repeat(np.repeat(field, 8, axis=0), 8, axis=1)[:SIZE, :SIZE]
    band = (band + rng.normal(0, 20, band.shape).astype(np.float32)).astype(np.uint16)
    t0 = time.perf_counter()
    write_raster(path, band, UTM, T10, blocksize=512, compress="DEFLATE")
    mb, took = path.stat().st_size / 1e6, time.perf_counter() - t0
    print(f"  wrote {path.name}: {mb:.0f} MB in {took:.1f} s")
    return path


def timed(label: str, fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    print(f"{label:<38} {best:7.3f} s (best of {repeat})")
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/eomatch-bench-dataset"))
    args = p.parse_args()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print(f"products in {work}")
    a = make_band(work / "s2_B04.tif", 1)
    b = make_band(work / "l9_B04.tif", 2)
    mid_x, mid_y = X0 + SIZE * 5, Y0 - SIZE * 5  # the centre of the tiles
    region = utm_box_in_lonlat(mid_x - 5000, mid_y - 5000, mid_x + 5000, mid_y + 5000)
    cat_root = work / "catalogue"
    if cat_root.exists():
        shutil.rmtree(cat_root)
    cat, mid = catalogue_with(
        cat_root, [Spec(S2, {"B04": asset(a)}), Spec(L9, {"B04": asset(b)})], region
    )
    with cat:
        mu = cat.get_matchup(mid)
    tree = mu.return_matchup_dataset()
    shape = tree["S2_MSI_L2A-Sentinel-2A"].to_dataset()["B04"].shape
    print(f"matchup 10 km x 10 km: {shape[0]} x {shape[1]} pixels per product\n")

    t_native = timed("native grids (two windows)", lambda: mu.return_matchup_dataset())
    timed("common grid (one resampled)", lambda: mu.return_matchup_dataset(grid="common"))

    with serve(work) as srv:
        remote_cat_root = work / "catalogue-remote"
        if remote_cat_root.exists():
            shutil.rmtree(remote_cat_root)
        rcat, rmid = catalogue_with(
            remote_cat_root,
            [Spec(S2, {"B04": asset(f"{srv.url}/{a.name}")}), Spec(L9, {"B04": asset(b)})],
            region,
        )
        with rcat:
            rmu = rcat.get_matchup(rmid)
        srv.sent = 0
        timed("one product remote (HTTP Range)", lambda: rmu.return_matchup_dataset(), repeat=1)
        print(
            f"{'':<38} {srv.sent / 1e6:7.1f} MB of {a.stat().st_size / 1e6:.0f} MB sent, "
            f"{len(srv.requests)} requests"
        )

    def whole() -> None:
        for path in (a, b):
            with rasterio.open(path) as src:
                src.read()

    t_whole = timed("reference: both whole files", whole, repeat=1)
    print(f"\nnative windows are {t_whole / t_native:.0f}x faster than reading the whole files")
    print(f"target < 2 s: {'met' if t_native < 2.0 else 'NOT met'} ({t_native:.3f} s)")


if __name__ == "__main__":
    main()
