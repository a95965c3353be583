"""What a debugger needs to find one program's code in the shared mm, and
the gdb command line that uses it (docs/debugging.md).

A program's /proc/PID/exe and auxv are the host's, so gdb left alone loads
the host.  The space knows better: the program's executable, its ld.so's
`_r_debug` (whose link_map lists every object with its load bias), and for
a static program, which has no ld.so, where its image was mapped.
DebugTarget carries exactly that; gdb_command starts gdb with the glue in
_gdb/program.py, which loads symbols from the program's own link_map.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ._caps import CAP_SYS_PTRACE, has_capability
from ._elf import page_down

GDB_DIR = Path(__file__).resolve().parent / "_gdb"
GLUE = GDB_DIR / "program.py"
# gdb's own shared-library search follows the host's auxv; given a sysroot
# that does not exist (inside the package: nothing else creates it), it
# opens nothing, and so plants nothing in the host.
EMPTY_SYSROOT = GDB_DIR / "no-sysroot"


@dataclass(frozen=True)
class DebugTarget:
    """One running program, as a debugger must see it."""

    pid: int
    executable: str    # the ELF file that runs (a script's interpreter)
    r_debug: int       # its ld.so's _r_debug; 0: no ld.so (static program)
    bias: int          # load bias of a static program's image; 0 otherwise


class LeftTheSpace(LookupError):
    """The program has exec'd: it is an ordinary process with an mm of its own."""


def target_of(space, program) -> DebugTarget:
    """The DebugTarget of a live program of `space`; ProcessLookupError once
    it has been reaped, LeftTheSpace once it has exec'd."""
    launch = space._launch_of(program)
    if launch is None:
        raise ProcessLookupError(f"program {program.pid} is not running in this space")
    if _mm_fields(launch.pid) != _mm_fields("self"):
        raise LeftTheSpace(f"program {launch.pid} has exec'd and left the space: "
                           f"debug it as any process (gdb -p {launch.pid})")
    bias = 0 if launch.r_debug else static_bias(launch)
    return DebugTarget(launch.pid, os.path.normpath(launch.main.path), launch.r_debug or 0, bias)


def _mm_fields(pid) -> list[bytes]:
    """Fields of /proc/PID/stat that belong to the mm (code, stack, data, brk
    and argument addresses): equal for every task of one mm, different
    after an exec."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    # After the ")" : state is fields[0]; startcode..startstack are stat
    # fields 26-28, start_data..env_end 45-51 (man 5 proc).
    return fields[23:26] + fields[42:49]


def static_bias(launch) -> int:
    """Where the loader mapped a static image: the file mapping of its first
    segment inside this launch's regions (other programs may run the same
    file; and the loader's regions hold nothing else mapped from a file, so no file
    identity is compared, which overlay filesystems report inconsistently)."""
    first = launch.main.loads[0]
    for start, offset in _file_mappings():
        if offset == page_down(first.offset) and any(lo <= start < hi for lo, hi in launch.loader_ranges):
            return start - page_down(first.vaddr)
    raise ProcessLookupError(f"the image of program {launch.pid} is no longer mapped")


def _file_mappings():
    """(start, file offset) of each file mapping of the host."""
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            fields = line.split(None, 5)
            if int(fields[4]):   # an inode: a file
                yield int(fields[0].split(b"-")[0], 16), int(fields[2], 16)


def gdb_command(target: DebugTarget, gdb_args=(), gdb: str = "gdb") -> list[str]:
    """argv that runs gdb attached to the program, with its symbols.

    gdb_args (options such as -batch, -ex CMD) come after the glue's own
    command, so theirs run with the symbols loaded.
    """
    return [gdb, *_glue_options(),
            "-ex", f"sameprocess-attach {target.pid} {_glue_args(target)}", *gdb_args]


def core_command(target: DebugTarget, core: str, gdb_args=(), gdb: str = "gdb") -> list[str]:
    """argv that runs gdb on a core file that a program of a space dumped.

    No empty sysroot here: gdb cannot plant anything in a core, and it needs
    the files that NT_FILE names to read what the core left out.
    """
    return [gdb, "-ix", str(GLUE),
            "-ex", f"sameprocess-program {_glue_args(target)}",
            *gdb_args, target.executable, core]


def _glue_options() -> list[str]:
    return ["-iex", f"set sysroot {EMPTY_SYSROOT}", "-ix", str(GLUE)]


def _glue_args(target: DebugTarget) -> str:
    return f"{_quote(target.executable)} {target.r_debug:#x} {target.bias:#x}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_gdb() -> str:
    """The gdb on PATH; FileNotFoundError naming the package otherwise."""
    path = shutil.which("gdb")
    if path is None:
        raise FileNotFoundError("gdb is not installed (Debian: apt-get install gdb)")
    return path


def ptrace_problem() -> str | None:
    """Why attaching to a program will be refused here, or None.

    Programs are children of the host (the server), never of gdb: with
    yama's ptrace_scope 1 only CAP_SYS_PTRACE (or the program naming its
    tracer with PR_SET_PTRACER) allows the attach; 3 forbids it outright.
    """
    scope = _ptrace_scope()
    if scope is None or scope == 0 or (scope in (1, 2) and has_capability(CAP_SYS_PTRACE)):
        return None
    if scope == 3:
        return "kernel.yama.ptrace_scope is 3: no process may be attached to (reboot needed)"
    return (f"kernel.yama.ptrace_scope is {scope}: attaching to a program of the space needs "
            "CAP_SYS_PTRACE; run the command of `sameprocess gdb --print-command PID` with sudo "
            "(see docs/debugging.md)")


def _ptrace_scope() -> int | None:
    """yama's ptrace_scope, or None without yama."""
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        return None
