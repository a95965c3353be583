#!/usr/bin/env bash
# Bootstraps (scripts/bootstrap.sh), then runs `sameprocess demo`: two
# separate launches hand a std::string and an std::unordered_map over by
# pointer, next to the same handoff through a pipe.  Arguments go to the demo
# (see `sameprocess demo --help`).  The demo uses the default server, starting
# it when none runs; it keeps running afterwards (`sameprocess stop`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/bootstrap.sh
exec .venv/bin/sameprocess demo "$@"
