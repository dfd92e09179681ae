#!/bin/sh
# Runs every check CI runs: lint, types, and the whole test suite.
set -eu
cd "$(dirname "$0")/.."
.venv/bin/ruff check vxn tests bench
.venv/bin/ruff format --check vxn tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
