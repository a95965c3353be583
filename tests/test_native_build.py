"""The native core builds for both supported architectures.

Compiles src/sameprocess/_native/*.c and the architecture's .S with the
same flags as setup.py, with the host compiler or the cross compiler, links
the two into a throwaway shared library with -z defs (so every symbol one
needs from the other is there), checks the objects' e_machine and that the
library defines every function the headers declare.  Warnings count as
failures: setup.py builds with -Wall -Wextra and nobody reads pip's output.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parent.parent / "src" / "sameprocess" / "_native"
FLAGS = ["-O2", "-fno-stack-protector", "-Wall", "-Wextra", "-fPIC"]  # as setup.py (+ -fPIC)

ARCHES = {
    # arch: (GNU triple, e_machine, Debian packages for the cross compiler)
    "x86_64": ("x86_64-linux-gnu", 62, "gcc-x86-64-linux-gnu libc6-dev-amd64-cross"),
    "aarch64": ("aarch64-linux-gnu", 183, "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
}
HOST = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())


def compiler_for(arch: str) -> str:
    triple, _, packages = ARCHES[arch]
    cc = "gcc" if arch == HOST else f"{triple}-gcc"
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} not found on PATH: install {packages} (scripts/bootstrap.sh does)", pytrace=False)
    return cc


def compile_checked(cmd: list[str], cwd: Path) -> None:
    env = dict(os.environ, LC_ALL="C")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    output = proc.stderr + proc.stdout
    if (proc.returncode != 0) or ("warning:" in output):
        pytest.fail(f"$ {' '.join(cmd)}\n(exit {proc.returncode})\n{output}", pytrace=False)


def declared_functions() -> set[str]:
    """Names of the functions the native headers declare (the C API)."""
    header = "".join(path.read_text() for path in sorted(NATIVE.glob("*.h")))
    return set(re.findall(r"^[A-Za-z_][\w \t]*?\**\b(sp_\w+)\s*\(", header, re.MULTILINE))


def defined_dynamic_symbols(lib: Path) -> set[str]:
    proc = subprocess.run(["readelf", "--dyn-syms", "-W", str(lib)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stdout.splitlines():
        fields = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if (len(fields) >= 8) and (fields[6] != "UND"):
            names.add(fields[7].split("@")[0])
    return names


def e_machine(path: Path) -> int:
    data = path.read_bytes()[:20]
    assert data[:4] == b"\x7fELF", path
    return struct.unpack_from("<H", data, 18)[0]


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_native_core_builds(arch, tmp_path):
    cc = compiler_for(arch)
    sources = [*sorted(NATIVE.glob("*.c")), NATIVE / "arch" / f"{arch}.S"]
    assert {"spawn.c", "exec.c", "keeper.c", "ledger.c"} <= {src.name for src in sources}
    assert sources[-1].is_file(), f"missing {sources[-1]}"
    objects = []
    for src in sources:
        obj = tmp_path / f"{src.stem}.o"
        compile_checked([cc, *FLAGS, "-c", str(src), "-o", str(obj)], tmp_path)
        assert e_machine(obj) == ARCHES[arch][1], f"{obj.name} is not {arch}"
        objects.append(str(obj))
    lib = tmp_path / "libcore.so"
    compile_checked([cc, "-shared", "-Wl,-z,defs", "-o", str(lib), *objects], tmp_path)
    assert e_machine(lib) == ARCHES[arch][1]
    declared = declared_functions()
    assert declared, "found no sp_* function declarations in spawn.h"
    missing = declared - defined_dynamic_symbols(lib)
    assert not missing, f"declared in spawn.h but not defined for {arch}: {sorted(missing)}"


LAUNCHER = NATIVE.parent / "_launcher"


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_launcher_builds(arch, tmp_path):
    """The `sameprocess` executable, with setup.py's flags, links for each architecture
    (static, as setup.py links it where libc.a is installed)."""
    cc = compiler_for(arch)
    sources = sorted(LAUNCHER.glob("*.c"))
    assert {s.name for s in sources} == {"launcher.c", "wire.c", "connect.c"}
    exe = tmp_path / "sameprocess"
    compile_checked([cc, "-O2", "-Wall", "-Wextra", "-fPIE", "-static-pie", '-DSP_PYTHON="/usr/bin/python3"',
                     "-o", str(exe), *map(str, sources)], tmp_path)
    assert e_machine(exe) == ARCHES[arch][1]
