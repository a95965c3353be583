"""Core files of programs of a space: what the kernel writes (the whole
shared mm, the dumping program's threads only) and `sameprocess gdb --core`.

The kernel names the file after kernel.core_pattern; these tests need a
plain pattern (a file in the program's cwd) and skip otherwise.
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _server_helpers import SP, clean_env

GDB_TIMEOUT = 120
# A row of `info threads`: "* 1    LWP 123 ..." or, with libthread_db,
# "  2    Thread 0x7f... (LWP 124) ..."
THREAD_ROW = r"^\*?\s+\d+\s+(?:Thread 0x[0-9a-f]+ \()?LWP (\d+)"


def core_pattern() -> str:
    return Path("/proc/sys/kernel/core_pattern").read_text().strip()


CORE_HARD_LIMIT = resource.getrlimit(resource.RLIMIT_CORE)[1]
needs_plain_cores = pytest.mark.skipif(
    core_pattern().startswith("|") or "/" in core_pattern() or CORE_HARD_LIMIT != resource.RLIM_INFINITY,
    reason=f"cores cannot be written whole in the program's cwd here (kernel.core_pattern "
           f"{core_pattern()!r}, RLIMIT_CORE hard limit {CORE_HARD_LIMIT})")


CORES_ON = {resource.RLIMIT_CORE: (resource.RLIM_INFINITY,) * 2}


def dump_core(space, exe, cwd: Path):
    """Run exe (it aborts) with cores enabled; (its pid, the core's path)."""
    p = space.Popen([exe], cwd=cwd, rlimits=CORES_ON, stdin=subprocess.DEVNULL)
    assert p.wait(60) == -6
    cores = [f for f in cwd.iterdir() if f.name.startswith("core")]
    assert len(cores) == 1, f"no core written in {cwd} (core_pattern {core_pattern()!r})"
    return p.pid, cores[0]


@needs_plain_cores
def test_the_core_holds_the_whole_mm_but_only_the_programs_threads(space, build, tmp_path):
    from sameprocess._core import Core

    pid, path = dump_core(space, build("dbg_crash.c"), tmp_path)
    core = Core(str(path))
    tids = [tid for tid, _ in core.threads]
    assert tids[0] == pid and len(tids) == 2          # the aborting thread first, then its other one
    assert all(tid != os.getpid() for tid in tids)     # no host thread
    files = {m.path for m in core.files}
    assert os.path.realpath(sys.executable) in files   # the host's own mappings are in it


@needs_plain_cores
@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (scripts/bootstrap.sh installs it)")
@pytest.mark.parametrize("flags", [None, ["-static-pie"]], ids=["pie", "static-pie"])
def test_sameprocess_gdb_core_gives_the_crashing_programs_backtrace(space, build, tmp_path, flags):
    exe = build("dbg_crash.c", flags=flags, name="dbg_crash_static" if flags else None)
    pid, path = dump_core(space, exe, tmp_path)
    result = subprocess.run(SP + ["gdb", "--core", str(path), exe, "-nx", "-batch", "-ex", "bt",
                                  "-ex", "print crash_global", "-ex", "info threads"],
                            capture_output=True, text=True, timeout=GDB_TIMEOUT, env=clean_env())
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert re.search(r"abort", out), out
    assert re.search(r"in crash_here \(depth=(depth@entry=)?3\) at .*dbg_crash\.c:\d+", out), out
    assert re.search(r"main \(\) at .*dbg_crash\.c:\d+", out), out
    assert "$1 = 5681" in out
    listed = [int(t) for t in re.findall(THREAD_ROW, out, re.M)]
    assert len(listed) == 2 and listed[0] == pid, out


@needs_plain_cores
def test_the_crashing_copy_is_found_among_copies_of_the_same_program(space, build, tmp_path):
    """Two programs run one executable; the core holds both copies, and the
    one whose link_map holds the crashing pc is the dead program."""
    from sameprocess._core import Core, CoreError, find_program

    exe = build("dbg_crash.c")
    survivor = space.Popen([exe], stdin=subprocess.PIPE, cwd=tmp_path)
    crasher = space.Popen([exe], stdin=subprocess.PIPE, cwd=tmp_path, rlimits=CORES_ON)
    expected, other = crasher.debug_target(), survivor.debug_target()
    crasher.stdin.close()
    assert crasher.wait(60) == -6
    core = Core(str(next(f for f in tmp_path.iterdir() if f.name.startswith("core"))))
    assert sum(m.path == exe and m.offset == 0 for m in core.files) == 2
    found = find_program(core, exe)
    assert (found.pid, found.r_debug) == (crasher.pid, expected.r_debug) != (survivor.pid, other.r_debug)
    assert survivor.poll() is None   # the dump left the other program alone
    with pytest.raises(CoreError, match="is not mapped in .*: the core is of another program"):
        find_program(core, build("hello.c"))


def test_gdb_core_refuses_what_is_not_a_core(build, tmp_path):
    fake = tmp_path / "core"
    fake.write_bytes(b"not a core")
    result = subprocess.run(SP + ["gdb", "--core", str(fake), build("hello.c")],
                            capture_output=True, text=True, timeout=60, env=clean_env())
    assert result.returncode == 1
    assert result.stderr == f"sameprocess gdb: {fake}: not an ELF file\n"
