#!/usr/bin/env bash
# Build the eomatch STAC Browser (Radiant Earth STAC Browser, from the npm registry) into a
# content-addressed cache and print the dist directory's path as the last line of stdout.
#
#   scripts/build-browser.sh            build if needed, print .cache/stac-browser/<hash>/dist
#   scripts/build-browser.sh --check    print the path if it is built, else exit 3 (no build)
#
# Inputs: browser/package.json, browser/package-lock.json (installed with `npm ci`, so the tree
# is exactly the committed one), browser/config.js and this script. Same inputs -> same <hash>
# -> nothing to do. The build runs in a temporary directory and is renamed into place, so an
# interrupted build never leaves a half-written dist. Needs node >= 18 and npm; the npm
# registry is the only network access. EOMATCH_CACHE_DIR overrides the cache root (.cache).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/browser"
CACHE="${EOMATCH_CACHE_DIR:-$ROOT/.cache}/stac-browser"
STAC_BROWSER_VERSION=4.0.1
INPUTS=("$SRC/package.json" "$SRC/package-lock.json" "$SRC/config.js" "$ROOT/scripts/build-browser.sh")

log() { echo "build-browser: $*" >&2; }

hash_files() { # sha256 over names and contents -> 16 hex digits
  local f
  for f in "$@"; do printf '%s\0' "$(basename "$f")"; cat "$f"; printf '\0'; done \
    | sha256sum | cut -c1-16
}

HASH="$(hash_files "${INPUTS[@]}")"
OUT="$CACHE/$HASH"
if [ -f "$OUT/dist/index.html" ]; then echo "$OUT/dist"; exit 0; fi
if [ "${1:-}" = "--check" ]; then log "not built yet ($OUT)"; exit 3; fi

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 ||
    { log "$tool not found: install Node.js >= 18 and npm (Debian: apt-get install nodejs npm)"; exit 2; }
done

mkdir -p "$CACHE"
# One build at a time (parallel test workers may all ask for it); re-check after the wait.
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$OUT/dist/index.html" ]; then echo "$OUT/dist"; exit 0; fi

# 1. Dependencies (STAC Browser's source is one of them), keyed by the manifest + lock only,
#    so a config change rebuilds without reinstalling.
NPM_HASH="$(hash_files "$SRC/package.json" "$SRC/package-lock.json")"
NPM_DIR="$CACHE/npm-$NPM_HASH"
if [ ! -f "$NPM_DIR/.complete" ]; then
  log "npm ci (about a minute with a cold npm cache)"
  rm -rf "$NPM_DIR"
  mkdir -p "$NPM_DIR"
  cp "$SRC/package.json" "$SRC/package-lock.json" "$NPM_DIR/"
  # No install scripts: none is needed to build (they only print banners or set up git hooks).
  (cd "$NPM_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
  touch "$NPM_DIR/.complete"
  find "$CACHE" -maxdepth 1 -name 'npm-*' ! -path "$NPM_DIR" -exec rm -rf {} +
fi
PKG="$NPM_DIR/node_modules/@radiantearth/stac-browser"
got="$(node -p "require('$PKG/package.json').version")"
[ "$got" = "$STAC_BROWSER_VERSION" ] ||
  { log "expected STAC Browser $STAC_BROWSER_VERSION, the lock file gave $got"; exit 1; }

# 2. Our source tree: STAC Browser's files + our config, with the installed packages linked in
#    as its node_modules (its styles import ../../node_modules/ol/ol.css by relative path).
rm -rf "$CACHE"/.build.*  # left by killed builds (we hold the lock)
WORK="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/app" "$WORK/out"
(cd "$PKG" && tar cf - --exclude=./node_modules .) | (cd "$WORK/app" && tar xf -)
ln -s "$NPM_DIR/node_modules" "$WORK/app/node_modules"
cp "$SRC/config.js" "$WORK/app/config.js"
# Runtime configuration: load /config.js (window.STAC_BROWSER_CONFIG) before the app.
# Upstream ships this script tag commented out.
tag='<script defer="defer" src="/config.js"></script>'
sed -i "s#<!-- $tag -->#$tag#" "$WORK/app/public/index.html"
grep -qF "  $tag" "$WORK/app/public/index.html" ||
  { log "could not enable the runtime config script tag in public/index.html"; exit 1; }
# The default runtime config is empty: the build-time config.js above applies.
printf 'window.STAC_BROWSER_CONFIG = {};\n' >"$WORK/app/public/config.js"

# 3. Build. vue.config.js reads every SB_* environment variable as an option: clear them so
#    the output depends on the inputs above only.
log "building STAC Browser $STAC_BROWSER_VERSION (about a minute)"
start=$SECONDS
(
  cd "$WORK/app"
  while read -r var; do unset "$var"; done < <(compgen -e | grep '^SB_' || true)
  export NODE_ENV=production BROWSERSLIST_IGNORE_OLD_DATA=1
  node "$NPM_DIR/node_modules/@vue/cli-service/bin/vue-cli-service.js" build \
    --noSourceMaps --dest "$WORK/out/dist" >"$WORK/build.log" 2>&1
) || {
  cp "$WORK/build.log" "$CACHE/last-failed-build.log"
  grep -A3 -m20 "ERROR\|error  in" "$WORK/build.log" >&2 || tail -n 40 "$WORK/build.log" >&2
  log "build failed; full log: $CACHE/last-failed-build.log"; exit 1
}
[ -f "$WORK/out/dist/index.html" ] || { log "build produced no index.html"; exit 1; }
printf '%s\n' "STAC Browser $STAC_BROWSER_VERSION; inputs $HASH" >"$WORK/out/BUILD-INFO"
log "built in $((SECONDS - start)) s ($(du -sh "$WORK/out/dist" | cut -f1))"

# 4. Publish atomically; drop older builds.
mv -T "$WORK/out" "$OUT"
rm -f "$CACHE/last-failed-build.log"
find "$CACHE" -maxdepth 1 -mindepth 1 -type d ! -name 'npm-*' ! -name "$HASH" ! -name '.build.*' \
  -exec rm -rf {} +
echo "$OUT/dist"
