#!/usr/bin/env bash
# The whole test suite: lint, format check, strict typing, then every test (slow ones too).
source "$(dirname "$0")/bootstrap.sh"
echo "== ruff check" && "$UV" run --frozen ruff check src tests benchmarks
echo "== ruff format --check" && "$UV" run --frozen ruff format --check src tests benchmarks
echo "== mypy --strict" && "$UV" run --frozen mypy
echo "== pytest" && "$UV" run --frozen pytest -n 2 --dist loadgroup -q "$@"
