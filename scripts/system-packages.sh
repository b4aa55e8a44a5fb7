# Sourced by main-job.sh and test.sh after bootstrap.sh: installs the system packages the
# service needs, only those missing (dpkg is asked first, so a ready machine costs nothing).
#   server:  PostgreSQL + PostGIS (matching the installed/default PostgreSQL major), nginx,
#            pgbouncer (the read replica's pooler)
#   browser: node + npm (to build STAC Browser)
#   tests:   chromium + fonts (headless browser test), docker-compose (checks deploy/), wrk (the
#            benchmarks' load generator: their figures of record use it, not the httpx fallback)
set -euo pipefail

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

pg_major() {
  local v
  v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1 || true)
  if [ -z "$v" ] && command -v apt-cache >/dev/null 2>&1; then
    [ -n "${EOMATCH_APT_UPDATED:-}" ] || { as_root apt-get update -qq; export EOMATCH_APT_UPDATED=1; }
    v=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -1)
  fi
  echo "${v:-15}"
}

system_packages() {  # system_packages server|browser|tests ...
  command -v dpkg-query >/dev/null 2>&1 || { echo "eomatch setup: not a Debian/Ubuntu system; install PostgreSQL+PostGIS, nginx, node, chromium yourself" >&2; return 0; }
  local want=() major
  for group in "$@"; do
    case "$group" in
      server)
        major=$(pg_major)
        want+=("postgresql-$major" "postgresql-$major-postgis-3" nginx pgbouncer) ;;
      browser)
        command -v npm >/dev/null 2>&1 || want+=(nodejs npm) ;;
      tests)
        want+=(chromium fonts-dejavu-core docker-compose wrk) ;;
    esac
  done
  local missing=()
  for p in "${want[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "eomatch setup: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
  fi
}
