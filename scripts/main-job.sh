#!/usr/bin/env bash
# The main job, end to end and offline: Sentinel-2A x Landsat-9 matchups over Europe in May 2022,
# predicted from the shipped TLE archive and written as a STAC catalogue plus a map; then the
# catalogue is ingested into a local PostgreSQL/pgSTAC database and served (internal and
# external STAC API, STAC Browser, one gateway port) until Ctrl-C. The URLs are printed.
#   EOMATCH_OUT=DIR     where the catalogue and the map go (default: out/); the database and the
#                       service's run files go to the data dir (EOMATCH_DATA_DIR; for root
#                       /var/lib/eomatch), which the postgres and nginx users can always reach
#   EOMATCH_PORT=PORT   gateway port (default 8090)
#   EOMATCH_NO_SERVE=1  stop after the ingest (find + ingest only)
source "$(dirname "$0")/bootstrap.sh"
source "$(dirname "$0")/system-packages.sh"
system_packages server browser
OUT="${EOMATCH_OUT:-$ROOT/out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
run() { "$UV" run --frozen "$@"; }
run eomatch find --config "$ROOT/examples/s2a-landsat9-europe.yaml" \
  --path "$OUT/catalogue" --plot "$OUT/matchups-map.png" "$@"
run eomatch db init
run eomatch ingest --catalogue "$OUT/catalogue"
run eomatch db stop >/dev/null  # serve starts it and stops it again on Ctrl-C
[ -n "${EOMATCH_NO_SERVE:-}" ] && exit 0
run eomatch serve --port "${EOMATCH_PORT:-8090}"
