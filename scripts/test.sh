#!/usr/bin/env bash
# Bootstraps (scripts/bootstrap.sh), then runs the test suite; arguments go to
# pytest, e.g. scripts/test.sh tests/test_programs_native.py -k auxv
# Exits with pytest's status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q "$@"
