#!/usr/bin/env bash
# Bootstraps (scripts/bootstrap.sh), then runs the demo.
# TODO: switch to `.venv/bin/sameprocess demo "$@"` once the CLI has the
# demo verb; until then this runs examples/space_demo.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/bootstrap.sh
if [ -f examples/space_demo.py ]; then
    exec .venv/bin/python examples/space_demo.py "$@"
fi
echo "demo: examples/space_demo.py is missing" >&2
exit 1
