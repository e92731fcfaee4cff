#!/usr/bin/env bash
# The whole suite: lint, types, then pytest (unit, integration, browser).
# Every stage runs even when an earlier one fails, so one run reports everything;
# the exit code is non-zero if any stage failed.
# With CI=true a missing service (PostgreSQL, Docker, Chromium) fails its tests.
set -uo pipefail
cd "$(dirname "$0")/../.."
failed=()
run() {
  echo "== $*"
  "$@" || failed+=("$1")
}
run .venv/bin/ruff check .
run .venv/bin/ruff format --check .
run .venv/bin/mypy platform accreditation airlock workspace-images/sde
run .venv/bin/pytest "$@"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed stages: ${failed[*]}" >&2
  exit 1
fi
