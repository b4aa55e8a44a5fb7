# Sourced by the other scripts: make sure python3 (>= 3.11) and uv exist, then sync the
# locked environment. Installs only what is missing; safe to re-run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "eomatch setup: please install: $*" >&2; exit 1
  fi
  if [ -z "${EOMATCH_APT_UPDATED:-}" ]; then
    as_root apt-get update -qq; export EOMATCH_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

python_ok() {
  command -v python3 >/dev/null 2>&1 &&
    python3 -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}

if ! python_ok; then
  echo "eomatch setup: installing Python 3 (>= 3.11) from the distribution" >&2
  apt_install python3 python3-venv python3-pip ca-certificates
  python_ok || { echo "eomatch setup: this distribution's python3 is older than 3.11" >&2; exit 1; }
fi

if command -v uv >/dev/null 2>&1; then
  UV=uv
else
  if [ ! -x "$ROOT/.tools/bin/uv" ]; then
    echo "eomatch setup: installing uv into .tools/" >&2
    python3 -m venv "$ROOT/.tools"
    "$ROOT/.tools/bin/pip" install -q uv
  fi
  UV="$ROOT/.tools/bin/uv"
fi
export UV
export UV_PYTHON_DOWNLOADS=never
"$UV" sync --frozen --quiet --python "$(command -v python3)"
