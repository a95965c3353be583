#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (Python 3.11 + gcc given):
#  1. installs the system packages the tests need, only those missing
#     (apt-get; sudo when not root): g++, Go (golang-go), musl-tools, rustc (unless a
#     rustc is already on PATH), the aarch64 cross compiler (the tests build
#     the native core for both architectures), static libc, gdb (the debugging tests),
#     python3-venv,
#     and for Debian's python3.X its test package (libpython3.X-testsuite:
#     tests/test_cpython_subprocess_suite.py runs CPython's test_subprocess);
#  2. creates .venv with python3.11 (or python3 >= 3.11) and upgrades pip;
#  3. installs the package and its test extras: pip install -e '.[test]'
#     (every run, so an edited native core is rebuilt).
# Safe to run again: step 1 and the venv creation do nothing when done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root or sudo to run: $*"
    fi
}

# -- 1. system packages ------------------------------------------------------

missing=()
need_command() {  # need_command COMMAND PACKAGE...
    command -v "$1" >/dev/null 2>&1 || missing+=("${@:2}")
}
need_package() {  # need_package PACKAGE (for what has no command of its own)
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || missing+=("$1")
}

PY=""
for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        PY="$(command -v "$candidate")"
        break
    fi
done
[ -n "$PY" ] || die "no python3.11 or python3 >= 3.11 on PATH"

need_command gcc gcc
need_command g++ g++
need_command readelf binutils
need_command go golang-go
need_command rustc rustc
need_command musl-gcc musl-tools  # a non-glibc interpreter for the loader tests
need_command gdb gdb              # tests/test_gdb*.py drive it in batch mode
need_command aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu
need_package libc6-dev-arm64-cross
# -static-pie programs need libc.a (gcc prints the bare name when it has none).
if ! command -v gcc >/dev/null 2>&1 || [ "$(gcc -print-file-name=libc.a)" = "libc.a" ]; then
    missing+=(libc6-dev)
fi
"$PY" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
# CPython's own test_subprocess is run against the space; Debian's python3.X
# ships its test package separately (other interpreters: the test skips).
if ! "$PY" -c 'import test.test_subprocess' 2>/dev/null && [ "${PY#/usr/bin/}" != "$PY" ]; then
    missing+=("libpython$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-testsuite")
fi

if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# -- 2. virtual environment ----------------------------------------------------

export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    log "creating .venv with $PY"
    rm -rf .venv
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi

# -- 3. the package --------------------------------------------------------------

log "pip install -e '.[test]'"
.venv/bin/python -m pip install -q -e '.[test]'
