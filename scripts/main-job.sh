#!/usr/bin/env bash
# The main job, end to end and offline: crossovers of Sentinel-2A and Landsat-9 over Europe in
# May 2022 from the shipped TLE archive, written as CSV plus a map.
source "$(dirname "$0")/bootstrap.sh"
OUT="${EOMATCH_OUT:-$ROOT/out}"
mkdir -p "$OUT"
"$UV" run --frozen eomatch crossovers \
  --platforms S2A,LS9 --start 2022-05-01 --end 2022-06-01 \
  --max-distance-km 100 --max-time-diff-s 1800 --bbox -25 34 45 72 \
  --format csv --output "$OUT/crossovers.csv" --plot "$OUT/crossovers.png" "$@"
echo "crossovers: $OUT/crossovers.csv"
echo "map:        $OUT/crossovers.png"
