"""Helpers for the sharing-runtime tests (test_sharing_*.py).

The rt_ programs print lines of space-separated key=value fields; records()
parses them.  python_in_space() runs a CPython script as a program of the
space.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

ENOENT, EINVAL, ENOMEM, EEXIST = 2, 22, 12, 17
ENOSPC, EPIPE, ENAMETOOLONG, EPROTO = 28, 32, 36, 71
ENOTCONN, ETIMEDOUT = 107, 110
TIMEOUT = 120


def records(text: str | bytes) -> list[dict[str, str]]:
    if isinstance(text, bytes):
        text = text.decode()
    out = []
    for line in text.splitlines():
        fields = dict(token.split("=", 1) for token in line.split() if "=" in token)
        if fields:
            out.append(fields)
    return out


def merged(text: str | bytes) -> dict[str, str]:
    """All records in one dict (later keys win)."""
    out: dict[str, str] = {}
    for record in records(text):
        out.update(record)
    return out


def run(space, *args, check=True, **kwargs) -> subprocess.CompletedProcess:
    r = space.run([str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def python_in_space(space, tmp_path, source: str, *args, check=True) -> subprocess.CompletedProcess:
    script = tmp_path / f"script_{abs(hash(source))}.py"
    script.write_text(textwrap.dedent(source))
    return run(space, sys.executable, script, *args, check=check)
