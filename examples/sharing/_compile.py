"""Compiles an example against the sharing runtime, the documented way:

    cc prog.c $(sameprocess config --cflags --libs)

Outputs are cached in ~/.cache/sameprocess/examples/sharing, or
$SAMEPROCESS_EXAMPLES_CACHE (rebuilt when the source, the headers or the
library are newer).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SAMEPROCESS_EXAMPLES_CACHE")
             or os.path.expanduser("~/.cache/sameprocess/examples/sharing"))


def runtime_flags() -> list[str]:
    r = subprocess.run([sys.executable, "-m", "sameprocess", "config", "--cflags", "--libs"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        return shlex.split(r.stdout)
    from sameprocess._runtime import compile_flags  # the same flags, if the verb is not there
    return compile_flags()


def compile_example(source: str) -> str:
    src = HERE / source
    flags = runtime_flags()
    inputs = [src] + [Path(f[2:]) / h for f in flags if f.startswith("-I") for h in ("sameprocess.h", "sameprocess.hpp")]
    inputs += [Path(f[2:]) / "libsameprocess.a" for f in flags if f.startswith("-L")]
    out = CACHE / src.stem
    if out.exists() and all(out.stat().st_mtime >= p.stat().st_mtime for p in inputs if p.exists()):
        return str(out)
    CACHE.mkdir(parents=True, exist_ok=True)
    compiler = ["g++", "-std=c++17"] if src.suffix == ".cpp" else ["gcc"]
    subprocess.run([*compiler, "-O2", "-o", str(out), str(src), *flags, "-lm"], check=True)
    return str(out)
