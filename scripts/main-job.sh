#!/usr/bin/env bash
# The main job, end to end and offline: Sentinel-2A x Landsat-9 matchups over Europe in May 2022,
# predicted from the shipped TLE archive, written as a STAC catalogue plus a map; the command
# prints a summary and where the catalogue and the map are.
source "$(dirname "$0")/bootstrap.sh"
OUT="${EOMATCH_OUT:-$ROOT/out}"
mkdir -p "$OUT"
"$UV" run --frozen eomatch find --config "$ROOT/examples/s2a-landsat9-europe.yaml" \
  --path "$OUT/catalogue" --plot "$OUT/matchups-map.png" "$@"
