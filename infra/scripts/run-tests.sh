#!/usr/bin/env bash
# The whole suite: lint, types, then pytest (unit, integration, browser).
# With CI=true a missing service (PostgreSQL, Docker, Chromium) fails its tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy platform accreditation airlock workspace-images/sde
exec .venv/bin/pytest "$@"
