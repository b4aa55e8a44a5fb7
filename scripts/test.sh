#!/usr/bin/env bash
# The whole test suite: lint, format check, strict typing, then every test (slow ones too)
# against the real stack (PostgreSQL + PostGIS + pgSTAC, nginx, STAC Browser in Chromium),
# whose system packages are installed first if missing.
source "$(dirname "$0")/bootstrap.sh"
source "$(dirname "$0")/system-packages.sh"
system_packages server browser tests
echo "== ruff check" && "$UV" run --frozen ruff check src tests benchmarks
echo "== ruff format --check" && "$UV" run --frozen ruff format --check src tests benchmarks
echo "== mypy --strict" && "$UV" run --frozen mypy
echo "== import contracts" && "$UV" run --frozen lint-imports
echo "== STAC Browser build (cached)" && bash "$ROOT/scripts/build-browser.sh" >/dev/null
echo "== pytest" && "$UV" run --frozen pytest -n 2 --dist loadgroup -q "$@"
