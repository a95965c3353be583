#!/usr/bin/env bash
# Bootstraps (scripts/bootstrap.sh), then runs the demo.
# TODO: switch to `.venv/bin/sameprocess demo "$@"` once the CLI has the
# demo verb; until then this runs examples/demo.py when it exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/bootstrap.sh
if [ -f examples/demo.py ]; then
    exec .venv/bin/python examples/demo.py "$@"
fi
echo "demo: no demo yet (examples/demo.py does not exist)" >&2
exit 1
